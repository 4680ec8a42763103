package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/relais-broker/relais/broker/registry"
	adminv1 "github.com/relais-broker/relais/proto/relais/admin/v1"
)

// The declarative file of `relaisctl apply`: the consumers it lists end up
// with exactly the grants it lists (missing ones added, extra ones
// revoked, a moved end extended). Consumers it does not list are left
// alone.
type applyFile struct {
	Consumers []applyConsumer `yaml:"consumers"`
}

type applyConsumer struct {
	SIRET    string         `yaml:"siret"`
	Name     string         `yaml:"name"`
	Status   string         `yaml:"status"` // active (default) or suspended
	Contacts []applyContact `yaml:"contacts"`
	Grants   []applyGrant   `yaml:"grants"`
}

type applyContact struct {
	Name  string `yaml:"name"`
	Email string `yaml:"email"`
	Phone string `yaml:"phone"`
}

type applyGrant struct {
	Service  string         `yaml:"service"`
	Scopes   []string       `yaml:"scopes"`
	Purposes []applyPurpose `yaml:"purposes"`
	From     string         `yaml:"from"`
	Until    string         `yaml:"until"`
	Quota    struct {
		RatePerSecond float64 `yaml:"rate_per_second"`
		Burst         int32   `yaml:"burst"`
		DailyCap      int32   `yaml:"daily_cap"`
	} `yaml:"quota"`
	ExpectedDailyVolume int32 `yaml:"expected_daily_volume"`
	// Designations are typed, citizen_login or both (none: typed only).
	Designations []yamlDesignation `yaml:"designations"`
	// Disclosure defers the citizen's sight of the grant's accesses.
	Disclosure *applyDisclosure `yaml:"disclosure"`
}

type applyDisclosure struct {
	Delay          yamlDuration `yaml:"delay"`
	LegalReference string       `yaml:"legal_reference"`
}

// yamlDesignation is a designation mode in the file, checked as it is
// read so that a typo is reported with its line.
type yamlDesignation string

// UnmarshalYAML accepts typed and citizen_login only.
func (d *yamlDesignation) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || (n.Value != registry.DesignationTyped && n.Value != registry.DesignationCitizenLogin) {
		return fmt.Errorf("want typed or citizen_login, not %q", n.Value)
	}
	*d = yamlDesignation(n.Value)
	return nil
}

// yamlDuration is a duration in the file as the flags write it (8760h),
// checked as it is read so that a malformed one is reported with its line.
type yamlDuration time.Duration

// UnmarshalYAML accepts a Go duration string.
func (d *yamlDuration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		return fmt.Errorf("want a duration such as 8760h, not %q", n.Value)
	}
	*d = yamlDuration(v)
	return nil
}

type applyPurpose struct {
	Code       string `yaml:"code"`
	Label      string `yaml:"label"`
	LegalBasis string `yaml:"legal_basis"`
}

// change is one step of the plan, printed and then carried out.
type change struct {
	text string
	do   func(ctx context.Context, conn *grpc.ClientConn) error
}

func applyCmd() *cobra.Command {
	cmd := adminLeaf("apply -f FILE [--dry-run [--exit-code]]", "Make the listed consumers' grants match a declarative YAML file, showing the diff",
		`  relaisctl apply -f grants.yaml --dry-run
  relaisctl apply -f grants.yaml --dry-run --exit-code   # in CI: 0 in step, 2 the registry differs, 1 error
  relaisctl apply -f grants.yaml`,
		func(fs *pflag.FlagSet, af *adminFlags) func(context.Context, *grpc.ClientConn, io.Writer) error {
			file := fs.StringP("file", "f", "", "the declarative grants file (YAML)")
			dryRun := fs.Bool("dry-run", false, "print the changes without making them")
			exitCode := fs.Bool("exit-code", false, "with --dry-run: exit with status 2 when the registry differs from the file")
			return func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error {
				if *file == "" || fs.NArg() > 0 {
					return usageError{"-f FILE is required, and nothing else"}
				}
				if *exitCode && !*dryRun {
					return usageError{"--exit-code goes with --dry-run"}
				}
				want, err := readApplyFile(*file)
				if err != nil {
					return usageError{err.Error()}
				}
				plan, err := planApply(ctx, conn, want)
				if err != nil {
					return err
				}
				if len(plan) == 0 {
					fmt.Fprintln(out, "no changes")
					return nil
				}
				for _, ch := range plan {
					fmt.Fprintln(out, ch.text)
				}
				if *dryRun {
					fmt.Fprintf(out, "dry run: %s not made\n", plural(len(plan), "change"))
					if *exitCode {
						return errDiffers
					}
					return nil
				}
				for i, ch := range plan {
					if err := ch.do(ctx, conn); err != nil {
						return fmt.Errorf("change %d (%s) refused, %s made before it; fix the file and apply again: %w", i+1, ch.text, plural(i, "change"), err)
					}
				}
				fmt.Fprintf(out, "applied %s\n", plural(len(plan), "change"))
				return nil
			}
		})
	return cmd
}

// errDiffers is apply --dry-run --exit-code finding changes: exit 2.
var errDiffers = exitError{2}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// readApplyFile decodes strictly: an unknown key or a value of the wrong
// kind is an error naming the key and its line.
func readApplyFile(path string) (*applyFile, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f applyFile
	if err := decodeStrict(raw, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	seen := map[string]bool{}
	for i, c := range f.Consumers {
		if c.SIRET == "" {
			return nil, fmt.Errorf("%s: consumers[%d]: siret is required", path, i)
		}
		if seen[c.SIRET] {
			return nil, fmt.Errorf("%s: consumer %s is listed twice", path, c.SIRET)
		}
		seen[c.SIRET] = true
		if c.Status != "" && c.Status != "active" && c.Status != "suspended" {
			return nil, fmt.Errorf("%s: consumers[%d].status %q: want active or suspended", path, i, c.Status)
		}
	}
	return &f, nil
}

// planApply compares the file with the registry and lists the changes.
func planApply(ctx context.Context, conn *grpc.ClientConn, f *applyFile) ([]change, error) {
	consumers := adminv1.NewConsumerAdminServiceClient(conn)
	grantsClient := adminv1.NewGrantAdminServiceClient(conn)
	listed, err := consumers.ListConsumers(ctx, &adminv1.ListConsumersRequest{})
	if err != nil {
		return nil, err
	}
	existing := map[string]*adminv1.Consumer{}
	for _, c := range listed.GetConsumers() {
		existing[c.GetSiret()] = c
	}
	var plan []change
	for _, c := range f.Consumers {
		c := c
		wantStatus := adminv1.ConsumerStatus_CONSUMER_STATUS_ACTIVE
		if c.Status == "suspended" {
			wantStatus = adminv1.ConsumerStatus_CONSUMER_STATUS_SUSPENDED
		}
		have, ok := existing[c.SIRET]
		if !ok {
			req := &adminv1.AddConsumerRequest{Siret: c.SIRET, Name: c.Name}
			for _, ct := range c.Contacts {
				req.Contacts = append(req.Contacts, &adminv1.Contact{Name: ct.Name, Email: ct.Email, Phone: ct.Phone})
			}
			plan = append(plan, change{fmt.Sprintf("+ consumer %s %q", c.SIRET, c.Name), func(ctx context.Context, conn *grpc.ClientConn) error {
				_, err := consumers.AddConsumer(ctx, req)
				return err
			}})
		}
		if (!ok && wantStatus != adminv1.ConsumerStatus_CONSUMER_STATUS_ACTIVE) || (ok && have.GetStatus() != wantStatus) {
			plan = append(plan, change{fmt.Sprintf("~ consumer %s status → %s", c.SIRET, statusName(wantStatus)), func(ctx context.Context, conn *grpc.ClientConn) error {
				_, err := consumers.SetConsumerStatus(ctx, &adminv1.SetConsumerStatusRequest{Siret: c.SIRET, Status: wantStatus, Reason: "relaisctl apply"})
				return err
			}})
		}
		var current []*adminv1.Grant
		if ok {
			resp, err := grantsClient.ListGrants(ctx, &adminv1.ListGrantsRequest{ConsumerSiret: c.SIRET})
			if err != nil {
				return nil, err
			}
			for _, g := range resp.GetGrants() {
				if g.GetRevokedAt() == nil {
					current = append(current, g)
				}
			}
		}
		steps, err := planGrants(c, current, grantsClient)
		if err != nil {
			return nil, err
		}
		plan = append(plan, steps...)
	}
	return plan, nil
}

// planGrants matches wanted grants to current ones by what they grant
// (service, scopes, purposes): same → nothing; only the end moved →
// extend (~ until old → new); quota, volume, designations, disclosure or
// start changed → ~ with old → new, carried out as a new grant then the revocation of the old
// one (the admin API has no quota update; the new one is in force before
// the old one goes); no match → add; current grants left over are revoked.
func planGrants(c applyConsumer, current []*adminv1.Grant, client adminv1.GrantAdminServiceClient) ([]change, error) {
	var plan []change
	used := make([]bool, len(current))
	wants := make([]*adminv1.AddGrantRequest, len(c.Grants))
	for i, w := range c.Grants {
		req, err := grantRequestFromFile(c.SIRET, w)
		if err != nil {
			return nil, fmt.Errorf("consumer %s, grants[%d]: %w", c.SIRET, i, err)
		}
		wants[i] = req
	}
	match := make([]int, len(wants))
	// Exact matches first, so that a file with two grants of the same
	// identity pairs them with the right current ones.
	for i, req := range wants {
		match[i] = -1
		for j, g := range current {
			if !used[j] && sameGrant(req, g) {
				match[i], used[j] = j, true
				break
			}
		}
	}
	for i, req := range wants {
		if match[i] >= 0 {
			continue
		}
		for j, g := range current {
			if !used[j] && sameIdentity(req, g) {
				match[i], used[j] = j, true
				break
			}
		}
	}
	for i, req := range wants {
		desc := fmt.Sprintf("%s %s [%s] for %s", c.SIRET, req.GetService(), strings.Join(req.GetScopes(), ","), purposeCodes(req.GetPurposes()))
		if match[i] < 0 {
			plan = append(plan, change{"+ grant " + desc + " until " + req.GetNotAfter().AsTime().Format(time.DateOnly), func(ctx context.Context, _ *grpc.ClientConn) error {
				_, err := client.AddGrant(ctx, req)
				return err
			}})
			continue
		}
		g := current[match[i]]
		id := g.GetId()
		untilMoved := !g.GetNotAfter().AsTime().Equal(req.GetNotAfter().AsTime())
		if sameGrant(req, g) {
			if untilMoved {
				plan = append(plan, change{fmt.Sprintf("~ grant %s %s: until %s → %s", id, desc, day(g.GetNotAfter()), day(req.GetNotAfter())), func(ctx context.Context, _ *grpc.ClientConn) error {
					_, err := client.ExtendGrant(ctx, &adminv1.ExtendGrantRequest{Id: id, NotAfter: req.GetNotAfter()})
					return err
				}})
			}
			continue
		}
		diffs := grantDiffs(req, g)
		plan = append(plan, change{fmt.Sprintf("~ grant %s %s: %s (replaced by a new grant)", id, desc, strings.Join(diffs, ", ")), func(ctx context.Context, _ *grpc.ClientConn) error {
			if _, err := client.AddGrant(ctx, req); err != nil {
				return err
			}
			_, err := client.RevokeGrant(ctx, &adminv1.RevokeGrantRequest{Id: id, Reason: "relaisctl apply: replaced (quota, validity, designations or disclosure changed)"})
			return err
		}})
	}
	for j, g := range current {
		if used[j] {
			continue
		}
		id := g.GetId()
		plan = append(plan, change{fmt.Sprintf("- grant %s %s %s [%s]", id, c.SIRET, g.GetService(), strings.Join(g.GetScopes(), ",")), func(ctx context.Context, _ *grpc.ClientConn) error {
			_, err := client.RevokeGrant(ctx, &adminv1.RevokeGrantRequest{Id: id, Reason: "relaisctl apply: not in the file"})
			return err
		}})
	}
	return plan, nil
}

// grantDiffs describes what differs between the file's grant and the
// registry's, as "what old → new".
func grantDiffs(w *adminv1.AddGrantRequest, g *adminv1.Grant) []string {
	var d []string
	num := func(name string, old, new float64) {
		if old != new {
			d = append(d, fmt.Sprintf("%s %s → %s", name, strconv.FormatFloat(old, 'f', -1, 64), strconv.FormatFloat(new, 'f', -1, 64)))
		}
	}
	wq, gq := w.GetQuota(), g.GetQuota()
	num("rate_per_second", gq.GetRatePerSecond(), wq.GetRatePerSecond())
	num("burst", float64(gq.GetBurst()), float64(wq.GetBurst()))
	num("daily_cap", float64(gq.GetDailyCap()), float64(wq.GetDailyCap()))
	num("expected_daily_volume", float64(g.GetExpectedDailyVolume()), float64(w.GetExpectedDailyVolume()))
	if old, new := designationsText(g.GetDesignations()), designationsText(w.GetDesignations()); old != new {
		d = append(d, fmt.Sprintf("designations %s → %s", old, new))
	}
	if old, new := disclosureText(g.GetDisclosure()), disclosureText(w.GetDisclosure()); old != new {
		d = append(d, fmt.Sprintf("disclosure %s → %s", old, new))
	}
	if !g.GetNotAfter().AsTime().Equal(w.GetNotAfter().AsTime()) {
		d = append(d, fmt.Sprintf("until %s → %s", day(g.GetNotAfter()), day(w.GetNotAfter())))
	}
	return d
}

func grantRequestFromFile(siret string, w applyGrant) (*adminv1.AddGrantRequest, error) {
	if w.Until == "" {
		return nil, errors.New("until is required")
	}
	start := time.Now()
	if w.From != "" {
		t, err := parseTime("from", w.From)
		if err != nil {
			return nil, err
		}
		start = t
	}
	end, err := parseTime("until", w.Until)
	if err != nil {
		return nil, err
	}
	scopes := slices.Clone(w.Scopes)
	slices.Sort(scopes)
	req := &adminv1.AddGrantRequest{
		ConsumerSiret: siret, Service: w.Service, Scopes: scopes, NotBefore: timestamppb.New(start), NotAfter: timestamppb.New(end),
		Quota:               &adminv1.Quota{RatePerSecond: w.Quota.RatePerSecond, Burst: w.Quota.Burst, DailyCap: w.Quota.DailyCap},
		ExpectedDailyVolume: w.ExpectedDailyVolume,
	}
	for _, p := range w.Purposes {
		req.Purposes = append(req.Purposes, &adminv1.Purpose{Code: p.Code, Label: p.Label, LegalBasis: p.LegalBasis})
	}
	designations := make([]string, len(w.Designations))
	for i, d := range w.Designations {
		designations[i] = string(d)
	}
	if req.Designations, err = parseDesignations("designations", designations); err != nil {
		return nil, err
	}
	if w.Disclosure != nil {
		if req.Disclosure, err = parseDisclosure("disclosure.delay", "disclosure.legal_reference", time.Duration(w.Disclosure.Delay), w.Disclosure.LegalReference); err != nil {
			return nil, err
		}
	}
	return req, nil
}

// sameIdentity compares what a grant grants: service, scopes, purposes.
func sameIdentity(w *adminv1.AddGrantRequest, g *adminv1.Grant) bool {
	if w.GetService() != g.GetService() || !slices.Equal(w.GetScopes(), g.GetScopes()) || len(w.GetPurposes()) != len(g.GetPurposes()) {
		return false
	}
	for i, p := range w.GetPurposes() {
		q := g.GetPurposes()[i]
		if p.GetCode() != q.GetCode() || p.GetLabel() != q.GetLabel() || p.GetLegalBasis() != q.GetLegalBasis() {
			return false
		}
	}
	return true
}

// sameGrant compares everything but the window's end (and its start when
// the file leaves it to "now").
func sameGrant(w *adminv1.AddGrantRequest, g *adminv1.Grant) bool {
	if !sameIdentity(w, g) {
		return false
	}
	wq, gq := w.GetQuota(), g.GetQuota()
	return wq.GetRatePerSecond() == gq.GetRatePerSecond() && wq.GetBurst() == gq.GetBurst() && wq.GetDailyCap() == gq.GetDailyCap() &&
		w.GetExpectedDailyVolume() == g.GetExpectedDailyVolume() &&
		designationsText(w.GetDesignations()) == designationsText(g.GetDesignations()) && disclosureText(w.GetDisclosure()) == disclosureText(g.GetDisclosure())
}

func purposeCodes(ps []*adminv1.Purpose) string {
	var codes []string
	for _, p := range ps {
		codes = append(codes, p.GetCode())
	}
	return strings.Join(codes, ",")
}
