// Package pgquota keeps the quota state in PostgreSQL (tables of migration
// internal/pgdb/migrations/00004_quota.sql), so that every relaisd replica
// shares it: daily caps are exact across replicas (one atomic statement
// per unit) and the duplicate-in-flight guard sees the calls of every
// replica. It implements ratelimit.DailyCounter and ratelimit.InFlight and
// passes broker/ratelimit/quotatest.
//
// Durability is traded for latency where the state allows it, so that a
// call does not wait for a WAL flush on the quota path:
//   - a daily unit commits with synchronous_commit off: a crash of the
//     database server loses at most the counts of the last few hundred
//     milliseconds (3 × wal_writer_delay), so a cap can be exceeded by the
//     calls of that window after such a crash, never otherwise;
//   - in-flight holds live in an UNLOGGED table: a database crash or a
//     failover empties it, which releases every hold — the calls they
//     guarded were cut by the same event.
package pgquota

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/relais-broker/relais/broker/ratelimit"
)

// releaseTimeout bounds the DELETE of a release, which runs after the call
// (whose context may be done); a release that fails leaves the row to
// expire.
const releaseTimeout = 5 * time.Second

// sweepEvery is how often a replica deletes expired in-flight rows that
// no holder released (holders that died).
const sweepEvery = time.Minute

// Daily is the PostgreSQL ratelimit.DailyCounter.
type Daily struct {
	pool *pgxpool.Pool

	mu      sync.Mutex
	cleaned string // the Paris day whose older rows this replica deleted
}

var _ ratelimit.DailyCounter = (*Daily)(nil)

// NewDaily returns a counter on pool (a pgdb.Connect pool, migrated).
func NewDaily(pool *pgxpool.Pool) *Daily { return &Daily{pool: pool} }

// takeSQL takes one unit in one statement: the row is created at 1, or
// incremented while under the cap; at the cap no row is returned. Row
// locks make it exact under concurrency, across connections and replicas.
const takeSQL = `INSERT INTO quota_daily AS q (day, key, n) VALUES ($1::date, $2, 1)
ON CONFLICT (day, key) DO UPDATE SET n = q.n + 1 WHERE $3 = 0 OR q.n < $3
RETURNING n`

// Take counts one call for key on now's Paris day, unless cap is reached.
func (d *Daily) Take(ctx context.Context, key string, dailyCap int, now time.Time) (bool, time.Duration, error) {
	if err := ratelimit.CheckTake(ctx, key, dailyCap); err != nil {
		return false, 0, err
	}
	day := ratelimit.Day(now)
	if err := d.cleanBefore(ctx, day); err != nil {
		return false, 0, err
	}
	// One round trip: the unit is taken in its own transaction, committed
	// without waiting for the WAL flush (see the package comment).
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue("SET LOCAL synchronous_commit = off")
	b.Queue(takeSQL, day, key, dailyCap)
	b.Queue("COMMIT")
	res := d.pool.SendBatch(ctx, b)
	var n int
	_, err := res.Exec()
	if err == nil {
		_, err = res.Exec()
	}
	if err == nil {
		err = res.QueryRow().Scan(&n)
	}
	if err == nil || errors.Is(err, pgx.ErrNoRows) {
		if _, cerr := res.Exec(); cerr != nil {
			err = cerr
		}
	}
	if cerr := res.Close(); err == nil && cerr != nil {
		err = cerr
	}
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, ratelimit.NextMidnight(now).Sub(now), nil
	case err != nil:
		return false, 0, fmt.Errorf("take a daily quota unit: %w", err)
	}
	return true, 0, nil
}

// cleanBefore deletes the counters of days before yesterday, once per day
// and replica (yesterday stays for replicas whose clock lags).
func (d *Daily) cleanBefore(ctx context.Context, day string) error {
	d.mu.Lock()
	done := d.cleaned == day
	d.mu.Unlock()
	if done {
		return nil
	}
	if _, err := d.pool.Exec(ctx, "DELETE FROM quota_daily WHERE day < $1::date - 1", day); err != nil {
		return fmt.Errorf("delete old daily quota counters: %w", err)
	}
	d.mu.Lock()
	d.cleaned = day
	d.mu.Unlock()
	return nil
}

// Count is key's count on now's Paris day (for tests and metrics).
func (d *Daily) Count(ctx context.Context, key string, now time.Time) (int, error) {
	var n int
	err := d.pool.QueryRow(ctx, "SELECT n FROM quota_daily WHERE day = $1::date AND key = $2", ratelimit.Day(now), key).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read a daily quota counter: %w", err)
	}
	return n, nil
}

// InFlight is the PostgreSQL ratelimit.InFlight: one row per key held,
// with an expiry.
type InFlight struct {
	pool *pgxpool.Pool
	now  func() time.Time

	mu    sync.Mutex
	swept time.Time
}

var _ ratelimit.InFlight = (*InFlight)(nil)

// NewInFlight returns a guard on pool reading time from clock (nil:
// time.Now). Expiry compares the replicas' clocks: keep them in sync (NTP),
// the ttl absorbs small skews.
func NewInFlight(pool *pgxpool.Pool, clock func() time.Time) *InFlight {
	if clock == nil {
		clock = time.Now
	}
	return &InFlight{pool: pool, now: clock}
}

// acquireSQL inserts the hold, or takes over an expired one, in one
// statement; a live hold returns no row.
const acquireSQL = `INSERT INTO quota_inflight AS f (key, holder, expires_at) VALUES ($1, $2, $3)
ON CONFLICT (key) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at WHERE f.expires_at <= $4
RETURNING true`

// Acquire holds key for at most ttl unless another call holds it.
func (f *InFlight) Acquire(ctx context.Context, key string, ttl time.Duration) (func(), bool, error) {
	if err := ratelimit.CheckAcquire(ctx, key, ttl); err != nil {
		return nil, false, err
	}
	now := f.now()
	if err := f.sweep(ctx, now); err != nil {
		return nil, false, err
	}
	holder := make([]byte, 16)
	if _, err := rand.Read(holder); err != nil {
		return nil, false, err
	}
	var took bool
	err := f.pool.QueryRow(ctx, acquireSQL, key, holder, now.Add(ttl), now).Scan(&took)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("take the in-flight guard: %w", err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
			defer cancel()
			// Only our own hold: after expiry another call may have taken the key.
			_, _ = f.pool.Exec(ctx, "DELETE FROM quota_inflight WHERE key = $1 AND holder = $2", key, holder)
		})
	}, true, nil
}

// sweep deletes expired holds, at most once per sweepEvery.
func (f *InFlight) sweep(ctx context.Context, now time.Time) error {
	f.mu.Lock()
	due := now.Sub(f.swept) >= sweepEvery
	f.mu.Unlock()
	if !due {
		return nil
	}
	if _, err := f.pool.Exec(ctx, "DELETE FROM quota_inflight WHERE expires_at <= $1", now); err != nil {
		return fmt.Errorf("delete expired in-flight holds: %w", err)
	}
	f.mu.Lock()
	f.swept = now
	f.mu.Unlock()
	return nil
}
