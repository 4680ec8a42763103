package pgreg_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/registry/pgreg"
	"github.com/relais-broker/relais/broker/registry/registrytest"
	"github.com/relais-broker/relais/internal/pgdb"
	"github.com/relais-broker/relais/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// brokerPool migrates a fresh database of c and returns a pool logged in
// as a member of relais_broker only, so the tests also prove that the
// migration's grants are enough (and that nothing needs more).
func brokerPool(t testing.TB, c *pgtest.Cluster) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	dsn := c.NewDatabase(t)
	if _, err := pgdb.Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	pool, err := pgdb.Connect(ctx, c.NewLogin(t, dsn, "relais_broker"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func openStore(t testing.TB, pool *pgxpool.Pool, clock func() time.Time) *pgreg.Store {
	t.Helper()
	s, err := pgreg.Open(context.Background(), pool, pgreg.Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestConformance runs the registry.Store suite on a real PostgreSQL.
func TestConformance(t *testing.T) {
	c := pgtest.Shared(t)
	registrytest.Run(t, func(t *testing.T, clock func() time.Time) registry.Store {
		return openStore(t, brokerPool(t, c), clock)
	})
}
