package haproxytest_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/internal/haproxytest"
	"github.com/relais-broker/relais/internal/tlstest"
)

// TestGRPCOverMTLSThroughTheProxy runs real gRPC (HTTP/2, ALPN h2) through
// HAProxy to two replicas and checks that each call's handler sees the
// client certificate, as relaisd's authn interceptor needs.
func TestGRPCOverMTLSThroughTheProxy(t *testing.T) {
	haproxytest.Require(t)
	pki := tlstest.New(t)
	cred := pki.Issue(t, identity.KindConsumer, siret)
	want := identity.URI(identity.KindConsumer, siret).String()

	var mu sync.Mutex
	seen := map[string][]string{} // replica → client URIs its handlers saw
	var backends []haproxytest.Backend
	for _, name := range []string{"r1", "r2"} {
		name := name
		srv := grpc.NewServer(pki.ServerCreds(), grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			uri := "-"
			if p, ok := peer.FromContext(ctx); ok {
				if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 && len(ti.State.PeerCertificates[0].URIs) == 1 {
					uri = ti.State.PeerCertificates[0].URIs[0].String()
				}
			}
			mu.Lock()
			seen[name] = append(seen[name], uri)
			mu.Unlock()
			return h(ctx, req)
		}))
		healthpb.RegisterHealthServer(srv, health.NewServer())
		addr := tlstest.Serve(t, srv)
		// The health check needs an HTTP /readyz: borrow a replica's.
		r := newReplica(t, pki, name)
		backends = append(backends, haproxytest.Backend{Name: name, Addr: addr, HealthAddr: r.health.Listener.Addr().String()})
	}
	proxy := haproxytest.Start(t, backends)
	for _, b := range backends {
		proxy.WaitState(t, b.Name, "UP", 10*time.Second)
	}
	// Two channels: HAProxy balances connections, so each lands on its own
	// replica (roundrobin) and keeps it for all its calls.
	for i := 0; i < 2; i++ {
		conn := pki.Dial(t, proxy.Addr(), cred)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		for j := 0; j < 3; j++ {
			if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatalf("grpc through haproxy: %v", err)
			}
		}
		cancel()
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen["r1"]) != 3 || len(seen["r2"]) != 3 {
		t.Fatalf("calls per replica %v, want each channel's 3 calls on its own replica", seen)
	}
	for name, uris := range seen {
		for _, u := range uris {
			if u != want {
				t.Fatalf("replica %s saw client %q, want %q", name, u, want)
			}
		}
	}
}
