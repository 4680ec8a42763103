package seglog_test

import (
	"context"
	"crypto/ed25519"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/relais-broker/relais/broker/audit/auditlog"
	"github.com/relais-broker/relais/broker/audit/audittest"
	"github.com/relais-broker/relais/broker/audit/boltlog"
	"github.com/relais-broker/relais/broker/audit/seglog"
	"github.com/relais-broker/relais/internal/keyfile"
)

// TestMigrateABoltFile copies boltlog's v1 test file (written before
// seal existed: a purge, checkpoints) into a segment directory: the
// export is entry for entry the same, the directory verifies with the
// old key and the exported checkpoints, and the chain continues.
func TestMigrateABoltFile(t *testing.T) {
	pub, err := keyfile.ReadPublicKey("../boltlog/testdata/v1-audit.pub.pem")
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "audit.db")
	raw, err := os.ReadFile("../boltlog/testdata/v1-audit.db")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	old, err := boltlog.OpenStoreReadOnly(src)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	dir := filepath.Join(t.TempDir(), "audit")
	st, err := seglog.OpenStore(dir, seglog.StoreOptions{SegmentSize: 8 << 10})
	if err != nil {
		t.Fatal(err)
	}
	n, err := auditlog.Copy(context.Background(), st, old.Export)
	if err != nil || n != 41 {
		t.Fatalf("copy: %d records, %v", n, err)
	}
	if got, want := audittest.Entries(t, st), audittest.Entries(t, old); !reflect.DeepEqual(got, want) {
		t.Fatalf("the copy exports %d entries, the original %d, or they differ", len(got), len(want))
	}
	if _, err := auditlog.Copy(context.Background(), st, old.Export); err == nil {
		t.Fatal("copied into a log that is not empty")
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := seglog.Verify(dir, pub)
	if err != nil || !rep.OK() || rep.FirstSeq != 13 || rep.LastSeq != 53 || rep.Records != 41 || rep.Checkpoints != 6 {
		t.Fatalf("migrated log: %+v, %v", rep, err)
	}
	cps, err := os.Open("../boltlog/testdata/v1-checkpoints.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer cps.Close()
	if rep, err := seglog.VerifyWith(dir, pub, cps); err != nil || !rep.OK() {
		t.Fatalf("migrated log against the exported checkpoints: %+v, %v", rep, err)
	}
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i + 7)
	}
	l, err := seglog.Open(dir, seglog.Options{SigningKey: ed25519.NewKeyFromSeed(seed)})
	if err != nil {
		t.Fatal(err)
	}
	for i := 54; i <= 55; i++ {
		if err := l.Append(context.Background(), audittest.Record(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep, err := seglog.Verify(dir, pub); err != nil || !rep.OK() || rep.FirstSeq != 13 || rep.LastSeq != 55 {
		t.Fatalf("migrated log continued: %+v, %v", rep, err)
	}
	var out io.Writer = io.Discard
	if n, err := seglog.ExportDir(context.Background(), dir, out); err != nil || n < 43 {
		t.Fatalf("export: %d, %v", n, err)
	}
}
