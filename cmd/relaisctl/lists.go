package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"

	adminv1 "github.com/relais-broker/relais/proto/relais/admin/v1"
)

// runCredentialsList lists the credential records of the registry.
func runCredentialsList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relaisctl credentials list", flag.ContinueOnError)
	af := addAdminFlags(fs)
	subject := fs.String("consumer", "", "only this SIRET (or operator id)")
	c := command{flags: fs, admin: af, run: func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error {
		resp, err := adminv1.NewCredentialAdminServiceClient(conn).ListCredentials(ctx, &adminv1.ListCredentialsRequest{Subject: *subject})
		if err != nil {
			return err
		}
		if af.output == "json" {
			return writeProtoJSON(out, resp)
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SERIAL\tKIND\tSUBJECT\tFROM\tUNTIL\tSTATUS\tISSUED BY")
		for _, r := range resp.GetCredentials() {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.GetSerial(), r.GetKind(), r.GetSubject(), day(r.GetNotBefore()), day(r.GetNotAfter()), r.GetStatus(), r.GetIssuedBy())
		}
		return tw.Flush()
	}}
	return runAdmin(ctx, "credentials list", c, args, stdout, stderr)
}

// runSources lists the typed services and their source adapters.
func runSources(ctx context.Context, verb string, args []string, stdout, stderr io.Writer) int {
	if verb != "list" {
		fmt.Fprintf(stderr, "relaisctl: unknown sources command %q (list)\n", verb)
		return 2
	}
	fs := flag.NewFlagSet("relaisctl sources list", flag.ContinueOnError)
	af := addAdminFlags(fs)
	c := command{flags: fs, admin: af, run: func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error {
		resp, err := adminv1.NewSourceAdminServiceClient(conn).ListSources(ctx, &adminv1.ListSourcesRequest{})
		if err != nil {
			return err
		}
		if af.output == "json" {
			return writeProtoJSON(out, resp)
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SERVICE\tSOURCE\tSTATUS\tCALLS (5 MIN)\tERRORS\tP50\tP99\tLAST SUCCESS\tTIMEOUT")
		for _, s := range resp.GetSources() {
			last := "-"
			if s.GetLastSuccess() != nil {
				last = s.GetLastSuccess().AsTime().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.0f%%\t%s\t%s\t%s\t%s\n", s.GetService(), s.GetSourceId(), s.GetStatus(), s.GetCalls(), 100*s.GetErrorRatio(),
				s.GetLatencyP50().AsDuration(), s.GetLatencyP99().AsDuration(), last, s.GetTimeout().AsDuration())
		}
		return tw.Flush()
	}}
	return runAdmin(ctx, "sources list", c, args, stdout, stderr)
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
