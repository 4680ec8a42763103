package certs

import (
	"bytes"
	"context"
	"crypto/elliptic"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/relais-broker/relais/broker/identity"
)

func TestWriteCredential(t *testing.T) {
	t.Parallel()
	ca := newCA(t, fixedClock)
	issued, err := ca.IssueClient(context.Background(), ClientRequest{Kind: identity.KindConsumer, ID: "73282932000074"})
	if err != nil {
		t.Fatal(err)
	}
	signed, err := ca.SignClientCSR(context.Background(), ClientRequest{Kind: identity.KindConsumer, ID: "73282932000074"},
		makeCSR(t, mustECDSA(t, elliptic.P256()), identity.URI(identity.KindConsumer, "73282932000074").String()))
	if err != nil {
		t.Fatal(err)
	}
	bundle := bundleOf(t, ca)
	otherBundle := bundleOf(t, newCA(t, fixedClock))

	tests := []struct {
		name    string
		cred    *Credential
		chain   []byte
		wantKey bool
		wantCA  []byte
	}{
		{"issued with explicit chain", issued, otherBundle, true, otherBundle},
		{"issued chain from credential", issued, nil, true, bundle},
		{"csr path writes no key", signed, bundle, false, bundle},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "creds", "consumer")
			if err := WriteCredential(dir, tt.cred, tt.chain); err != nil {
				t.Fatalf("WriteCredential: %v", err)
			}
			// Writing again replaces the files in place.
			if err := WriteCredential(dir, tt.cred, tt.chain); err != nil {
				t.Fatalf("second WriteCredential: %v", err)
			}
			wantFiles := map[string]os.FileMode{CertFile: 0o644, CAFile: 0o644}
			if tt.wantKey {
				wantFiles[KeyFile] = 0o600
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != len(wantFiles) {
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				t.Fatalf("files %v, want %d (no leftover temporaries)", names, len(wantFiles))
			}
			for name, mode := range wantFiles {
				info, err := os.Stat(filepath.Join(dir, name))
				if err != nil {
					t.Fatal(err)
				}
				if info.Mode().Perm() != mode {
					t.Errorf("%s mode %04o, want %04o", name, info.Mode().Perm(), mode)
				}
			}
			if info, err := os.Stat(dir); err != nil || info.Mode().Perm() != 0o700 {
				t.Errorf("dir mode %v, %v; want 0700", info.Mode().Perm(), err)
			}
			assertFile(t, filepath.Join(dir, CertFile), tt.cred.FullChainPEM())
			assertFile(t, filepath.Join(dir, CAFile), tt.wantCA)
			if tt.wantKey {
				assertFile(t, filepath.Join(dir, KeyFile), tt.cred.KeyPEM)
			}
		})
	}
}

func TestWriteCredentialRefuses(t *testing.T) {
	t.Parallel()
	ca := newCA(t, fixedClock)
	a, err := ca.IssueClient(context.Background(), ClientRequest{Kind: identity.KindOperator, ID: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := ca.IssueClient(context.Background(), ClientRequest{Kind: identity.KindOperator, ID: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cred *Credential
	}{
		{"nil", nil},
		{"no certificate", &Credential{KeyPEM: a.KeyPEM}},
		{"key of another certificate", &Credential{CertPEM: a.CertPEM, KeyPEM: b.KeyPEM, ChainPEM: a.ChainPEM}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "out")
			err := WriteCredential(dir, tt.cred, nil)
			if err == nil {
				t.Fatal("WriteCredential succeeded")
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Fatalf("error mentions key material: %v", err)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Fatalf("directory created on refusal: %v", err)
			}
		})
	}
}

func assertFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s does not hold the expected content", filepath.Base(path))
	}
}
