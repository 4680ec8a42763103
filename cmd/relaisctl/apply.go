package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

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

func runApply(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relaisctl apply", flag.ContinueOnError)
	af := addAdminFlags(fs)
	file := fs.String("f", "", "the declarative grants file (YAML)")
	dryRun := fs.Bool("dry-run", false, "print the changes without making them")
	c := command{flags: fs, admin: af, run: func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error {
		if *file == "" || fs.NArg() > 0 {
			return usageError{"-f FILE is required, and nothing else"}
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
			fmt.Fprintf(out, "dry run: %d changes not made\n", len(plan))
			return nil
		}
		for i, ch := range plan {
			if err := ch.do(ctx, conn); err != nil {
				return fmt.Errorf("change %d (%s) refused, %d changes made before it; fix the file and apply again: %w", i+1, ch.text, i, err)
			}
		}
		fmt.Fprintf(out, "applied %d changes\n", len(plan))
		return nil
	}}
	return runAdmin(ctx, "apply", c, args, stdout, stderr)
}

// readApplyFile decodes strictly: an unknown key is an error with its line.
func readApplyFile(path string) (*applyFile, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	var f applyFile
	if err := dec.Decode(&f); err != nil {
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
			return nil, fmt.Errorf("%s: consumer %s: status %q: want active or suspended", path, c.SIRET, c.Status)
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

// planGrants matches wanted grants to current ones by everything but the
// end date: same → nothing, end moved → extend, no match → add; current
// grants left over are revoked.
func planGrants(c applyConsumer, current []*adminv1.Grant, client adminv1.GrantAdminServiceClient) ([]change, error) {
	var plan []change
	used := make([]bool, len(current))
	for i, w := range c.Grants {
		req, err := grantRequestFromFile(c.SIRET, w)
		if err != nil {
			return nil, fmt.Errorf("consumer %s, grants[%d]: %w", c.SIRET, i, err)
		}
		match := -1
		for j, g := range current {
			if !used[j] && sameGrant(req, g) {
				match = j
				break
			}
		}
		desc := fmt.Sprintf("%s %s [%s] for %s until %s", c.SIRET, req.GetService(), strings.Join(req.GetScopes(), ","), purposeCodes(req.GetPurposes()), req.GetNotAfter().AsTime().Format(time.DateOnly))
		switch {
		case match < 0:
			plan = append(plan, change{"+ grant " + desc, func(ctx context.Context, _ *grpc.ClientConn) error {
				_, err := client.AddGrant(ctx, req)
				return err
			}})
		case !current[match].GetNotAfter().AsTime().Equal(req.GetNotAfter().AsTime()):
			used[match] = true
			id := current[match].GetId()
			plan = append(plan, change{fmt.Sprintf("~ grant %s %s (was until %s)", id, desc, day(current[match].GetNotAfter())), func(ctx context.Context, _ *grpc.ClientConn) error {
				_, err := client.ExtendGrant(ctx, &adminv1.ExtendGrantRequest{Id: id, NotAfter: req.GetNotAfter()})
				return err
			}})
		default:
			used[match] = true
		}
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
	return req, nil
}

// sameGrant compares everything but the window's end (and its start when
// the file leaves it to "now").
func sameGrant(w *adminv1.AddGrantRequest, g *adminv1.Grant) bool {
	if w.GetService() != g.GetService() || !slices.Equal(w.GetScopes(), g.GetScopes()) || len(w.GetPurposes()) != len(g.GetPurposes()) {
		return false
	}
	for i, p := range w.GetPurposes() {
		q := g.GetPurposes()[i]
		if p.GetCode() != q.GetCode() || p.GetLabel() != q.GetLabel() || p.GetLegalBasis() != q.GetLegalBasis() {
			return false
		}
	}
	wq, gq := w.GetQuota(), g.GetQuota()
	return wq.GetRatePerSecond() == gq.GetRatePerSecond() && wq.GetBurst() == gq.GetBurst() && wq.GetDailyCap() == gq.GetDailyCap() &&
		w.GetExpectedDailyVolume() == g.GetExpectedDailyVolume()
}

func purposeCodes(ps []*adminv1.Purpose) string {
	var codes []string
	for _, p := range ps {
		codes = append(codes, p.GetCode())
	}
	return strings.Join(codes, ",")
}
