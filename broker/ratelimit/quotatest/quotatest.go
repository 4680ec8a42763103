// Package quotatest is the conformance suite of the quota contracts
// (ratelimit.DailyCounter and ratelimit.InFlight): every implementation,
// in memory or in a database, runs it, so the broker can swap them without
// changing what a consumer sees — exact caps under concurrency, the reset
// at Paris midnight, exclusive in-flight holds with expiry and release, bad
// input refused without effect, and errors (never a silent yes) when the
// store is down.
package quotatest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/ratelimit"
)

// Stores is one implementation of the contracts, fresh and empty.
type Stores struct {
	Daily    ratelimit.DailyCounter
	InFlight ratelimit.InFlight
	// Replica, when set, returns another replica's view of the same shared
	// state (another pool on the same database), for the tests across
	// replicas. Nil for per-process implementations.
	Replica func(t *testing.T) Stores
	// Down, when set, makes the backing store unavailable (a network cut);
	// the function it returns makes it available again.
	Down func(t *testing.T) (restore func())
}

// Factory builds fresh stores for one test. InFlight must read time from
// clock, which the suite moves.
type Factory func(t *testing.T, clock func() time.Time) Stores

// Clock is a manual clock for the InFlight expiry tests.
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

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// t0 is a summer afternoon in Paris (UTC+2).
var t0 = time.Date(2026, 6, 15, 14, 0, 0, 0, ratelimit.Paris)

// Run runs the suite against the stores newStores builds.
func Run(t *testing.T, newStores Factory) {
	fresh := func(t *testing.T) (Stores, *Clock) {
		t.Helper()
		clock := &Clock{t: t0}
		return newStores(t, clock.Now), clock
	}
	ctx := func(t *testing.T) context.Context {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		t.Cleanup(cancel)
		return c
	}

	t.Run("DailyCapIsExactUnder32ConcurrentTakers", func(t *testing.T) {
		s, _ := fresh(t)
		takers := []ratelimit.DailyCounter{s.Daily}
		if s.Replica != nil {
			takers = append(takers, s.Replica(t).Daily)
		}
		const cap, takers32, each = 100, 32, 8
		var granted, refused atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, takers32*each)
		ctx := ctx(t)
		for i := range takers32 {
			d := takers[i%len(takers)]
			wg.Go(func() {
				for range each {
					ok, retry, err := d.Take(ctx, "c1|svc", cap, t0)
					switch {
					case err != nil:
						errs <- err
					case ok:
						granted.Add(1)
					case retry != ratelimit.NextMidnight(t0).Sub(t0):
						errs <- errors.New("refusal with a retry that is not the time to Paris midnight: " + retry.String())
					default:
						refused.Add(1)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if granted.Load() != cap || refused.Load() != takers32*each-cap {
			t.Fatalf("granted %d, refused %d of %d; want exactly %d granted", granted.Load(), refused.Load(), takers32*each, cap)
		}
		if ok, _, err := s.Daily.Take(ctx, "c2|svc", 1, t0); !ok || err != nil {
			t.Fatalf("another key was limited by the first: %v, %v", ok, err)
		}
	})

	t.Run("DailyResetsAtParisMidnight", func(t *testing.T) {
		s, _ := fresh(t)
		ctx := ctx(t)
		late := time.Date(2026, 6, 15, 23, 59, 59, 500_000_000, ratelimit.Paris) // 21:59:59.5 UTC
		for i := range 2 {
			if ok, _, err := s.Daily.Take(ctx, "k", 2, late); !ok || err != nil {
				t.Fatalf("take %d: %v, %v", i, ok, err)
			}
		}
		ok, retry, err := s.Daily.Take(ctx, "k", 2, late)
		if ok || err != nil || retry != 500*time.Millisecond {
			t.Fatalf("over the cap: ok %v, retry %v, %v; want refused, retry 500ms", ok, retry, err)
		}
		midnight := time.Date(2026, 6, 16, 0, 0, 0, 0, ratelimit.Paris)
		if ok, _, err := s.Daily.Take(ctx, "k", 2, midnight); !ok || err != nil {
			t.Fatalf("at Paris midnight: %v, %v; want a new day", ok, err)
		}
		// UTC midnight (02:00 in Paris) is not a boundary.
		if ok, _, err := s.Daily.Take(ctx, "k", 2, time.Date(2026, 6, 16, 0, 30, 0, 0, time.UTC)); !ok || err != nil {
			t.Fatalf("second take of the new day: %v, %v", ok, err)
		}
		if ok, _, err := s.Daily.Take(ctx, "k", 2, time.Date(2026, 6, 16, 1, 0, 0, 0, time.UTC)); ok || err != nil {
			t.Fatalf("UTC midnight reset the Paris day: %v, %v", ok, err)
		}
		// Winter: Paris is UTC+1; the day ends at 23:00 UTC.
		dec := time.Date(2026, 12, 1, 22, 30, 0, 0, time.UTC)
		if ok, _, err := s.Daily.Take(ctx, "w", 1, dec); !ok || err != nil {
			t.Fatalf("winter take: %v, %v", ok, err)
		}
		if ok, retry, _ := s.Daily.Take(ctx, "w", 1, dec); ok || retry != 30*time.Minute {
			t.Fatalf("winter: ok %v, retry %v; want refused until 23:00 UTC (30m)", ok, retry)
		}
	})

	t.Run("DailyNoCapStillCounts", func(t *testing.T) {
		s, _ := fresh(t)
		ctx := ctx(t)
		for i := range 5 {
			if ok, _, err := s.Daily.Take(ctx, "k", 0, t0); !ok || err != nil {
				t.Fatalf("uncapped take %d: %v, %v", i, ok, err)
			}
		}
		if ok, _, err := s.Daily.Take(ctx, "k", 5, t0); ok || err != nil {
			t.Fatalf("a cap of 5 after 5 uncapped calls allowed a 6th: %v, %v", ok, err)
		}
		if ok, _, err := s.Daily.Take(ctx, "k", 6, t0); !ok || err != nil {
			t.Fatalf("a raised cap: %v, %v", ok, err)
		}
	})

	t.Run("DailyRefusesBadInputAndChangesNothing", func(t *testing.T) {
		s, _ := fresh(t)
		ctx := ctx(t)
		if _, _, err := s.Daily.Take(ctx, "", 1, t0); !errors.Is(err, ratelimit.ErrEmptyKey) {
			t.Fatalf("empty key: %v, want ErrEmptyKey", err)
		}
		if ok, _, err := s.Daily.Take(ctx, "k", -1, t0); ok || err == nil {
			t.Fatalf("negative cap: %v, %v; want an error", ok, err)
		}
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		if ok, _, err := s.Daily.Take(cancelled, "k", 1, t0); ok || !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled context: %v, %v; want context.Canceled", ok, err)
		}
		if ok, _, err := s.Daily.Take(ctx, "k", 1, t0); !ok || err != nil {
			t.Fatalf("after refused calls the unit is still there: %v, %v", ok, err)
		}
	})

	t.Run("InFlightIsExclusiveUnderConcurrency", func(t *testing.T) {
		s, _ := fresh(t)
		guards := []ratelimit.InFlight{s.InFlight}
		if s.Replica != nil {
			guards = append(guards, s.Replica(t).InFlight)
		}
		ctx := ctx(t)
		var won atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, 32)
		for i := range 32 {
			g := guards[i%len(guards)]
			wg.Go(func() {
				_, ok, err := g.Acquire(ctx, "dup", time.Minute)
				if err != nil {
					errs <- err
				} else if ok {
					won.Add(1)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if won.Load() != 1 {
			t.Fatalf("%d holders of one key, want 1", won.Load())
		}
		if _, ok, err := s.InFlight.Acquire(ctx, "other", time.Minute); !ok || err != nil {
			t.Fatalf("another key: %v, %v", ok, err)
		}
	})

	t.Run("InFlightReleaseFreesOnlyItsOwnHold", func(t *testing.T) {
		s, clock := fresh(t)
		ctx := ctx(t)
		release, ok, err := s.InFlight.Acquire(ctx, "k", time.Minute)
		if !ok || err != nil {
			t.Fatalf("acquire: %v, %v", ok, err)
		}
		if _, ok, _ := s.InFlight.Acquire(ctx, "k", time.Minute); ok {
			t.Fatal("acquired a held key")
		}
		release()
		release() // twice is harmless
		releaseB, ok, err := s.InFlight.Acquire(ctx, "k", time.Minute)
		if !ok || err != nil {
			t.Fatalf("after release: %v, %v", ok, err)
		}
		// B's hold expires and C takes the key: B's late release must not
		// free C's hold.
		clock.Advance(2 * time.Minute)
		if _, ok, err := s.InFlight.Acquire(ctx, "k", time.Minute); !ok || err != nil {
			t.Fatalf("after expiry: %v, %v", ok, err)
		}
		releaseB()
		if _, ok, err := s.InFlight.Acquire(ctx, "k", time.Minute); ok || err != nil {
			t.Fatalf("a stale release freed another holder's key: %v, %v", ok, err)
		}
	})

	t.Run("InFlightExpiresAfterTTL", func(t *testing.T) {
		s, clock := fresh(t)
		ctx := ctx(t)
		if _, ok, err := s.InFlight.Acquire(ctx, "k", 10*time.Second); !ok || err != nil {
			t.Fatalf("acquire: %v, %v", ok, err)
		}
		clock.Advance(9 * time.Second)
		if _, ok, err := s.InFlight.Acquire(ctx, "k", 10*time.Second); ok || err != nil {
			t.Fatalf("before the ttl: %v, %v; want refused", ok, err)
		}
		clock.Advance(time.Second)
		if _, ok, err := s.InFlight.Acquire(ctx, "k", 10*time.Second); !ok || err != nil {
			t.Fatalf("at the ttl: %v, %v; want the dead holder's key free", ok, err)
		}
	})

	t.Run("InFlightRefusesBadInputAndChangesNothing", func(t *testing.T) {
		s, _ := fresh(t)
		ctx := ctx(t)
		if _, _, err := s.InFlight.Acquire(ctx, "", time.Minute); !errors.Is(err, ratelimit.ErrEmptyKey) {
			t.Fatalf("empty key: %v", err)
		}
		if _, ok, err := s.InFlight.Acquire(ctx, "k", 0); ok || err == nil {
			t.Fatalf("zero ttl: %v, %v; want an error", ok, err)
		}
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		if _, ok, err := s.InFlight.Acquire(cancelled, "k", time.Minute); ok || !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled context: %v, %v", ok, err)
		}
		if _, ok, err := s.InFlight.Acquire(ctx, "k", time.Minute); !ok || err != nil {
			t.Fatalf("the refused calls held the key: %v, %v", ok, err)
		}
	})

	t.Run("StoreDownIsAnErrorAndRecovers", func(t *testing.T) {
		s, _ := fresh(t)
		if s.Down == nil {
			t.Skip("per-process store: it cannot be down")
		}
		ctx := ctx(t)
		// A held key survives the cut.
		if _, ok, err := s.InFlight.Acquire(ctx, "held", time.Hour); !ok || err != nil {
			t.Fatalf("acquire: %v, %v", ok, err)
		}
		restore := s.Down(t)
		if ok, _, err := s.Daily.Take(ctx, "k", 1, t0); ok || err == nil {
			t.Fatalf("daily take with the store down: ok %v, err %v; want an error", ok, err)
		}
		if _, ok, err := s.InFlight.Acquire(ctx, "k", time.Minute); ok || err == nil {
			t.Fatalf("acquire with the store down: ok %v, err %v; want an error", ok, err)
		}
		restore()
		// The pool reconnects on its own: wait for it, with a deadline.
		deadline := time.Now().Add(20 * time.Second)
		for {
			ok, _, err := s.Daily.Take(ctx, "k", 1, t0)
			if err == nil {
				if !ok {
					t.Fatal("the failed take counted a unit")
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("store back, take still fails: %v", err)
			}
			time.Sleep(50 * time.Millisecond) // poll for the reconnection
		}
		if _, ok, err := s.InFlight.Acquire(ctx, "held", time.Hour); ok || err != nil {
			t.Fatalf("a hold taken before the cut was lost: %v, %v", ok, err)
		}
		if _, ok, err := s.InFlight.Acquire(ctx, "k", time.Minute); !ok || err != nil {
			t.Fatalf("the failed acquire held the key: %v, %v", ok, err)
		}
	})
}
