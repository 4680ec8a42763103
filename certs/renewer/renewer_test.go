package renewer

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/certs"
)

// TestNextRenewalIsJitteredAroundTwoThirds checks the schedule: within
// ±Jitter of two thirds of the certificate's life, and not all equal.
func TestNextRenewalIsJitteredAroundTwoThirds(t *testing.T) {
	ca, err := certs.OpenDevCA(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := ca.IssueClient(context.Background(), certs.ClientRequest{Kind: identity.KindConsumer, ID: "21990000100005", TTL: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	src := certs.NewCertSource()
	if err := src.Set(cred.FullChainPEM(), cred.KeyPEM); err != nil {
		t.Fatal(err)
	}
	r, err := New(Config{Source: src, Conn: &grpc.ClientConn{}})
	if err != nil {
		t.Fatal(err)
	}
	leaf := src.Certificate().Leaf
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	centre := leaf.NotBefore.Add(life * 2 / 3)
	seen := map[time.Time]bool{}
	for i := 0; i < 50; i++ {
		at := r.NextRenewal()
		if d := at.Sub(centre).Abs(); d > time.Duration(float64(life)*0.05) {
			t.Fatalf("renewal at %s is %s from two thirds of the life", at, d)
		}
		seen[at] = true
	}
	if len(seen) < 10 {
		t.Fatalf("only %d distinct renewal times in 50: no jitter", len(seen))
	}
	if _, err := New(Config{Source: src, Conn: &grpc.ClientConn{}, RenewAt: 1.5}); err == nil {
		t.Fatal("RenewAt 1.5 accepted")
	}
	if _, err := New(Config{Source: certs.NewCertSource(), Conn: &grpc.ClientConn{}}); err == nil {
		t.Fatal("empty source accepted")
	}
}
