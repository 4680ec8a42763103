package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/relais-broker/relais/proto/relais/admin/v1"
)

// adminFlags say how to reach the broker's admin API.
type adminFlags struct {
	addr, operatorDir, serverName, output string
}

func addAdminFlags(fs *flag.FlagSet) *adminFlags {
	f := &adminFlags{}
	fs.StringVar(&f.addr, "admin-addr", "127.0.0.1:4444", "address of the broker's admin API")
	fs.StringVar(&f.operatorDir, "operator-dir", filepath.Join("relais-dev", "dev", "operators", "admin"), "the operator's credential directory (cert.pem, key.pem, ca.pem)")
	fs.StringVar(&f.serverName, "server-name", "localhost", "name the broker's certificate must carry")
	fs.StringVar(&f.output, "o", "table", "output: table or json")
	return f
}

func (f *adminFlags) dial() (*grpc.ClientConn, error) {
	if f.output != "table" && f.output != "json" {
		return nil, fmt.Errorf("-o must be table or json, not %q", f.output)
	}
	_, conn, err := dialWith(f.operatorDir, f.addr, f.serverName)
	return conn, err
}

// command is one relaisctl sub-command over the admin API.
type command struct {
	flags *flag.FlagSet
	admin *adminFlags
	run   func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error
}

// runAdmin parses args, dials the admin API and runs c; errors give a
// one-line reason and a non-zero exit code.
func runAdmin(ctx context.Context, name string, c command, args []string, stdout, stderr io.Writer) int {
	c.flags.SetOutput(stderr)
	if err := c.flags.Parse(reorderFlags(c.flags, args)); err != nil {
		return 2
	}
	conn, err := c.admin.dial()
	if err != nil {
		fmt.Fprintf(stderr, "relaisctl %s: %v\n", name, err)
		return 1
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if err := c.run(ctx, conn, stdout); err != nil {
		var usage usageError
		if errors.As(err, &usage) {
			fmt.Fprintf(stderr, "relaisctl %s: %v\n", name, err)
			return 2
		}
		fmt.Fprintf(stderr, "relaisctl %s: %s\n", name, describe(err))
		return 1
	}
	return 0
}

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func runConsumers(ctx context.Context, verb string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relaisctl consumers "+verb, flag.ContinueOnError)
	af := addAdminFlags(fs)
	name := fs.String("name", "", "the body's name (add)")
	contact := fs.String("contact", "", "administrative contact as 'Name <email>' (add)")
	reason := fs.String("reason", "", "why, for the audit log (suspend, resume)")
	c := command{flags: fs, admin: af}
	siretArg := func() (string, error) {
		if fs.NArg() != 1 {
			return "", usageError{"give one SIRET"}
		}
		return fs.Arg(0), nil
	}
	client := func(conn *grpc.ClientConn) adminv1.ConsumerAdminServiceClient {
		return adminv1.NewConsumerAdminServiceClient(conn)
	}
	switch verb {
	case "add":
		c.run = func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error {
			siret, err := siretArg()
			if err != nil {
				return err
			}
			req := &adminv1.AddConsumerRequest{Siret: siret, Name: *name}
			if *contact != "" {
				ct, err := parseContact(*contact)
				if err != nil {
					return err
				}
				req.Contacts = append(req.Contacts, ct)
			}
			resp, err := client(conn).AddConsumer(ctx, req)
			if err != nil {
				return err
			}
			return printConsumers(out, af.output, resp.GetConsumer())
		}
	case "list":
		c.run = func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error {
			resp, err := client(conn).ListConsumers(ctx, &adminv1.ListConsumersRequest{})
			if err != nil {
				return err
			}
			return printConsumers(out, af.output, resp.GetConsumers()...)
		}
	case "show":
		c.run = func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error {
			siret, err := siretArg()
			if err != nil {
				return err
			}
			resp, err := client(conn).GetConsumer(ctx, &adminv1.GetConsumerRequest{Siret: siret})
			if err != nil {
				return err
			}
			return printConsumers(out, af.output, resp.GetConsumer())
		}
	case "suspend", "resume":
		status := adminv1.ConsumerStatus_CONSUMER_STATUS_SUSPENDED
		if verb == "resume" {
			status = adminv1.ConsumerStatus_CONSUMER_STATUS_ACTIVE
		}
		c.run = func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error {
			siret, err := siretArg()
			if err != nil {
				return err
			}
			resp, err := client(conn).SetConsumerStatus(ctx, &adminv1.SetConsumerStatusRequest{Siret: siret, Status: status, Reason: *reason})
			if err != nil {
				return err
			}
			return printConsumers(out, af.output, resp.GetConsumer())
		}
	default:
		fmt.Fprintf(stderr, "relaisctl: unknown consumers command %q (add, list, show, suspend, resume)\n", verb)
		return 2
	}
	return runAdmin(ctx, "consumers "+verb, c, args, stdout, stderr)
}

func parseContact(s string) (*adminv1.Contact, error) {
	name, email, ok := strings.Cut(s, "<")
	if !ok || !strings.HasSuffix(email, ">") {
		return nil, usageError{fmt.Sprintf("--contact %q: want 'Name <email>'", s)}
	}
	return &adminv1.Contact{Name: strings.TrimSpace(name), Email: strings.TrimSuffix(email, ">")}, nil
}

func printConsumers(w io.Writer, output string, cs ...*adminv1.Consumer) error {
	if output == "json" {
		return writeProtoJSON(w, &adminv1.ListConsumersResponse{Consumers: cs})
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SIRET\tSTATUS\tNAME\tCREATED")
	for _, c := range cs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.GetSiret(), statusName(c.GetStatus()), c.GetName(), day(c.GetCreatedAt()))
	}
	return tw.Flush()
}

func statusName(s adminv1.ConsumerStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "CONSUMER_STATUS_"))
}

func runGrants(ctx context.Context, verb string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relaisctl grants "+verb, flag.ContinueOnError)
	af := addAdminFlags(fs)
	consumer := fs.String("consumer", "", "consumer SIRET (add; filter for list)")
	service := fs.String("service", "", "full service name, e.g. relais.familyquotient.v1.FamilyQuotientService (add; filter for list)")
	scopes := fs.String("scopes", "", "comma-separated scopes (add); `relaisctl scopes` lists them")
	purpose := fs.String("purpose", "", "purpose as code:label:legal basis (add)")
	from := fs.String("from", "", "start, RFC 3339 or YYYY-MM-DD (add; default now)")
	until := fs.String("until", "", "end, RFC 3339 or YYYY-MM-DD (add, extend)")
	rate := fs.Float64("rate", 20, "calls per second (add; 0 = no limit)")
	burst := fs.Int("burst", 40, "burst (add)")
	daily := fs.Int("daily-cap", 0, "calls per day (add; 0 = none)")
	volume := fs.Int("expected-daily-volume", 0, "declared daily volume (add)")
	expiring := fs.Duration("expiring", 0, "list only grants ending within this duration, e.g. 720h (list)")
	reason := fs.String("reason", "", "why, for the audit log (revoke)")
	c := command{flags: fs, admin: af}
	client := func(conn *grpc.ClientConn) adminv1.GrantAdminServiceClient {
		return adminv1.NewGrantAdminServiceClient(conn)
	}
	idArg := func() (string, error) {
		if fs.NArg() != 1 {
			return "", usageError{"give one grant id"}
		}
		return fs.Arg(0), nil
	}
	switch verb {
	case "add":
		c.run = func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error {
			req, err := grantRequest(*consumer, *service, *scopes, *purpose, *from, *until, *rate, *burst, *daily, *volume)
			if err != nil {
				return err
			}
			resp, err := client(conn).AddGrant(ctx, req)
			if err != nil {
				return err
			}
			return printGrants(out, af.output, resp.GetGrant())
		}
	case "list":
		c.run = func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error {
			req := &adminv1.ListGrantsRequest{ConsumerSiret: *consumer, Service: *service}
			if *expiring > 0 {
				req.ExpiringBefore = timestamppb.New(time.Now().Add(*expiring))
			}
			resp, err := client(conn).ListGrants(ctx, req)
			if err != nil {
				return err
			}
			return printGrants(out, af.output, resp.GetGrants()...)
		}
	case "revoke":
		c.run = func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error {
			id, err := idArg()
			if err != nil {
				return err
			}
			resp, err := client(conn).RevokeGrant(ctx, &adminv1.RevokeGrantRequest{Id: id, Reason: *reason})
			if err != nil {
				return err
			}
			return printGrants(out, af.output, resp.GetGrant())
		}
	case "extend":
		c.run = func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error {
			id, err := idArg()
			if err != nil {
				return err
			}
			end, err := parseTime("--until", *until)
			if err != nil {
				return err
			}
			resp, err := client(conn).ExtendGrant(ctx, &adminv1.ExtendGrantRequest{Id: id, NotAfter: timestamppb.New(end)})
			if err != nil {
				return err
			}
			return printGrants(out, af.output, resp.GetGrant())
		}
	default:
		fmt.Fprintf(stderr, "relaisctl: unknown grants command %q (add, list, revoke, extend)\n", verb)
		return 2
	}
	return runAdmin(ctx, "grants "+verb, c, args, stdout, stderr)
}

func grantRequest(consumer, service, scopes, purpose, from, until string, rate float64, burst, daily, volume int) (*adminv1.AddGrantRequest, error) {
	if consumer == "" || service == "" || scopes == "" || purpose == "" || until == "" {
		return nil, usageError{"--consumer, --service, --scopes, --purpose and --until are required"}
	}
	parts := strings.SplitN(purpose, ":", 3)
	if len(parts) != 3 {
		return nil, usageError{fmt.Sprintf("--purpose %q: want code:label:legal basis", purpose)}
	}
	start := time.Now()
	if from != "" {
		t, err := parseTime("--from", from)
		if err != nil {
			return nil, err
		}
		start = t
	}
	end, err := parseTime("--until", until)
	if err != nil {
		return nil, err
	}
	var list []string
	for _, s := range strings.Split(scopes, ",") {
		if s = strings.TrimSpace(s); s != "" {
			list = append(list, s)
		}
	}
	return &adminv1.AddGrantRequest{
		ConsumerSiret: consumer, Service: service, Scopes: list,
		Purposes:  []*adminv1.Purpose{{Code: parts[0], Label: parts[1], LegalBasis: parts[2]}},
		NotBefore: timestamppb.New(start), NotAfter: timestamppb.New(end),
		Quota:               &adminv1.Quota{RatePerSecond: rate, Burst: int32(burst), DailyCap: int32(daily)},
		ExpectedDailyVolume: int32(volume),
	}, nil
}

func parseTime(flagName, s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, time.Local); err == nil {
		return t, nil
	}
	return time.Time{}, usageError{fmt.Sprintf("%s %q: want RFC 3339 (2027-01-31T00:00:00Z) or YYYY-MM-DD", flagName, s)}
}

func printGrants(w io.Writer, output string, gs ...*adminv1.Grant) error {
	if output == "json" {
		return writeProtoJSON(w, &adminv1.ListGrantsResponse{Grants: gs})
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCONSUMER\tSERVICE\tSCOPES\tPURPOSES\tFROM\tUNTIL\tRATE\tSTATE")
	for _, g := range gs {
		var purposes []string
		for _, p := range g.GetPurposes() {
			purposes = append(purposes, p.GetCode())
		}
		state := "in force"
		switch {
		case g.GetRevokedAt() != nil:
			state = "revoked " + day(g.GetRevokedAt())
		case g.GetNotAfter().AsTime().Before(time.Now()):
			state = "expired"
		case g.GetNotBefore().AsTime().After(time.Now()):
			state = "not yet valid"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s/s\t%s\n", g.GetId(), g.GetConsumerSiret(), g.GetService(), strings.Join(g.GetScopes(), ","),
			strings.Join(purposes, ","), day(g.GetNotBefore()), day(g.GetNotAfter()), strconv.FormatFloat(g.GetQuota().GetRatePerSecond(), 'f', -1, 64), state)
	}
	return tw.Flush()
}

func day(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.AsTime().Format(time.DateOnly)
}
