package ratelimit_test

import (
	"context"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/ratelimit"
	"github.com/relais-broker/relais/broker/ratelimit/quotatest"
)

func TestMemoryStoresConform(t *testing.T) {
	quotatest.Run(t, func(t *testing.T, clock func() time.Time) quotatest.Stores {
		return quotatest.Stores{Daily: ratelimit.NewDaily(), InFlight: ratelimit.NewMemInFlight(clock)}
	})
}

func TestDailySeedCountsToday(t *testing.T) {
	d := ratelimit.NewDaily()
	now := time.Date(2026, 6, 15, 14, 0, 0, 0, ratelimit.Paris)
	d.Seed(ratelimit.Day(now), map[string]int{"k": 2}, now)
	d.Seed(ratelimit.Day(now.AddDate(0, 0, -1)), map[string]int{"k": 100}, now) // yesterday: ignored
	if n := d.Count("k", now); n != 2 {
		t.Fatalf("count after seeding = %d, want 2", n)
	}
	ctx := context.Background()
	if ok, _, err := d.Take(ctx, "k", 3, now); !ok || err != nil {
		t.Fatalf("third call under a cap of 3: %v, %v", ok, err)
	}
	if ok, _, _ := d.Take(ctx, "k", 3, now); ok {
		t.Fatal("a seeded count was not charged against the cap")
	}
}

func TestMemInFlightForgetsDeadHolders(t *testing.T) {
	now := time.Date(2026, 6, 15, 14, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	f := ratelimit.NewMemInFlight(clock)
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c"} {
		if _, ok, err := f.Acquire(ctx, k, time.Second); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	now = now.Add(2 * time.Minute)
	if _, ok, err := f.Acquire(ctx, "d", time.Second); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if n := ratelimit.HeldForTest(f); n != 1 {
		t.Fatalf("%d holds kept after a sweep, want 1 (the live one)", n)
	}
}
