package certs

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/identity"
)

func TestDevCARevocationLedger(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ca, err := OpenDevCA(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	a1, _ := ca.IssueClient(ctx, ClientRequest{Kind: identity.KindConsumer, ID: "21990000100005", TTL: time.Hour})
	a2, _ := ca.IssueClient(ctx, ClientRequest{Kind: identity.KindConsumer, ID: "21990000100005", TTL: time.Hour})
	b, _ := ca.IssueClient(ctx, ClientRequest{Kind: identity.KindConsumer, ID: "21990000200003", TTL: time.Hour})
	got, err := ca.SerialsFor(ctx, "21990000100005")
	if err != nil || len(got) != 2 || !slices.Contains(got, a1.Serial) || !slices.Contains(got, a2.Serial) {
		t.Fatalf("SerialsFor = %v, %v; want %s and %s", got, err, a1.Serial, a2.Serial)
	}
	if err := ca.Revoke(ctx, a1.Serial); err != nil {
		t.Fatal(err)
	}
	if err := ca.Revoke(ctx, a1.Serial); err != nil {
		t.Fatalf("second revocation: %v", err)
	}
	if err := ca.Revoke(ctx, "abcdef"); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("unknown serial: %v", err)
	}
	// The ledger survives reopening the CA.
	reopened, err := OpenDevCA(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := reopened.RevokedSerials(ctx)
	if err != nil || !slices.Equal(revoked, []string{a1.Serial}) {
		t.Fatalf("RevokedSerials = %v, %v; want only %s", revoked, err, a1.Serial)
	}
	if slices.Contains(revoked, b.Serial) {
		t.Fatal("another consumer's certificate was revoked")
	}
}
