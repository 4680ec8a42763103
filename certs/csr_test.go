package certs

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net"
	"testing"

	"github.com/relais-broker/relais/broker/identity"
)

func TestSignClientCSR(t *testing.T) {
	t.Parallel()
	ca := newCA(t, fixedClock)
	roots := poolOf(t, bundleOf(t, ca))

	const siret = "73282932000074"
	self := identity.URI(identity.KindConsumer, siret).String()
	other := identity.URI(identity.KindConsumer, "35600000000048").String()
	req := ClientRequest{Kind: identity.KindConsumer, ID: siret, CommonName: "Mairie"}

	p256 := mustECDSA(t, elliptic.P256())
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa2048, rsa1024 := mustRSA(t, 2048), mustRSA(t, 1024)

	good := makeCSR(t, p256, self)
	tampered := tamper(t, good)

	tests := []struct {
		name    string
		req     ClientRequest
		csr     []byte
		key     crypto.Signer // whose public key the certificate must carry
		wantErr error
	}{
		{"ecdsa p-256", req, good, p256, nil},
		{"ecdsa p-384", req, makeCSR(t, mustECDSA(t, elliptic.P384()), self), nil, nil},
		{"ed25519", req, makeCSR(t, edKey, self), edKey, nil},
		{"rsa 2048", req, makeCSR(t, rsa2048, self), rsa2048, nil},
		{"operator", ClientRequest{Kind: identity.KindOperator, ID: "alice"}, makeCSR(t, p256, identity.URI(identity.KindOperator, "alice").String()), p256, nil},
		{"another siret", req, makeCSR(t, p256, other), nil, ErrInvalidCSR},
		{"identity plus another", req, makeCSR(t, p256, self, other), nil, ErrInvalidCSR},
		{"no identity", req, makeCSR(t, p256), nil, ErrInvalidCSR},
		{"same id other kind", ClientRequest{Kind: identity.KindOperator, ID: "73282932000074"}, good, nil, ErrInvalidCSR},
		{"dns san", req, csrWithDNS(t, p256, self), nil, ErrInvalidCSR},
		{"rsa 1024", req, makeCSR(t, rsa1024, self), nil, ErrInvalidCSR},
		{"ecdsa p-224", req, makeCSR(t, mustECDSA(t, elliptic.P224()), self), nil, ErrInvalidCSR},
		{"garbage", req, []byte("not a csr"), nil, ErrInvalidCSR},
		{"garbage in pem", req, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte("junk")}), nil, ErrInvalidCSR},
		{"tampered signature", req, tampered, nil, ErrInvalidCSR},
		{"certificate instead of csr", req, bundleOf(t, ca), nil, ErrInvalidCSR},
		{"trailing data", req, append(append([]byte(nil), good...), "junk"...), nil, ErrInvalidCSR},
		{"oversized", req, make([]byte, maxCSRSize+1), nil, ErrInvalidCSR},
		{"invalid siret in request", ClientRequest{Kind: identity.KindConsumer, ID: "73282932000075"}, good, nil, ErrInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cred, err := ca.SignClientCSR(context.Background(), tt.req, tt.csr)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("SignClientCSR = %v, want %v", err, tt.wantErr)
				}
				if cred != nil {
					t.Fatal("credential returned with an error")
				}
				t.Logf("refused: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("SignClientCSR: %v", err)
			}
			if len(cred.KeyPEM) != 0 {
				t.Error("KeyPEM set on the CSR path")
			}
			leaf := parseCert(t, cred.CertPEM)
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Fatalf("verify: %v", err)
			}
			id, err := identity.FromCertificate(leaf)
			if err != nil || id.Kind != tt.req.Kind || id.ID != tt.req.ID || id.Serial != cred.Serial {
				t.Fatalf("identity %+v, %v", id, err)
			}
			if tt.key != nil {
				if pub, ok := tt.key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(leaf.PublicKey) {
					t.Error("certificate does not carry the CSR's public key")
				}
			}
			if leaf.Subject.CommonName == "requested" {
				t.Error("subject taken from the CSR instead of the request")
			}
		})
	}
}

func mustECDSA(t *testing.T, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustRSA(t *testing.T, bits int) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func csrWithDNS(t *testing.T, key crypto.Signer, uri string) []byte {
	t.Helper()
	block, _ := pem.Decode(makeCSR(t, key, uri))
	parsed, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: "requested"}, URIs: parsed.URIs, DNSNames: []string{"evil.example"}, IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// tamper flips the last byte of the CSR, inside its signature.
func tamper(t *testing.T, csrPEM []byte) []byte {
	t.Helper()
	block, _ := pem.Decode(csrPEM)
	der := append([]byte(nil), block.Bytes...)
	der[len(der)-1] ^= 0xff
	if _, err := x509.ParseCertificateRequest(der); err != nil {
		t.Fatalf("tampered CSR no longer parses, the test would prove nothing: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}
