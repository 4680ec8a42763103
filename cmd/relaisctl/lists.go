package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"

	adminv1 "github.com/relais-broker/relais/proto/relais/admin/v1"
)

// credentialsListCmd lists the credential records of the registry.
func credentialsListCmd() *cobra.Command {
	return adminLeaf("list [--consumer SIRET]", "List the certificates recorded in the registry (admin API)",
		"  relaisctl credentials list --consumer 21750000500012",
		func(fs *pflag.FlagSet, af *adminFlags) func(context.Context, *grpc.ClientConn, io.Writer) error {
			subject := fs.String("consumer", "", "only this SIRET (or operator id)")
			return func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error {
				if fs.NArg() > 0 {
					return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
				}
				resp, err := adminv1.NewCredentialAdminServiceClient(conn).ListCredentials(ctx, &adminv1.ListCredentialsRequest{Subject: *subject})
				if err != nil {
					return err
				}
				v := view{whole: resp, items: protoItems(resp.GetCredentials()),
					cols: []column{{name: "SERIAL"}, {name: "KIND"}, {name: "SUBJECT", max: 20}, {name: "FROM"}, {name: "UNTIL"}, {name: "STATUS"}, {name: "ISSUED BY", max: 16}}}
				for _, r := range resp.GetCredentials() {
					v.rows = append(v.rows, []string{r.GetSerial(), r.GetKind(), r.GetSubject(), day(r.GetNotBefore()), day(r.GetNotAfter()), r.GetStatus(), r.GetIssuedBy()})
				}
				return render(out, af.format(), v)
			}
		})
}

// sourcesCmd lists the typed services and their source adapters.
func sourcesCmd() *cobra.Command {
	list := adminLeaf("list", "List the typed services, their source adapters and their health (admin API)", "  relaisctl sources list\n  relaisctl sources list -o wide",
		func(fs *pflag.FlagSet, af *adminFlags) func(context.Context, *grpc.ClientConn, io.Writer) error {
			return func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error {
				if fs.NArg() > 0 {
					return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
				}
				resp, err := adminv1.NewSourceAdminServiceClient(conn).ListSources(ctx, &adminv1.ListSourcesRequest{})
				if err != nil {
					return err
				}
				v := view{whole: resp, items: protoItems(resp.GetSources()),
					cols: []column{{name: "SERVICE", max: 30}, {name: "SOURCE", max: 18}, {name: "STATUS", max: 10}, {name: "CALLS (5 MIN)"}, {name: "ERRORS"}, {name: "P50", max: 9}, {name: "P99", max: 9},
						{name: "LAST SUCCESS", wide: true}, {name: "TIMEOUT", wide: true}}}
				for _, s := range resp.GetSources() {
					last := "-"
					if s.GetLastSuccess() != nil {
						last = s.GetLastSuccess().AsTime().Format(time.RFC3339)
					}
					service := s.GetService()
					if af.format() == outTable {
						service = shortService(service)
					}
					v.rows = append(v.rows, []string{service, s.GetSourceId(), s.GetStatus(), fmt.Sprint(s.GetCalls()), fmt.Sprintf("%.0f%%", 100*s.GetErrorRatio()),
						s.GetLatencyP50().AsDuration().Round(10 * time.Microsecond).String(), s.GetLatencyP99().AsDuration().Round(10 * time.Microsecond).String(), last, s.GetTimeout().AsDuration().String()})
				}
				return render(out, af.format(), v)
			}
		})
	return group("sources", "The typed services and their source adapters (admin API)", list)
}

// recordIssued tells the broker's registry about a certificate relaisctl
// issued straight from the CA. Best effort: a broker that cannot be
// reached leaves a warning, not a failure (the certificate is valid).
func recordIssued(ctx context.Context, af *adminFlags, certPEM []byte, stderr io.Writer) {
	conn, err := af.dial()
	if err == nil {
		defer conn.Close()
		_, err = adminv1.NewCredentialAdminServiceClient(conn).RecordCredential(ctx, &adminv1.RecordCredentialRequest{CertificatePem: string(certPEM)})
	}
	if err != nil {
		fmt.Fprintf(stderr, "relaisctl: warning: certificate issued but not recorded in the broker's registry (%s); it will not show in `credentials list`\n", describe(err))
	}
}
