package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/relais-broker/relais/broker/admin"
	"github.com/relais-broker/relais/broker/audit/audittest"
	"github.com/relais-broker/relais/broker/audit/boltlog"
	"github.com/relais-broker/relais/broker/audit/seglog"
	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/certs"
	"github.com/relais-broker/relais/internal/keyfile"
	"github.com/relais-broker/relais/internal/tlstest"
)

// auditFixture is a real audit log file with 30 records, a checkpoint
// every 10, and the key pair's files.
type auditFixture struct {
	dir, db, pub string
	log          *boltlog.Log
}

func newAuditFixture(t *testing.T, keepOpen bool) *auditFixture {
	t.Helper()
	f := &auditFixture{dir: t.TempDir()}
	f.db, f.pub = filepath.Join(f.dir, "audit.db"), filepath.Join(f.dir, "audit.pub")
	keyPath := filepath.Join(f.dir, "audit.key")
	if err := keyfile.CreateSigningKey(keyPath, f.pub); err != nil {
		t.Fatal(err)
	}
	key, err := keyfile.ReadSigningKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if f.log, err = boltlog.Open(f.db, boltlog.Options{SigningKey: key, CheckpointEvery: 10}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 30; i++ {
		if err := f.log.Append(context.Background(), audittest.Record(i)); err != nil {
			t.Fatal(err)
		}
	}
	if keepOpen {
		t.Cleanup(func() { _ = f.log.Close() })
	} else if err := f.log.Close(); err != nil {
		t.Fatal(err)
	}
	return f
}

// ctl runs "relaisctl audit …" through the audit dispatcher.
func ctl(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	if args[0] != "audit" {
		t.Fatalf("not an audit command: %v", args)
	}
	var out, errOut bytes.Buffer
	code := runAudit(context.Background(), args[1:], &out, &errOut)
	return code, out.String(), errOut.String()
}

// modifiedCopy copies the file and changes one byte of record seq inside
// it, as someone with the file would.
func modifiedCopy(t *testing.T, src string, seq uint64) string {
	t.Helper()
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(dst, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(dst, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	key := make([]byte, 8)
	key[7] = byte(seq)
	if err := db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("records"))
		v := bytes.Clone(b.Get(key))
		v[bytes.Index(v, []byte("tarification"))] = 'T'
		return b.Put(key, v)
	}); err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestAuditVerifyAndExportOffline(t *testing.T) {
	f := newAuditFixture(t, false)
	if code, out, errOut := ctl(t, "audit", "verify", "--db", f.db, "--public-key", f.pub); code != 0 || !strings.HasPrefix(out, "OK: 30 records (seq 1 to 30), 3 signed checkpoints") {
		t.Fatalf("verify --db: %d %q %q", code, out, errOut)
	}
	export := filepath.Join(f.dir, "export.jsonl")
	if code, _, errOut := ctl(t, "audit", "export", "--db", f.db, "--out", export); code != 0 || !strings.Contains(errOut, "33 entries") {
		t.Fatalf("export --db: %d %q", code, errOut)
	}
	if st, err := os.Stat(export); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("export file: %v %v", st, err)
	}
	if code, out, errOut := ctl(t, "audit", "verify", "--file", export, "--public-key", f.pub); code != 0 || !strings.HasPrefix(out, "OK: 30 records") {
		t.Fatalf("verify --file: %d %q %q", code, out, errOut)
	}
	// The export refuses to overwrite a file.
	if code, _, _ := ctl(t, "audit", "export", "--db", f.db, "--out", export); code == 0 {
		t.Fatal("export overwrote an existing file")
	}
	// A record modified in a copy of the file is named.
	if code, out, _ := ctl(t, "audit", "verify", "--db", modifiedCopy(t, f.db, 17), "--public-key", f.pub); code != 1 || !strings.HasPrefix(out, "FAILED at seq 17:") {
		t.Fatalf("verify --db on a modified copy: %d %q", code, out)
	}
	// A record modified in the export is named.
	raw, _ := os.ReadFile(export)
	lines := strings.Split(string(raw), "\n")
	lines[24] = strings.Replace(lines[24], "tarification", "Tarification", 1) // record 23 (after checkpoints 10 and 20)
	bad := filepath.Join(f.dir, "bad.jsonl")
	if err := os.WriteFile(bad, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := ctl(t, "audit", "verify", "--file", bad, "--public-key", f.pub); code != 1 || !strings.HasPrefix(out, "FAILED at seq 23:") {
		t.Fatalf("verify --file on a modified export: %d %q", code, out)
	}
	// Archived checkpoints catch a truncation.
	var cps bytes.Buffer
	if code := runAudit(context.Background(), []string{"checkpoints", "--db", f.db}, &cps, io.Discard); code != 0 || strings.Count(cps.String(), "\n") != 3 {
		t.Fatalf("checkpoints: %d %q", code, cps.String())
	}
	archive := filepath.Join(f.dir, "checkpoints.jsonl")
	_ = os.WriteFile(archive, cps.Bytes(), 0o600)
	truncated := filepath.Join(f.dir, "truncated.jsonl")
	_ = os.WriteFile(truncated, []byte(strings.Join(lines[:22], "\n")+"\n"), 0o600) // up to checkpoint 20
	if code, out, _ := ctl(t, "audit", "verify", "--file", truncated, "--public-key", f.pub, "--checkpoints", archive); code != 1 || !strings.HasPrefix(out, "FAILED at seq 21:") {
		t.Fatalf("truncated export against the archive: %d %q", code, out)
	}
	// Two sources at once are a usage error.
	if code, _, errOut := ctl(t, "audit", "verify", "--db", f.db, "--file", export, "--public-key", f.pub); code != 2 || !strings.Contains(errOut, "one of --dir, --db, --file and --online") {
		t.Fatalf("two sources: %d %q", code, errOut)
	}
}

func TestAuditVerifyOnlineOnARunningBroker(t *testing.T) {
	f := newAuditFixture(t, true)
	// The file is held by the running log: offline verification says so.
	if code, _, errOut := ctl(t, "audit", "verify", "--db", f.db, "--public-key", f.pub); code != 1 || !strings.Contains(errOut, "--online") {
		t.Fatalf("verify --db on a running broker: %d %q", code, errOut)
	}
	pki := tlstest.New(t)
	revoked := certs.NewRevocations()
	srv, err := admin.New(admin.Config{Issuer: pki.CA, Revocations: revoked, Audit: f.log, AuditLog: f.log})
	if err != nil {
		t.Fatal(err)
	}
	addr := tlstest.Serve(t, srv.NewGRPCServer(pki.ServerCreds(certs.RejectRevoked(revoked))))
	opDir := filepath.Join(f.dir, "operator")
	bundle, _ := pki.CA.TrustBundle(context.Background())
	if err := certs.WriteCredential(opDir, pki.Issue(t, identity.KindOperator, "alice"), bundle); err != nil {
		t.Fatal(err)
	}
	online := []string{"--online", "--admin-addr", addr, "--operator-dir", opDir}
	code, out, errOut := ctl(t, append([]string{"audit", "verify", "--public-key", f.pub}, online...)...)
	if code != 0 || !strings.HasPrefix(out, "OK: 30 records (seq 1 to 30), 3 signed checkpoints") {
		t.Fatalf("verify --online: %d %q %q", code, out, errOut)
	}
	// An online export verifies offline, and holds the export's own admin record.
	export := filepath.Join(f.dir, "online.jsonl")
	if code, _, errOut := ctl(t, append([]string{"audit", "export", "--out", export}, online...)...); code != 0 {
		t.Fatalf("export --online: %d %q", code, errOut)
	}
	if code, out, _ := ctl(t, "audit", "verify", "--file", export, "--public-key", f.pub); code != 0 || !strings.HasPrefix(out, "OK: 31 records") {
		t.Fatalf("verify of the online export: %d %q", code, out)
	}
	// A copy of the running broker's file, modified, fails naming the seq.
	if err := f.log.Close(); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := ctl(t, "audit", "verify", "--db", modifiedCopy(t, f.db, 9), "--public-key", f.pub); code != 1 || !strings.HasPrefix(out, "FAILED at seq 9:") {
		t.Fatalf("modified copy: %d %q", code, out)
	}
}

// TestAuditDirectoryOffline: verify, export and checkpoints of an audit
// directory (what relaisd leaves in DATA/audit); a changed byte in a
// segment is named by seq, segment and offset; a running broker's
// directory is refused with the way to verify it online; a data
// directory of an earlier version points at --db.
func TestAuditDirectoryOffline(t *testing.T) {
	base := t.TempDir()
	pub, keyPath := filepath.Join(base, "audit.pub"), filepath.Join(base, "audit.key")
	if err := keyfile.CreateSigningKey(keyPath, pub); err != nil {
		t.Fatal(err)
	}
	key, err := keyfile.ReadSigningKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "data", "audit")
	log, err := seglog.Open(dir, seglog.Options{SigningKey: key, CheckpointEvery: 10, Store: seglog.StoreOptions{SegmentSize: 64 << 10}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 30; i++ {
		if err := log.Append(context.Background(), audittest.Record(i)); err != nil {
			t.Fatal(err)
		}
	}
	if code, _, errOut := ctl(t, "audit", "verify", "--dir", dir, "--public-key", pub); code != 1 || !strings.Contains(errOut, "in use by a running broker") || !strings.Contains(errOut, "--online") {
		t.Fatalf("verify --dir of a running broker: %d %q", code, errOut)
	}
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := ctl(t, "audit", "verify", "--dir", dir, "--public-key", pub); code != 0 || !strings.HasPrefix(out, "OK: 30 records (seq 1 to 30), 3 signed checkpoints") {
		t.Fatalf("verify --dir: %d %q %q", code, out, errOut)
	}
	export := filepath.Join(base, "export.jsonl")
	if code, _, errOut := ctl(t, "audit", "export", "--dir", dir, "--out", export); code != 0 || !strings.Contains(errOut, "33 entries") {
		t.Fatalf("export --dir: %d %q", code, errOut)
	}
	if code, out, errOut := ctl(t, "audit", "verify", "--file", export, "--public-key", pub); code != 0 || !strings.HasPrefix(out, "OK: 30 records") {
		t.Fatalf("verify the export: %d %q %q", code, out, errOut)
	}
	var cps bytes.Buffer
	if code := runAudit(context.Background(), []string{"checkpoints", "--dir", dir}, &cps, io.Discard); code != 0 || strings.Count(cps.String(), "\n") != 3 {
		t.Fatalf("checkpoints --dir: %d %q", code, cps.String())
	}
	archive := filepath.Join(base, "checkpoints.jsonl")
	_ = os.WriteFile(archive, cps.Bytes(), 0o600)
	if code, out, errOut := ctl(t, "audit", "verify", "--dir", dir, "--public-key", pub, "--checkpoints", archive); code != 0 || !strings.HasPrefix(out, "OK:") {
		t.Fatalf("verify --dir against its checkpoints: %d %q %q", code, out, errOut)
	}

	// One byte of record 17 changed in a copy of the directory.
	bad := filepath.Join(base, "bad", "audit")
	if err := os.MkdirAll(bad, 0o700); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	changed := ""
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(raw, []byte(`"case-17"`)); i >= 0 && strings.HasSuffix(e.Name(), ".seg") {
			raw[i+len(`"case-1`)] = '8'
			changed = e.Name()
		}
		if err := os.WriteFile(filepath.Join(bad, e.Name()), raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if changed == "" {
		t.Fatal("record 17 is in no segment")
	}
	if code, out, _ := ctl(t, "audit", "verify", "--dir", bad, "--public-key", pub); code != 1 || !strings.HasPrefix(out, "FAILED at seq 17: record 17: ") || !strings.Contains(out, changed) {
		t.Fatalf("verify --dir of a changed segment: %d %q", code, out)
	}

	// The default is relais-dev/audit; an earlier version's data
	// directory holds audit.db there instead.
	t.Chdir(t.TempDir())
	if err := os.MkdirAll("relais-dev", 0o700); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := ctl(t, "audit", "verify", "--public-key", pub); code != 1 || !strings.Contains(errOut, "relais-dev/audit does not exist: give the audit directory") {
		t.Fatalf("verify without a directory: %d %q", code, errOut)
	}
	if err := os.WriteFile(filepath.Join("relais-dev", "audit.db"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := ctl(t, "audit", "verify", "--public-key", pub); code != 1 || !strings.Contains(errOut, "read it with --db relais-dev/audit.db") {
		t.Fatalf("verify of an earlier version's data directory: %d %q", code, errOut)
	}
	if err := os.Rename(filepath.Join(base, "data"), "relais-dev2"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join("relais-dev2", "audit"), filepath.Join("relais-dev", "audit")); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := ctl(t, "audit", "verify", "--public-key", pub); code != 0 || !strings.HasPrefix(out, "OK: 30 records") {
		t.Fatalf("verify of the default directory: %d %q %q", code, out, errOut)
	}
}
