package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/audit/audittest"
	"github.com/relais-broker/relais/broker/audit/boltlog"
	"github.com/relais-broker/relais/broker/audit/seal"
	"github.com/relais-broker/relais/broker/audit/seglog"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/internal/devenv"
)

// oldDataDir is the data directory of a broker of an earlier version: an
// audit.db of n records with checkpoints, signed by key.
func oldDataDir(t *testing.T, key ed25519.PrivateKey, n int) string {
	t.Helper()
	dir := t.TempDir()
	log, err := boltlog.Open(filepath.Join(dir, devenv.AuditFile), boltlog.Options{SigningKey: key, CheckpointEvery: 4})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range audittest.Records(1, n) {
		if err := log.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func exportOf(t *testing.T, st interface {
	Export(context.Context, func(seal.Entry) error) error
}) []seal.Entry {
	t.Helper()
	var out []seal.Entry
	if err := st.Export(context.Background(), func(e seal.Entry) error { out = append(out, e); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestOpenBoltStoresMigratesAnOldAuditFile: the chain of audit.db is in
// audit/ entry for entry, verified, audit.db kept as audit.db.migrated,
// one INFO line with the counts; the broker's writer continues the chain.
func TestOpenBoltStoresMigratesAnOldAuditFile(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	dir := oldDataDir(t, key, 10)
	old, err := boltlog.OpenStoreReadOnly(filepath.Join(dir, devenv.AuditFile))
	if err != nil {
		t.Fatal(err)
	}
	want := exportOf(t, old)
	old.Close()
	var logs bytes.Buffer
	sts, err := openBoltStores(dir, catalog.Default(), time.Now, boltOptions{Keys: []ed25519.PublicKey{pub}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if got := exportOf(t, sts.Audit); !reflect.DeepEqual(got, want) {
		t.Fatalf("the migrated log exports %d entries, audit.db %d, or they differ", len(got), len(want))
	}
	if err := sts.Audit.Close(); err != nil {
		t.Fatal(err)
	}
	sts.Close()
	if _, err := os.Stat(filepath.Join(dir, devenv.AuditFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("audit.db is still in place: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, devenv.AuditFile+".migrated")); err != nil {
		t.Fatalf("audit.db was not kept: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "audit.tmp")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("audit.tmp left behind: %v", err)
	}
	if !strings.Contains(logs.String(), "level=INFO msg=\"audit log migrated") || !strings.Contains(logs.String(), "records=10") || strings.Count(logs.String(), "\n") != 1 {
		t.Fatalf("migration log:\n%s", logs.String())
	}
	l, err := seglog.Open(filepath.Join(dir, devenv.AuditDir), seglog.Options{SigningKey: key})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(context.Background(), audittest.Record(11)); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep, err := seglog.Verify(filepath.Join(dir, devenv.AuditDir), pub); err != nil || !rep.OK() || rep.Records != 11 {
		t.Fatalf("the continued log: %+v, %v", rep, err)
	}
	// A second start opens the directory and migrates nothing.
	logs.Reset()
	sts, err = openBoltStores(dir, catalog.Default(), time.Now, boltOptions{Keys: []ed25519.PublicKey{pub}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	sts.Audit.Close()
	sts.Close()
	if logs.Len() != 0 {
		t.Fatalf("second start logged:\n%s", logs.String())
	}
}

// TestMigrationFailureLeavesAuditDBUntouched: a copy that does not verify
// with the broker's keys (a foreign key here, or no key at all) stops the
// start with a clear message; audit.db keeps its bytes, and neither
// audit/ nor audit.tmp/ is left.
func TestMigrationFailureLeavesAuditDBUntouched(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	foreign, _, _ := ed25519.GenerateKey(rand.Reader)
	for _, tc := range []struct {
		name string
		keys []ed25519.PublicKey
		want string
	}{
		{"foreign key", []ed25519.PublicKey{foreign}, "FAILED verification at seq 4"},
		{"no key", nil, "no public key to verify the copy with"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := oldDataDir(t, key, 6)
			before, err := os.ReadFile(filepath.Join(dir, devenv.AuditFile))
			if err != nil {
				t.Fatal(err)
			}
			_, err = openBoltStores(dir, catalog.Default(), time.Now, boltOptions{Keys: tc.keys, Logger: slog.New(slog.DiscardHandler)})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "is untouched and relaisd did not start") {
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
			after, err := os.ReadFile(filepath.Join(dir, devenv.AuditFile))
			if err != nil || !bytes.Equal(before, after) {
				t.Fatalf("audit.db changed: %v", err)
			}
			for _, name := range []string{devenv.AuditDir, "audit.tmp", devenv.AuditFile + ".migrated"} {
				if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("%s exists after a failed migration: %v", name, err)
				}
			}
		})
	}
}

// TestMigrationInterruptedBetweenRenames: audit/ already renamed, audit.db
// not yet: the next start finishes when both end at the same head, and
// refuses to choose between two logs that do not.
func TestMigrationInterruptedBetweenRenames(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	dir := oldDataDir(t, key, 5)
	sts, err := openBoltStores(dir, catalog.Default(), time.Now, boltOptions{Keys: []ed25519.PublicKey{pub}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	sts.Audit.Close()
	sts.Close()
	migrated := filepath.Join(dir, devenv.AuditFile+".migrated")
	if err := os.Rename(migrated, filepath.Join(dir, devenv.AuditFile)); err != nil { // as if the second rename never ran
		t.Fatal(err)
	}
	sts, err = openBoltStores(dir, catalog.Default(), time.Now, boltOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	sts.Audit.Close()
	sts.Close()
	if _, err := os.Stat(migrated); err != nil {
		t.Fatalf("the interrupted migration was not finished: %v", err)
	}

	other := oldDataDir(t, key, 3) // a different log under the name audit.db
	if err := os.Rename(filepath.Join(other, devenv.AuditFile), filepath.Join(dir, devenv.AuditFile)); err != nil {
		t.Fatal(err)
	}
	_, err = openBoltStores(dir, catalog.Default(), time.Now, boltOptions{Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "holds both audit.db (to seq 3) and audit/ (to seq 5)") {
		t.Fatalf("two logs: %v", err)
	}
}

// TestAuditSnapshotIsTheExport: the online backup's audit file is the
// export of the directory, which verifies with the public key alone.
func TestAuditSnapshotIsTheExport(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	l, err := seglog.Open(filepath.Join(t.TempDir(), "audit"), seglog.Options{SigningKey: key, CheckpointEvery: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, r := range audittest.Records(1, 7) {
		if err := l.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	var b bytes.Buffer
	n, err := auditSnapshot{l.Store()}.WriteSnapshot(&b)
	if err != nil || n != int64(b.Len()) || n == 0 {
		t.Fatalf("snapshot: %d bytes of %d, %v", n, b.Len(), err)
	}
	rep, err := seal.VerifyExport(&b, pub)
	if err != nil || !rep.OK() || rep.Records != 7 || rep.Checkpoints < 2 {
		t.Fatalf("the snapshot verifies: %+v, %v", rep, err)
	}
}

// TestAuditKeyring: the signer's key first, then the keyring's earlier
// keys once each; no keyring file is the signer's key alone; a keyring
// that is not one is refused.
func TestAuditKeyring(t *testing.T) {
	cur, key, _ := ed25519.GenerateKey(rand.Reader)
	old, _, _ := ed25519.GenerateKey(rand.Reader)
	dir := t.TempDir()
	var ring []byte
	for _, k := range []ed25519.PublicKey{cur, old} {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		ring = append(ring, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})...)
	}
	path := filepath.Join(dir, devenv.AuditPublicKeyFile)
	if err := os.WriteFile(path, ring, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := auditKeyring(seal.Ed25519Signer(key), path)
	if err != nil || len(got) != 2 || !got[0].Equal(cur) || !got[1].Equal(old) {
		t.Fatalf("keyring: %d keys, %v", len(got), err)
	}
	if got, err := auditKeyring(seal.Ed25519Signer(key), filepath.Join(dir, "none.pub")); err != nil || len(got) != 1 || !got[0].Equal(cur) {
		t.Fatalf("no keyring file: %d keys, %v", len(got), err)
	}
	if err := os.WriteFile(path, []byte("not a key"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := auditKeyring(seal.Ed25519Signer(key), path); err == nil || !strings.Contains(err.Error(), "holds no PEM public key") {
		t.Fatalf("a file that is no keyring: %v", err)
	}
}
