package pgreg_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/registry/pgreg"
	"github.com/relais-broker/relais/broker/registry/registrytest"
	"github.com/relais-broker/relais/internal/pgdb"
	"github.com/relais-broker/relais/internal/pgtest"
)

// TestReplicasSeeEachOtherThroughReloadAndNotify opens two Stores on one
// database, as two relaisd replicas do: a write on A notifies its version
// on pgreg.Channel at commit, B serves its own snapshot until it reloads,
// and B's next write includes A's change (each write reads the registry
// back in its transaction).
func TestReplicasSeeEachOtherThroughReloadAndNotify(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := pgtest.Shared(t)
	dsn := c.NewDatabase(t)
	if _, err := pgdb.Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	clock := func() time.Time { return registrytest.Start }
	replica := func() *pgreg.Store {
		pool, err := pgdb.Connect(ctx, c.NewLogin(t, dsn, "relais_broker"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		return openStore(t, pool, clock)
	}
	a, b := replica(), replica()
	listener, err := pgx.Connect(ctx, c.NewLogin(t, dsn, "relais_broker"))
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close(context.Background())
	if _, err := listener.Exec(ctx, "LISTEN "+pgreg.Channel); err != nil {
		t.Fatal(err)
	}

	if _, err := a.AddConsumer(ctx, registry.Consumer{SIRET: registrytest.SiretA, Name: "A"}); err != nil {
		t.Fatal(err)
	}
	n, err := listener.WaitForNotification(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n.Payload != strconv.FormatUint(a.Version(), 10) {
		t.Fatalf("notified %q, want version %d", n.Payload, a.Version())
	}
	if _, err := b.Consumer(ctx, registrytest.SiretA); !errors.Is(err, registry.ErrNotFound) || b.Version() == a.Version() {
		t.Fatalf("B changed without a reload: %v, version %d", err, b.Version())
	}
	if v, err := b.StoredVersion(ctx); err != nil || v != a.Version() {
		t.Fatalf("B reads the stored version %d (%v), want %d", v, err, a.Version())
	}
	if err := b.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Consumer(ctx, registrytest.SiretA); err != nil || b.Version() != a.Version() {
		t.Fatalf("B after Reload: %v, version %d want %d", err, b.Version(), a.Version())
	}

	if _, err := a.RevokeCredentials(ctx, "c0de"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.AddConsumer(ctx, registry.Consumer{SIRET: registrytest.SiretB, Name: "B"}); err != nil {
		t.Fatal(err)
	}
	if !b.Revoked("c0de") || b.Version() != a.Version()+1 {
		t.Fatalf("B's write did not bring A's revocation: revoked %v, versions %d/%d", b.Revoked("c0de"), b.Version(), a.Version())
	}
	// A is behind B now; an older snapshot never replaces a newer one.
	if err := a.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if a.Version() != b.Version() {
		t.Fatalf("A at %d after Reload, B at %d", a.Version(), b.Version())
	}
}

// TestBrokerRoleCannotDelete checks the grants of the migration: the
// broker's role reads and writes the registry but never deletes from it.
func TestBrokerRoleCannotDelete(t *testing.T) {
	ctx := context.Background()
	pool := brokerPool(t, pgtest.Shared(t))
	for _, table := range []string{"registry_consumers", "registry_grants", "registry_credentials", "registry_version"} {
		_, err := pool.Exec(ctx, "DELETE FROM "+table)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42501" {
			t.Errorf("DELETE FROM %s as relais_broker: %v, want permission denied", table, err)
		}
	}
	if _, err := pool.Exec(ctx, "INSERT INTO registry_version VALUES (false, 7)"); err == nil {
		t.Error("relais_broker inserted a second version row")
	}
}

// TestReplicasWritingAtOnce has two Stores on one database write in
// parallel: every write commits once, the version counts them exactly,
// and after a Reload both replicas serve the same registry.
func TestReplicasWritingAtOnce(t *testing.T) {
	ctx := context.Background()
	c := pgtest.Shared(t)
	dsn := c.NewDatabase(t)
	if _, err := pgdb.Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	clock := func() time.Time { return registrytest.Start }
	var stores [2]*pgreg.Store
	for i := range stores {
		pool, err := pgdb.Connect(ctx, c.NewLogin(t, dsn, "relais_broker"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		stores[i] = openStore(t, pool, clock)
	}
	if _, err := stores[0].AddConsumer(ctx, registry.Consumer{SIRET: registrytest.SiretA, Name: "A"}); err != nil {
		t.Fatal(err)
	}
	const each = 10
	errs := make(chan error, 2*each)
	done := make(chan struct{})
	for _, s := range stores {
		go func() {
			defer func() { done <- struct{}{} }()
			for range each {
				if _, err := s.AddGrant(ctx, registrytest.Grant(registrytest.SiretA)); err != nil {
					errs <- err
				}
			}
		}()
	}
	<-done
	<-done
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, s := range stores {
		if err := s.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		gs, _ := s.Grants(ctx, registrytest.SiretA, registrytest.FQ)
		if len(gs) != 2*each || s.Version() != 1+2*each {
			t.Errorf("replica: %d grants at version %d, want %d at %d", len(gs), s.Version(), 2*each, 1+2*each)
		}
	}
}

// TestCancelledWriteChangesNothing checks that a cancelled context stops
// a write with the context's error, and nothing is written.
func TestCancelledWriteChangesNothing(t *testing.T) {
	s := openStore(t, brokerPool(t, pgtest.Shared(t)), func() time.Time { return registrytest.Start })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.AddConsumer(ctx, registry.Consumer{SIRET: registrytest.SiretA, Name: "A"})
	if !errors.Is(err, context.Canceled) || errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("cancelled write: %v, want context.Canceled", err)
	}
	if err := s.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Consumer(context.Background(), registrytest.SiretA); !errors.Is(err, registry.ErrNotFound) || s.Version() != 0 {
		t.Fatalf("the cancelled write left a trace: %v, version %d", err, s.Version())
	}
}
