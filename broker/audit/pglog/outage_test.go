package pglog_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/audit/auditlog"
	"github.com/relais-broker/relais/broker/audit/audittest"
	"github.com/relais-broker/relais/internal/pgtest"
)

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestOutageFailsClosedAndRecovers stops PostgreSQL under a bounded load
// through auditlog.Log: appends fail while it is down (no success without
// a durable record), Healthy reports it, and appends succeed again after
// the restart with the same Log, storage and pool.
func TestOutageFailsClosedAndRecovers(t *testing.T) {
	c := pgtest.Start(t)
	pool := connect(t, migrated(t, c))
	signer := audittest.NewSigner(t)
	l, err := auditlog.Open(open(t, pool, ""), auditlog.Options{Signer: signer, CheckpointEvery: 100, CommitTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	const writers, maxEach = 8, 20000
	var (
		ok, failed atomic.Int64
		mu         sync.Mutex
		durable    = map[string]bool{} // request ids whose Append succeeded
		stop       = make(chan struct{})
		stopOnce   sync.Once
		wg         sync.WaitGroup
	)
	end := func() {
		stopOnce.Do(func() { close(stop) })
		wg.Wait()
	}
	defer end() // a failed wait still stops the load
	for w := range writers {
		wg.Go(func() {
			for i := range maxEach {
				select {
				case <-stop:
					return
				default:
				}
				r := audittest.Record(i)
				r.RequestID = fmt.Sprintf("w%d-%d", w, i)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := l.Append(ctx, r)
				cancel()
				if err != nil {
					failed.Add(1)
					time.Sleep(time.Millisecond) // a client backing off
					continue
				}
				ok.Add(1)
				mu.Lock()
				durable[r.RequestID] = true
				mu.Unlock()
			}
		})
	}

	waitFor(t, 30*time.Second, "appends before the outage", func() bool { return ok.Load() >= 200 })
	c.Stop(t)
	down := ok.Load()
	waitFor(t, 30*time.Second, "failing appends while down", func() bool { return failed.Load() >= 20 && l.Healthy() != nil })
	t.Logf("down: %v", l.Healthy())
	// While the server is down nothing more succeeds (at most the
	// commits that were on their way when it stopped).
	if n := ok.Load() - down; n > 2*writers {
		t.Fatalf("%d appends succeeded after the server stopped", n)
	}
	c.Restart(t)
	restarted := ok.Load()
	waitFor(t, 30*time.Second, "appends after the restart", func() bool { return ok.Load() >= restarted+200 })
	waitFor(t, 10*time.Second, "a healthy log", func() bool { return l.Healthy() == nil })
	end()
	t.Logf("%d appends succeeded, %d failed", ok.Load(), failed.Load())

	st := open(t, pool, "")
	got, err := st.Query(context.Background(), audit.Filter{Limit: int(ok.Load()+failed.Load()) + 10})
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	for _, r := range got {
		stored[r.RequestID] = true
	}
	for id := range durable {
		if !stored[id] {
			t.Fatalf("append %s succeeded but its record is not in the log", id)
		}
	}
	if rep := verify(t, st, signer.Public()); !rep.OK() || rep.Records != uint64(len(got)) {
		t.Fatalf("the chain after the outage: %+v (%d records stored)", rep, len(got))
	}
}
