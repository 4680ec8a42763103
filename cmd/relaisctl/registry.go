package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/relais-broker/relais/broker/registry"
	adminv1 "github.com/relais-broker/relais/proto/relais/admin/v1"
)

// adminFlags say how to reach the broker's admin API; each value is
// resolved flag > environment > context > default (resolveConn).
type adminFlags struct {
	fs                                     *pflag.FlagSet
	addr, operatorDir, serverName, ctxName string
	out                                    *outputFlag
	errOut                                 io.Writer
}

// stderr is where a running command writes notes.
func (f *adminFlags) stderr() io.Writer {
	if f.errOut == nil {
		return io.Discard
	}
	return f.errOut
}

// addConnFlags declares the flags that reach the admin API.
func addConnFlags(fs *pflag.FlagSet) *adminFlags {
	f := &adminFlags{fs: fs}
	fs.StringVar(&f.addr, "admin-addr", defaultAdminAddr, "address of the broker's admin API (else $"+envAdminAddr+", else the context)")
	fs.StringVar(&f.operatorDir, "operator-dir", defaultOperatorDir, "the operator's credential directory: cert.pem, key.pem, ca.pem (else $"+envOperatorDir+", else the context)")
	fs.StringVar(&f.serverName, "server-name", defaultServerName, "name the broker's certificate must carry (else $"+envServerName+", else the context)")
	fs.StringVar(&f.ctxName, "context", "", "the named context of the config file to use (else $"+envContext+", else its current-context)")
	return f
}

// addAdminFlags declares the connection flags and -o.
func addAdminFlags(fs *pflag.FlagSet) *adminFlags {
	f := addConnFlags(fs)
	f.out = addOutputFlag(fs)
	return f
}

// format is the -o value (table when the command has none).
func (f *adminFlags) format() string {
	if f.out == nil {
		return outTable
	}
	return f.out.v
}

// resolve gives the settings the command uses.
func (f *adminFlags) resolve() (connSettings, error) { return resolveConn(f.fs, f.ctxName) }

func (f *adminFlags) dial() (*grpc.ClientConn, error) {
	s, err := f.resolve()
	if err != nil {
		return nil, err
	}
	_, conn, err := dialWith(s.OperatorDir.Value, s.AdminAddr.Value, s.ServerName.Value)
	if err != nil {
		return nil, fmt.Errorf("%w (operator credential from %s; relaisctl context show)", err, s.OperatorDir.Source)
	}
	return conn, nil
}

// command is one relaisctl sub-command over the admin API.
type command struct {
	flags *pflag.FlagSet
	admin *adminFlags
	run   func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error
}

// adminBody dials the admin API and runs c; errors give a one-line
// reason and a non-zero exit code.
func adminBody(name string, c command) body {
	return func(ctx context.Context, stdout, stderr io.Writer) int {
		c.admin.errOut = stderr
		conn, err := c.admin.dial()
		if err != nil {
			fmt.Fprintf(stderr, "relaisctl %s: %v\n", name, err)
			return 1
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		if err := c.run(ctx, conn, stdout); err != nil {
			var ex exitError
			if errors.As(err, &ex) {
				return ex.code
			}
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
}

// adminLeaf is a leaf over the admin API: define declares the verb's own
// flags (the connection flags and -o are added) and returns what it does.
func adminLeaf(use, short, example string, define func(fs *pflag.FlagSet, af *adminFlags) func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error) *cobra.Command {
	name := ""
	cmd := leaf(use, short, example, func(fs *pflag.FlagSet) body {
		af := addAdminFlags(fs)
		run := define(fs, af)
		return func(ctx context.Context, stdout, stderr io.Writer) int {
			return adminBody(name, command{flags: fs, admin: af, run: run})(ctx, stdout, stderr)
		}
	})
	cmd.RegisterFlagCompletionFunc("context", contextNames)
	cmd.PreRun = func(c *cobra.Command, _ []string) { name = strings.TrimPrefix(c.CommandPath(), "relaisctl ") }
	return cmd
}

func consumersCmd() *cobra.Command {
	client := func(conn *grpc.ClientConn) adminv1.ConsumerAdminServiceClient {
		return adminv1.NewConsumerAdminServiceClient(conn)
	}
	siretArg := func(fs *pflag.FlagSet) (string, error) {
		if fs.NArg() != 1 {
			return "", usageError{"give one SIRET"}
		}
		return fs.Arg(0), nil
	}
	add := adminLeaf("add SIRET --name NAME [--contact 'Name <email>']", "Register a consuming body",
		"  relaisctl consumers add 21750000500012 --name 'Mairie de Paris' --contact 'DSI <dsi@paris.example>'",
		func(fs *pflag.FlagSet, af *adminFlags) func(context.Context, *grpc.ClientConn, io.Writer) error {
			name := fs.String("name", "", "the body's name")
			contact := fs.String("contact", "", "administrative contact as 'Name <email>'")
			return func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error {
				siret, err := siretArg(fs)
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
				return printConsumers(out, af.format(), resp.GetConsumer())
			}
		})
	list := adminLeaf("list", "List the consuming bodies", "  relaisctl consumers list\n  relaisctl consumers list -o json",
		func(fs *pflag.FlagSet, af *adminFlags) func(context.Context, *grpc.ClientConn, io.Writer) error {
			return func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error {
				if fs.NArg() > 0 {
					return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
				}
				resp, err := client(conn).ListConsumers(ctx, &adminv1.ListConsumersRequest{})
				if err != nil {
					return err
				}
				return printConsumers(out, af.format(), resp.GetConsumers()...)
			}
		})
	show := adminLeaf("show SIRET", "Show one consuming body", "  relaisctl consumers show 21750000500012 -o json",
		func(fs *pflag.FlagSet, af *adminFlags) func(context.Context, *grpc.ClientConn, io.Writer) error {
			return func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error {
				siret, err := siretArg(fs)
				if err != nil {
					return err
				}
				resp, err := client(conn).GetConsumer(ctx, &adminv1.GetConsumerRequest{Siret: siret})
				if err != nil {
					return err
				}
				return printConsumers(out, af.format(), resp.GetConsumer())
			}
		})
	status := func(verb, short string, st adminv1.ConsumerStatus) *cobra.Command {
		return adminLeaf(verb+" SIRET [--reason R]", short, "  relaisctl consumers "+verb+" 21750000500012 --reason 'convention signed'",
			func(fs *pflag.FlagSet, af *adminFlags) func(context.Context, *grpc.ClientConn, io.Writer) error {
				reason := fs.String("reason", "", "why, for the audit log (no personal data)")
				return func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error {
					siret, err := siretArg(fs)
					if err != nil {
						return err
					}
					resp, err := client(conn).SetConsumerStatus(ctx, &adminv1.SetConsumerStatusRequest{Siret: siret, Status: st, Reason: *reason})
					if err != nil {
						return err
					}
					return printConsumers(out, af.format(), resp.GetConsumer())
				}
			})
	}
	return group("consumers", "Manage the consuming bodies (admin API)", add, list, show,
		status("suspend", "Suspend a consumer: its calls are refused at once", adminv1.ConsumerStatus_CONSUMER_STATUS_SUSPENDED),
		status("resume", "Resume a suspended consumer", adminv1.ConsumerStatus_CONSUMER_STATUS_ACTIVE))
}

func parseContact(s string) (*adminv1.Contact, error) {
	name, email, ok := strings.Cut(s, "<")
	if !ok || !strings.HasSuffix(email, ">") {
		return nil, usageError{fmt.Sprintf("--contact %q: want 'Name <email>'", s)}
	}
	return &adminv1.Contact{Name: strings.TrimSpace(name), Email: strings.TrimSuffix(email, ">")}, nil
}

func printConsumers(w io.Writer, output string, cs ...*adminv1.Consumer) error {
	v := view{whole: &adminv1.ListConsumersResponse{Consumers: cs}, items: protoItems(cs),
		cols: []column{{name: "SIRET"}, {name: "STATUS"}, {name: "NAME", max: 50}, {name: "CREATED"}, {name: "CONTACTS", wide: true}}}
	for _, c := range cs {
		var contacts []string
		for _, ct := range c.GetContacts() {
			contacts = append(contacts, ct.GetName())
		}
		v.rows = append(v.rows, []string{c.GetSiret(), statusName(c.GetStatus()), c.GetName(), day(c.GetCreatedAt()), strings.Join(contacts, ", ")})
	}
	return render(w, output, v)
}

func statusName(s adminv1.ConsumerStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "CONSUMER_STATUS_"))
}

func grantsCmd() *cobra.Command {
	client := func(conn *grpc.ClientConn) adminv1.GrantAdminServiceClient {
		return adminv1.NewGrantAdminServiceClient(conn)
	}
	idArg := func(fs *pflag.FlagSet) (string, error) {
		if fs.NArg() != 1 {
			return "", usageError{"give one grant id"}
		}
		return fs.Arg(0), nil
	}
	add := adminLeaf("add --consumer SIRET --service S --scopes a,b --purpose 'code:label:legal basis' --until DATE", "Grant a consumer scopes of a service for a purpose",
		`  relaisctl grants add --consumer 21750000500012 \
    --service relais.familyquotient.v1.FamilyQuotientService --scopes family_quotient.value \
    --purpose 'tarification_cantine:Tarification de la cantine:CGCT art. L2331-2' --until 2027-12-31
  # calls designating the citizen by their own login, disclosed to them a year later
  relaisctl grants add --consumer 21750000500012 \
    --service relais.rsa.v1.RsaStatusService --scopes rsa.status \
    --purpose 'controle:Contrôle des aides:CSS art. L114-9' --until 2027-12-31 \
    --designation citizen_login --disclosure-delay 8760h --disclosure-reference 'CSS art. L114-9'`,
		func(fs *pflag.FlagSet, af *adminFlags) func(context.Context, *grpc.ClientConn, io.Writer) error {
			consumer := fs.String("consumer", "", "consumer SIRET")
			service := fs.String("service", "", "full service name, e.g. relais.familyquotient.v1.FamilyQuotientService")
			scopes := fs.String("scopes", "", "comma-separated scopes; relaisctl scopes lists them")
			purpose := fs.String("purpose", "", "purpose as code:label:legal basis")
			from := fs.String("from", "", "start, RFC 3339 or YYYY-MM-DD (default now)")
			until := fs.String("until", "", "end, RFC 3339 or YYYY-MM-DD")
			rate := fs.Float64("rate", 20, "calls per second (0 = no limit)")
			burst := fs.Int("burst", 40, "burst")
			daily := fs.Int("daily-cap", 0, "calls per day (0 = none)")
			volume := fs.Int("expected-daily-volume", 0, "declared daily volume (anomaly detection)")
			designation := fs.String("designation", "", "how the consumer may designate subjects: typed, citizen_login or typed,citizen_login (default typed)")
			delay := fs.Duration("disclosure-delay", 0, "defer the citizen's sight of each access by this long, e.g. 8760h (at most 87600h)")
			reference := fs.String("disclosure-reference", "", "the legal reference that allows the deferral (required with --disclosure-delay)")
			return func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error {
				if fs.NArg() > 0 {
					return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
				}
				req, err := grantRequest(*consumer, *service, *scopes, *purpose, *from, *until, *rate, *burst, *daily, *volume)
				if err != nil {
					return err
				}
				if req.Designations, err = parseDesignations("--designation", splitList(*designation)); err != nil {
					return usageError{err.Error()}
				}
				if req.Disclosure, err = parseDisclosure("--disclosure-delay", "--disclosure-reference", *delay, *reference); err != nil {
					return usageError{err.Error()}
				}
				resp, err := client(conn).AddGrant(ctx, req)
				if err != nil {
					return err
				}
				return printGrants(out, af.format(), resp.GetGrant())
			}
		})
	list := adminLeaf("list [--consumer SIRET] [--service S] [--expiring 720h]", "List grants",
		"  relaisctl grants list --consumer 21750000500012\n  relaisctl grants list --expiring 720h -o wide",
		func(fs *pflag.FlagSet, af *adminFlags) func(context.Context, *grpc.ClientConn, io.Writer) error {
			consumer := fs.String("consumer", "", "only this consumer SIRET")
			service := fs.String("service", "", "only this full service name")
			expiring := fs.Duration("expiring", 0, "only grants ending within this duration, e.g. 720h")
			return func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error {
				if fs.NArg() > 0 {
					return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
				}
				req := &adminv1.ListGrantsRequest{ConsumerSiret: *consumer, Service: *service}
				if *expiring > 0 {
					req.ExpiringBefore = timestamppb.New(time.Now().Add(*expiring))
				}
				resp, err := client(conn).ListGrants(ctx, req)
				if err != nil {
					return err
				}
				// By consumer, service, then age: the registry's order (by
				// random id) would shuffle a consumer's grants.
				slices.SortStableFunc(resp.Grants, func(a, b *adminv1.Grant) int {
					return cmp.Or(strings.Compare(a.GetConsumerSiret(), b.GetConsumerSiret()), strings.Compare(a.GetService(), b.GetService()),
						a.GetCreatedAt().AsTime().Compare(b.GetCreatedAt().AsTime()), strings.Compare(a.GetId(), b.GetId()))
				})
				return printGrants(out, af.format(), resp.GetGrants()...)
			}
		})
	revoke := adminLeaf("revoke ID [--reason R]", "Revoke a grant: the consumer's next call under it is refused",
		"  relaisctl grants revoke g-7f3a --reason 'convention ended'",
		func(fs *pflag.FlagSet, af *adminFlags) func(context.Context, *grpc.ClientConn, io.Writer) error {
			reason := fs.String("reason", "", "why, for the audit log (no personal data)")
			return func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error {
				id, err := idArg(fs)
				if err != nil {
					return err
				}
				resp, err := client(conn).RevokeGrant(ctx, &adminv1.RevokeGrantRequest{Id: id, Reason: *reason})
				if err != nil {
					return err
				}
				return printGrants(out, af.format(), resp.GetGrant())
			}
		})
	extend := adminLeaf("extend ID --until DATE", "Move the end of a grant", "  relaisctl grants extend g-7f3a --until 2028-06-30",
		func(fs *pflag.FlagSet, af *adminFlags) func(context.Context, *grpc.ClientConn, io.Writer) error {
			until := fs.String("until", "", "new end, RFC 3339 or YYYY-MM-DD")
			return func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error {
				id, err := idArg(fs)
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
				return printGrants(out, af.format(), resp.GetGrant())
			}
		})
	return group("grants", "Manage habilitations: scopes of a service for a purpose (admin API)", add, list, revoke, extend)
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

// parseDesignations checks designation modes as the registry does
// (known, once each) and returns them in its canonical order, so that
// what is compared and sent is what the registry stores.
func parseDesignations(what string, ds []string) ([]string, error) {
	seen := map[string]bool{}
	for _, d := range ds {
		if d != registry.DesignationTyped && d != registry.DesignationCitizenLogin {
			return nil, fmt.Errorf("%s %q: want typed, citizen_login or both", what, d)
		}
		if seen[d] {
			return nil, fmt.Errorf("%s: %q is listed twice", what, d)
		}
		seen[d] = true
	}
	out, _ := registry.CanonicalDesignations(ds) // checked above
	return out, nil
}

// parseDisclosure builds a deferred disclosure: a delay goes with its
// legal reference, and neither means disclosure at once (nil).
func parseDisclosure(delayName, referenceName string, delay time.Duration, reference string) (*adminv1.Disclosure, error) {
	switch {
	case delay == 0 && reference == "":
		return nil, nil
	case delay < 0 || delay > registry.MaxDisclosureDelay:
		return nil, fmt.Errorf("%s %s: want a duration within 0 and %s (ten years)", delayName, delay, shortDuration(registry.MaxDisclosureDelay))
	case delay == 0:
		return nil, fmt.Errorf("%s without %s: a reference only goes with a deferred disclosure", referenceName, delayName)
	case strings.TrimSpace(reference) == "":
		return nil, fmt.Errorf("%s needs %s: name the text that allows the deferral", delayName, referenceName)
	}
	return &adminv1.Disclosure{Delay: durationpb.New(delay), LegalReference: reference}, nil
}

// shortDuration prints a duration as the flags take it, without the
// trailing zero units: 8760h, 1h30m.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// designationsText is a grant's designation modes for a table; none is
// typed only.
func designationsText(ds []string) string {
	if len(ds) == 0 {
		return registry.DesignationTyped
	}
	return strings.Join(ds, ",")
}

// disclosureText is a grant's deferred disclosure for a table.
func disclosureText(d *adminv1.Disclosure) string {
	if d.GetDelay().AsDuration() == 0 {
		return "at once"
	}
	return "after " + shortDuration(d.GetDelay().AsDuration()) + " (" + d.GetLegalReference() + ")"
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
	v := view{whole: &adminv1.ListGrantsResponse{Grants: gs}, items: protoItems(gs),
		cols: []column{{name: "ID"}, {name: "CONSUMER"}, {name: "SERVICE", max: 22}, {name: "SCOPES", max: 20}, {name: "PURPOSES", wide: true},
			{name: "FROM", wide: true}, {name: "UNTIL"}, {name: "RATE"}, {name: "DAILY CAP", wide: true}, {name: "STATE", max: 18},
			{name: "DESIGNATION", wide: true}, {name: "DISCLOSURE", wide: true}}}
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
		service := shortService(g.GetService())
		if output == outWide || output == outCSV {
			service = g.GetService()
		}
		v.rows = append(v.rows, []string{g.GetId(), g.GetConsumerSiret(), service, strings.Join(g.GetScopes(), ","),
			strings.Join(purposes, ","), day(g.GetNotBefore()), day(g.GetNotAfter()), strconv.FormatFloat(g.GetQuota().GetRatePerSecond(), 'f', -1, 64) + "/s",
			strconv.Itoa(int(g.GetQuota().GetDailyCap())), state, designationsText(g.GetDesignations()), disclosureText(g.GetDisclosure())})
	}
	return render(w, output, v)
}

func day(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.AsTime().Format(time.DateOnly)
}
