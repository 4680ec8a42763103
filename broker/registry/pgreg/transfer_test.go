package pgreg_test

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/registry/boltreg"
	"github.com/relais-broker/relais/broker/registry/registrytest"
	"github.com/relais-broker/relais/internal/pgtest"
)

// TestMoveBetweenStores copies a registry with its history from a bbolt
// file to PostgreSQL and back (what `relaisctl store migrate` does): each
// copy exports exactly what the source exported, and answers the per-call
// reads alike.
func TestMoveBetweenStores(t *testing.T) {
	ctx := context.Background()
	var ns atomic.Int64
	ns.Store(registrytest.Start.UnixNano())
	clock := func() time.Time { return time.Unix(0, ns.Load()).UTC() }
	dir := t.TempDir()
	src, err := boltreg.Open(filepath.Join(dir, "src.db"), boltreg.Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	registrytest.Fill(t, src, func(d time.Duration) { ns.Add(int64(d)) })
	exported, err := src.Export(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pg := openStore(t, brokerPool(t, pgtest.Shared(t)), clock)
	if err := pg.Restore(ctx, exported); err != nil {
		t.Fatal(err)
	}
	fromPG, err := pg.Export(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !registrytest.SameContents(fromPG, exported) {
		t.Fatalf("bbolt → postgres changed the registry:\n got %+v\nwant %+v", fromPG, exported)
	}
	back, err := boltreg.Open(filepath.Join(dir, "back.db"), boltreg.Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	if err := back.Restore(ctx, fromPG); err != nil {
		t.Fatal(err)
	}
	if again, _ := back.Export(ctx); !registrytest.SameContents(again, exported) {
		t.Fatal("postgres → bbolt changed the registry")
	}
	for _, siret := range []string{registrytest.SiretA, registrytest.SiretB, registrytest.SiretC} {
		a, _ := src.Grants(ctx, siret, registrytest.FQ)
		b, _ := pg.Grants(ctx, siret, registrytest.FQ)
		ca, errA := src.Consumer(ctx, siret)
		cb, errB := pg.Consumer(ctx, siret)
		if len(a) != len(b) || errA != nil || errB != nil || ca.Status != cb.Status {
			t.Errorf("%s answers differently after the move: %d/%d grants, %v/%v", siret, len(a), len(b), ca.Status, cb.Status)
		}
	}
	if !pg.Revoked("a1") || !pg.Revoked("f00d") || pg.Revoked("a2") {
		t.Error("revocations not enforced after the move")
	}
}
