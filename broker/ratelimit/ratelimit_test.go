package ratelimit_test

import (
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/ratelimit"
	"github.com/relais-broker/relais/broker/registry"
)

func TestBucket(t *testing.T) {
	t.Parallel()
	l := ratelimit.New()
	q := registry.Quota{RatePerSecond: 2, Burst: 3}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 3; i++ {
		if v := l.Allow("a", q, t0); !v.Allowed || v.Limit != 3 || v.Remaining != 2-i {
			t.Fatalf("call %d: %+v", i, v)
		}
	}
	v := l.Allow("a", q, t0)
	if v.Allowed || v.RetryAfter != 500*time.Millisecond {
		t.Fatalf("4th call: %+v, want refused with retry 500ms", v)
	}
	if v := l.Allow("b", q, t0); !v.Allowed {
		t.Fatal("another key shares the bucket")
	}
	if v := l.Allow("a", q, t0.Add(500*time.Millisecond)); !v.Allowed {
		t.Fatalf("refilled token refused: %+v", v)
	}
}

// TestQuotaChangeTakesEffect: a raised quota applies at once at its new
// rate, without handing out a fresh burst.
func TestQuotaChangeTakesEffect(t *testing.T) {
	t.Parallel()
	l := ratelimit.New()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l.Allow("a", registry.Quota{RatePerSecond: 1, Burst: 1}, t0)
	if v := l.Allow("a", registry.Quota{RatePerSecond: 1, Burst: 1}, t0); v.Allowed {
		t.Fatal("empty bucket allowed")
	}
	raised := registry.Quota{RatePerSecond: 10, Burst: 10}
	if v := l.Allow("a", raised, t0); v.Allowed || v.RetryAfter != 100*time.Millisecond || v.Limit != 10 {
		t.Fatalf("raised quota on an empty bucket: %+v, want refused, retry 100ms, limit 10", v)
	}
	if v := l.Allow("a", raised, t0.Add(100*time.Millisecond)); !v.Allowed {
		t.Fatalf("the raised rate was not applied at once: %+v", v)
	}
}

// TestResizeKeepsTheTokens follows one consumer's bucket through the
// changes a replica sees: its share of the grant moving with the live
// replica count (cluster.Scale: rate and burst divided), the grant
// edited, and only the daily cap changing. The tokens held are kept
// (capped by the new burst), those earned before the change count at
// the old rate, and no change hands out a fresh burst.
func TestResizeKeepsTheTokens(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	alone := registry.Quota{RatePerSecond: 9, Burst: 9, DailyCap: 100}
	third := registry.Quota{RatePerSecond: 3, Burst: 3, DailyCap: 100} // cluster.Scale(alone, 3)
	type step struct {
		at      time.Duration
		q       registry.Quota
		allowed int           // calls allowed in a row at this instant, the next one refused
		retry   time.Duration // of the refusal; -1: no call refused at this step
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"drained, then 3 replicas: no fresh burst", []step{
			{0, alone, 9, 111 * time.Millisecond},
			{0, third, 0, 333 * time.Millisecond},
			{time.Second, third, 3, 333 * time.Millisecond},
		}},
		{"drained share, back alone: refills at the full rate, up to the full burst", []step{
			{0, third, 3, 333 * time.Millisecond},
			{0, alone, 0, 111 * time.Millisecond},
			{time.Second / 3, alone, 3, 111 * time.Millisecond},
			{5 * time.Second, alone, 9, 111 * time.Millisecond},
		}},
		{"full bucket shrunk: capped by the new burst", []step{
			{0, alone, 1, -1},
			{0, third, 3, 333 * time.Millisecond},
		}},
		{"tokens earned before the change count at the old rate", []step{
			{0, alone, 9, 111 * time.Millisecond},
			{250 * time.Millisecond, registry.Quota{RatePerSecond: 1, Burst: 9}, 2, 750 * time.Millisecond},
		}},
		{"a daily cap change leaves the bucket alone", []step{
			{0, alone, 9, 111 * time.Millisecond},
			{0, registry.Quota{RatePerSecond: 9, Burst: 9, DailyCap: 5}, 0, 111 * time.Millisecond},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := ratelimit.New()
			for i, s := range tc.steps {
				now := t0.Add(s.at)
				for n := range s.allowed {
					if v := l.Allow("k", s.q, now); !v.Allowed || v.Limit != max(s.q.Burst, 1) {
						t.Fatalf("step %d, call %d: %+v, want allowed with limit %d", i, n, v, s.q.Burst)
					}
				}
				if s.retry < 0 {
					continue
				}
				if v := l.Allow("k", s.q, now); v.Allowed || v.RetryAfter.Truncate(time.Millisecond) != s.retry {
					t.Fatalf("step %d, call %d: %+v, want refused with retry %s", i, s.allowed, v, s.retry)
				}
			}
		})
	}
}

func TestZeroRateIsUnlimited(t *testing.T) {
	t.Parallel()
	l := ratelimit.New()
	for i := 0; i < 1000; i++ {
		if v := l.Allow("a", registry.Quota{}, time.Time{}); !v.Allowed {
			t.Fatal("refused with no quota")
		}
	}
}
