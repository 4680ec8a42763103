package vaultca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/certs"
	"github.com/relais-broker/relais/certs/vaultca"
	"github.com/relais-broker/relais/internal/netcut"
	"github.com/relais-broker/relais/internal/vaultdev"
)

const (
	siretA = "21990000100005"
	siretB = "21990000200003"
)

// setup starts a real dev Vault, bootstraps the PKI with the root token
// and onboards consumer A; it returns an issuer logged in with the root
// token (operators' view).
func setup(t *testing.T) (*vaultdev.Server, *vaultca.CA) {
	t.Helper()
	ctx := context.Background()
	v := vaultdev.Start(t)
	ca, err := vaultca.New(ctx, vaultca.Config{Addr: v.Addr, Token: v.Token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ca.Close)
	if _, err := vaultca.Bootstrap(ctx, ca.Client(), vaultca.BootstrapOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := vaultca.EnsureConsumer(ctx, ca.Client(), "", siretA, 0); err != nil {
		t.Fatal(err)
	}
	return v, ca
}

func verify(t *testing.T, ca *vaultca.CA, cred *certs.Credential, usage x509.ExtKeyUsage) *x509.Certificate {
	t.Helper()
	bundle, err := ca.TrustBundle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AppendCertsFromPEM(bundle)
	inter.AppendCertsFromPEM(cred.ChainPEM)
	block, _ := pem.Decode(cred.CertPEM)
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		t.Fatalf("issued certificate does not verify against the trust bundle: %v", err)
	}
	return leaf
}

func TestBootstrapIsIdempotent(t *testing.T) {
	ctx := context.Background()
	v := vaultdev.Start(t)
	ca, err := vaultca.New(ctx, vaultca.Config{Addr: v.Addr, Token: v.Token})
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	first, err := vaultca.Bootstrap(ctx, ca.Client(), vaultca.BootstrapOptions{ServerNames: []string{"relais.example.gouv.fr"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Changes) < 8 || first.RoleID == "" || len(first.RootPEM) == 0 {
		t.Fatalf("first bootstrap: %+v", first)
	}
	t.Logf("first run: %s", strings.Join(first.Changes, "; "))
	second, err := vaultca.Bootstrap(ctx, ca.Client(), vaultca.BootstrapOptions{ServerNames: []string{"relais.example.gouv.fr"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(second.Changes) != 0 || second.RoleID != first.RoleID || string(second.RootPEM) != string(first.RootPEM) {
		t.Fatalf("second bootstrap changed things: %v", second.Changes)
	}
	// Fewer server names (a dev broker's) take none away.
	third, err := vaultca.Bootstrap(ctx, ca.Client(), vaultca.BootstrapOptions{})
	if err != nil || len(third.Changes) != 0 {
		t.Fatalf("bootstrap without server names: %v, %v", third, err)
	}
	if _, err := ca.IssueServer(ctx, []string{"relais.example.gouv.fr"}, nil, time.Hour); err != nil {
		t.Fatalf("server name lost: %v", err)
	}
	changed, err := vaultca.EnsureConsumer(ctx, ca.Client(), "", siretA, 0)
	if err != nil || !changed {
		t.Fatalf("first EnsureConsumer: %v, %v", changed, err)
	}
	if changed, err := vaultca.EnsureConsumer(ctx, ca.Client(), "", siretA, 0); err != nil || changed {
		t.Fatalf("second EnsureConsumer: %v, %v", changed, err)
	}
}

func TestIssueAndRoleConstraints(t *testing.T) {
	ctx := context.Background()
	_, ca := setup(t)
	cred, err := ca.IssueClient(ctx, certs.ClientRequest{Kind: identity.KindConsumer, ID: siretA, CommonName: "Mairie d'Exemple-sur-Loire", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	leaf := verify(t, ca, cred, x509.ExtKeyUsageClientAuth)
	id, err := identity.FromCertificate(leaf)
	if err != nil || id.ID != siretA || leaf.Subject.CommonName != "Mairie d'Exemple-sur-Loire" || len(leaf.DNSNames) != 0 {
		t.Fatalf("leaf: %v %v cn=%q dns=%v", id, err, leaf.Subject.CommonName, leaf.DNSNames)
	}
	if len(cred.KeyPEM) == 0 || cred.Serial != identity.SerialHex(leaf) {
		t.Fatal("credential without key or with a wrong serial")
	}
	// Vault itself refuses another SIRET on A's role: call the API
	// directly, bypassing our own checks.
	_, err = ca.Client().Logical().Write("relais-pki/issue/"+vaultca.ConsumerRole(siretA), map[string]any{
		"common_name": "x", "uri_sans": "urn:relais:consumer:" + siretB, "exclude_cn_from_sans": true,
	})
	if err == nil || !strings.Contains(err.Error(), "not valid for this role") {
		t.Fatalf("A's role issued B's identity: %v", err)
	}
	_, err = ca.Client().Logical().Write("relais-pki/issue/"+vaultca.ConsumerRole(siretA), map[string]any{
		"common_name": "x", "uri_sans": "urn:relais:consumer:" + siretA, "alt_names": "evil.example", "exclude_cn_from_sans": true,
	})
	if err == nil {
		t.Fatal("A's role issued a DNS SAN")
	}
	// B is not onboarded: no role, no certificate.
	if _, err := ca.IssueClient(ctx, certs.ClientRequest{Kind: identity.KindConsumer, ID: siretB}); !errors.Is(err, certs.ErrInvalidRequest) {
		t.Fatalf("issuing for a consumer without a role: %v", err)
	}
	server, err := ca.IssueServer(ctx, []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	verify(t, ca, server, x509.ExtKeyUsageServerAuth)
	op, err := ca.IssueClient(ctx, certs.ClientRequest{Kind: identity.KindOperator, ID: "alice", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	verify(t, ca, op, x509.ExtKeyUsageClientAuth)
}

func csr(t *testing.T, key any, uri string) []byte {
	t.Helper()
	u, _ := url.Parse(uri)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}, URIs: []*url.URL{u}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func TestSignCSR(t *testing.T) {
	ctx := context.Background()
	_, ca := setup(t)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	req := certs.ClientRequest{Kind: identity.KindConsumer, ID: siretA, CommonName: "Mairie A", TTL: time.Hour}
	for _, key := range []any{ec, rsa2048} {
		cred, err := ca.SignClientCSR(ctx, req, csr(t, key, "urn:relais:consumer:"+siretA))
		if err != nil {
			t.Fatal(err)
		}
		if len(cred.KeyPEM) != 0 {
			t.Fatal("a signed CSR came back with a key")
		}
		verify(t, ca, cred, x509.ExtKeyUsageClientAuth)
	}
	for name, csrPEM := range map[string][]byte{
		"foreign identity": csr(t, ec, "urn:relais:consumer:"+siretB),
		"RSA 1024":         csr(t, rsa1024, "urn:relais:consumer:"+siretA),
		"garbage":          []byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"),
	} {
		if _, err := ca.SignClientCSR(ctx, req, csrPEM); !errors.Is(err, certs.ErrInvalidCSR) {
			t.Errorf("%s: %v, want ErrInvalidCSR", name, err)
		}
	}
}

func TestRevocationReachesTheCRL(t *testing.T) {
	ctx := context.Background()
	_, ca := setup(t)
	issue := func() *certs.Credential {
		c, err := ca.IssueClient(ctx, certs.ClientRequest{Kind: identity.KindConsumer, ID: siretA, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	viaUs, direct, kept := issue(), issue(), issue()
	if err := ca.Revoke(ctx, viaUs.Serial); err != nil {
		t.Fatal(err)
	}
	if err := ca.Revoke(ctx, viaUs.Serial); err != nil {
		t.Fatalf("revoking twice: %v", err)
	}
	// Revoked straight in Vault, as an operator might.
	block, _ := pem.Decode(direct.CertPEM)
	leaf, _ := x509.ParseCertificate(block.Bytes)
	colon := make([]string, len(leaf.SerialNumber.Bytes()))
	for i, b := range leaf.SerialNumber.Bytes() {
		colon[i] = fmt.Sprintf("%02x", b)
	}
	if _, err := ca.Client().Logical().Write("relais-pki/revoke", map[string]any{"serial_number": strings.Join(colon, ":")}); err != nil {
		t.Fatal(err)
	}
	revoked, err := ca.RevokedSerials(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(revoked, viaUs.Serial) || !slices.Contains(revoked, direct.Serial) || slices.Contains(revoked, kept.Serial) {
		t.Fatalf("CRL serials %v; want %s and %s, not %s", revoked, viaUs.Serial, direct.Serial, kept.Serial)
	}
	serials, err := ca.SerialsFor(ctx, siretA)
	if err != nil || !slices.Contains(serials, kept.Serial) {
		t.Fatalf("SerialsFor: %v, %v", serials, err)
	}
	if err := ca.Revoke(ctx, "abcdef"); !errors.Is(err, certs.ErrInvalidRequest) {
		t.Fatalf("unknown serial: %v", err)
	}
}

func TestRotateIssuerKeepsTrust(t *testing.T) {
	ctx := context.Background()
	_, ca := setup(t)
	bundleBefore, _ := ca.TrustBundle(ctx)
	before, err := ca.IssueClient(ctx, certs.ClientRequest{Kind: identity.KindConsumer, ID: siretA, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.RotateIssuer(ctx); err != nil {
		t.Fatal(err)
	}
	after, err := ca.IssueClient(ctx, certs.ClientRequest{Kind: identity.KindConsumer, ID: siretA, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	bundleAfter, _ := ca.TrustBundle(ctx)
	if string(bundleBefore) != string(bundleAfter) {
		t.Fatal("rotating the intermediate changed the trust bundle")
	}
	l1, l2 := verify(t, ca, before, x509.ExtKeyUsageClientAuth), verify(t, ca, after, x509.ExtKeyUsageClientAuth)
	if string(l1.AuthorityKeyId) == string(l2.AuthorityKeyId) {
		t.Fatal("the certificate after rotation is signed by the old intermediate")
	}
	// Revocations of both intermediates are still read.
	for _, c := range []*certs.Credential{before, after} {
		if err := ca.Revoke(ctx, c.Serial); err != nil {
			t.Fatal(err)
		}
	}
	revoked, err := ca.RevokedSerials(ctx)
	if err != nil || !slices.Contains(revoked, before.Serial) || !slices.Contains(revoked, after.Serial) {
		t.Fatalf("CRLs after rotation: %v, %v", revoked, err)
	}
}

func TestVaultUnavailableThenBack(t *testing.T) {
	ctx := context.Background()
	v, _ := setup(t)
	proxy, err := netcut.New(strings.TrimPrefix(v.Addr, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	ca, err := vaultca.New(ctx, vaultca.Config{Addr: "http://" + proxy.Addr(), Token: v.Token, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	req := certs.ClientRequest{Kind: identity.KindConsumer, ID: siretA, TTL: time.Hour}
	if _, err := ca.IssueClient(ctx, req); err != nil {
		t.Fatal(err)
	}
	proxy.Cut()
	_, err = ca.IssueClient(ctx, req)
	if !errors.Is(err, certs.ErrIssuerUnavailable) || strings.Contains(err.Error(), v.Token) {
		t.Fatalf("issuing with Vault cut off: %v", err)
	}
	if _, err := ca.RevokedSerials(ctx); !errors.Is(err, certs.ErrIssuerUnavailable) {
		t.Fatalf("CRL with Vault cut off: %v", err)
	}
	proxy.Restore()
	if _, err := ca.IssueClient(ctx, req); err != nil {
		t.Fatalf("issuing once Vault is back, same client: %v", err)
	}
}

func TestAppRoleAndLeastPrivilege(t *testing.T) {
	ctx := context.Background()
	v, root := setup(t)
	res, err := vaultca.Bootstrap(ctx, root.Client(), vaultca.BootstrapOptions{NewSecretID: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.SecretID == "" || strings.Contains(strings.Join(res.Changes, " "), res.SecretID) {
		t.Fatal("no secret id, or the secret id leaked into the change list")
	}
	broker, err := vaultca.New(ctx, vaultca.Config{Addr: v.Addr, AppRoleID: res.RoleID, AppRoleSecretID: res.SecretID})
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := broker.SignClientCSR(ctx, certs.ClientRequest{Kind: identity.KindConsumer, ID: siretA, TTL: time.Hour}, csr(t, ec, "urn:relais:consumer:"+siretA)); err != nil {
		t.Fatalf("broker signing a renewal: %v", err)
	}
	if _, err := broker.IssueServer(ctx, []string{"localhost"}, nil, time.Hour); err != nil {
		t.Fatalf("broker issuing its own certificate: %v", err)
	}
	if _, err := broker.RevokedSerials(ctx); err != nil {
		t.Fatalf("broker reading CRLs: %v", err)
	}
	// The broker cannot create roles (onboarding is an operator's act)
	// nor rotate the intermediate.
	if _, err := vaultca.EnsureConsumer(ctx, broker.Client(), "", siretB, 0); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("broker creating a role: %v", err)
	}
	if _, err := broker.RotateIssuer(ctx); err == nil {
		t.Fatal("broker rotated the issuer")
	}
	if _, err := vaultca.New(ctx, vaultca.Config{Addr: v.Addr, AppRoleID: res.RoleID, AppRoleSecretID: "wrong"}); err == nil {
		t.Fatal("login with a wrong secret id")
	}
}
