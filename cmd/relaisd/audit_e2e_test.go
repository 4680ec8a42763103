package main_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/relais-broker/relais/adapters/sandbox"
)

// TestAuditLogHoldsNoPersonalDataAndVerifies calls every service for
// sandbox citizens through a running broker, stops it, then scans the raw
// bytes of the audit log, the registry and the broker's log output for any
// sandbox attribute value or clear identity, and verifies the log with relaisctl and the public
// key alone.
func TestAuditLogHoldsNoPersonalDataAndVerifies(t *testing.T) {
	t.Parallel()
	d := startDev(t)
	calls := []struct{ method, body string }{
		{"relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient", `"subject":{"birth_name":"DUPONT","given_names":["Zoé"],"sex":"SEX_FEMALE","birth_date":"1984-03-12","birth_place_cog":"75056","birth_country_cog":"99100"}`},
		{"relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient", `"subject":{"birth_name":"MARTIN","given_names":["Lucas"],"sex":"SEX_MALE","birth_date":"1979-11-02","birth_place_cog":"69123","birth_country_cog":"99100"}`},
		{"relais.studentstatus.v1.StudentStatusService/GetStudentStatus", `"ine":"SBXINE00001"`},
		{"relais.jobseeker.v1.JobSeekerStatusService/GetJobSeekerStatus", `"identity":{"birth_name":"GARCIA","given_names":["Manon"],"sex":"SEX_FEMALE","birth_date":"1987-08-08","birth_place_cog":"31555","birth_country_cog":"99100"}`},
		{"relais.healthcover.v1.SolidarityHealthCoverService/GetSolidarityHealthCover", `"subject":{"birth_name":"BENALI","given_names":["Yasmine"],"sex":"SEX_FEMALE","birth_date":"1986-04-23","birth_country_cog":"99350"}`},
	}
	prefix := strings.SplitN(d.firstCall, " -d ", 2)[0]
	for _, c := range calls {
		line := fmt.Sprintf(`%s -d '{"access_context":{"recipient":"21990000100005","purpose":"aide_sociale_facultative","case_reference":"DOSSIER-AUDIT"},%s}' %s %s`, prefix, c.body, d.addr, c.method)
		if out, err := shell(t, line); err != nil {
			t.Fatalf("%s: %v\n%s", c.method, err, out)
		}
	}
	admin := fmt.Sprintf("--admin-addr %s --operator-dir %s", d.adminAddr, filepath.Join(d.dataDir, "dev", "operators", "admin"))
	// A citizen's request, spelled differently from the caller's.
	out, err := shell(t, "relaisctl audit subject --birth-name dupont --given-names zoe --sex F --birth-date 1984-03-12 --birth-place 75056 "+admin)
	if err != nil || !strings.Contains(out, "Mairie d'Exemple-sur-Loire") || !strings.Contains(out, "Instruction d'une aide sociale facultative") ||
		!strings.Contains(out, ",children,") || strings.Count(out, "21990000100005") != 1 {
		t.Fatalf("subject report for Zoé: %v\n%s", err, out)
	}
	if out, err := shell(t, "relaisctl audit subject --ine SBXINE00001 "+admin); err != nil || strings.Count(out, "admissions") != 1 {
		t.Fatalf("subject report by INE: %v\n%s", err, out)
	}
	if out, err := shell(t, "relaisctl audit subject --birth-name INCONNU --given-names X --sex M --birth-date 2000-01-01 --birth-place 75056 "+admin); err != nil || !strings.Contains(out, "no access recorded") {
		t.Fatalf("subject report for nobody: %v\n%s", err, out)
	}
	csvOut, err := shell(t, "relaisctl audit query --consumer 21990000100005 --code OK -o csv "+admin)
	if err != nil || strings.Count(csvOut, "DOSSIER-AUDIT") != len(calls) || !strings.HasPrefix(csvOut, "time,request_id") {
		t.Fatalf("audit query csv: %v\n%s", err, csvOut)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = d.cmd.Wait()

	// The broker's log output is scanned with the stores.
	logs, err := os.ReadFile(d.stderr.Name())
	if err != nil || !bytes.Contains(logs, []byte(`"msg":"call"`)) {
		t.Fatalf("no call lines in the broker's log: %v", err)
	}
	raw := append([]byte(nil), logs...)
	for _, f := range []string{"audit.db", "registry.db"} {
		b, err := os.ReadFile(filepath.Join(d.dataDir, f))
		if err != nil {
			t.Fatal(err)
		}
		raw = append(raw, b...)
	}
	if !bytes.Contains(raw, []byte("DOSSIER-AUDIT")) {
		t.Fatal("the audit log does not hold the calls (the scan would prove nothing)")
	}
	if !bytes.Contains(logs, []byte("GetFamilyQuotient")) {
		t.Fatal("the log holds no call line (the scan would prove nothing)")
	}
	// Every identity and attribute value the sandbox holds for the
	// citizens called, in every form a careless encoder could use.
	var needles []string
	for _, c := range sandbox.Default().Citizens() {
		id := c.Identity
		needles = append(needles, id.GetBirthName(), id.GetBirthDate(), c.INE)
		needles = append(needles, id.GetGivenNames()...)
	}
	needles = append(needles, "MADAME ZOÉ DUPONT", "12 RUE DES LILAS", "ROBERT", "Inès", "2014-05-21", "Université fictive", "2026-02-03")
	for _, n := range needles {
		if len(n) < 4 {
			continue
		}
		for _, form := range []string{n, strings.ToUpper(n), strings.ToLower(n)} {
			if bytes.Contains(raw, []byte(form)) {
				t.Errorf("the stores or the log contain %q", form)
			}
		}
	}
	out, err = shell(t, fmt.Sprintf("relaisctl audit verify --db %s --public-key %s", filepath.Join(d.dataDir, "audit.db"), filepath.Join(d.dataDir, "keys", "audit-signing.pub")))
	if err != nil || !strings.HasPrefix(out, "OK: ") {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
	if recs := callRecords(t, filepath.Join(d.dataDir, "audit.db")); len(recs) != len(calls) {
		t.Fatalf("%d records of data-API calls, want one per call: %d", len(recs), len(calls))
	}
	exported := filepath.Join(t.TempDir(), "checkpoints.jsonl")
	if out, err := shell(t, fmt.Sprintf("relaisctl audit checkpoints --db %s > %s && relaisctl audit verify --db %s --public-key %s --checkpoints %s",
		filepath.Join(d.dataDir, "audit.db"), exported, filepath.Join(d.dataDir, "audit.db"), filepath.Join(d.dataDir, "keys", "audit-signing.pub"), exported)); err != nil || !strings.HasPrefix(out, "OK:") {
		t.Fatalf("verify against exported checkpoints: %v\n%s", err, out)
	}
}
