// Package tlstest is the mTLS test bench shared by the broker's tests: a
// dev CA in a temporary directory, the broker's server certificate for
// localhost/127.0.0.1, client credentials on demand, and gRPC servers and
// clients on loopback over real TLS.
package tlstest

import (
	"context"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/certs"
)

// PKI is a dev CA with the server side ready.
type PKI struct {
	CA *certs.DevCA
	// Roots is the client's view of the trust bundle.
	Roots *x509.CertPool
	// Trust and Server are what certs.ServerConfig needs.
	Trust  *certs.TrustPool
	Server *certs.CertSource
}

// New creates a PKI in t's temporary directory.
func New(t testing.TB) *PKI {
	t.Helper()
	ctx := context.Background()
	ca, err := certs.OpenDevCA(t.TempDir(), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := ca.TrustBundle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := &PKI{CA: ca, Roots: x509.NewCertPool(), Trust: certs.NewTrustPool(), Server: certs.NewCertSource()}
	p.Roots.AppendCertsFromPEM(bundle)
	if err := p.Trust.Set(bundle); err != nil {
		t.Fatal(err)
	}
	cred, err := ca.IssueServer(ctx, []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Server.Set(cred.FullChainPEM(), cred.KeyPEM); err != nil {
		t.Fatal(err)
	}
	return p
}

// ServerCreds is the server's mTLS transport credentials.
func (p *PKI) ServerCreds(opts ...certs.ServerOption) grpc.ServerOption {
	return grpc.Creds(credentials.NewTLS(certs.ServerConfig(p.Server, p.Trust, opts...)))
}

// Issue issues a client credential for kind/id valid for an hour.
func (p *PKI) Issue(t testing.TB, kind identity.Kind, id string) *certs.Credential {
	t.Helper()
	cred, err := p.CA.IssueClient(context.Background(), certs.ClientRequest{Kind: kind, ID: id, CommonName: "test " + id, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return cred
}

// Dial connects to addr presenting cred; the connection closes with t.
func (p *PKI) Dial(t testing.TB, addr string, cred *certs.Credential) *grpc.ClientConn {
	t.Helper()
	conn, _ := p.DialSource(t, addr, cred)
	return conn
}

// DialSource is Dial through a certs.CertSource the caller may swap.
func (p *PKI) DialSource(t testing.TB, addr string, cred *certs.Credential) (*grpc.ClientConn, *certs.CertSource) {
	t.Helper()
	src := certs.NewCertSource()
	if err := src.Set(cred.FullChainPEM(), cred.KeyPEM); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(certs.ClientConfig(src, p.Roots, "localhost"))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn, src
}

// Serve serves srv on a free 127.0.0.1 port until t ends and returns the
// address.
func Serve(t testing.TB, srv *grpc.Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}
