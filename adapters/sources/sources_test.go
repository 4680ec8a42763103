package sources_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/relais-broker/relais/adapters/sandbox"
	"github.com/relais-broker/relais/adapters/sources"
	"github.com/relais-broker/relais/broker/catalog"
)

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sources.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoad(t *testing.T) {
	sb := sandbox.New(sandbox.Default(), sandbox.Options{SourceID: "sandbox"})
	cat := catalog.Default()
	built, err := sources.Load(write(t, `sources:
  - service: relais.familyquotient.v1.FamilyQuotientService
    id: caf
    kind: httpjson
    format: family_quotient_caf
    provider: CNAF
    base_url: http://127.0.0.1:9
    timeout: 3s
    failure_threshold: 3
    maintenance: [{from: 2026-12-24T20:00:00Z, until: 2026-12-25T06:00:00Z}]
  - service: relais.healthcover.v1.SolidarityHealthCoverService
    id: sandbox
    kind: sandbox
    probe_interval: 1m
    probe_request: '{"subject":{"birth_name":"DUPONT","given_names":["Zoé"],"sex":"SEX_FEMALE","birth_date":"1984-03-12","birth_place_cog":"75056","birth_country_cog":"99100"}}'
`), cat, sb)
	if err != nil || len(built) != 2 || built[0].ID != "caf" || built[0].Guard == nil || built[0].Timeout.Seconds() != 3 || built[1].Probe == nil {
		t.Fatalf("load: %+v, %v", built, err)
	}
	for name, tc := range map[string]struct{ body, want string }{
		"unknown key":          {"sources:\n  - service: relais.familyquotient.v1.FamilyQuotientService\n    id: x\n    kind: sandbox\n    colour: blue\n", "line 5"},
		"unknown service":      {"sources:\n  - {service: relais.pension.v1.PensionService, id: x, kind: sandbox}\n", "unknown service"},
		"unknown kind":         {"sources:\n  - {service: relais.familyquotient.v1.FamilyQuotientService, id: x, kind: ftp}\n", "kind \"ftp\""},
		"format of another":    {"sources:\n  - {service: relais.healthcover.v1.SolidarityHealthCoverService, id: x, kind: httpjson, format: family_quotient_caf, provider: p, base_url: 'https://x'}\n", "does not serve"},
		"remote without mTLS":  {"sources:\n  - {service: relais.familyquotient.v1.FamilyQuotientService, id: x, kind: remote, addr: '127.0.0.1:1'}\n", "mTLS"},
		"plain http elsewhere": {"sources:\n  - {service: relais.familyquotient.v1.FamilyQuotientService, id: x, kind: httpjson, format: family_quotient_caf, provider: p, base_url: 'http://caf.example'}\n", "https"},
		"bad probe request":    {"sources:\n  - {service: relais.healthcover.v1.SolidarityHealthCoverService, id: x, kind: sandbox, probe_interval: 1m, probe_request: '{\"nom\":1}'}\n", "probe_request"},
		"twice":                {"sources:\n  - {service: relais.familyquotient.v1.FamilyQuotientService, id: x, kind: sandbox}\n  - {service: relais.familyquotient.v1.FamilyQuotientService, id: y, kind: sandbox}\n", "twice"},
	} {
		if _, err := sources.Load(write(t, tc.body), cat, sb); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

// TestLoadParticulierFormats: the API particulier formats serve their own
// service and no other, and an unknown format names the known ones.
func TestLoadParticulierFormats(t *testing.T) {
	sb := sandbox.New(sandbox.Default(), sandbox.Options{SourceID: "sandbox"})
	cat := catalog.Default()
	built, err := sources.Load(write(t, `sources:
  - {service: relais.rsa.v1.RsaStatusService, id: cnav, kind: httpjson, format: rsa_cnav, provider: CNAV, base_url: 'https://particulier.example'}
  - {service: relais.nationalservice.v1.NationalServiceStatusService, id: dsnj, kind: httpjson, format: national_service_dsnj, provider: DSNJ, base_url: 'https://particulier.example'}
`), cat, sb)
	if err != nil || len(built) != 2 || built[0].ID != "dsnj" || built[1].ID != "cnav" {
		t.Fatalf("load: %+v, %v", built, err)
	}
	for name, tc := range map[string]struct{ body, want string }{
		"format of another service": {"sources:\n  - {service: relais.aah.v1.DisabledAdultAllowanceService, id: x, kind: httpjson, format: rsa_cnav, provider: p, base_url: 'https://x'}\n", "does not serve"},
		"unknown format":            {"sources:\n  - {service: relais.rsa.v1.RsaStatusService, id: x, kind: httpjson, format: rsa_caf, provider: p, base_url: 'https://x'}\n", "want one of family_quotient_caf, job_seeker_france_travail, national_service_dsnj, rsa_cnav"},
	} {
		if _, err := sources.Load(write(t, tc.body), cat, sb); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}
