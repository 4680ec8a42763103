// Package pgreg is the registry of Relais on PostgreSQL, for installations
// whose replicas share one database: consumers, grants and credential
// records (revocations included), in the tables of migration
// 00002_registry.sql (internal/pgdb).
//
// Reads never reach the database on a call: Open loads everything into an
// immutable registry.Snapshot, and the per-call Consumer, Grants and
// Revoked, and the listings of consumers and grants, answer from it — so
// authorization costs what it costs on bbolt, and keeps serving the last
// snapshot while the database is down.
//
// Every write is validated by the rules shared with boltreg (package
// registry) before any I/O, then runs as one transaction: bump the single
// row of registry_version (which serialises writers across replicas),
// change the rows, derive the next snapshot (the current one with the
// change applied, or the whole registry read back when another replica
// wrote in between), notify Channel with the new version, commit. The
// snapshot is served once the commit succeeded; a refused or failed write
// changes nothing. A write that cannot reach the database fails with an
// error wrapping registry.ErrUnavailable and works again, without
// reopening, once the database is back (the pool reconnects).
//
// A Store sees its own writes at once. The writes of other replicas reach
// it through Reload (registry.Versioned), which the change feed of issue 14
// calls: LISTEN on Channel, a full Reload after a reconnect, and a periodic
// comparison of StoredVersion with Version. Until then another replica's
// change is seen only after this Store's next write (which then reads the
// registry back in full) or Reload. When a commit's outcome is unknown (the
// connection broke during COMMIT) the write reports ErrUnavailable and the
// snapshot is left as it was: the next write or Reload catches up.
//
// Layout choice: one row per consumer, grant and credential, with the small
// nested lists (contacts, purposes) as jsonb arrays and scopes as text[].
// Those lists are always read and written with their row and never queried
// on their own, so separate tables would add joins to every snapshot load
// and nothing else; the shared Go rules validate their contents.
package pgreg

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/registry"
)

// Channel is the NOTIFY channel every committed write signals, with the
// new registry version as payload: what the change feed listens to.
const Channel = "relais_registry"

// Options configure Open.
type Options struct {
	// Catalog validates services and scopes; catalog.Default() when nil.
	Catalog *catalog.Catalog
	// Clock stamps records and judges "in the past"; time.Now when nil.
	Clock func() time.Time
}

// Store is a PostgreSQL-backed registry.Store. The embedded registry.Live
// answers the per-call reads and the listings from the snapshot.
type Store struct {
	registry.Live
	wmu  sync.Mutex
	pool *pgxpool.Pool
	cat  *catalog.Catalog
	now  func() time.Time
}

var _ registry.Store = (*Store)(nil)

// Open loads the registry held in the database behind pool, whose schema
// must be migrated (pgdb.Migrate; relaisd checks it with pgdb.Check). The
// pool stays the caller's: Close does not close it.
func Open(ctx context.Context, pool *pgxpool.Pool, o Options) (*Store, error) {
	if o.Catalog == nil {
		o.Catalog = catalog.Default()
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	s := &Store{pool: pool, cat: o.Catalog, now: o.Clock}
	s.Clock = o.Clock
	if err := s.Reload(ctx); err != nil {
		return nil, fmt.Errorf("registry: open: %w", err)
	}
	return s, nil
}

// Close implements registry.Store; the pool is left open for its owner.
func (s *Store) Close() error { return nil }

// Reload implements registry.Versioned: a full reload of the snapshot in
// one consistent (repeatable read) transaction.
func (s *Store) Reload(ctx context.Context) error {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return unavailable(ctx, "reload", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var version int64
	if err := tx.QueryRow(ctx, `SELECT version FROM registry_version`).Scan(&version); err != nil {
		return classify(ctx, "reload", err)
	}
	next, err := load(ctx, tx, uint64(version))
	if err != nil {
		return classify(ctx, "reload", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return unavailable(ctx, "reload", err)
	}
	s.Swap(next)
	return nil
}

// StoredVersion reads the version committed in the database, for the
// change feed's periodic check: when it is ahead of Version, another
// replica wrote and a notification was missed, so Reload.
func (s *Store) StoredVersion(ctx context.Context) (uint64, error) {
	var v int64
	if err := s.pool.QueryRow(ctx, `SELECT version FROM registry_version`).Scan(&v); err != nil {
		return 0, classify(ctx, "stored version", err)
	}
	return uint64(v), nil
}

// write runs fn in one transaction after bumping the version, builds the
// next snapshot, notifies Channel, commits, then serves the snapshot.
// When the snapshot being served is the version just before (no other
// replica wrote since), the next one is that snapshot with fn's delta
// applied; otherwise it is read back in full in the transaction. Errors
// of fn that are the registry's own (refusals) pass through; the others
// are classified.
func (s *Store) write(ctx context.Context, what string, fn func(tx pgx.Tx) (registry.Delta, error)) error {
	// One write at a time per Store: the database serialises writers on
	// the version row anyway, and this keeps the served snapshot current
	// for the delta of the next one.
	s.wmu.Lock()
	defer s.wmu.Unlock()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return unavailable(ctx, what, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var version int64
	if err := tx.QueryRow(ctx, `UPDATE registry_version SET version = version + 1 RETURNING version`).Scan(&version); err != nil {
		return classify(ctx, what, err)
	}
	delta, err := fn(tx)
	if err != nil {
		return classify(ctx, what, err)
	}
	var next *registry.Snapshot
	if cur := s.Snapshot(); cur.Version()+1 == uint64(version) {
		next = cur.Apply(uint64(version), delta)
	} else if next, err = load(ctx, tx, uint64(version)); err != nil {
		return classify(ctx, what, err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, Channel, strconv.FormatInt(version, 10)); err != nil {
		return unavailable(ctx, what, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return unavailable(ctx, what, err)
	}
	s.Swap(next)
	return nil
}

// classify turns what a transaction step returned into the registry's
// errors: its own refusals pass through, integrity violations that the Go
// rules did not catch (a concurrent writer) become ErrExists or
// ErrInvalid, a cancelled context stays itself, and everything else —
// the server down, unreachable, shutting down or timing out — wraps
// ErrUnavailable.
func classify(ctx context.Context, what string, err error) error {
	switch {
	case errors.Is(err, registry.ErrInvalid), errors.Is(err, registry.ErrExists), errors.Is(err, registry.ErrNotFound):
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505": // unique_violation
			return fmt.Errorf("%s: %w", what, registry.ErrExists)
		case "23503": // foreign_key_violation
			return fmt.Errorf("%w: %s: a referenced consumer is not registered", registry.ErrInvalid, what)
		case "23514", "22P02", "22023": // check_violation, invalid text, invalid parameter
			return fmt.Errorf("%w: %s: refused by the database schema (%s)", registry.ErrInvalid, what, pe.Code)
		}
		switch pe.Code[:2] {
		case "08", "40", "53", "57", "58":
			// connection, rollback (serialization, deadlock), resources,
			// operator intervention (shutdown, timeout), system: try again.
			return unavailable(ctx, what, err)
		}
		// The rest (a permission denied, a missing table) is a broken
		// installation, not an outage: say so.
		return fmt.Errorf("registry: %s: %w", what, err)
	}
	return unavailable(ctx, what, err)
}

// unavailable wraps a failure to reach or use the database. The error
// text is pgx's, which never carries the password of the DSN.
func unavailable(ctx context.Context, what string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("registry: %s: %w", what, ctxErr)
	}
	return fmt.Errorf("%w: %s: %w", registry.ErrUnavailable, what, err)
}
