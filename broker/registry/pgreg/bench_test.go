package pgreg_test

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/relais-broker/relais/broker/registry/boltreg"
	"github.com/relais-broker/relais/broker/registry/registrytest"
	"github.com/relais-broker/relais/internal/pgdb"
	"github.com/relais-broker/relais/internal/pgtest"
)

// queryCounter counts the statements a pool sends, to prove that the
// per-call reads make none.
type queryCounter struct{ n atomic.Int64 }

func (q *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	q.n.Add(1)
	return ctx
}

func (q *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// BenchmarkAuthorizationDecision runs the per-call authorization over
// 10,000 consumers and 50,000 grants on both stores in the same run, with
// one shared body: bbolt, and PostgreSQL with the statements sent during
// the loop counted (db-queries/op must be 0). It also reports how long a
// full snapshot load of that registry takes on PostgreSQL (reload-ms).
func BenchmarkAuthorizationDecision(b *testing.B) {
	clock := func() time.Time { return registrytest.Start }
	b.Run("store=bbolt", func(b *testing.B) {
		s, err := boltreg.Open(filepath.Join(b.TempDir(), "r.db"), boltreg.Options{Clock: clock})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		registrytest.BenchAuthorization(b, s, registrytest.Populate(b, s))
	})
	b.Run("store=postgres", func(b *testing.B) {
		ctx := context.Background()
		c := pgtest.Shared(b)
		dsn := c.NewDatabase(b)
		if _, err := pgdb.Migrate(ctx, dsn); err != nil {
			b.Fatal(err)
		}
		cfg, err := pgxpool.ParseConfig(c.NewLogin(b, dsn, "relais_broker"))
		if err != nil {
			b.Fatal(err)
		}
		counter := &queryCounter{}
		cfg.ConnConfig.Tracer = counter
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		defer pool.Close()
		s := openStore(b, pool, clock)
		sirets := registrytest.Populate(b, s)
		start := time.Now()
		if err := s.Reload(ctx); err != nil {
			b.Fatal(err)
		}
		reload := time.Since(start)
		before := counter.n.Load()
		registrytest.BenchAuthorization(b, s, sirets)
		b.StopTimer()
		queries := counter.n.Load() - before
		b.ReportMetric(float64(queries)/float64(b.N), "db-queries/op")
		b.ReportMetric(float64(reload.Microseconds())/1000, "reload-ms")
		if queries != 0 {
			b.Fatalf("%d statements sent during %d authorizations", queries, b.N)
		}
	})
}

// BenchmarkAdminWrite runs one admin write on the registry of 10,000
// consumers and 50,000 grants, on both stores in the same run.
func BenchmarkAdminWrite(b *testing.B) {
	clock := func() time.Time { return registrytest.Start }
	b.Run("store=bbolt", func(b *testing.B) {
		s, err := boltreg.Open(filepath.Join(b.TempDir(), "r.db"), boltreg.Options{Clock: clock})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		registrytest.BenchWrite(b, s, registrytest.Populate(b, s))
	})
	b.Run("store=postgres", func(b *testing.B) {
		s := openStore(b, brokerPool(b, pgtest.Shared(b)), clock)
		registrytest.BenchWrite(b, s, registrytest.Populate(b, s))
	})
}
