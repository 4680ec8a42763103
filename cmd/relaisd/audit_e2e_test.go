package main_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relais-broker/relais/adapters/sandbox"
	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/audit/boltlog"
	"github.com/relais-broker/relais/internal/devenv"
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
	// Every file of the audit directory (segments, index, boundary) and
	// the registry.
	files, err := filepath.Glob(filepath.Join(d.dataDir, "audit", "*"))
	if err != nil || len(files) < 2 {
		t.Fatalf("audit directory: %v %v", files, err)
	}
	for _, f := range append(files, filepath.Join(d.dataDir, "registry.db")) {
		b, err := os.ReadFile(f)
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
	auditDir := filepath.Join(d.dataDir, "audit")
	out, err = shell(t, fmt.Sprintf("relaisctl audit verify --dir %s --public-key %s", auditDir, filepath.Join(d.dataDir, "keys", "audit-signing.pub")))
	if err != nil || !strings.HasPrefix(out, "OK: ") {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
	if recs := callRecords(t, auditDir); len(recs) != len(calls) {
		t.Fatalf("%d records of data-API calls, want one per call: %d", len(recs), len(calls))
	}
	exported := filepath.Join(t.TempDir(), "checkpoints.jsonl")
	if out, err := shell(t, fmt.Sprintf("relaisctl audit checkpoints --dir %s > %s && relaisctl audit verify --dir %s --public-key %s --checkpoints %s",
		auditDir, exported, auditDir, filepath.Join(d.dataDir, "keys", "audit-signing.pub"), exported)); err != nil || !strings.HasPrefix(out, "OK:") {
		t.Fatalf("verify against exported checkpoints: %v\n%s", err, out)
	}
}

// TestDevMigratesAnOldAuditFile starts relaisd dev on the data directory
// of an earlier version, whose audit log is an audit.db: the broker
// migrates it at start, serves its records through relaisctl audit query,
// keeps the file as audit.db.migrated, and the directory verifies.
func TestDevMigratesAnOldAuditFile(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "relais-dev")
	keys, err := devenv.LoadKeys(dataDir) // the keys the earlier broker made
	if err != nil {
		t.Fatal(err)
	}
	old, err := boltlog.Open(filepath.Join(dataDir, "audit.db"), boltlog.Options{SigningKey: keys.Signing, CheckpointEvery: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		r := audit.Record{Time: time.Now().Add(-time.Hour), RequestID: fmt.Sprintf("avant-%d", i), Consumer: "21990000100005", Recipient: "21990000100005",
			Method: "/relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient", Purpose: "aide_sociale_facultative",
			CaseReference: fmt.Sprintf("AVANT-MIGRATION-%d", i), Source: "sandbox", Code: "OK"}
		if err := old.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	d := startDevIn(t, dataDir)
	admin := fmt.Sprintf("--admin-addr %s --operator-dir %s", d.adminAddr, filepath.Join(d.dataDir, "dev", "operators", "admin"))
	out, err := shell(t, "relaisctl audit query --consumer 21990000100005 -o csv "+admin)
	if err != nil || strings.Count(out, "AVANT-MIGRATION-") != 5 {
		t.Fatalf("the migrated records through audit query: %v\n%s", err, out)
	}
	if out, err := shell(t, d.firstCall); err != nil {
		t.Fatalf("a call after the migration: %v\n%s", err, out)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = d.cmd.Wait()
	logs, _ := os.ReadFile(d.stderr.Name())
	if !bytes.Contains(logs, []byte("audit log migrated from audit.db")) || !regexp.MustCompile(`"?records"?[:=]5\b`).Match(logs) {
		t.Fatalf("no migration line with the counts in the broker's log:\n%s", logs)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "audit.db.migrated")); err != nil {
		t.Fatalf("the old file was not kept: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "audit.db")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("audit.db still in place: %v", err)
	}
	out, err = shell(t, fmt.Sprintf("relaisctl audit verify --dir %s --public-key %s", filepath.Join(dataDir, "audit"), filepath.Join(dataDir, "keys", "audit-signing.pub")))
	if err != nil || !strings.HasPrefix(out, "OK: ") {
		t.Fatalf("verify the migrated and continued log: %v\n%s", err, out)
	}
	if recs := callRecords(t, filepath.Join(dataDir, "audit")); len(recs) != 6 {
		t.Fatalf("%d call records, want the 5 migrated and the first call", len(recs))
	}
}
