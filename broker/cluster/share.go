package cluster

import (
	"time"

	"github.com/relais-broker/relais/broker/registry"
)

// Scale is the part of grant quota q one of live replicas enforces in its
// own token bucket: the per-second rate divided by live, and the burst
// divided by live rounded down but never below 1 (a replica with no token
// could never serve), so the global burst is at most max(q.Burst, live).
// A rate of 0 (no limit) stays 0, the daily cap is untouched (it is
// counted exactly in the shared store), and live below 2 returns q as is.
func Scale(q registry.Quota, live int) registry.Quota {
	if live < 2 || q.RatePerSecond <= 0 {
		return q
	}
	q.RatePerSecond /= float64(live)
	if q.Burst > 0 {
		q.Burst = max(1, q.Burst/live)
	}
	return q
}

// LiveCounter is the part of Membership a rate share needs.
type LiveCounter interface {
	Live(now time.Time) int
}

// RateShare scales grants by the live replica count, for the broker's
// rate-limit stage: it calls limiter.Allow(key, share.Quota(q, now), now)
// where it called limiter.Allow(key, q, now).
type RateShare struct {
	live LiveCounter
}

// NewRateShare returns the share of the replicas that m counts.
func NewRateShare(m LiveCounter) *RateShare { return &RateShare{live: m} }

// Quota is this replica's part of q at now (no I/O).
func (s *RateShare) Quota(q registry.Quota, now time.Time) registry.Quota {
	return Scale(q, s.live.Live(now))
}
