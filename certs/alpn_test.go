package certs

import (
	"crypto/tls"
	"sync"
	"testing"
)

// TestOnNoALPN: the hook sees a valid handshake without ALPN (which gRPC
// closes silently), and neither one that negotiated h2 nor one refused.
func TestOnNoALPN(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	var mu sync.Mutex
	var seen []tls.ConnectionState
	cfg := ServerConfig(p.server, p.trust(t, p.bundle), OnNoALPN(func(cs tls.ConnectionState) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, cs)
	}))
	// What grpc's credentials.NewTLS does to the per-client config.
	inner := cfg.GetConfigForClient
	cfg.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		c, err := inner(h)
		if c != nil {
			c.NextProtos = []string{"h2"}
		}
		return c, err
	}
	ln := listen(t, cfg)
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(seen)
	}

	withH2 := ClientConfig(p.client, p.roots, serverName)
	withH2.NextProtos = []string{"h2"}
	if o := dial(t, ln, withH2); !o.ok() || o.server.NegotiatedProtocol != "h2" {
		t.Fatalf("h2 handshake: %+v", o)
	}
	if n := count(); n != 0 {
		t.Fatalf("the hook ran %d times for a client that negotiated h2", n)
	}

	if o := dial(t, ln, ClientConfig(p.client, p.roots, serverName)); !o.ok() {
		t.Fatalf("handshake without ALPN: server %v, client %v", o.serverErr, o.clientErr)
	}
	if n := count(); n != 1 {
		t.Fatalf("the hook ran %d times for one client without ALPN, want 1", n)
	}
	if seen[0].Version == 0 || len(seen[0].PeerCertificates) == 0 {
		t.Fatalf("the hook got no version or client certificate: %+v", seen[0])
	}

	// A refused handshake is the handshake's error, not an ALPN matter.
	if o := dial(t, ln, ClientConfig(nil, p.roots, serverName)); o.ok() {
		t.Fatal("a client without certificate was accepted")
	}
	if n := count(); n != 1 {
		t.Fatalf("the hook ran for a refused handshake (%d calls)", n)
	}
}
