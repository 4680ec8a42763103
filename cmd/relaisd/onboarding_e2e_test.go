package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/catalog"
)

// TestOnboardingWithRelaisctl onboards a new public body end to end with
// relaisctl against a running broker: add consumer, grant, issue a
// credential, first call, suspend, refused, resume, works; then revoke
// the grant and check bad input is refused with a precise reason and
// leaves the registry unchanged.
func TestOnboardingWithRelaisctl(t *testing.T) {
	t.Parallel()
	d := startDev(t)
	const siret = "21750000500004"
	admin := fmt.Sprintf("--admin-addr %s --operator-dir %s", d.adminAddr, filepath.Join(d.dataDir, "dev", "operators", "admin"))
	run := func(line string) string {
		t.Helper()
		out, err := shell(t, line)
		if err != nil {
			t.Fatalf("%s: %v\n%s", line, err, out)
		}
		return out
	}
	refused := func(line, want string) {
		t.Helper()
		out, err := shell(t, line+" 2>&1")
		if err == nil || !strings.Contains(out, want) {
			t.Fatalf("%s: want a refusal mentioning %q, got %v:\n%s", line, want, err, out)
		}
	}
	run(fmt.Sprintf("relaisctl consumers add %s --name 'Mairie de Paris-Test' --contact 'DSI <dsi@paris-test.example>' %s", siret, admin))
	until := time.Now().AddDate(0, 6, 0).Format(time.DateOnly)
	out := run(fmt.Sprintf("relaisctl grants add --consumer %s --service relais.healthcover.v1.SolidarityHealthCoverService --scopes solidarity_health_cover.status "+
		"--purpose 'aide_sociale_facultative:Aide facultative du CCAS:CASF art. L123-5' --until %s %s", siret, until, admin))
	grantID := regexp.MustCompile(`g-[0-9a-f]{16}`).FindString(out)
	if grantID == "" {
		t.Fatalf("no grant id in:\n%s", out)
	}
	cred := t.TempDir()
	out = run(fmt.Sprintf("relaisctl credentials issue --dev-ca %s --consumer %s --name 'Mairie de Paris-Test' --out %s %s 2>&1", filepath.Join(d.dataDir, "dev"), siret, cred, admin))
	serial := regexp.MustCompile(`serial ([0-9a-f]+)`).FindStringSubmatch(out)
	if serial == nil || strings.Contains(out, "warning") {
		t.Fatalf("issue: %s", out)
	}
	if out := run("relaisctl credentials list --consumer " + siret + " " + admin); !strings.Contains(out, serial[1]) || !strings.Contains(out, "active") || !strings.Contains(out, "admin") {
		t.Fatalf("credentials list does not show the issued certificate:\n%s", out)
	}
	if out := run("relaisctl sources list " + admin); strings.Count(out, " ok ") != len(catalog.Default().Services()) {
		t.Fatalf("sources list:\n%s", out)
	}

	call := strings.Replace(d.firstCall, filepath.Join(d.dataDir, "dev", "consumers", "mairie-exemple", "cert.pem"), filepath.Join(cred, "cert.pem"), 1)
	call = strings.Replace(call, filepath.Join(d.dataDir, "dev", "consumers", "mairie-exemple", "key.pem"), filepath.Join(cred, "key.pem"), 1)
	call = strings.Replace(call, `"recipient":"21990000100005","purpose":"tarification_sociale"`, `"recipient":"`+siret+`","purpose":"aide_sociale_facultative"`, 1)
	call = strings.Replace(call, "relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient", "relais.healthcover.v1.SolidarityHealthCoverService/GetSolidarityHealthCover", 1)
	if out := run(call); !strings.Contains(out, `"isBeneficiary": true`) || strings.Contains(out, "rightsStartDate") {
		t.Fatalf("first call: want the granted status only:\n%s", out)
	}
	run(fmt.Sprintf("relaisctl consumers suspend %s --reason 'convention échue' %s", siret, admin))
	refused(call, "consumer is suspended")
	run(fmt.Sprintf("relaisctl consumers resume %s %s", siret, admin))
	run(call)
	run(fmt.Sprintf("relaisctl grants revoke %s %s", grantID, admin))
	refused(call, "no grant for this service")

	// Bad input: precise reasons, registry file unchanged.
	registry := filepath.Join(d.dataDir, "registry.db")
	before, _ := os.ReadFile(registry)
	for _, tc := range []struct{ line, want string }{
		{"relaisctl consumers add 21750000500005 --name X", "siret"},
		{"relaisctl grants add --consumer " + siret + " --service relais.pension.v1.PensionService --scopes x --purpose 'a:b:c' --until " + until, "not a service of the catalogue"},
		{"relaisctl grants add --consumer " + siret + " --service relais.healthcover.v1.SolidarityHealthCoverService --scopes family_quotient.value --purpose 'a:b:c' --until " + until, "is not a scope of"},
		{"relaisctl grants add --consumer " + siret + " --service relais.healthcover.v1.SolidarityHealthCoverService --scopes solidarity_health_cover.status --purpose 'a:b:c' --from 2020-01-01 --until 2021-01-01", "in the past"},
		{"relaisctl grants add --consumer " + siret + " --service relais.healthcover.v1.SolidarityHealthCoverService --scopes solidarity_health_cover.status --purpose 'a:b: ' --until " + until, "legal_basis"},
	} {
		refused(tc.line+" "+admin, tc.want)
	}
	after, _ := os.ReadFile(registry)
	if string(before) != string(after) {
		t.Fatal("refused commands changed the registry file")
	}
	out = run("relaisctl grants list -o json --consumer " + siret + " " + admin)
	if !strings.Contains(out, `"revoked_at"`) || !strings.Contains(out, grantID) {
		t.Fatalf("grants list -o json:\n%s", out)
	}
}

// TestApplyGrantsFile manages rights as code: a dry run shows the diff
// and changes nothing, apply makes it, a second apply finds nothing to do,
// and a grant dropped from the file is revoked.
func TestApplyGrantsFile(t *testing.T) {
	t.Parallel()
	d := startDev(t)
	admin := fmt.Sprintf("--admin-addr %s --operator-dir %s", d.adminAddr, filepath.Join(d.dataDir, "dev", "operators", "admin"))
	until := time.Now().AddDate(1, 0, 0).Format(time.DateOnly)
	file := filepath.Join(t.TempDir(), "grants.yaml")
	write := func(withSecond bool) {
		body := `consumers:
  - siret: "21750000500012"
    name: CCAS de Test-sur-Mer
    contacts: [{name: Direction, email: direction@ccas-test.example}]
    grants:
      - service: relais.healthcover.v1.SolidarityHealthCoverService
        scopes: [solidarity_health_cover.status]
        purposes: [{code: aide_sociale_facultative, label: Aide facultative, legal_basis: "CASF art. L123-5"}]
        until: ` + until + `
        quota: {rate_per_second: 10, burst: 20}
`
		if withSecond {
			body += `      - service: relais.familyquotient.v1.FamilyQuotientService
        scopes: [family_quotient.value]
        purposes: [{code: aide_sociale_facultative, label: Aide facultative, legal_basis: "CASF art. L123-5"}]
        until: ` + until + `
        quota: {rate_per_second: 10, burst: 20}
`
		}
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(true)
	out, err := shell(t, "relaisctl apply --dry-run -f "+file+" "+admin)
	if err != nil || !strings.Contains(out, "+ consumer 21750000500012") || strings.Count(out, "+ grant") != 2 || !strings.Contains(out, "dry run") {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if out, _ := shell(t, "relaisctl consumers show 21750000500012 "+admin+" 2>&1"); !strings.Contains(out, "NotFound") {
		t.Fatalf("the dry run changed the registry:\n%s", out)
	}
	if out, err := shell(t, "relaisctl apply -f "+file+" "+admin); err != nil || !strings.Contains(out, "applied 3 changes") {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	if out, err := shell(t, "relaisctl apply -f "+file+" "+admin); err != nil || strings.TrimSpace(out) != "no changes" {
		t.Fatalf("second apply: %v\n%s", err, out)
	}
	write(false)
	out, err = shell(t, "relaisctl apply -f "+file+" "+admin)
	if err != nil || !strings.Contains(out, "- grant g-") || !strings.Contains(out, "FamilyQuotientService") {
		t.Fatalf("apply without the second grant: %v\n%s", err, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	_ = os.WriteFile(bad, []byte("consumers:\n  - siret: \"21750000500012\"\n    nom: typo\n"), 0o600)
	if out, err := shell(t, "relaisctl apply -f "+bad+" "+admin+" 2>&1"); err == nil || !strings.Contains(out, "line 3") {
		t.Fatalf("unknown key: %v\n%s", err, out)
	}
}
