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

func TestQuotaChangeTakesEffect(t *testing.T) {
	t.Parallel()
	l := ratelimit.New()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l.Allow("a", registry.Quota{RatePerSecond: 1, Burst: 1}, t0)
	if v := l.Allow("a", registry.Quota{RatePerSecond: 1, Burst: 1}, t0); v.Allowed {
		t.Fatal("empty bucket allowed")
	}
	if v := l.Allow("a", registry.Quota{RatePerSecond: 10, Burst: 10}, t0); !v.Allowed {
		t.Fatal("a raised quota was not applied at once")
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
