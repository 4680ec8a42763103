package pgcluster_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/relais-broker/relais/broker/cluster"
	"github.com/relais-broker/relais/broker/cluster/clustertest"
	"github.com/relais-broker/relais/broker/cluster/pgcluster"
	"github.com/relais-broker/relais/internal/netcut"
	"github.com/relais-broker/relais/internal/pgdb"
	"github.com/relais-broker/relais/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// Short intervals keep the suite quick; the tests wait for events, never
// for these durations.
const (
	interval = 100 * time.Millisecond
	retry    = 50 * time.Millisecond
	check    = 50 * time.Millisecond
)

// env is a migrated database reached as a login in relais_broker (so the
// tests also prove the migration's grants suffice) through a proxy that
// can cut the network.
type env struct {
	admin string // DSN of the database owner (the tests' superuser)
	dsn   string // DSN of the relais_broker login, through proxy
	proxy *netcut.Proxy
}

func newEnv(t testing.TB) *env {
	t.Helper()
	c := pgtest.Shared(t)
	admin := c.NewDatabase(t)
	if _, err := pgdb.Migrate(context.Background(), admin); err != nil {
		t.Fatal(err)
	}
	proxy, err := netcut.New(fmt.Sprintf("127.0.0.1:%d", c.Port()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	u, err := url.Parse(c.NewLogin(t, admin, "relais_broker"))
	if err != nil {
		t.Fatal(err)
	}
	u.Host = proxy.Addr()
	q := u.Query()
	q.Set("connect_timeout", "2")
	u.RawQuery = q.Encode()
	return &env{admin: admin, dsn: u.String(), proxy: proxy}
}

func (e *env) node(t testing.TB, clock func() time.Time) *pgcluster.Cluster {
	t.Helper()
	return e.nodeRetrying(t, clock, retry)
}

func (e *env) nodeRetrying(t testing.TB, clock func() time.Time, retry time.Duration) *pgcluster.Cluster {
	t.Helper()
	return e.nodeWith(t, pgcluster.Options{Interval: interval, RetryInterval: retry, CheckInterval: check, Clock: clock})
}

// nodeWith is a replica with its own options.
func (e *env) nodeWith(t testing.TB, o pgcluster.Options) *pgcluster.Cluster {
	t.Helper()
	pool, err := pgdb.Connect(context.Background(), e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	c := pgcluster.New(pool, o)
	t.Cleanup(func() { _ = c.Leave(context.Background()) })
	return c
}

// exec runs sql as the database owner.
func (e *env) exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, e.admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatal(err)
	}
}

// terminate ends, as the superuser, the session holding the advisory lock
// named name (a replica's id or a lease), as a crash or a failover would,
// and waits until it is gone. It fails the test when no session holds it.
func (e *env) terminate(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, e.admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	err = conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(k.pid, 5000)) FROM pg_locks k
		JOIN cluster_lock l ON k.objid = l.key::oid
		WHERE k.locktype = 'advisory' AND k.classid = 1380731731 AND k.objsubid = 2 AND k.granted
		AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND l.name = $1`, name).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("%d sessions held lock %s, want 1", n, name)
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func replica(id string) cluster.Replica {
	return cluster.Replica{ID: id, DataAddr: "127.0.0.1:8443", AdminAddr: "127.0.0.1:8444", StartedAt: time.Date(2026, 6, 15, 14, 0, 0, 0, time.UTC)}
}

func TestPostgresConforms(t *testing.T) {
	clustertest.Run(t, func(t *testing.T, clock func() time.Time) clustertest.Nodes {
		e := newEnv(t)
		return clustertest.Nodes{
			First:      e.node(t, clock),
			Another:    func(t *testing.T) clustertest.Node { return e.node(t, clock) },
			Interval:   interval,
			LeaseRetry: retry,
		}
	})
}

// TestAKilledSessionFreesTheIDAndItsHolderStops: the id of a process whose
// connection died (pg_terminate_backend, as a crash would) is free at
// once; the first process, when it beats again, finds its id taken and
// Run stops with ErrIDInUse.
func TestAKilledSessionFreesTheIDAndItsHolderStops(t *testing.T) {
	e := newEnv(t)
	a, b := e.node(t, nil), e.node(t, nil)
	ctx := ctxT(t)
	if err := a.Join(ctx, replica("relais-a")); err != nil {
		t.Fatal(err)
	}
	if err := b.Join(ctx, replica("relais-a")); !errors.Is(err, cluster.ErrIDInUse) {
		t.Fatalf("second Join = %v, want ErrIDInUse", err)
	}
	e.terminate(t, "member:relais-a")
	if err := b.Join(ctx, replica("relais-a")); err != nil {
		t.Fatalf("Join after the holder's session died: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case err := <-done:
		if !errors.Is(err, cluster.ErrIDInUse) {
			t.Fatalf("Run of the replica whose id was taken = %v, want ErrIDInUse", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run went on after its id was taken")
	}
	if err := a.Beat(ctx); !errors.Is(err, cluster.ErrIDInUse) {
		t.Fatalf("Beat after the id was lost = %v, want ErrIDInUse for good", err)
	}
	if err := b.Beat(ctx); err != nil {
		t.Fatalf("the new holder's beat: %v", err)
	}
}

// TestHeartbeatsResumeAfterANetworkCut: beats fail while the database is
// unreachable (the session is gone with the connection), and the next one
// after the cut reconnects and holds the id again; meanwhile Live keeps the
// last count.
func TestHeartbeatsResumeAfterANetworkCut(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	clock := func() time.Time { return now }
	a, b := e.node(t, clock), e.node(t, clock)
	ctx := ctxT(t)
	if err := a.Join(ctx, replica("relais-a")); err != nil {
		t.Fatal(err)
	}
	if err := b.Join(ctx, replica("relais-b")); err != nil {
		t.Fatal(err)
	}
	if err := a.Beat(ctx); err != nil {
		t.Fatal(err)
	}
	e.proxy.Cut()
	if err := a.Beat(ctx); err == nil {
		t.Fatal("a beat through a cut network succeeded")
	}
	if got := a.Live(now.Add(time.Hour)); got != 2 {
		t.Fatalf("Live while cut off = %d, want the last count 2", got)
	}
	e.proxy.Restore()
	if err := a.Beat(ctx); err != nil {
		t.Fatalf("first beat after the cut: %v", err)
	}
	if err := b.Beat(ctx); err != nil {
		t.Fatalf("the other replica's first beat after the cut: %v", err)
	}
	if err := a.Beat(ctx); err != nil {
		t.Fatal(err)
	}
	if got := a.Live(now); got != 2 {
		t.Fatalf("Live after the cut = %d, want 2", got)
	}
	c := e.node(t, nil)
	if err := c.Join(ctx, replica("relais-a")); !errors.Is(err, cluster.ErrIDInUse) {
		t.Fatalf("Join with the id after its holder reconnected = %v, want ErrIDInUse", err)
	}
}

// TestAReplicaThatStopsBeatingDropsOut moves a replica's last beat back (by
// the database's clock) past the live window.
func TestAReplicaThatStopsBeatingDropsOut(t *testing.T) {
	e := newEnv(t)
	a, b := e.node(t, nil), e.node(t, nil)
	ctx := ctxT(t)
	for _, j := range []struct {
		n  *pgcluster.Cluster
		id string
	}{{a, "relais-a"}, {b, "relais-b"}} {
		if err := j.n.Join(ctx, replica(j.id)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Beat(ctx); err != nil {
		t.Fatal(err)
	}
	if got := a.Live(time.Now()); got != 2 {
		t.Fatalf("Live = %d, want 2", got)
	}
	// Within the window (two intervals late) it still counts.
	e.exec(t, `UPDATE cluster_member SET beat_at = now() - make_interval(secs => $1) WHERE id = 'relais-b'`, (2 * interval).Seconds())
	if err := a.Beat(ctx); err != nil {
		t.Fatal(err)
	}
	if got := a.Live(time.Now()); got != 2 {
		t.Fatalf("Live with a beat two intervals old = %d, want 2", got)
	}
	e.exec(t, `UPDATE cluster_member SET beat_at = now() - make_interval(secs => $1) WHERE id = 'relais-b'`, (4 * interval).Seconds())
	if err := a.Beat(ctx); err != nil {
		t.Fatal(err)
	}
	if got := a.Live(time.Now()); got != 1 {
		t.Fatalf("Live with a beat four intervals old = %d, want 1", got)
	}
	ms, err := a.List(ctx)
	if err != nil || len(ms) != 2 {
		t.Fatalf("List = %+v, %v", ms, err)
	}
	for _, m := range ms {
		if m.Live != (m.ID == "relais-a") {
			t.Fatalf("List = %+v; want relais-a live and relais-b not", ms)
		}
	}
}

// TestClockSkewBetweenReplicasDoesNotMatter: beat times are the server's,
// so a replica whose clock is an hour ahead still counts the others.
func TestClockSkewBetweenReplicasDoesNotMatter(t *testing.T) {
	e := newEnv(t)
	ahead := func() time.Time { return time.Now().Add(time.Hour) }
	// A long interval: what is checked is the skew, not how fast a loaded
	// machine gets from a beat to the question (the views must not age
	// out of the live window in between).
	a := e.nodeWith(t, pgcluster.Options{Interval: time.Minute, RetryInterval: retry, CheckInterval: check, Clock: ahead})
	b := e.nodeWith(t, pgcluster.Options{Interval: time.Minute, RetryInterval: retry, CheckInterval: check})
	ctx := ctxT(t)
	if err := a.Join(ctx, replica("relais-a")); err != nil {
		t.Fatal(err)
	}
	if err := b.Join(ctx, replica("relais-b")); err != nil {
		t.Fatal(err)
	}
	if err := a.Beat(ctx); err != nil {
		t.Fatal(err)
	}
	if got := a.Live(ahead()); got != 2 {
		t.Fatalf("Live of the replica an hour ahead = %d, want 2", got)
	}
	if got := b.Live(time.Now()); got != 2 {
		t.Fatalf("Live of the other = %d, want 2", got)
	}
}

// TestRunBeats: Run's heartbeats keep the others' view fresh.
func TestRunBeats(t *testing.T) {
	e := newEnv(t)
	a, b := e.node(t, nil), e.node(t, nil)
	ctx := ctxT(t)
	if err := a.Join(ctx, replica("relais-a")); err != nil {
		t.Fatal(err)
	}
	go func() { _ = a.Run(ctx) }()
	if err := b.Join(ctx, replica("relais-b")); err != nil {
		t.Fatal(err)
	}
	// a's Run picks b up at one of its beats.
	deadline := time.Now().Add(30 * time.Second)
	for a.Live(time.Now()) != 2 {
		if time.Now().After(deadline) {
			t.Fatal("Run's beats never counted the second replica")
		}
		time.Sleep(10 * time.Millisecond) // polling a state with no event to wait on
	}
}

// TestALeaseIsTakenOverWhenItsHoldersConnectionDies: while a replica
// holds the lease the other waits; when the holder's session is
// terminated, the holder's job is cancelled and the other replica runs it.
// The holder retries only after a minute, so the takeover is the other's.
func TestALeaseIsTakenOverWhenItsHoldersConnectionDies(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	type run struct {
		node    int
		stopped chan struct{}
	}
	started := make(chan run, 4)
	contend := func(i int, n *pgcluster.Cluster) {
		go func() {
			_ = n.Lease("retention").Run(ctx, func(jc context.Context) error {
				r := run{node: i, stopped: make(chan struct{})}
				started <- r
				<-jc.Done()
				close(r.stopped)
				return jc.Err()
			})
		}()
	}
	contend(0, e.nodeRetrying(t, nil, time.Minute))
	var first run
	select {
	case first = <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the first replica did not run the job")
	}
	other := e.node(t, nil)
	contend(1, other)
	e.terminate(t, "lease:retention")
	select {
	case <-first.stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("the job of the replica whose lease died was not cancelled")
	}
	select {
	case second := <-started:
		if second.node != 1 {
			t.Fatalf("replica %d ran the job, want the other one", second.node)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the other replica did not take the lease over")
	}
}

// TestALeaseComesBackAfterANetworkCut: the holder cut from the database
// stops its job; after the cut a replica holds the lease again.
func TestALeaseComesBackAfterANetworkCut(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	n := e.node(t, nil)
	l := n.Lease("retention")
	runs := make(chan chan struct{}, 4)
	go func() {
		_ = l.Run(ctx, func(jc context.Context) error {
			stopped := make(chan struct{})
			runs <- stopped
			<-jc.Done()
			close(stopped)
			return nil
		})
	}()
	var stopped chan struct{}
	select {
	case stopped = <-runs:
	case <-time.After(30 * time.Second):
		t.Fatal("the job did not start")
	}
	e.proxy.Cut()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("the job went on after the lease's connection was cut")
	}
	if l.Held() {
		t.Fatal("Held after the lease was lost")
	}
	e.proxy.Restore()
	select {
	case <-runs:
	case <-time.After(30 * time.Second):
		t.Fatal("the lease was not taken again after the cut")
	}
	if !l.Held() {
		t.Fatal("not Held while the job runs again")
	}
}

// TestBrokerRoleCannotRenumberLocks: relais_broker may number a lock name
// but never change or delete one, which could let two holders in.
func TestBrokerRoleCannotRenumberLocks(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	pool, err := pgxpool.New(ctx, e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `INSERT INTO cluster_lock (name) VALUES ('x')`); err != nil {
		t.Fatalf("insert a lock name as relais_broker: %v", err)
	}
	for _, sql := range []string{`UPDATE cluster_lock SET name = 'y'`, `DELETE FROM cluster_lock`} {
		if _, err := pool.Exec(ctx, sql); err == nil {
			t.Fatalf("%s as relais_broker succeeded: a renumbered lock could let two holders in", sql)
		}
	}
}

// TestJoinFirstFreeTakesTheNextID: a second dev process on the same
// database joins as the next replica.
func TestJoinFirstFreeTakesTheNextID(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	ids := []string{"dev-1", "dev-2"}
	r := replica("")
	for i, want := range ids {
		got, err := cluster.JoinFirstFree(ctx, e.node(t, nil), r, ids...)
		if err != nil || got != want {
			t.Fatalf("process %d joined as %q, %v; want %q", i+1, got, err, want)
		}
	}
	if _, err := cluster.JoinFirstFree(ctx, e.node(t, nil), r, ids...); !errors.Is(err, cluster.ErrIDInUse) {
		t.Fatalf("a third process with two ids = %v, want ErrIDInUse", err)
	}
	if _, err := cluster.JoinFirstFree(ctx, e.node(t, nil), r, "dev 3"); !errors.Is(err, cluster.ErrInvalid) {
		t.Fatalf("a bad id = %v, want ErrInvalid", err)
	}
}

// BenchmarkLive is the cost the rate-limit stage pays per call.
func BenchmarkLive(b *testing.B) {
	e := newEnv(b)
	ctx := ctxT(b)
	nodes := make([]*pgcluster.Cluster, 3)
	for i := range nodes {
		nodes[i] = e.node(b, nil)
		if err := nodes[i].Join(ctx, replica(fmt.Sprintf("relais-%d", i))); err != nil {
			b.Fatal(err)
		}
	}
	if err := nodes[0].Beat(ctx); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	b.ResetTimer()
	for range b.N {
		if nodes[0].Live(now) != 3 {
			b.Fatal("live count changed")
		}
	}
}

// BenchmarkBeat is one heartbeat round trip with three replicas.
func BenchmarkBeat(b *testing.B) {
	e := newEnv(b)
	ctx := ctxT(b)
	nodes := make([]*pgcluster.Cluster, 3)
	for i := range nodes {
		nodes[i] = e.node(b, nil)
		if err := nodes[i].Join(ctx, replica(fmt.Sprintf("relais-%d", i))); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		if err := nodes[0].Beat(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
