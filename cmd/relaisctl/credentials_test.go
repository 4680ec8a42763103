package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/relais-broker/relais/certs"
)

// TestIssueRefusesAnUnregisteredSIRET: a certificate for a body the
// registry does not hold is refused (nothing written) unless --force.
func TestIssueRefusesAnUnregisteredSIRET(t *testing.T) {
	t.Setenv(envConfig, filepath.Join(t.TempDir(), "none.yaml"))
	b := startBroker(t, t.TempDir(), newKeys(t), t.TempDir())
	const siret = "21990000100005"
	out := filepath.Join(t.TempDir(), "mairie")
	code, _, errOut := b.ctl(t, "credentials", "issue", "--dev-ca", b.caDir, "--consumer", siret, "--out", out)
	if code != 1 || !strings.Contains(errOut, "consumer 21990000100005 is not in the broker's registry") || !strings.Contains(errOut, "--force") {
		t.Fatalf("unregistered: %d %s", code, errOut)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("a refused issue wrote %s: %v", out, err)
	}
	// Without a reachable broker the check cannot be made: refused too.
	code, _, errOut = relaisctl(t, "credentials", "issue", "--dev-ca", b.caDir, "--consumer", siret, "--out", out, "--admin-addr", "127.0.0.1:1", "--operator-dir", b.opDir)
	if code != 1 || !strings.Contains(errOut, "cannot check") {
		t.Fatalf("no broker: %d %s", code, errOut)
	}
	if code, stdout, errOut := b.ctl(t, "credentials", "issue", "--dev-ca", b.caDir, "--consumer", siret, "--out", out, "--force"); code != 0 || !strings.Contains(stdout, "issued") {
		t.Fatalf("--force: %d %s", code, errOut)
	}
	b.seed(t, siret, 0)
	out2 := filepath.Join(t.TempDir(), "mairie2")
	if code, _, errOut := b.ctl(t, "credentials", "issue", "--dev-ca", b.caDir, "--consumer", siret, "--out", out2); code != 0 || strings.Contains(errOut, "warning") {
		t.Fatalf("registered: %d %s", code, errOut)
	}
	if code, out, _ := b.ctl(t, "credentials", "list", "--consumer", siret); code != 0 || strings.Count(out, siret) != 2 {
		t.Fatalf("both certificates recorded:\n%s", out)
	}
}

// TestSignLeavesADirectoryRenewUses: the holder's key made next to the
// CSR ends up as key.pem of --out, so the directory is a whole credential.
func TestSignLeavesADirectoryRenewUses(t *testing.T) {
	t.Setenv(envConfig, filepath.Join(t.TempDir(), "none.yaml"))
	b := startBroker(t, t.TempDir(), newKeys(t), t.TempDir())
	const siret = "21990000100005"
	b.seed(t, siret, 0)
	holder := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	_ = os.WriteFile(filepath.Join(holder, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	uri, _ := url.Parse("urn:relais:consumer:" + siret)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "Mairie"}, URIs: []*url.URL{uri}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csrFile := filepath.Join(holder, "req.csr")
	_ = os.WriteFile(csrFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}), 0o644)
	out := filepath.Join(t.TempDir(), "mairie")
	if code, _, errOut := b.ctl(t, "credentials", "sign", "--dev-ca", b.caDir, "--consumer", siret, "--csr", csrFile, "--out", out); code != 0 || strings.Contains(errOut, "note:") {
		t.Fatalf("sign: %d %s", code, errOut)
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(out, certs.CertFile), filepath.Join(out, certs.KeyFile)); err != nil {
		t.Fatalf("the signed directory is no credential: %v", err)
	}
	if st, _ := os.Stat(filepath.Join(out, certs.KeyFile)); st.Mode().Perm() != 0o600 {
		t.Fatalf("key.pem mode %v", st.Mode())
	}
	// What renew --dir loads first: the whole credential of the directory.
	if _, conn, err := dialWith(out, b.addr, "localhost"); err != nil {
		t.Fatalf("renew --dir would fail: %v", err)
	} else {
		conn.Close()
	}
	// Another key than the CSR's is refused, nothing written.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	oder, _ := x509.MarshalPKCS8PrivateKey(other)
	otherFile := filepath.Join(t.TempDir(), "other.pem")
	_ = os.WriteFile(otherFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: oder}), 0o600)
	out2 := filepath.Join(t.TempDir(), "mismatch")
	if code, _, errOut := b.ctl(t, "credentials", "sign", "--dev-ca", b.caDir, "--consumer", siret, "--csr", csrFile, "--key", otherFile, "--out", out2); code != 1 || !strings.Contains(errOut, "not the one of the CSR") {
		t.Fatalf("mismatched key: %d %s", code, errOut)
	}
	if _, err := os.Stat(out2); !os.IsNotExist(err) {
		t.Fatalf("a refused sign wrote %s", out2)
	}
}
