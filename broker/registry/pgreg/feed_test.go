package pgreg_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/registry/pgreg"
	"github.com/relais-broker/relais/broker/registry/registrytest"
	"github.com/relais-broker/relais/internal/netcut"
	"github.com/relais-broker/relais/internal/pgdb"
	"github.com/relais-broker/relais/internal/pgtest"
)

// feedDB is one migrated database with its admin DSN, shared by the
// replicas of a test.
type feedDB struct {
	c     *pgtest.Cluster
	admin string
}

func newFeedDB(t *testing.T) feedDB {
	t.Helper()
	c := pgtest.Shared(t)
	dsn := c.NewDatabase(t)
	if _, err := pgdb.Migrate(context.Background(), dsn); err != nil {
		t.Fatal(err)
	}
	return feedDB{c: c, admin: dsn}
}

// replica opens a Store as relais_broker through dsn (a login of the
// database, possibly rewritten to go through a proxy).
func (d feedDB) replica(t *testing.T, dsn string) *pgreg.Store {
	t.Helper()
	pool, err := pgdb.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return openStore(t, pool, func() time.Time { return registrytest.Start })
}

// following is a running Follow: its reloads are counted and announced.
type following struct {
	reloads atomic.Int64
	first   chan struct{}
	once    sync.Once
}

// follow runs s.Follow with o until the test ends, and checks that it
// stops promptly, returning nil, when its context is cancelled. It
// returns once the feed has done its first (connect) reload, so that
// the listener is registered before the test writes.
func follow(t *testing.T, s *pgreg.Store, o pgreg.FollowOptions) *following {
	t.Helper()
	f := &following{first: make(chan struct{})}
	user := o.OnReload
	o.OnReload = func(v uint64, took time.Duration) {
		f.reloads.Add(1)
		f.once.Do(func() { close(f.first) })
		if user != nil {
			user(v, took)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Follow(ctx, o) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Follow returned %v after cancel, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Follow still running 10s after its context ended")
		}
	})
	select {
	case <-f.first:
	case err := <-done:
		t.Fatalf("Follow returned before its first reload: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("no reload 15s after Follow started")
	}
	return f
}

// waitFor polls cond every millisecond until it holds or limit passes,
// and returns how long it took.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not seen within %s", what, limit)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}

// TestFeedPropagatesChanges writes through replica A the changes a
// replica must enforce (suspension and resumption, grant added and
// revoked, credential revoked) and measures, for each, the delay from
// A's commit until B's snapshot enforces it. The safety net is pushed
// out of the way: what is measured is LISTEN/NOTIFY.
func TestFeedPropagatesChanges(t *testing.T) {
	ctx := context.Background()
	db := newFeedDB(t)
	a := db.replica(t, db.c.NewLogin(t, db.admin, "relais_broker"))
	b := db.replica(t, db.c.NewLogin(t, db.admin, "relais_broker"))
	follow(t, b, pgreg.FollowOptions{SafetyInterval: time.Hour})

	if _, err := a.AddConsumer(ctx, registry.Consumer{SIRET: registrytest.SiretA, Name: "A"}); err != nil {
		t.Fatal(err)
	}
	status := func(s *pgreg.Store) registry.Status {
		c, _ := s.Consumer(ctx, registrytest.SiretA)
		return c.Status
	}
	hasGrant := func(s *pgreg.Store, id string) bool {
		gs, _ := s.Grants(ctx, registrytest.SiretA, registrytest.FQ)
		return slices.ContainsFunc(gs, func(g registry.Grant) bool { return g.ID == id })
	}
	const rounds = 12 // 5 changes each: 60 changes
	var delays []time.Duration
	seen := func(what string, cond func() bool) {
		t.Helper()
		delays = append(delays, waitFor(t, 5*time.Second, what, func() bool { return b.Version() >= a.Version() && cond() }))
	}
	for i := range rounds {
		if _, err := a.SetConsumerStatus(ctx, registrytest.SiretA, registry.StatusSuspended); err != nil {
			t.Fatal(err)
		}
		seen("suspension", func() bool { return status(b) == registry.StatusSuspended })
		if _, err := a.SetConsumerStatus(ctx, registrytest.SiretA, registry.StatusActive); err != nil {
			t.Fatal(err)
		}
		seen("resumption", func() bool { return status(b) == registry.StatusActive })
		g, err := a.AddGrant(ctx, registrytest.Grant(registrytest.SiretA))
		if err != nil {
			t.Fatal(err)
		}
		seen("new grant", func() bool { return hasGrant(b, g.ID) })
		if _, err := a.RevokeGrant(ctx, g.ID); err != nil {
			t.Fatal(err)
		}
		seen("grant revocation", func() bool { return !hasGrant(b, g.ID) })
		serial := fmt.Sprintf("fee%04x", i)
		if _, err := a.RevokeCredentials(ctx, serial); err != nil {
			t.Fatal(err)
		}
		seen("credential revocation", func() bool { return b.Revoked(serial) })
	}
	slices.Sort(delays)
	p50, p99 := delays[len(delays)/2], delays[(len(delays)*99+99)/100-1]
	t.Logf("commit on A → enforced on B over %d changes: p50 %s, p99 %s, max %s", len(delays), p50, p99, delays[len(delays)-1])
	if p99 >= time.Second {
		t.Errorf("p99 %s, the target is under 1s", p99)
	}
}

// TestFeedCoalescesBursts commits 20 notified versions at once (one
// transaction, as a burst of writes arrives): B reloads once for them,
// not once per notification.
func TestFeedCoalescesBursts(t *testing.T) {
	ctx := context.Background()
	db := newFeedDB(t)
	a := db.replica(t, db.c.NewLogin(t, db.admin, "relais_broker"))
	b := db.replica(t, db.c.NewLogin(t, db.admin, "relais_broker"))
	f := follow(t, b, pgreg.FollowOptions{SafetyInterval: time.Hour})
	before := f.reloads.Load()

	conn, err := pgx.Connect(ctx, db.admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `BEGIN;
		UPDATE registry_version SET version = version + 20;
		SELECT pg_notify('`+pgreg.Channel+`', g::text) FROM generate_series(1, 20) g;
		COMMIT`); err != nil {
		t.Fatal(err)
	}
	// A marker notified after the burst: once B serves it, B has read
	// every notification of the burst (one connection delivers in order).
	if _, err := a.AddConsumer(ctx, registry.Consumer{SIRET: registrytest.SiretA, Name: "A"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the marker", func() bool { return b.Version() == 21 })
	if n := f.reloads.Load() - before; n > 2 {
		t.Fatalf("%d reloads for a burst of 20 notifications and a marker, want at most 2", n)
	}
}

// TestFeedCatchesUpAfterACut cuts replica B off the database (its pool
// and its listener go through a proxy) while A writes: the
// notifications are lost, and once the cut ends B's listener
// reconnects and reloads. The safety net is pushed out of the way, so
// only the reload on reconnect can bring the changes; the logs say what
// happened without the password.
func TestFeedCatchesUpAfterACut(t *testing.T) {
	ctx := context.Background()
	db := newFeedDB(t)
	a := db.replica(t, db.c.NewLogin(t, db.admin, "relais_broker"))
	login := db.c.NewLogin(t, db.admin, "relais_broker")
	u, err := url.Parse(login)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := netcut.New(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	u.Host = proxy.Addr()
	b := db.replica(t, u.String())
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	follow(t, b, pgreg.FollowOptions{SafetyInterval: time.Hour, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Logger: logger})

	if _, err := a.AddConsumer(ctx, registry.Consumer{SIRET: registrytest.SiretA, Name: "A"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the consumer", func() bool { return b.Version() == a.Version() })

	proxy.Cut()
	if _, err := a.SetConsumerStatus(ctx, registrytest.SiretA, registry.StatusSuspended); err != nil {
		t.Fatal(err)
	}
	if _, err := a.RevokeCredentials(ctx, "c0ffee"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the listener noticing the cut", func() bool { return strings.Contains(logs.String(), "disconnected") })
	if b.Version() == a.Version() || b.Revoked("c0ffee") {
		t.Fatal("B saw A's writes through a cut connection")
	}

	proxy.Restore()
	took := waitFor(t, 15*time.Second, "catching up after the cut", func() bool {
		c, _ := b.Consumer(ctx, registrytest.SiretA)
		return b.Version() == a.Version() && b.Revoked("c0ffee") && c.Status == registry.StatusSuspended
	})
	t.Logf("caught up %s after the cut ended", took)
	if password, _ := u.User.Password(); strings.Contains(logs.String(), password) {
		t.Fatalf("the feed logged the password:\n%s", logs.String())
	}
}

// TestFeedSafetyNetReloadsWithoutNotification moves the stored version
// without any NOTIFY (revocations written straight into the table): no
// notification, no reconnection, only the periodic version check can
// bring them, and it does, twice. Meanwhile the idle listener timed out
// and was pinged every 100ms: it must have stayed connected.
func TestFeedSafetyNetReloadsWithoutNotification(t *testing.T) {
	ctx := context.Background()
	db := newFeedDB(t)
	b := db.replica(t, db.c.NewLogin(t, db.admin, "relais_broker"))
	var logs syncBuffer
	follow(t, b, pgreg.FollowOptions{SafetyInterval: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})

	conn, err := pgx.Connect(ctx, db.admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for i, serial := range []string{"5afe", "5afe2"} {
		if _, err := conn.Exec(ctx, `BEGIN;
			UPDATE registry_version SET version = version + 1;
			INSERT INTO registry_credentials (serial, kind, subject, status, revoked_at) VALUES ('`+serial+`', '', '', 'revoked', now());
			COMMIT`); err != nil {
			t.Fatal(err)
		}
		took := waitFor(t, 5*time.Second, "an unnotified revocation", func() bool { return b.Revoked(serial) && b.Version() == uint64(i+1) })
		t.Logf("safety net (every 100ms) reloaded after %s", took)
	}
	if out := logs.String(); out != "" {
		t.Fatalf("the idle listener did not stay quiet:\n%s", out)
	}
}

// syncBuffer is a bytes.Buffer the feed's logger and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
