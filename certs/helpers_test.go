package certs

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net/url"
	"testing"
	"time"
)

// t0 is the fixed instant tests that inject a clock issue at.
var t0 = time.Date(2026, 3, 12, 9, 30, 0, 0, time.UTC)

func fixedClock() time.Time { return t0 }

// newCA opens a fresh dev CA in a temporary directory.
func newCA(t *testing.T, clock func() time.Time) *DevCA {
	t.Helper()
	ca, err := OpenDevCA(t.TempDir(), clock)
	if err != nil {
		t.Fatalf("OpenDevCA: %v", err)
	}
	return ca
}

func parseCert(t *testing.T, pemBytes []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("no CERTIFICATE pem block")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("parse certificate: %v", err)
	}
	return c
}

func bundleOf(t *testing.T, ca *DevCA) []byte {
	t.Helper()
	b, err := ca.TrustBundle(context.Background())
	if err != nil {
		t.Fatalf("TrustBundle: %v", err)
	}
	return b
}

func poolOf(t *testing.T, bundles ...[]byte) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	for _, b := range bundles {
		if !pool.AppendCertsFromPEM(b) {
			t.Fatalf("bad bundle")
		}
	}
	return pool
}

func makeCSR(t *testing.T, key crypto.Signer, uris ...string) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: "requested"}}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatalf("CreateCertificateRequest: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}
