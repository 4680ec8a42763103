// Package clustertest is the conformance suite of the cluster contracts
// (cluster.Membership and cluster.Leaser): the single-process Local and
// the PostgreSQL implementation both run it, so cmd/relaisd can pick
// either without changing what the rest of the broker sees — bad input
// refused without effect, Live never below one, a replica id held by one
// live process only, leases that run a job on one replica at a time and
// are taken over when the holder stops.
package clustertest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/cluster"
)

// Node is one replica's view of the cluster.
type Node interface {
	cluster.Membership
	cluster.Leaser
}

// Nodes is one implementation, fresh and empty.
type Nodes struct {
	// First is a replica's node.
	First Node
	// Another, when set, returns another replica's node on the same shared
	// state (another pool on the same database); nil for per-process
	// implementations.
	Another func(t *testing.T) Node
	// Interval is the heartbeat interval the nodes were built with.
	Interval time.Duration
	// LeaseRetry is how often a node retries a lease it does not hold (0
	// for implementations that wait instead).
	LeaseRetry time.Duration
}

// Factory builds fresh nodes for one test, reading the local time from
// clock.
type Factory func(t *testing.T, clock func() time.Time) Nodes

// Clock is a manual clock.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// t0 is when every test's clock starts.
var t0 = time.Date(2026, 6, 15, 14, 0, 0, 0, time.UTC)

// wait bounds every wait for an event of the suite.
const wait = 20 * time.Second

func replica(id string) cluster.Replica {
	return cluster.Replica{ID: id, DataAddr: "127.0.0.1:8443", AdminAddr: "127.0.0.1:8444", StartedAt: t0.Add(-time.Minute)}
}

// Run runs the suite against the nodes newNodes builds.
func Run(t *testing.T, newNodes Factory) {
	fresh := func(t *testing.T) (Nodes, *Clock) {
		t.Helper()
		clock := &Clock{t: t0}
		return newNodes(t, clock.Now), clock
	}
	ctx := func(t *testing.T) context.Context {
		c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		t.Cleanup(cancel)
		return c
	}

	t.Run("JoinRefusesBadInputWithoutEffect", func(t *testing.T) {
		n, clock := fresh(t)
		ok := replica("relais-a")
		bad := map[string]cluster.Replica{}
		for name, mut := range map[string]func(*cluster.Replica){
			"empty id":           func(r *cluster.Replica) { r.ID = "" },
			"id with a space":    func(r *cluster.Replica) { r.ID = "relais a" },
			"id with a slash":    func(r *cluster.Replica) { r.ID = "a/b" },
			"id starting with -": func(r *cluster.Replica) { r.ID = "-a" },
			"id of 64 bytes":     func(r *cluster.Replica) { r.ID = string(make64()) },
			"data addr no port":  func(r *cluster.Replica) { r.DataAddr = "127.0.0.1" },
			"admin addr junk":    func(r *cluster.Replica) { r.AdminAddr = "::::" },
			"no start time":      func(r *cluster.Replica) { r.StartedAt = time.Time{} },
		} {
			r := ok
			mut(&r)
			bad[name] = r
		}
		for name, r := range bad {
			if err := n.First.Join(ctx(t), r); !errors.Is(err, cluster.ErrInvalid) {
				t.Errorf("%s: Join = %v, want ErrInvalid", name, err)
			}
		}
		if got := n.First.Live(clock.Now()); got != 1 {
			t.Fatalf("Live after refused joins = %d, want 1", got)
		}
		ms, err := n.First.List(ctx(t))
		if err != nil || len(ms) != 0 {
			t.Fatalf("List after refused joins = %v, %v; want nothing", ms, err)
		}
		if err := n.First.Join(ctx(t), ok); err != nil {
			t.Fatalf("a valid Join after refused ones: %v", err)
		}
	})

	t.Run("JoinListsSelfAndRefusesASecondJoin", func(t *testing.T) {
		n, clock := fresh(t)
		r := replica("relais-a")
		if err := n.First.Join(ctx(t), r); err != nil {
			t.Fatal(err)
		}
		if got := n.First.Live(clock.Now()); got != 1 {
			t.Fatalf("Live alone = %d, want 1", got)
		}
		ms, err := n.First.List(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) != 1 {
			t.Fatalf("List = %+v, want this replica only", ms)
		}
		m := ms[0]
		if m.ID != r.ID || m.DataAddr != r.DataAddr || m.AdminAddr != r.AdminAddr || !m.StartedAt.Equal(r.StartedAt) || !m.Self || !m.Live || m.LastBeat.IsZero() {
			t.Fatalf("List = %+v, want %+v, self, live, with a beat time", m, r)
		}
		if err := n.First.Join(ctx(t), replica("relais-b")); !errors.Is(err, cluster.ErrJoined) {
			t.Fatalf("second Join = %v, want ErrJoined", err)
		}
	})

	t.Run("RunAndBeatNeedJoin", func(t *testing.T) {
		n, _ := fresh(t)
		if err := n.First.Run(ctx(t)); !errors.Is(err, cluster.ErrNotJoined) {
			t.Fatalf("Run before Join = %v, want ErrNotJoined", err)
		}
		if err := n.First.Beat(ctx(t)); !errors.Is(err, cluster.ErrNotJoined) {
			t.Fatalf("Beat before Join = %v, want ErrNotJoined", err)
		}
	})

	t.Run("RunReturnsOnLeaveAndOnCancel", func(t *testing.T) {
		n, clock := fresh(t)
		if err := n.First.Join(ctx(t), replica("relais-a")); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- n.First.Run(ctx(t)) }()
		if err := n.First.Beat(ctx(t)); err != nil {
			t.Fatalf("Beat while Run runs: %v", err)
		}
		if err := n.First.Leave(ctx(t)); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Run after Leave = %v, want nil", err)
			}
		case <-time.After(wait):
			t.Fatal("Run did not return after Leave")
		}
		if err := n.First.Leave(ctx(t)); err != nil {
			t.Fatalf("second Leave = %v, want nil (idempotent)", err)
		}
		if ms, err := n.First.List(ctx(t)); err != nil || len(ms) != 0 {
			t.Fatalf("List after Leave = %+v, %v; want nothing", ms, err)
		}
		if got := n.First.Live(clock.Now()); got != 1 {
			t.Fatalf("Live after Leave = %d, want 1", got)
		}

		m, _ := fresh(t)
		if err := m.First.Join(ctx(t), replica("relais-c")); err != nil {
			t.Fatal(err)
		}
		c, cancel := context.WithCancel(ctx(t))
		go func() { done <- m.First.Run(c) }()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Run after cancel = %v, want nil", err)
			}
		case <-time.After(wait):
			t.Fatal("Run did not return after its context was cancelled")
		}
		if err := m.First.Leave(ctx(t)); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("LiveIsNeverBelowOne", func(t *testing.T) {
		n, _ := fresh(t)
		for _, at := range []time.Time{{}, t0, t0.Add(1000 * time.Hour), t0.Add(-1000 * time.Hour)} {
			if got := n.First.Live(at); got < 1 {
				t.Fatalf("Live(%v) before Join = %d", at, got)
			}
		}
		if err := n.First.Join(ctx(t), replica("relais-a")); err != nil {
			t.Fatal(err)
		}
		for _, at := range []time.Time{{}, t0, t0.Add(1000 * time.Hour), t0.Add(-1000 * time.Hour)} {
			if got := n.First.Live(at); got < 1 {
				t.Fatalf("Live(%v) after Join = %d", at, got)
			}
		}
	})

	t.Run("ReplicasCountEachOther", func(t *testing.T) {
		n, clock := fresh(t)
		if n.Another == nil {
			t.Skip("per-process implementation")
		}
		a, b := n.First, n.Another(t)
		if err := a.Join(ctx(t), replica("relais-a")); err != nil {
			t.Fatal(err)
		}
		if err := b.Join(ctx(t), replica("relais-b")); err != nil {
			t.Fatal(err)
		}
		if got := b.Live(clock.Now()); got != 2 {
			t.Fatalf("Live of the second replica after its Join = %d, want 2", got)
		}
		if err := a.Beat(ctx(t)); err != nil {
			t.Fatal(err)
		}
		now := clock.Now()
		if got := a.Live(now); got != 2 {
			t.Fatalf("Live of the first replica after a beat = %d, want 2", got)
		}
		if got := a.Live(now.Add(2 * n.Interval)); got != 2 {
			t.Fatalf("Live two intervals later = %d, want 2", got)
		}
		// A replica that cannot refresh keeps its last count rather than
		// raising its own share.
		if got := a.Live(now.Add(100 * n.Interval)); got != 2 {
			t.Fatalf("Live with a stale view = %d, want the last count, 2", got)
		}
		ms, err := a.List(ctx(t))
		if err != nil || len(ms) != 2 || !ms[0].Live || !ms[1].Live {
			t.Fatalf("List = %+v, %v; want two live replicas", ms, err)
		}
		if ms[0].Self == ms[1].Self {
			t.Fatalf("List = %+v; want exactly one marked self", ms)
		}
	})

	t.Run("LeaveDropsTheCountAtTheOthersNextBeat", func(t *testing.T) {
		n, clock := fresh(t)
		if n.Another == nil {
			t.Skip("per-process implementation")
		}
		a, b := n.First, n.Another(t)
		if err := a.Join(ctx(t), replica("relais-a")); err != nil {
			t.Fatal(err)
		}
		if err := b.Join(ctx(t), replica("relais-b")); err != nil {
			t.Fatal(err)
		}
		if err := a.Beat(ctx(t)); err != nil {
			t.Fatal(err)
		}
		if got := a.Live(clock.Now()); got != 2 {
			t.Fatalf("Live = %d, want 2", got)
		}
		if err := b.Leave(ctx(t)); err != nil {
			t.Fatal(err)
		}
		if err := a.Beat(ctx(t)); err != nil {
			t.Fatal(err)
		}
		if got := a.Live(clock.Now()); got != 1 {
			t.Fatalf("Live at the next beat after the other left = %d, want 1", got)
		}
	})

	t.Run("AReplicaIDIsHeldByOneLiveProcess", func(t *testing.T) {
		n, _ := fresh(t)
		if n.Another == nil {
			t.Skip("per-process implementation")
		}
		a, b := n.First, n.Another(t)
		if err := a.Join(ctx(t), replica("relais-a")); err != nil {
			t.Fatal(err)
		}
		if err := b.Join(ctx(t), replica("relais-a")); !errors.Is(err, cluster.ErrIDInUse) {
			t.Fatalf("Join with a live replica's id = %v, want ErrIDInUse", err)
		}
		ms, err := a.List(ctx(t))
		if err != nil || len(ms) != 1 || ms[0].DataAddr != replica("relais-a").DataAddr {
			t.Fatalf("List after the refused Join = %+v, %v; want the first replica alone, unchanged", ms, err)
		}
		if err := b.Join(ctx(t), replica("relais-b")); err != nil {
			t.Fatalf("Join with its own id after a refusal: %v", err)
		}
		if err := a.Leave(ctx(t)); err != nil {
			t.Fatal(err)
		}
		c := n.Another(t)
		if err := c.Join(ctx(t), replica("relais-a")); err != nil {
			t.Fatalf("Join with the id of a replica that left: %v", err)
		}
	})

	t.Run("LeaseRefusesBadInput", func(t *testing.T) {
		n, _ := fresh(t)
		ran := false
		job := func(context.Context) error { ran = true; return nil }
		for _, name := range []string{"", "has space", "a/b", string(make64())} {
			if err := n.First.Lease(name).Run(ctx(t), job); !errors.Is(err, cluster.ErrInvalid) {
				t.Errorf("Lease(%q).Run = %v, want ErrInvalid", name, err)
			}
		}
		if err := n.First.Lease("purge").Run(ctx(t), nil); !errors.Is(err, cluster.ErrInvalid) {
			t.Errorf("Run(nil job) = %v, want ErrInvalid", err)
		}
		if ran {
			t.Fatal("a refused lease ran its job")
		}
	})

	t.Run("LeaseRunsTheJobAndReturnsWhatItReturns", func(t *testing.T) {
		n, _ := fresh(t)
		l := n.First.Lease("purge")
		boom := errors.New("boom")
		var heldInside atomic.Bool
		err := l.Run(ctx(t), func(context.Context) error { heldInside.Store(l.Held()); return boom })
		if !errors.Is(err, boom) {
			t.Fatalf("Run = %v, want the job's error", err)
		}
		if !heldInside.Load() {
			t.Fatal("Held was false while the job ran")
		}
		if l.Held() {
			t.Fatal("Held after Run returned")
		}
		runs := 0
		if err := l.Run(ctx(t), func(context.Context) error { runs++; return nil }); err != nil || runs != 1 {
			t.Fatalf("Run of a job that finishes = %v after %d runs; want nil after 1", err, runs)
		}
	})

	t.Run("LeaseCancelStopsTheJob", func(t *testing.T) {
		n, _ := fresh(t)
		l := n.First.Lease("purge")
		c, cancel := context.WithCancel(ctx(t))
		started := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- l.Run(c, func(jc context.Context) error {
				close(started)
				<-jc.Done()
				return jc.Err()
			})
		}()
		select {
		case <-started:
		case <-time.After(wait):
			t.Fatal("the job did not start")
		}
		if err := l.Run(ctx(t), func(context.Context) error { return nil }); !errors.Is(err, cluster.ErrLeaseRunning) {
			t.Fatalf("a second Run of one lease = %v, want ErrLeaseRunning", err)
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Run after cancel = %v, want nil", err)
			}
		case <-time.After(wait):
			t.Fatal("Run did not return after cancel")
		}
	})

	t.Run("OneContenderRunsAndTheOtherTakesOver", func(t *testing.T) {
		n, _ := fresh(t)
		other := n.First
		if n.Another != nil {
			other = n.Another(t)
		}
		var running, maxRunning atomic.Int32
		started := make(chan int, 2)
		contender := func(i int, node Node) (cancel func(), done chan error) {
			c, cancel := context.WithCancel(ctx(t))
			done = make(chan error, 1)
			go func() {
				done <- node.Lease("purge").Run(c, func(jc context.Context) error {
					r := running.Add(1)
					for m := maxRunning.Load(); r > m && !maxRunning.CompareAndSwap(m, r); m = maxRunning.Load() {
					}
					started <- i
					<-jc.Done()
					running.Add(-1)
					return nil
				})
			}()
			return cancel, done
		}
		cancel0, done0 := contender(0, n.First)
		cancel1, done1 := contender(1, other)
		defer cancel0()
		defer cancel1()
		var first int
		select {
		case first = <-started:
		case <-time.After(wait):
			t.Fatal("no contender ran the job")
		}
		// Give the other contender several chances to take the lease too.
		hold := 5 * max(n.LeaseRetry, 20*time.Millisecond)
		select {
		case i := <-started:
			t.Fatalf("contender %d ran while contender %d held the lease", i, first)
		case <-time.After(hold):
		}
		cancels, dones := []func(){cancel0, cancel1}, []chan error{done0, done1}
		cancels[first]()
		if err := <-dones[first]; err != nil {
			t.Fatalf("the holder's Run after cancel = %v", err)
		}
		select {
		case i := <-started:
			if i == first {
				t.Fatal("the cancelled holder ran again")
			}
		case <-time.After(wait):
			t.Fatal("the other contender did not take over after the holder stopped")
		}
		if m := maxRunning.Load(); m != 1 {
			t.Fatalf("%d jobs ran at once, want 1", m)
		}
	})
}

func make64() []byte {
	b := make([]byte, 64)
	for i := range b {
		b[i] = 'a'
	}
	return b
}
