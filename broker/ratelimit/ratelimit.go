// Package ratelimit enforces the per-consumer, per-service token buckets
// that grants define, so that no consumer can flood a source. Time is
// passed in by the caller so tests need no sleeps.
package ratelimit

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/relais-broker/relais/broker/registry"
)

// Key is the key of a consumer's limits and quotas for a service.
func Key(consumer, service string) string { return consumer + "|" + service }

// Limiter holds one token bucket per key (consumer × service).
type Limiter struct {
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	quota registry.Quota
	lim   *rate.Limiter
}

// New returns an empty Limiter.
func New() *Limiter { return &Limiter{buckets: make(map[string]*bucket)} }

// Verdict is the outcome of Allow.
type Verdict struct {
	Allowed bool
	// RetryAfter is when a token will be available, when not allowed.
	RetryAfter time.Duration
	// Limit is the bucket size and Remaining the tokens left after this
	// call, for the ratelimit-* response headers.
	Limit, Remaining int
}

// Allow takes one token from key's bucket, created full or resized to
// quota. A zero rate means no limit.
//
// A bucket whose rate or burst changed (a grant edited, or this
// replica's share of it moving with the live replica count) is resized
// in place: the tokens it holds are kept, capped by the new burst, and
// refill at the new rate from now. Rebuilding it full would hand every
// consumer a fresh burst whenever a replica joins or leaves.
func (l *Limiter) Allow(key string, q registry.Quota, now time.Time) Verdict {
	if q.RatePerSecond <= 0 {
		return Verdict{Allowed: true, Limit: -1, Remaining: -1}
	}
	burst := max(q.Burst, 1)
	l.mu.Lock()
	b, ok := l.buckets[key]
	switch {
	case !ok:
		b = &bucket{quota: q, lim: rate.NewLimiter(rate.Limit(q.RatePerSecond), burst)}
		b.lim.AllowN(now, 0)
		l.buckets[key] = b
	case b.quota.RatePerSecond != q.RatePerSecond || max(b.quota.Burst, 1) != burst:
		// Tokens earned until now at the old rate first, then the new
		// rate; the next take caps them at the new burst.
		b.lim.SetLimitAt(now, rate.Limit(q.RatePerSecond))
		b.lim.SetBurstAt(now, burst)
	}
	b.quota = q
	l.mu.Unlock()
	if b.lim.AllowN(now, 1) {
		return Verdict{Allowed: true, Limit: burst, Remaining: int(math.Floor(b.lim.TokensAt(now)))}
	}
	missing := 1 - b.lim.TokensAt(now)
	wait := time.Duration(math.Ceil(missing / q.RatePerSecond * float64(time.Second)))
	return Verdict{Allowed: false, RetryAfter: wait, Limit: burst, Remaining: 0}
}
