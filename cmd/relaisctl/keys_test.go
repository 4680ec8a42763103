package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/relais-broker/relais/broker/audit/audittest"
	"github.com/relais-broker/relais/broker/audit/boltlog"
	"github.com/relais-broker/relais/internal/devenv"
	"github.com/relais-broker/relais/internal/keyfile"
)

func TestKeysGenerate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	if code, out, errOut := relaisctl(t, "keys", "generate", "--dir", dir); code != 0 || !strings.Contains(out, "pseudonym.key (0600)") {
		t.Fatalf("keys generate: %d %s %s", code, out, errOut)
	}
	for name, mode := range map[string]os.FileMode{devenv.AuditSigningKeyFile: 0o600, devenv.AuditPublicKeyFile: 0o644, devenv.PseudonymKeyFile: 0o600} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.Mode().Perm() != mode {
			t.Errorf("%s: %v %v, want %v", name, st, err, mode)
		}
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v", st.Mode())
	}
	if _, err := keyfile.ReadSigningKey(filepath.Join(dir, devenv.AuditSigningKeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := keyfile.ReadPseudonymKey(filepath.Join(dir, devenv.PseudonymKeyFile)); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, devenv.PseudonymKeyFile))
	if code, _, errOut := relaisctl(t, "keys", "generate", "--dir", dir); code != 1 || !strings.Contains(errOut, "never replaced") {
		t.Fatalf("second generate: %d %s", code, errOut)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, devenv.PseudonymKeyFile)); string(after) != string(before) {
		t.Fatal("the pseudonym key changed")
	}
}

// TestSigningKeyRotation: a log signed with key 1, then (after a
// rotation and a restart) key 2, then key 3, verifies with the keyring
// rotate wrote, and not with the newest key alone.
func TestSigningKeyRotation(t *testing.T) {
	keys := newKeys(t)
	db := filepath.Join(t.TempDir(), "audit.db")
	n := 0
	segment := func() {
		t.Helper()
		key, err := keyfile.ReadSigningKey(filepath.Join(keys, devenv.AuditSigningKeyFile))
		if err != nil {
			t.Fatal(err)
		}
		l, err := boltlog.Open(db, boltlog.Options{SigningKey: key, CheckpointEvery: 5})
		if err != nil {
			t.Fatal(err)
		}
		for range 10 {
			n++
			if err := l.Append(context.Background(), audittest.Record(n)); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	segment()
	first := filepath.Join(t.TempDir(), "first.pub")
	raw, _ := os.ReadFile(filepath.Join(keys, devenv.AuditPublicKeyFile))
	_ = os.WriteFile(first, raw, 0o644)
	for i := 0; i < 2; i++ {
		if code, out, errOut := relaisctl(t, "keys", "rotate", "--dir", keys); code != 0 || !strings.Contains(out, "public keys") {
			t.Fatalf("rotate: %d %s %s", code, out, errOut)
		}
		segment()
	}
	pub := filepath.Join(keys, devenv.AuditPublicKeyFile)
	ring, err := readPublicKeys([]string{pub})
	if err != nil || len(ring) != 3 {
		t.Fatalf("keyring: %d keys, %v", len(ring), err)
	}
	if st, _ := os.Stat(filepath.Join(keys, devenv.AuditSigningKeyFile)); st.Mode().Perm() != 0o600 {
		t.Fatalf("new key mode %v", st.Mode())
	}
	if code, out, errOut := ctl(t, "audit", "verify", "--db", db, "--public-key", pub); code != 0 || !strings.HasPrefix(out, "OK: 30 records") {
		t.Fatalf("verify with the keyring: %d %s %s", code, out, errOut)
	}
	// The newest key alone: the first checkpoints do not verify.
	newest := filepath.Join(t.TempDir(), "newest.pub")
	all, _ := os.ReadFile(pub)
	block := all[:strings.Index(string(all), "-----END PUBLIC KEY-----")+len("-----END PUBLIC KEY-----\n")]
	_ = os.WriteFile(newest, block, 0o644)
	if code, out, _ := ctl(t, "audit", "verify", "--db", db, "--public-key", newest); code != 1 || !strings.Contains(out, "FAILED") {
		t.Fatalf("verify with the newest key alone: %d %s", code, out)
	}
	// The first key plus the keyring's, given as two flags, verify too.
	if code, out, _ := ctl(t, "audit", "verify", "--db", db, "--public-key", newest, "--public-key", first, "--public-key", pub); code != 0 {
		t.Fatalf("several --public-key: %d %s", code, out)
	}
}
