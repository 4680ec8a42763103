package main_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/certs"
	"github.com/relais-broker/relais/internal/netcut"
	"github.com/relais-broker/relais/internal/vaultdev"
)

// crlRefresh is the CRL refresh interval the Vault-backed broker runs with
// in these tests.
const crlRefresh = time.Second

// vaultShell runs a command line with grpcurl and relaisctl on PATH and
// the Vault address and token in the environment, as an operator would.
func vaultShell(t *testing.T, v *vaultdev.Server, addr, line string) (string, error) {
	t.Helper()
	t.Setenv("VAULT_ADDR", addr)
	t.Setenv("VAULT_TOKEN", v.Token)
	return shell(t, line)
}

// TestVaultLifecycle runs the credential lifecycle against a real Vault
// with real processes: bootstrap, first call, foreign CA, revocation
// through relaisctl and directly in Vault, expiry, Vault unavailable.
func TestVaultLifecycle(t *testing.T) {
	v := vaultdev.Start(t)
	// Vault is reached through a proxy the test can cut, keeping its state.
	proxy, err := netcut.New(strings.TrimPrefix(v.Addr, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	vaultAddr := "http://" + proxy.Addr()

	out, err := vaultShell(t, v, vaultAddr, "relaisctl vault init --server-names relais.test")
	if err != nil || !strings.Contains(out, "generated the root CA") {
		t.Fatalf("vault init: %v\n%s", err, out)
	}
	out, err = vaultShell(t, v, vaultAddr, "relaisctl vault init --server-names relais.test")
	if err != nil || !strings.Contains(out, "nothing changed") {
		t.Fatalf("second vault init must change nothing: %v\n%s", err, out)
	}

	t.Setenv("VAULT_TOKEN", v.Token)
	d := startDevIn(t, t.TempDir(), "--vault-addr", vaultAddr, "--crl-refresh", crlRefresh.String())
	vdir := filepath.Join(d.dataDir, "vault")
	if out, err := shell(t, d.firstCall); err != nil || !strings.Contains(out, `"value": 755`) {
		t.Fatalf("first call with a Vault-issued credential: %v\n%s", err, out)
	}
	checkIssuedByVault(t, filepath.Join(vdir, "consumers", "mairie-exemple", "cert.pem"))

	t.Run("certificate from another CA is refused at the handshake", func(t *testing.T) {
		other, err := certs.OpenDevCA(t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		cred, err := other.IssueClient(context.Background(), certs.ClientRequest{Kind: identity.KindConsumer, ID: "21990000100005", TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := certs.WriteCredential(dir, cred, nil); err != nil {
			t.Fatal(err)
		}
		out, err := shell(t, credentialCall(d, vdir, dir))
		if err == nil || !strings.Contains(out, "certificate") {
			t.Fatalf("foreign CA accepted: %v\n%s", err, out)
		}
	})

	t.Run("revoked through relaisctl: the next call is refused", func(t *testing.T) {
		dir := t.TempDir()
		serial := issueWithRelaisctl(t, v, vaultAddr, dir, "1h")
		if out, err := shell(t, credentialCall(d, vdir, dir)); err != nil {
			t.Fatalf("call before revocation: %v\n%s", err, out)
		}
		start := time.Now()
		out, err := shell(t, fmt.Sprintf("relaisctl credentials revoke %s --admin-addr %s --operator-dir %s", serial, d.adminAddr, filepath.Join(vdir, "operators", "admin")))
		if err != nil {
			t.Fatalf("revoke: %v\n%s", err, out)
		}
		out, err = shell(t, credentialCall(d, vdir, dir))
		if err == nil {
			t.Fatalf("revoked credential still accepted:\n%s", out)
		}
		t.Logf("revoked through relaisctl: refused %s after the revoke command started (two process starts included)", time.Since(start).Round(time.Millisecond))
	})

	t.Run("revoked directly in Vault: refused within the CRL refresh interval", func(t *testing.T) {
		dir := t.TempDir()
		serial := issueWithRelaisctl(t, v, vaultAddr, dir, "1h")
		if out, err := shell(t, credentialCall(d, vdir, dir)); err != nil {
			t.Fatalf("call before revocation: %v\n%s", err, out)
		}
		start := time.Now()
		if out, err := exec.Command(vaultdev.Binary(), "write", "-address="+v.Addr, "relais-pki/revoke", "serial_number="+colonSerial(serial)).CombinedOutput(); err != nil {
			t.Fatalf("vault revoke: %v\n%s", err, out)
		}
		for {
			if _, err := shell(t, credentialCall(d, vdir, dir)); err != nil {
				break
			}
			if time.Since(start) > 3*crlRefresh+5*time.Second {
				t.Fatalf("still accepted %s after a revocation in Vault (CRL refresh %s)", time.Since(start), crlRefresh)
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("revoked in Vault: refused %s later (CRL refresh interval %s)", time.Since(start).Round(time.Millisecond), crlRefresh)
	})

	t.Run("expired certificate is refused", func(t *testing.T) {
		dir := t.TempDir()
		issueWithRelaisctl(t, v, vaultAddr, dir, "3s")
		if out, err := shell(t, credentialCall(d, vdir, dir)); err != nil {
			t.Fatalf("call before expiry: %v\n%s", err, out)
		}
		time.Sleep(4 * time.Second)
		out, err := shell(t, credentialCall(d, vdir, dir))
		if err == nil || !strings.Contains(out, "certificate") {
			t.Fatalf("expired credential: %v\n%s", err, out)
		}
	})

	t.Run("Vault unavailable: calls go on, renewal fails clearly, then resumes", func(t *testing.T) {
		limited := filepath.Join(vdir, "consumers", "ccas-limite")
		proxy.Cut()
		defer proxy.Restore()
		if out, err := shell(t, credentialCall(d, vdir, limited)); err != nil {
			t.Fatalf("call with a valid certificate while Vault is down: %v\n%s", err, out)
		}
		out, err := shell(t, fmt.Sprintf("relaisctl credentials renew --dir %s --broker %s 2>&1", limited, d.addr))
		if err == nil || !strings.Contains(out, "Unavailable") || !strings.Contains(out, "issuer") {
			t.Fatalf("renewal while Vault is down: %v\n%s", err, out)
		}
		proxy.Restore()
		out, err = shell(t, fmt.Sprintf("relaisctl credentials renew --dir %s --broker %s", limited, d.addr))
		if err != nil {
			t.Fatalf("renewal once Vault is back, same broker process: %v\n%s", err, out)
		}
		if out, err := shell(t, credentialCall(d, vdir, limited)); err != nil {
			t.Fatalf("call with the renewed credential: %v\n%s", err, out)
		}
	})
}

// issueWithRelaisctl issues a full-consumer credential into dir through
// Vault and returns its serial.
func issueWithRelaisctl(t *testing.T, v *vaultdev.Server, vaultAddr, dir, ttl string) string {
	t.Helper()
	out, err := vaultShell(t, v, vaultAddr, fmt.Sprintf("relaisctl credentials issue --force --consumer 21990000100005 --name 'Mairie test' --ttl %s --out %s", ttl, dir))
	if err != nil {
		t.Fatalf("issue: %v\n%s", err, out)
	}
	f := strings.Fields(out)
	for i, w := range f {
		if w == "serial" && i+1 < len(f) {
			return strings.TrimSuffix(f[i+1], ",")
		}
	}
	t.Fatalf("no serial in %q", out)
	return ""
}

// credentialCall is the printed first call made with the credential in dir
// and the trust bundle of vdir.
func credentialCall(d *devBroker, vdir, dir string) string {
	line := strings.Replace(d.firstCall, filepath.Join(vdir, "consumers", "mairie-exemple", "cert.pem"), filepath.Join(dir, "cert.pem"), 1)
	line = strings.Replace(line, filepath.Join(vdir, "consumers", "mairie-exemple", "key.pem"), filepath.Join(dir, "key.pem"), 1)
	if strings.HasSuffix(dir, "ccas-limite") {
		line = strings.Replace(line, "tarification_sociale", "aide_sociale_facultative", 1)
		line = strings.Replace(line, `"recipient":"21990000100005"`, `"recipient":"21990000200003"`, 1)
	}
	return line
}

func colonSerial(hexSerial string) string {
	if len(hexSerial)%2 == 1 {
		hexSerial = "0" + hexSerial
	}
	var parts []string
	for i := 0; i < len(hexSerial); i += 2 {
		parts = append(parts, hexSerial[i:i+2])
	}
	return strings.Join(parts, ":")
}

func checkIssuedByVault(t *testing.T, path string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, rest := pem.Decode(raw)
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(leaf.Issuer.CommonName, "Relais Issuing CA") {
		t.Fatalf("demo credential issued by %q, not the Vault intermediate", leaf.Issuer.CommonName)
	}
	if b, _ := pem.Decode(rest); b == nil {
		t.Fatal("cert.pem does not carry the intermediate after the leaf")
	}
}
