package main

import (
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/registry"
)

// TestGrantsAddDesignationAndDisclosure: the flags reach the registry
// (designations in canonical order), the wide listing shows them, and
// bad combinations are usage errors that change nothing.
func TestGrantsAddDesignationAndDisclosure(t *testing.T) {
	t.Setenv(envConfig, filepath.Join(t.TempDir(), "none.yaml"))
	b := startBroker(t, t.TempDir(), newKeys(t), t.TempDir())
	const siret = "21750000500012"
	b.seed(t, siret, 0)
	base := []string{"grants", "add", "--consumer", siret, "--service", "relais.rsa.v1.RsaStatusService", "--scopes", "rsa.status",
		"--purpose", "controle:Contrôle des aides:CSS art. L114-9", "--until", "2030-01-01"}
	for _, tc := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--designation", "franceconnect"}, `--designation "franceconnect": want typed, citizen_login or both`},
		{[]string{"--designation", "typed,typed"}, `--designation: "typed" is listed twice`},
		{[]string{"--disclosure-delay", "8760h"}, "--disclosure-delay needs --disclosure-reference"},
		{[]string{"--disclosure-reference", "CSS art. L114-9"}, "--disclosure-reference without --disclosure-delay"},
		{[]string{"--disclosure-delay", "87601h", "--disclosure-reference", "x"}, "want a duration within 0 and 87600h (ten years)"},
		{[]string{"--disclosure-delay", "-1h", "--disclosure-reference", "x"}, "want a duration within 0 and 87600h"},
	} {
		if code, _, errOut := b.ctl(t, append(base, tc.flags...)...); code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: %d %q, want a usage error saying %q", tc.flags, code, errOut, tc.want)
		}
	}
	if gs, _ := b.reg.ListGrants(context.Background(), registry.GrantFilter{}); len(gs) != 0 {
		t.Fatalf("refused invocations stored %+v", gs)
	}
	code, out, errOut := b.ctl(t, append(base, "--designation", "citizen_login,typed", "--disclosure-delay", "8760h", "--disclosure-reference", "CSS art. L114-9", "-o", "wide")...)
	if code != 0 || !strings.Contains(out, "typed,citizen_login") || !strings.Contains(out, "after 8760h (CSS art. L114-9)") {
		t.Fatalf("grants add: %d %s %s", code, out, errOut)
	}
	gs, err := b.reg.Grants(context.Background(), siret, "relais.rsa.v1.RsaStatusService")
	if err != nil || len(gs) != 1 || !gs[0].Allows(registry.DesignationCitizenLogin) || !gs[0].Allows(registry.DesignationTyped) ||
		gs[0].Disclosure != (registry.Disclosure{Delay: 8760 * time.Hour, LegalReference: "CSS art. L114-9"}) {
		t.Fatalf("stored %+v %v", gs, err)
	}
	if code, _, _ := b.ctl(t, base...); code != 0 {
		t.Fatal("plain grants add")
	}
	_, wide, _ := b.ctl(t, "grants", "list", "-o", "wide")
	if !regexp.MustCompile(`(?m)DESIGNATION +DISCLOSURE\s*$`).MatchString(wide) || !regexp.MustCompile(`(?m) typed +at once\s*$`).MatchString(wide) {
		t.Fatalf("wide listing:\n%s", wide)
	}
	if _, table, _ := b.ctl(t, "grants", "list"); strings.Contains(table, "DISCLOSURE") {
		t.Fatalf("the narrow table shows the wide columns:\n%s", table)
	}
}

// TestApplyDesignationsAndDisclosure: the YAML keys are read strictly
// (value errors name key and line), an in-step file plans nothing, and a
// changed disclosure is one ~ line old → new.
func TestApplyDesignationsAndDisclosure(t *testing.T) {
	dir := t.TempDir()
	grant := func(extra string) string {
		return `consumers:
  - siret: "21750000500012"
    name: CCAS de Test-sur-Mer
    grants:
      - service: relais.rsa.v1.RsaStatusService
        scopes: [rsa.status]
        purposes: [{code: controle, label: Contrôle des aides, legal_basis: "CSS art. L114-9"}]
        until: 2030-06-30
        quota: {rate_per_second: 10, burst: 20}
` + extra
	}
	for _, tc := range []struct{ extra, want string }{
		{"        designations: [typed, franceconnect]\n", `line 10: consumers[0].grants[0].designations[1]: want typed or citizen_login, not "franceconnect"`},
		{"        designations: typed\n", "line 10: consumers[0].grants[0].designations: want a list"},
		{"        disclosure: {delay: 1y, legal_reference: x}\n", `line 10: consumers[0].grants[0].disclosure.delay: want a duration such as 8760h, not "1y"`},
		{"        disclosure: {delay: 8760h, reference: x}\n", `line 10: unknown key "reference" in consumers[0].grants[0].disclosure (known keys: delay, legal_reference)`},
	} {
		path := filepath.Join(dir, "grants.yaml")
		if err := os.WriteFile(path, []byte(grant(tc.extra)), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := readApplyFile(path); err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "main.") {
			t.Errorf("%q: got %v, want %q", tc.extra, err, tc.want)
		}
	}

	t.Setenv(envConfig, filepath.Join(t.TempDir(), "none.yaml"))
	b := startBroker(t, t.TempDir(), newKeys(t), t.TempDir())
	file := filepath.Join(dir, "apply.yaml")
	write := func(extra string) {
		if err := os.WriteFile(file, []byte(grant(extra)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ extra, want string }{
		{"        designations: [typed, typed]\n", `designations: "typed" is listed twice`},
		{"        disclosure: {delay: 8760h}\n", "disclosure.delay needs disclosure.legal_reference"},
		{"        disclosure: {legal_reference: CSS}\n", "disclosure.legal_reference without disclosure.delay"},
	} {
		write(tc.extra)
		if code, _, errOut := b.ctl(t, "apply", "-f", file, "--dry-run"); code == 0 || !strings.Contains(errOut, "consumer 21750000500012, grants[0]: "+tc.want) {
			t.Errorf("%q: %d %q, want %q", tc.extra, code, errOut, tc.want)
		}
	}
	write("        designations: [citizen_login, typed]\n        disclosure: {delay: 8760h, legal_reference: \"CSS art. L114-9\"}\n")
	if code, out, errOut := b.ctl(t, "apply", "-f", file); code != 0 || !strings.Contains(out, "applied 2 changes") {
		t.Fatalf("apply: %d %s %s", code, out, errOut)
	}
	if code, out, _ := b.ctl(t, "apply", "-f", file, "--dry-run", "--exit-code"); code != 0 || strings.TrimSpace(out) != "no changes" {
		t.Fatalf("in step: %d %s", code, out)
	}
	write("        designations: [citizen_login, typed]\n        disclosure: {delay: 17520h, legal_reference: \"CSS art. L114-9\"}\n")
	code, out, _ := b.ctl(t, "apply", "-f", file, "--dry-run", "--exit-code")
	if code != 2 || !regexp.MustCompile(`(?m)^~ grant g-\S+ .*: disclosure after 8760h \(CSS art. L114-9\) → after 17520h \(CSS art. L114-9\) \(replaced by a new grant\)$`).MatchString(out) {
		t.Fatalf("disclosure change: %d\n%s", code, out)
	}
	// typed only, written or left out, is the same grant.
	write("        disclosure: {delay: 8760h, legal_reference: \"CSS art. L114-9\"}\n")
	if _, out, _ := b.ctl(t, "apply", "-f", file, "--dry-run"); !strings.Contains(out, "designations typed,citizen_login → typed") {
		t.Fatalf("designation change:\n%s", out)
	}
	write("        designations: [typed]\n")
	if code, _, _ := b.ctl(t, "apply", "-f", file); code != 0 {
		t.Fatal("apply typed only")
	}
	write("")
	if code, out, _ := b.ctl(t, "apply", "-f", file, "--dry-run", "--exit-code"); code != 0 {
		t.Fatalf("designations [typed] and none differ: %d %s", code, out)
	}
}

// TestAuditDeferredListsDeferredAccesses: audit deferred (and audit query
// --deferred) show exactly the records with a disclosure date, with the
// date, its state and the legal reference; the subject report says who
// initiated the access and when the citizen sees it.
func TestAuditDeferredListsDeferredAccesses(t *testing.T) {
	t.Setenv(envConfig, filepath.Join(t.TempDir(), "none.yaml"))
	b := startBroker(t, t.TempDir(), newKeys(t), t.TempDir())
	b.seed(t, "21990000100005", 3)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	for i, r := range []audit.Record{
		{Time: now.Add(-400 * 24 * time.Hour), RequestID: "req-disclosed", DiscloseAfter: now.Add(-35 * 24 * time.Hour)},
		{Time: now.Add(-time.Hour), RequestID: "req-hidden", DiscloseAfter: now.Add(8759 * time.Hour)},
	} {
		r.Consumer, r.Method, r.Purpose, r.Code = "21990000100005", "/relais.rsa.v1.RsaStatusService/GetRsaStatus", "controle", "OK"
		r.Subject, r.SubjectOrigin, r.DisclosureReference = strings.Repeat("ab", 32), audit.OriginCitizenLogin, "CSS art. L114-9"
		if i == 0 {
			r.SubjectOrigin = ""
		}
		if err := b.log.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut := b.ctl(t, "audit", "deferred", "-o", "csv")
	if code != 0 {
		t.Fatalf("audit deferred: %d %s", code, errOut)
	}
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(recs) != 3 || strings.Join(recs[0], ",") != "time,request_id,consumer_siret,method,purpose,origin,disclose_after,state,reference" {
		t.Fatalf("audit deferred -o csv: %v\n%s", err, out)
	}
	if r := recs[1]; r[1] != "req-disclosed" || r[5] != "typed" || r[7] != "disclosed" || r[8] != "CSS art. L114-9" {
		t.Errorf("row %v", r)
	}
	if r := recs[2]; r[1] != "req-hidden" || r[5] != "citizen_login" || r[6] != now.Add(8759*time.Hour).Format(time.RFC3339) || r[7] != "hidden" {
		t.Errorf("row %v", r)
	}
	if _, out, _ := b.ctl(t, "audit", "deferred", "--pending", "-o", "csv"); strings.Count(out, "\n") != 2 || !strings.Contains(out, "req-hidden") {
		t.Errorf("audit deferred --pending:\n%s", out)
	}
	if _, out, _ := b.ctl(t, "audit", "deferred"); !strings.Contains(out, "DISCLOSE AFTER") || !strings.Contains(out, "hidden") || !strings.Contains(out, "disclosed") {
		t.Errorf("audit deferred:\n%s", out)
	}
	if _, out, _ := b.ctl(t, "audit", "query", "--deferred", "-o", "jsonl"); strings.Count(out, "\n") != 2 || !strings.Contains(out, `"disclose_after"`) {
		t.Errorf("audit query --deferred:\n%s", out)
	}
	if _, out, _ := b.ctl(t, "audit", "query", "-o", "jsonl"); strings.Count(out, "\n") < 5 {
		t.Errorf("audit query without --deferred:\n%s", out)
	}
}
