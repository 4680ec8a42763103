package cluster_test

import (
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/cluster"
	"github.com/relais-broker/relais/broker/registry"
)

func TestScale(t *testing.T) {
	for _, tc := range []struct {
		name string
		q    registry.Quota
		live int
		want registry.Quota
	}{
		{"alone", registry.Quota{RatePerSecond: 10, Burst: 20, DailyCap: 100}, 1, registry.Quota{RatePerSecond: 10, Burst: 20, DailyCap: 100}},
		{"zero live is alone", registry.Quota{RatePerSecond: 10, Burst: 20}, 0, registry.Quota{RatePerSecond: 10, Burst: 20}},
		{"negative live is alone", registry.Quota{RatePerSecond: 10, Burst: 20}, -3, registry.Quota{RatePerSecond: 10, Burst: 20}},
		{"two replicas", registry.Quota{RatePerSecond: 10, Burst: 20, DailyCap: 100}, 2, registry.Quota{RatePerSecond: 5, Burst: 10, DailyCap: 100}},
		{"three replicas, burst rounded down", registry.Quota{RatePerSecond: 9, Burst: 10}, 3, registry.Quota{RatePerSecond: 3, Burst: 3}},
		{"fractional rate", registry.Quota{RatePerSecond: 1, Burst: 4}, 4, registry.Quota{RatePerSecond: 0.25, Burst: 1}},
		{"burst never below one", registry.Quota{RatePerSecond: 10, Burst: 2}, 5, registry.Quota{RatePerSecond: 2, Burst: 1}},
		{"burst zero stays zero", registry.Quota{RatePerSecond: 10}, 2, registry.Quota{RatePerSecond: 5}},
		{"no rate limit stays unlimited", registry.Quota{Burst: 20, DailyCap: 7}, 3, registry.Quota{Burst: 20, DailyCap: 7}},
		{"daily cap is never divided", registry.Quota{RatePerSecond: 30, Burst: 30, DailyCap: 100}, 3, registry.Quota{RatePerSecond: 10, Burst: 10, DailyCap: 100}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := cluster.Scale(tc.q, tc.live); got != tc.want {
				t.Fatalf("Scale(%+v, %d) = %+v, want %+v", tc.q, tc.live, got, tc.want)
			}
		})
	}
}

// TestScaleKeepsTheGlobalRateWithinTheGrant checks the documented bounds:
// the shares of live replicas add up to the grant's rate, and their bursts
// to at most max(burst, live).
func TestScaleKeepsTheGlobalRateWithinTheGrant(t *testing.T) {
	for _, q := range []registry.Quota{{RatePerSecond: 10, Burst: 20}, {RatePerSecond: 0.5, Burst: 1}, {RatePerSecond: 1000, Burst: 7}} {
		for live := 1; live <= 12; live++ {
			s := cluster.Scale(q, live)
			if total := s.RatePerSecond * float64(live); total > q.RatePerSecond*(1+1e-12) || total < q.RatePerSecond*(1-1e-12) {
				t.Errorf("%+v over %d replicas: global rate %v", q, live, total)
			}
			if total := s.Burst * live; total > max(q.Burst, live) {
				t.Errorf("%+v over %d replicas: global burst %d > max(%d, %d)", q, live, total, q.Burst, live)
			}
		}
	}
}

type fixedLive int

func (f fixedLive) Live(time.Time) int { return int(f) }

func TestRateShareUsesTheLiveCount(t *testing.T) {
	q := registry.Quota{RatePerSecond: 12, Burst: 6, DailyCap: 50}
	for live, want := range map[int]registry.Quota{
		1: q,
		3: {RatePerSecond: 4, Burst: 2, DailyCap: 50},
	} {
		if got := cluster.NewRateShare(fixedLive(live)).Quota(q, time.Now()); got != want {
			t.Errorf("share over %d live = %+v, want %+v", live, got, want)
		}
	}
	// The memory membership of a lone process never divides.
	if got := cluster.NewRateShare(cluster.NewLocal(nil)).Quota(q, time.Now()); got != q {
		t.Errorf("share of a lone process = %+v, want the grant %+v", got, q)
	}
}
