// Package pgcluster implements the cluster contracts (broker/cluster) on the
// PostgreSQL database the replicas share (tables of migration
// internal/pgdb/migrations/00005_cluster.sql): membership by heartbeats,
// replica ids and leader leases held by session advisory locks on
// dedicated connections. See package cluster for the design and its
// tolerances; this package passes broker/cluster/clustertest.
//
// Dedicated connections are opened with the pool's configuration but
// outside the pool, so a pool exhausted by calls never delays a heartbeat
// or a lease check. They ask the server for TCP keepalives and a TCP user
// timeout, so that the session of a replica cut off by the network (whose
// connection the server would otherwise keep for hours) ends, and frees
// its id and leases, within about KeepaliveBound. Their writes (heartbeats)
// commit without waiting for the WAL flush: one lost in a server crash
// only makes a replica look one beat older.
package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/relais-broker/relais/broker/cluster"
	"github.com/relais-broker/relais/internal/pgdb"
)

// lockSpace is the first key of every advisory lock of this package
// ("RLKS"); the second is cluster_lock.key. Two-key locks never collide
// with the one-key lock of the migrations.
const lockSpace int32 = 0x524c4b53

// KeepaliveBound is about how long the server keeps the session of a
// replica it can no longer reach (keepalives after 5 s idle, then every
// 2 s, 3 probes; unacknowledged data for 10 s).
const KeepaliveBound = 15 * time.Second

// staleAfter is how long the row of a replica that died without leaving is
// kept for the ops view.
const staleAfter = 24 * time.Hour

// Defaults of Options.
const (
	DefaultRetryInterval = 2 * time.Second
	DefaultCheckInterval = time.Second
)

// Options tune a Cluster; the zero value is the production setting.
type Options struct {
	// Interval is the heartbeat interval (cluster.DefaultInterval).
	Interval time.Duration
	// RetryInterval is how often a replica that does not hold a lease
	// tries to take it (DefaultRetryInterval).
	RetryInterval time.Duration
	// CheckInterval is how often the holder of a lease checks that its
	// connection, hence the lock, is still there (DefaultCheckInterval).
	CheckInterval time.Duration
	// Clock is the local clock Live's argument comes from (time.Now).
	Clock func() time.Time
	// Logger receives lease and membership transitions (discarded when nil).
	Logger *slog.Logger
}

// Cluster is one replica's membership and leases on a shared database.
type Cluster struct {
	pool      *pgxpool.Pool
	interval  time.Duration
	retry     time.Duration
	check     time.Duration
	opTimeout time.Duration
	clock     func() time.Time
	log       *slog.Logger

	keysMu sync.Mutex
	keys   map[string]int32

	mu        sync.Mutex // the membership session and state
	self      *cluster.Replica
	key       int32
	sess      *session
	abandoned *sessionID // a session dropped on error, maybe still alive server-side
	lost      error      // set when the id went to another process
	failing   bool       // the last beat failed (logged once per outage)
	left      chan struct{}
	hasLeft   bool

	view atomic.Pointer[view]
}

var (
	_ cluster.Membership = (*Cluster)(nil)
	_ cluster.Leaser     = (*Cluster)(nil)
)

// New returns the cluster view of a replica on pool (a pgdb.Connect pool
// on a migrated database, as relais_broker).
func New(pool *pgxpool.Pool, opts Options) *Cluster {
	c := &Cluster{
		pool:     pool,
		interval: orDefault(opts.Interval, cluster.DefaultInterval),
		retry:    orDefault(opts.RetryInterval, DefaultRetryInterval),
		check:    orDefault(opts.CheckInterval, DefaultCheckInterval),
		clock:    opts.Clock,
		log:      opts.Logger,
		keys:     map[string]int32{},
		left:     make(chan struct{}),
	}
	// A statement on a dedicated connection waits at most this long, so a
	// network that swallows packets fails the beat instead of hanging it.
	c.opTimeout = max(2*c.interval, time.Second)
	if c.clock == nil {
		c.clock = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.view.Store(&view{})
	return c
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// session is a dedicated connection, outside the pool, that holds one
// advisory lock.
type session struct {
	conn *pgx.Conn
	id   sessionID
}

// sessionID names a server session across pid reuse.
type sessionID struct {
	pid   int32
	start time.Time
}

// openSession opens a dedicated connection and, if a session of ours was
// abandoned on error, terminates it: it may still hold a lock we need.
func (c *Cluster) openSession(ctx context.Context, abandoned *sessionID) (*session, error) {
	cfg := c.pool.Config().ConnConfig
	rp := cfg.RuntimeParams
	rp["tcp_keepalives_idle"] = "5"
	rp["tcp_keepalives_interval"] = "2"
	rp["tcp_keepalives_count"] = "3"
	rp["tcp_user_timeout"] = "10000"
	// A heartbeat lost in a server crash is worth no WAL flush.
	rp["synchronous_commit"] = "off"
	if app := rp["application_name"]; app != "" && !strings.HasSuffix(app, " cluster") {
		rp["application_name"] = app + " cluster"
	}
	password := cfg.Password
	ctx, cancel := context.WithTimeout(ctx, c.opTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, pgdb.Redact(fmt.Errorf("connect to database: %w", err), password)
	}
	s := &session{conn: conn}
	err = conn.QueryRow(ctx, `SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()`).Scan(&s.id.pid, &s.id.start)
	if err != nil {
		s.close()
		return nil, pgdb.Redact(fmt.Errorf("open cluster session: %w", err), password)
	}
	if abandoned != nil {
		// pg_terminate_backend waits (up to 2 s) for the session to end, so
		// its locks are free when it returns. The pid and start time name
		// that session only, never a later one with a reused pid. A failure
		// leaves the old session to the keepalives.
		if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid, 2000) FROM pg_stat_activity WHERE pid = $1 AND backend_start = $2`, abandoned.pid, abandoned.start); err != nil {
			c.log.Warn("cluster: could not end an abandoned database session", "pid", abandoned.pid, "error", err)
		}
	}
	return s, nil
}

// tryLock takes the advisory lock key without waiting.
func (s *session) tryLock(ctx context.Context, key int32, timeout time.Duration) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var ok bool
	err := s.conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1::int4, $2::int4)`, lockSpace, key).Scan(&ok)
	return ok, err
}

// close ends the session, which frees its locks.
func (s *session) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = s.conn.Close(ctx)
}

// lockKey is the advisory lock key of name, numbered in cluster_lock on
// first use.
func (c *Cluster) lockKey(ctx context.Context, name string) (int32, error) {
	c.keysMu.Lock()
	key, ok := c.keys[name]
	c.keysMu.Unlock()
	if ok {
		return key, nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.opTimeout)
	defer cancel()
	const q = `WITH ins AS (INSERT INTO cluster_lock (name) VALUES ($1) ON CONFLICT (name) DO NOTHING RETURNING key)
SELECT key FROM ins UNION ALL SELECT key FROM cluster_lock WHERE name = $1`
	var err error
	// A concurrent insert of the same name, committed after this
	// statement's snapshot, leaves it with no row: the second try sees it.
	for range 2 {
		if err = c.pool.QueryRow(ctx, q, name).Scan(&key); err == nil {
			c.keysMu.Lock()
			c.keys[name] = key
			c.keysMu.Unlock()
			return key, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			break
		}
	}
	return 0, fmt.Errorf("number lock %s: %w", name, err)
}
