package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/identity"
)

func TestOpenDevCAPersistsAndReloads(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "ca")
	first, err := OpenDevCA(dir, fixedClock)
	if err != nil {
		t.Fatalf("first open: %v", err)
	}
	for path, want := range map[string]os.FileMode{
		dir:                               0o700,
		filepath.Join(dir, DevCAKeyFile):  0o600,
		filepath.Join(dir, DevCACertFile): 0o644,
	} {
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Mode().Perm(); got != want {
			t.Errorf("%s mode %04o, want %04o", filepath.Base(path), got, want)
		}
	}

	root := parseCert(t, bundleOf(t, first))
	if root.Subject.CommonName != "Relais development CA — not for production" || !root.IsCA {
		t.Errorf("root subject %q, IsCA %v", root.Subject.CommonName, root.IsCA)
	}
	if !root.NotAfter.Equal(t0.AddDate(10, 0, 0)) {
		t.Errorf("root NotAfter %s, want 10 years after %s", root.NotAfter, t0)
	}

	second, err := OpenDevCA(dir, fixedClock)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if !bytes.Equal(bundleOf(t, first), bundleOf(t, second)) {
		t.Fatal("reopened dev CA has another certificate")
	}
	cred, err := second.IssueClient(context.Background(), ClientRequest{Kind: identity.KindOperator, ID: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	opts := x509.VerifyOptions{Roots: poolOf(t, bundleOf(t, first)), CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if _, err := parseCert(t, cred.CertPEM).Verify(opts); err != nil {
		t.Fatalf("certificate from the reopened CA does not verify against the first bundle: %v", err)
	}
}

func TestOpenDevCARefusesBrokenFiles(t *testing.T) {
	t.Parallel()
	otherKey := func(t *testing.T) []byte {
		dir := t.TempDir()
		if _, err := OpenDevCA(dir, fixedClock); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, DevCAKeyFile))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name   string
		breaks func(t *testing.T, dir string)
	}{
		{"corrupt certificate", func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, DevCACertFile), []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"), 0o644)
		}},
		{"certificate not pem", func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, DevCACertFile), []byte("garbage"), 0o644)
		}},
		{"trailing data after certificate", func(t *testing.T, dir string) {
			appendTo(t, filepath.Join(dir, DevCACertFile), []byte("trailing"))
		}},
		{"corrupt key", func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, DevCAKeyFile), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
		}},
		{"key of another ca", func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, DevCAKeyFile), otherKey(t), 0o600)
		}},
		{"key readable by others", func(t *testing.T, dir string) {
			if err := os.Chmod(filepath.Join(dir, DevCAKeyFile), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"key missing", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, DevCAKeyFile)); err != nil {
				t.Fatal(err)
			}
		}},
		{"certificate missing", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, DevCACertFile)); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if _, err := OpenDevCA(dir, fixedClock); err != nil {
				t.Fatal(err)
			}
			tt.breaks(t, dir)
			before := snapshot(t, dir)
			if _, err := OpenDevCA(dir, fixedClock); err == nil {
				t.Fatal("OpenDevCA succeeded on a broken CA")
			}
			after := snapshot(t, dir)
			if !maps.EqualFunc(before, after, sameFile) {
				t.Fatalf("OpenDevCA changed the directory:\nbefore %v\nafter  %v", slices.Sorted(maps.Keys(before)), slices.Sorted(maps.Keys(after)))
			}
		})
	}
}

func TestOpenDevCARefusesExpiredCA(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := OpenDevCA(dir, fixedClock); err != nil {
		t.Fatal(err)
	}
	later := func() time.Time { return t0.AddDate(11, 0, 0) }
	if _, err := OpenDevCA(dir, later); err == nil {
		t.Fatal("OpenDevCA accepted an expired CA")
	}
}

func TestIssueClient(t *testing.T) {
	t.Parallel()
	ca := newCA(t, fixedClock)
	roots := poolOf(t, bundleOf(t, ca))
	tests := []struct {
		name    string
		req     ClientRequest
		wantCN  string
		wantTTL time.Duration
	}{
		{"consumer default ttl", ClientRequest{Kind: identity.KindConsumer, ID: "73282932000074", CommonName: "Mairie d'Exemple (démo)"}, "Mairie d'Exemple (démo)", DefaultTTL},
		{"la poste consumer", ClientRequest{Kind: identity.KindConsumer, ID: "35600000049837", TTL: 30 * 24 * time.Hour}, "35600000049837", 30 * 24 * time.Hour},
		{"operator max ttl", ClientRequest{Kind: identity.KindOperator, ID: "ops.alice-1", CommonName: "Alice", TTL: MaxTTL}, "Alice", MaxTTL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cred, err := ca.IssueClient(context.Background(), tt.req)
			if err != nil {
				t.Fatalf("IssueClient: %v", err)
			}
			if _, err := tls.X509KeyPair(cred.CertPEM, cred.KeyPEM); err != nil {
				t.Fatalf("key does not match certificate: %v", err)
			}
			leaf := parseCert(t, cred.CertPEM)
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Fatalf("verify against bundle: %v", err)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
				t.Error("client certificate is also valid for server auth")
			}
			if len(leaf.URIs) != 1 || leaf.URIs[0].String() != identity.URI(tt.req.Kind, tt.req.ID).String() {
				t.Errorf("URIs %v, want exactly %s", leaf.URIs, identity.URI(tt.req.Kind, tt.req.ID))
			}
			if len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 {
				t.Errorf("unexpected SANs %v %v %v", leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses)
			}
			id, err := identity.FromCertificate(leaf)
			if err != nil {
				t.Fatalf("identity.FromCertificate: %v", err)
			}
			if want := (identity.Identity{Kind: tt.req.Kind, ID: tt.req.ID, Serial: cred.Serial}); id != want {
				t.Errorf("identity %+v, want %+v", id, want)
			}
			if leaf.Subject.CommonName != tt.wantCN || !slices.Equal(leaf.Subject.Organization, []string{"Relais dev"}) {
				t.Errorf("subject %q", leaf.Subject)
			}
			if leaf.KeyUsage != x509.KeyUsageDigitalSignature || leaf.IsCA {
				t.Errorf("KeyUsage %v IsCA %v", leaf.KeyUsage, leaf.IsCA)
			}
			if !cred.NotAfter.Equal(t0.Add(tt.wantTTL)) || !cred.NotAfter.Equal(leaf.NotAfter) || !cred.NotBefore.Equal(leaf.NotBefore) {
				t.Errorf("validity %s..%s, want until %s", cred.NotBefore, cred.NotAfter, t0.Add(tt.wantTTL))
			}
			if leaf.SerialNumber.BitLen() > 128 || cred.Serial != identity.SerialHex(leaf) {
				t.Errorf("serial %s (%d bits)", cred.Serial, leaf.SerialNumber.BitLen())
			}
			if !bytes.Equal(cred.ChainPEM, bundleOf(t, ca)) {
				t.Error("ChainPEM is not the CA certificate")
			}
		})
	}
}

func TestIssueClientSerialsDiffer(t *testing.T) {
	t.Parallel()
	ca := newCA(t, fixedClock)
	seen := map[string]bool{}
	for range 20 {
		cred, err := ca.IssueClient(context.Background(), ClientRequest{Kind: identity.KindOperator, ID: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		if seen[cred.Serial] {
			t.Fatalf("serial %s issued twice", cred.Serial)
		}
		seen[cred.Serial] = true
	}
}

func TestIssueClientRefusesBadRequests(t *testing.T) {
	t.Parallel()
	ca := newCA(t, fixedClock)
	tests := []struct {
		name      string
		req       ClientRequest
		wantSIRET bool
	}{
		{"siret bad checksum", ClientRequest{Kind: identity.KindConsumer, ID: "73282932000075"}, true},
		{"siret 13 digits", ClientRequest{Kind: identity.KindConsumer, ID: "7328293200007"}, true},
		{"siret with letters", ClientRequest{Kind: identity.KindConsumer, ID: "ABCDEFGHIJKLMN"}, true},
		{"operator upper case", ClientRequest{Kind: identity.KindOperator, ID: "Alice"}, false},
		{"operator with colon", ClientRequest{Kind: identity.KindOperator, ID: "a:b"}, false},
		{"operator too long", ClientRequest{Kind: identity.KindOperator, ID: string(bytes.Repeat([]byte("a"), 65))}, false},
		{"unknown kind", ClientRequest{Kind: "admin", ID: "alice"}, false},
		{"ttl over 90 days", ClientRequest{Kind: identity.KindOperator, ID: "alice", TTL: MaxTTL + time.Second}, false},
		{"negative ttl", ClientRequest{Kind: identity.KindOperator, ID: "alice", TTL: -time.Hour}, false},
		{"common name too long", ClientRequest{Kind: identity.KindOperator, ID: "alice", CommonName: string(bytes.Repeat([]byte("é"), 65))}, false},
		{"common name with newline", ClientRequest{Kind: identity.KindOperator, ID: "alice", CommonName: "a\nb"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ca.IssueClient(context.Background(), tt.req)
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("IssueClient = %v, want ErrInvalidRequest", err)
			}
			if tt.wantSIRET && !errors.Is(err, ErrInvalidSIRET) {
				t.Fatalf("IssueClient = %v, want ErrInvalidSIRET", err)
			}
		})
	}
}

func TestIssueServer(t *testing.T) {
	t.Parallel()
	ca := newCA(t, fixedClock)
	roots := poolOf(t, bundleOf(t, ca))
	dns := []string{"localhost", "relais.example.gouv.fr"}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	cred, err := ca.IssueServer(context.Background(), dns, ips, 0)
	if err != nil {
		t.Fatalf("IssueServer: %v", err)
	}
	if _, err := tls.X509KeyPair(cred.CertPEM, cred.KeyPEM); err != nil {
		t.Fatal(err)
	}
	leaf := parseCert(t, cred.CertPEM)
	if !slices.Equal(leaf.DNSNames, dns) || len(leaf.IPAddresses) != 2 || len(leaf.URIs) != 0 {
		t.Errorf("SANs dns=%v ips=%v uris=%v", leaf.DNSNames, leaf.IPAddresses, leaf.URIs)
	}
	if !cred.NotAfter.Equal(t0.Add(DefaultTTL)) {
		t.Errorf("NotAfter %s", cred.NotAfter)
	}
	for _, name := range []string{"localhost", "relais.example.gouv.fr", "127.0.0.1", "::1"} {
		opts := x509.VerifyOptions{Roots: roots, DNSName: name, CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		if _, err := leaf.Verify(opts); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "other.example", CurrentTime: t0}); err == nil {
		t.Error("server certificate valid for a name it does not carry")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("server certificate also valid for client auth")
	}
}

func TestIssueServerRefusesBadRequests(t *testing.T) {
	t.Parallel()
	ca := newCA(t, fixedClock)
	tests := []struct {
		name string
		dns  []string
		ips  []net.IP
		ttl  time.Duration
	}{
		{"no names", nil, nil, 0},
		{"wildcard", []string{"*.example.org"}, nil, 0},
		{"empty name", []string{""}, nil, 0},
		{"name with space", []string{"a b"}, nil, 0},
		{"bad ip", []string{"localhost"}, []net.IP{{1, 2, 3}}, 0},
		{"ttl over 90 days", []string{"localhost"}, nil, MaxTTL + time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := ca.IssueServer(context.Background(), tt.dns, tt.ips, tt.ttl); !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("IssueServer = %v, want ErrInvalidRequest", err)
			}
		})
	}
}

func TestDevCAHonoursCanceledContext(t *testing.T) {
	t.Parallel()
	ca := newCA(t, fixedClock)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := ClientRequest{Kind: identity.KindOperator, ID: "alice"}
	if _, err := ca.IssueClient(ctx, req); !errors.Is(err, context.Canceled) {
		t.Errorf("IssueClient = %v", err)
	}
	if _, err := ca.IssueServer(ctx, []string{"localhost"}, nil, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("IssueServer = %v", err)
	}
	if _, err := ca.TrustBundle(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("TrustBundle = %v", err)
	}
}

func write(t *testing.T, path string, data []byte, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}

func appendTo(t *testing.T, path string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
}

// fileState is what a test checks a refused open left untouched.
type fileState struct {
	data []byte
	mode os.FileMode
}

func snapshot(t *testing.T, dir string) map[string]fileState {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]fileState{}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		info, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = fileState{data, info.Mode()}
	}
	return out
}

func sameFile(a, b fileState) bool {
	return a.mode == b.mode && bytes.Equal(a.data, b.data)
}
