package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/identity"
)

// pki is a dev CA with a server certificate and a consumer credential.
type pki struct {
	ca     *DevCA
	bundle []byte
	roots  *x509.CertPool
	server *CertSource
	client *CertSource
}

const serverName = "relais.test"

func newPKI(t *testing.T) *pki {
	t.Helper()
	ctx := context.Background()
	ca := newCA(t, time.Now)
	p := &pki{ca: ca, bundle: bundleOf(t, ca), server: NewCertSource()}
	p.roots = poolOf(t, p.bundle)
	srv, err := ca.IssueServer(ctx, []string{serverName}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.server.Set(srv.CertPEM, srv.KeyPEM); err != nil {
		t.Fatal(err)
	}
	p.client = p.consumer(t, "73282932000074")
	return p
}

func (p *pki) consumer(t *testing.T, siret string) *CertSource {
	t.Helper()
	cred, err := p.ca.IssueClient(context.Background(), ClientRequest{Kind: identity.KindConsumer, ID: siret, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	src := NewCertSource()
	if err := src.Set(cred.CertPEM, cred.KeyPEM); err != nil {
		t.Fatal(err)
	}
	return src
}

func (p *pki) trust(t *testing.T, bundles ...[]byte) *TrustPool {
	t.Helper()
	tp := NewTrustPool()
	if err := tp.Set(slices.Concat(bundles...)); err != nil {
		t.Fatal(err)
	}
	return tp
}

// outcome is what both ends of one connection saw.
type outcome struct {
	serverErr, clientErr error
	server, client       tls.ConnectionState
}

func (o outcome) ok() bool { return o.serverErr == nil && o.clientErr == nil }

// dial runs one connection on 127.0.0.1: the server completes the handshake
// and writes one byte, which the client must read. With TLS 1.3 the client
// learns of a rejected certificate only on that read.
func dial(t *testing.T, ln net.Listener, client *tls.Config) outcome {
	t.Helper()
	type result struct {
		err   error
		state tls.ConnectionState
	}
	done := make(chan result, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer conn.Close()
		tc := conn.(*tls.Conn)
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		err = tc.Handshake()
		if err == nil {
			_, err = tc.Write([]byte{1})
		}
		done <- result{err, tc.ConnectionState()}
	}()

	var o outcome
	raw, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, client)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	o.clientErr = c.Handshake()
	if o.clientErr == nil {
		_, o.clientErr = io.ReadFull(c, make([]byte, 1))
	}
	o.client = c.ConnectionState()
	_ = c.Close()
	r := <-done
	o.serverErr, o.server = r.err, r.state
	return o
}

func listen(t *testing.T, cfg *tls.Config) net.Listener {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

func TestHandshake(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	stranger := newPKI(t) // another dev CA
	tls11 := func(c *tls.Config) {
		c.MinVersion, c.MaxVersion, c.CipherSuites = tls.VersionTLS10, tls.VersionTLS11, nil
	}
	tests := []struct {
		name       string
		client     *CertSource
		tweak      func(*tls.Config)
		wantServer string // substring of the server's error; empty for success
		wantVer    uint16
	}{
		{"dev ca client certificate", p.client, nil, "", tls.VersionTLS13},
		{"tls 1.2 client", p.client, func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 }, "", tls.VersionTLS12},
		{"no client certificate", nil, nil, "didn't provide a certificate", 0},
		{"empty cert source", NewCertSource(), nil, "didn't provide a certificate", 0},
		{"certificate from another ca", stranger.client, nil, "unknown authority", 0},
		{"client offers at most tls 1.1", p.client, tls11, "unsupported versions", 0},
		{"tls 1.2 client with only cbc suites", p.client, func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
		}, "no cipher suite", 0},
	}
	ln := listen(t, ServerConfig(p.server, p.trust(t, p.bundle)))
	for _, tt := range tests {
		// Sequential: the subtests share one listener.
		t.Run(tt.name, func(t *testing.T) {
			cfg := ClientConfig(tt.client, p.roots, serverName)
			if tt.tweak != nil {
				tt.tweak(cfg)
			}
			o := dial(t, ln, cfg)
			if tt.wantServer != "" {
				if o.serverErr == nil || !strings.Contains(o.serverErr.Error(), tt.wantServer) {
					t.Fatalf("server error %v, want one containing %q", o.serverErr, tt.wantServer)
				}
				if o.clientErr == nil {
					t.Fatal("client saw no error")
				}
				return
			}
			if !o.ok() {
				t.Fatalf("handshake failed: server %v, client %v", o.serverErr, o.clientErr)
			}
			if o.server.Version != tt.wantVer {
				t.Errorf("version %x, want %x", o.server.Version, tt.wantVer)
			}
			if o.server.Version == tls.VersionTLS12 && !slices.Contains(cipherSuites, o.server.CipherSuite) {
				t.Errorf("negotiated %s", tls.CipherSuiteName(o.server.CipherSuite))
			}
			id, err := identity.FromCertificate(o.server.PeerCertificates[0])
			if err != nil || id.Kind != identity.KindConsumer || id.ID != "73282932000074" {
				t.Errorf("server sees identity %+v, %v", id, err)
			}
		})
	}
}

func TestClientRefusesUnknownServer(t *testing.T) {
	t.Parallel()
	p, stranger := newPKI(t), newPKI(t)
	ln := listen(t, ServerConfig(p.server, p.trust(t, p.bundle)))
	for name, cfg := range map[string]*tls.Config{
		"roots of another ca": ClientConfig(p.client, stranger.roots, serverName),
		"nil roots":           ClientConfig(p.client, nil, serverName),
		"wrong server name":   ClientConfig(p.client, p.roots, "other.test"),
	} {
		if o := dial(t, ln, cfg); o.clientErr == nil {
			t.Errorf("%s: client accepted the server", name)
		}
	}
}

func TestServerCertificateSwap(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	ln := listen(t, ServerConfig(p.server, p.trust(t, p.bundle)))
	client := ClientConfig(p.client, p.roots, serverName)

	before := dial(t, ln, client)
	if !before.ok() {
		t.Fatalf("first handshake: %v / %v", before.serverErr, before.clientErr)
	}
	next, err := p.ca.IssueServer(context.Background(), []string{serverName}, nil, 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.server.Set(next.CertPEM, next.KeyPEM); err != nil {
		t.Fatal(err)
	}
	after := dial(t, ln, client)
	if !after.ok() {
		t.Fatalf("handshake after swap: %v / %v", after.serverErr, after.clientErr)
	}
	if got := identity.SerialHex(after.client.PeerCertificates[0]); got != next.Serial {
		t.Fatalf("server presented serial %s after swap, want %s (before: %s)", got, next.Serial, identity.SerialHex(before.client.PeerCertificates[0]))
	}
}

func TestTrustPoolRotation(t *testing.T) {
	t.Parallel()
	p, next := newPKI(t), newPKI(t)
	trust := p.trust(t, p.bundle)
	ln := listen(t, ServerConfig(p.server, trust))
	oldClient := ClientConfig(p.client, p.roots, serverName)
	newClient := ClientConfig(next.client, p.roots, serverName)

	if o := dial(t, ln, newClient); o.serverErr == nil {
		t.Fatal("certificate of the new CA accepted before rotation")
	}
	// Overlap: both CAs trusted while consumers renew.
	if err := trust.Set(slices.Concat(p.bundle, next.bundle)); err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]*tls.Config{"old": oldClient, "new": newClient} {
		if o := dial(t, ln, cfg); !o.ok() {
			t.Fatalf("%s CA during overlap: %v / %v", name, o.serverErr, o.clientErr)
		}
	}
	// Old CA retired.
	if err := trust.Set(next.bundle); err != nil {
		t.Fatal(err)
	}
	if o := dial(t, ln, newClient); !o.ok() {
		t.Fatalf("new CA after rotation: %v / %v", o.serverErr, o.clientErr)
	}
	if o := dial(t, ln, oldClient); o.serverErr == nil {
		t.Fatal("certificate of the retired CA still accepted")
	}
}

func TestRotationDefeatsSessionResumption(t *testing.T) {
	t.Parallel()
	p, next := newPKI(t), newPKI(t)
	trust := p.trust(t, p.bundle)
	ln := listen(t, ServerConfig(p.server, trust))
	client := ClientConfig(p.client, p.roots, serverName)
	client.ClientSessionCache = tls.NewLRUClientSessionCache(4)

	if o := dial(t, ln, client); !o.ok() || o.server.DidResume {
		t.Fatalf("first handshake: %v / %v, resumed %v", o.serverErr, o.clientErr, o.server.DidResume)
	}
	if o := dial(t, ln, client); !o.ok() || !o.server.DidResume {
		t.Fatalf("second handshake should resume: %v / %v, resumed %v", o.serverErr, o.clientErr, o.server.DidResume)
	}
	if err := trust.Set(next.bundle); err != nil {
		t.Fatal(err)
	}
	if o := dial(t, ln, client); o.serverErr == nil {
		t.Fatalf("session of a retired CA resumed (resumed %v)", o.server.DidResume)
	}
}

func TestEmptyTrustPoolFailsClosed(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	ln := listen(t, ServerConfig(p.server, NewTrustPool()))
	if o := dial(t, ln, ClientConfig(p.client, p.roots, serverName)); o.serverErr == nil || o.clientErr == nil {
		t.Fatalf("handshake without a trust bundle: %v / %v", o.serverErr, o.clientErr)
	}
}

func TestEmptyCertSourceFailsClosed(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	ln := listen(t, ServerConfig(NewCertSource(), p.trust(t, p.bundle)))
	if o := dial(t, ln, ClientConfig(p.client, p.roots, serverName)); o.serverErr == nil {
		t.Fatal("server handshake succeeded without a certificate")
	}
}

func TestTrustPoolSetRefuses(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	leaf, err := p.ca.IssueClient(context.Background(), ClientRequest{Kind: identity.KindOperator, ID: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		bundle []byte
	}{
		{"empty", nil},
		{"garbage", []byte("garbage")},
		{"trailing garbage", append(append([]byte(nil), p.bundle...), "garbage"...)},
		{"private key", leaf.KeyPEM},
		{"leaf certificate", leaf.CertPEM},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tp := p.trust(t, p.bundle)
			before := tp.Pool()
			if err := tp.Set(tt.bundle); err == nil {
				t.Fatal("Set succeeded")
			} else if strings.Contains(err.Error(), "BEGIN") {
				t.Fatalf("error echoes pem input: %v", err)
			}
			if tp.Pool() != before {
				t.Fatal("refused Set replaced the pool")
			}
		})
	}
}

func TestCertSourceSetRefuses(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	a, err := p.ca.IssueClient(context.Background(), ClientRequest{Kind: identity.KindOperator, ID: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.ca.IssueClient(context.Background(), ClientRequest{Kind: identity.KindOperator, ID: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	src := NewCertSource()
	if err := src.Set(a.CertPEM, a.KeyPEM); err != nil {
		t.Fatal(err)
	}
	current := src.Certificate()
	if current.Leaf == nil || identity.SerialHex(current.Leaf) != a.Serial {
		t.Fatal("Certificate does not expose the parsed leaf")
	}
	if err := src.Set(a.CertPEM, b.KeyPEM); err == nil {
		t.Fatal("mismatched pair accepted")
	}
	if err := src.Set([]byte("garbage"), a.KeyPEM); err == nil {
		t.Fatal("garbage certificate accepted")
	}
	if src.Certificate() != current {
		t.Fatal("refused Set replaced the certificate")
	}
}

func TestPolicy(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	for name, cfg := range map[string]*tls.Config{
		"server": ServerConfig(p.server, p.trust(t, p.bundle)),
		"client": ClientConfig(p.client, p.roots, serverName),
	} {
		if cfg.MinVersion != tls.VersionTLS12 || cfg.MaxVersion != 0 {
			t.Errorf("%s: versions %x..%x", name, cfg.MinVersion, cfg.MaxVersion)
		}
		if !slices.Equal(cfg.CurvePreferences, []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256}) {
			t.Errorf("%s: curves %v", name, cfg.CurvePreferences)
		}
		for _, id := range cfg.CipherSuites {
			s := tls.CipherSuiteName(id)
			if !strings.HasPrefix(s, "TLS_ECDHE_") || !(strings.Contains(s, "_GCM_") || strings.Contains(s, "CHACHA20_POLY1305")) {
				t.Errorf("%s: suite %s is not ECDHE+AEAD", name, s)
			}
		}
		if len(cfg.CipherSuites) != 6 {
			t.Errorf("%s: %d suites", name, len(cfg.CipherSuites))
		}
	}
	srv := ServerConfig(p.server, p.trust(t, p.bundle))
	if srv.ClientAuth != tls.RequireAndVerifyClientCert || len(srv.Certificates) != 0 || srv.GetCertificate == nil || srv.GetConfigForClient == nil {
		t.Error("server config does not require client certificates from live sources")
	}
}

func TestVerifyClientChain(t *testing.T) {
	t.Parallel()
	p, stranger := newPKI(t), newPKI(t)
	leaf := p.client.Certificate().Leaf
	server := p.server.Certificate().Leaf
	tests := []struct {
		name  string
		pool  *x509.CertPool
		chain []*x509.Certificate
		ok    bool
	}{
		{"trusted client", p.roots, []*x509.Certificate{leaf}, true},
		{"no bundle", nil, []*x509.Certificate{leaf}, false},
		{"no certificate", p.roots, nil, false},
		{"retired ca", stranger.roots, []*x509.Certificate{leaf}, false},
		{"server certificate", p.roots, []*x509.Certificate{server}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := verifyClientChain(tt.pool, tt.chain); (err == nil) != tt.ok {
				t.Fatalf("verifyClientChain = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
