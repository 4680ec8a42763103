package broker_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/registry"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
)

// TestRevocationStopsAnOpenConnection revokes the certificate of a client
// whose connection is already open: its next call is refused, the adapter
// is not called, and a new connection fails at the handshake.
func TestRevocationStopsAnOpenConnection(t *testing.T) {
	h := newHarness(t, registry.Quota{RatePerSecond: 100, Burst: 100})
	conn, cred := h.connCred(t, identity.KindConsumer, sirenFull)
	client := familyquotientv1.NewFamilyQuotientServiceClient(conn)
	if _, err := client.GetFamilyQuotient(context.Background(), validFQ()); err != nil {
		t.Fatalf("call before revocation: %v", err)
	}
	calls := h.adapter.Calls()
	h.revoked.Add(cred.Serial)

	_, err := client.GetFamilyQuotient(context.Background(), validFQ())
	if code, reason := reasonOf(t, err); code != codes.Unauthenticated || reason != "credential_revoked" {
		t.Fatalf("call on the open connection after revocation: %s/%s", code, reason)
	}
	if h.adapter.Calls() != calls {
		t.Fatal("a revoked caller reached the adapter")
	}
	recs := h.audit.Records()
	if last := recs[len(recs)-1]; last.Reason != "credential_revoked" {
		t.Fatalf("refusal not traced: %+v", last)
	}

	// A fresh connection with the same certificate is refused during the handshake.
	fresh := h.dialCred(t, cred)
	_, err = familyquotientv1.NewFamilyQuotientServiceClient(fresh).GetFamilyQuotient(context.Background(), validFQ())
	if code, _ := reasonOf(t, err); code != codes.Unavailable {
		t.Fatalf("new connection with a revoked certificate: %v, want a handshake failure", err)
	}
	// Another consumer is unaffected.
	if _, err := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, sirenFull)).GetFamilyQuotient(context.Background(), validFQ()); err != nil {
		t.Fatalf("a new certificate of the same consumer: %v", err)
	}
}

// TestExpiryStopsAnOpenConnection: a connection opened with a valid
// certificate cannot outlive it.
func TestExpiryStopsAnOpenConnection(t *testing.T) {
	h := newHarness(t, registry.Quota{RatePerSecond: 100, Burst: 100})
	conn, cred := h.connCred(t, identity.KindConsumer, sirenFull)
	client := familyquotientv1.NewFamilyQuotientServiceClient(conn)
	if _, err := client.GetFamilyQuotient(context.Background(), validFQ()); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(cred.NotAfter.Sub(h.clock.Now()) + time.Second)
	_, err := client.GetFamilyQuotient(context.Background(), validFQ())
	if code, reason := reasonOf(t, err); code != codes.Unauthenticated || reason != "credential_expired" {
		t.Fatalf("call after expiry: %s/%s", code, reason)
	}
}
