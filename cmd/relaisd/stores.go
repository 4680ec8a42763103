package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/relais-broker/relais/broker/admin"
	"github.com/relais-broker/relais/broker/audit/auditlog"
	"github.com/relais-broker/relais/broker/audit/boltlog"
	"github.com/relais-broker/relais/broker/audit/pglog"
	"github.com/relais-broker/relais/broker/audit/seal"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/cluster"
	"github.com/relais-broker/relais/broker/cluster/pgcluster"
	"github.com/relais-broker/relais/broker/ops"
	"github.com/relais-broker/relais/broker/ratelimit"
	"github.com/relais-broker/relais/broker/ratelimit/pgquota"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/registry/boltreg"
	"github.com/relais-broker/relais/broker/registry/pgreg"
	"github.com/relais-broker/relais/certs"
	"github.com/relais-broker/relais/internal/devenv"
	"github.com/relais-broker/relais/internal/pgdb"
)

// stores are the broker's state on one kind of storage: the only place
// that picks implementations. With bbolt everything is in files of the
// data directory; with PostgreSQL everything is in one database shared
// by every replica, and nothing of the state is local.
type stores struct {
	kind     string
	Registry registry.Store
	// Audit is the audit log's storage; auditlog.Log owns and closes it.
	Audit auditlog.Storage
	// DailyQuota and InFlight are nil with bbolt: the broker keeps them in
	// memory (daily counters rebuilt from the audit log at start).
	DailyQuota ratelimit.DailyCounter
	InFlight   ratelimit.InFlight
	// Pool is the PostgreSQL pool, nil with bbolt.
	Pool *pgxpool.Pool
	// Cluster is this broker's membership among the replicas of the
	// database and its leases; with bbolt, a cluster of one. Replica is the
	// id it joined under: its audit chain.
	Cluster interface {
		cluster.Membership
		cluster.Leaser
	}
	Replica string
	// Backups are the files an operator can snapshot through the admin
	// API while the broker runs (bbolt); nil with PostgreSQL (pg_dump,
	// base backups and the audit export instead).
	Backups []admin.BackupFile
}

// openBoltStores opens registry.db and audit.db in dir.
func openBoltStores(dir string, cat *catalog.Catalog, clock func() time.Time) (*stores, error) {
	reg, err := boltreg.Open(filepath.Join(dir, devenv.RegistryFile), boltreg.Options{Catalog: cat, Clock: clock})
	if err != nil {
		return nil, err
	}
	st, err := boltlog.OpenStore(filepath.Join(dir, devenv.AuditFile))
	if err != nil {
		reg.Close()
		return nil, err
	}
	local := cluster.NewLocal(clock)
	if err := local.Join(context.Background(), cluster.Replica{ID: "local", StartedAt: time.Now()}); err != nil {
		reg.Close()
		st.Close()
		return nil, err
	}
	return &stores{kind: StoreBbolt, Registry: reg, Audit: st, Cluster: local,
		Backups: []admin.BackupFile{{Name: devenv.RegistryFile, Source: reg}, {Name: devenv.AuditFile, Source: st}}}, nil
}

// openPostgresStores connects to the database behind dsn, checks its
// schema (migrate first: relaisctl db migrate, or migrate true in dev
// mode), joins the replicas as self (under the first free id of ids when
// self.ID is empty) and opens every store on it, the audit log on this
// replica's own chain.
func openPostgresStores(ctx context.Context, dsn string, migrate bool, cat *catalog.Catalog, clock func() time.Time, self cluster.Replica, ids []string, logger *slog.Logger) (*stores, error) {
	if migrate {
		if _, err := pgdb.Migrate(ctx, dsn); err != nil {
			return nil, fmt.Errorf("database schema: %w", err)
		}
	}
	pool, err := pgdb.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			pool.Close()
		}
	}()
	if err := pgdb.Check(ctx, pool); err != nil {
		return nil, err
	}
	members := pgcluster.New(pool, pgcluster.Options{Clock: clock, Logger: logger})
	if self.ID != "" {
		err = members.Join(ctx, self)
	} else {
		self.ID, err = cluster.JoinFirstFree(ctx, members, self, ids...)
	}
	if err != nil {
		return nil, fmt.Errorf("joining the replicas: %w", err)
	}
	defer func() {
		if !ok {
			_ = members.Leave(context.WithoutCancel(ctx))
		}
	}()
	reg, err := pgreg.Open(ctx, pool, pgreg.Options{Catalog: cat, Clock: clock})
	if err != nil {
		return nil, err
	}
	// This replica writes its own chain; queries, the citizen report and
	// exports read every replica's.
	st, err := pglog.Open(ctx, pool, pglog.Options{Chain: self.ID, AllChains: true, Clock: clock})
	if err != nil {
		return nil, err
	}
	ok = true
	return &stores{kind: StorePostgres, Registry: reg, Audit: st, Pool: pool, Cluster: members, Replica: self.ID,
		DailyQuota: pgquota.NewDaily(pool), InFlight: pgquota.NewInFlight(pool, clock)}, nil
}

// Close closes what the stores hold once the audit log (which closes its
// storage, after its final checkpoint) is closed: it leaves the replicas
// (freeing the id and, at once, the others' rate shares), then closes the
// registry, then the pool.
func (s *stores) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.Cluster.Leave(ctx)
	err = errors.Join(err, s.Registry.Close())
	if s.Pool != nil {
		s.Pool.Close()
	}
	return err
}

// auditReader serves the admin API's audit queries and exports: with
// PostgreSQL the export covers every replica's chain, from one snapshot.
type auditReader struct {
	*auditlog.Log
	pool *pgxpool.Pool
}

// Export implements admin.AuditExporter.
func (a auditReader) Export(ctx context.Context, fn func(seal.Entry) error) error {
	if a.pool == nil {
		return a.Log.Export(ctx, fn)
	}
	return pglog.ExportAll(ctx, a.pool, fn)
}

// readiness is the stores' part of /readyz: the database must answer.
func (s *stores) readiness() []ops.Check {
	if s.Pool == nil {
		return nil
	}
	return []ops.Check{{Name: "database", Fn: func(ctx context.Context) error {
		if err := s.Pool.Ping(ctx); err != nil {
			return errors.New("the PostgreSQL database does not answer")
		}
		return nil
	}}}
}

// revocations is the revoked set the chain and the TLS handshake enforce:
// this process's set (the CRLs of the CA, and revocations made here,
// effective before the registry write returns) and the registry's, which
// every replica shares.
type revocations struct {
	local    *certs.Revocations
	registry registry.Store
}

// IsRevoked implements certs.RevocationChecker and authn.RevocationChecker.
func (r revocations) IsRevoked(serial string) bool {
	return r.local.IsRevoked(serial) || r.registry.Revoked(serial)
}

// Add revokes in this process at once (admin.Revocations).
func (r revocations) Add(serials ...string) []string { return r.local.Add(serials...) }
