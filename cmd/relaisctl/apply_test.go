package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestApplyShowsOldToNewAndExitCode: a quota or validity change is one
// ~ line with old → new; --dry-run --exit-code exits 2 while the registry
// differs, 0 once it matches.
func TestApplyShowsOldToNewAndExitCode(t *testing.T) {
	t.Setenv(envConfig, filepath.Join(t.TempDir(), "none.yaml"))
	b := startBroker(t, t.TempDir(), newKeys(t), t.TempDir())
	file := filepath.Join(t.TempDir(), "grants.yaml")
	write := func(rate, until string) {
		body := `consumers:
  - siret: "21750000500012"
    name: CCAS de Test-sur-Mer
    grants:
      - service: relais.healthcover.v1.SolidarityHealthCoverService
        scopes: [solidarity_health_cover.status]
        purposes: [{code: aide_sociale_facultative, label: Aide facultative, legal_basis: "CASF art. L123-5"}]
        until: ` + until + `
        quota: {rate_per_second: ` + rate + `, burst: 20}
`
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("10", "2030-06-30")
	if code, out, errOut := b.ctl(t, "apply", "-f", file, "--dry-run", "--exit-code"); code != 2 || !strings.Contains(out, "dry run: 2 changes not made") {
		t.Fatalf("first dry run: %d %s %s", code, out, errOut)
	}
	if code, out, errOut := b.ctl(t, "apply", "-f", file); code != 0 || !strings.Contains(out, "applied 2 changes") {
		t.Fatalf("apply: %d %s %s", code, out, errOut)
	}
	if code, out, _ := b.ctl(t, "apply", "-f", file, "--dry-run", "--exit-code"); code != 0 || strings.TrimSpace(out) != "no changes" {
		t.Fatalf("in step: %d %s", code, out)
	}
	write("25", "2030-06-30")
	code, out, _ := b.ctl(t, "apply", "-f", file, "--dry-run", "--exit-code")
	if code != 2 || !regexp.MustCompile(`(?m)^~ grant g-\S+ 21750000500012 .*: rate_per_second 10 → 25 \(replaced by a new grant\)$`).MatchString(out) || strings.Contains(out, "+ grant") || strings.Contains(out, "- grant") {
		t.Fatalf("quota change: %d\n%s", code, out)
	}
	if code, out, _ := b.ctl(t, "apply", "-f", file); code != 0 || !strings.Contains(out, "applied 1 change\n") {
		t.Fatalf("apply the quota: %d %s", code, out)
	}
	write("25", "2031-01-31")
	code, out, _ = b.ctl(t, "apply", "-f", file, "--dry-run")
	if code != 0 || !regexp.MustCompile(`(?m)^~ grant g-\S+ .*: until 2030-06-30 → 2031-01-31$`).MatchString(out) {
		t.Fatalf("validity change: %d\n%s", code, out)
	}
	if code, _, _ := b.ctl(t, "apply", "-f", file); code != 0 {
		t.Fatal("apply the validity")
	}
	if code, _, _ := b.ctl(t, "apply", "-f", file, "--dry-run", "--exit-code"); code != 0 {
		t.Fatalf("converged: %d", code)
	}
	_, list, _ := b.ctl(t, "grants", "list", "-o", "wide")
	if strings.Count(list, "in force") != 1 || strings.Count(list, "revoked") != 1 || !strings.Contains(list, "25/s") || !strings.Contains(list, "2031-01-31") {
		t.Fatalf("grants after apply:\n%s", list)
	}
	if code, _, errOut := b.ctl(t, "apply", "-f", file, "--exit-code"); code != 2 || !strings.Contains(errOut, "--exit-code goes with --dry-run") {
		t.Fatalf("--exit-code alone: %d %s", code, errOut)
	}
}
