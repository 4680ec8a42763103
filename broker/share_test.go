package broker_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/relais-broker/relais/broker"
	"github.com/relais-broker/relais/broker/cluster"
	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/registry"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
)

var _ broker.RateShare = (*cluster.RateShare)(nil)

// liveReplicas is a hand-set live replica count (the heartbeats'
// answer in relaisd).
type liveReplicas struct{ n atomic.Int64 }

func (l *liveReplicas) Live(time.Time) int { return int(l.n.Load()) }

// TestRateShareAppliesThisReplicasPart runs the chain with the share of
// cluster.RateShare over a live count the test sets: with 3 live
// replicas the grant's 3/s and burst 3 become 1/s and burst 1 here (in
// the ratelimit-* headers too); when the others leave, the bucket grows
// back to the full grant without handing out a fresh burst.
func TestRateShareAppliesThisReplicasPart(t *testing.T) {
	live := &liveReplicas{}
	live.n.Store(3)
	h := newHarness(t, registry.Quota{RatePerSecond: 3, Burst: 3, DailyCap: 100}, func(c *broker.Config) {
		c.RateShare = cluster.NewRateShare(live)
	})
	client := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, sirenFull))
	call := func() (metadata.MD, error) {
		var header metadata.MD
		_, err := client.GetFamilyQuotient(context.Background(), validFQ(), grpc.Header(&header))
		return header, err
	}
	allowed := func(n int, limit string) {
		t.Helper()
		for i := range n {
			header, err := call()
			if err != nil {
				t.Fatalf("call %d of %d: %v", i+1, n, err)
			}
			if got := header.Get("ratelimit-limit"); len(got) != 1 || got[0] != limit {
				t.Fatalf("call %d: ratelimit-limit %v, want %s", i+1, got, limit)
			}
		}
	}
	refused := func(wantRetry time.Duration) {
		t.Helper()
		_, err := call()
		if code, reason := reasonOf(t, err); code != codes.ResourceExhausted || reason != "rate_limited" {
			t.Fatalf("got %s/%s, want rate_limited", code, reason)
		}
		if d := retryDelay(err); d.Truncate(time.Millisecond) != wantRetry {
			t.Fatalf("RetryInfo %s, want %s", d, wantRetry)
		}
	}

	allowed(1, "1")
	refused(time.Second)
	h.clock.Advance(time.Second)
	allowed(1, "1")

	live.n.Store(1) // the two others left: the full grant, from an empty bucket
	refused(333 * time.Millisecond)
	h.clock.Advance(time.Second)
	allowed(3, "3")
	refused(333 * time.Millisecond)
}

// dailyCapChanger is a share that also rewrites the daily cap, which the
// stage must ignore: daily caps are counted exactly in the shared store,
// never divided among replicas.
type dailyCapChanger struct{}

func (dailyCapChanger) Quota(q registry.Quota, _ time.Time) registry.Quota {
	q.DailyCap = 1
	return q
}

// TestRateShareLeavesTheDailyCapToTheGrant: the share scales only the
// token bucket; the daily quota is the grant's own.
func TestRateShareLeavesTheDailyCapToTheGrant(t *testing.T) {
	h := newHarness(t, registry.Quota{RatePerSecond: 100, Burst: 100, DailyCap: 3}, func(c *broker.Config) {
		c.RateShare = dailyCapChanger{}
	})
	client := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, sirenFull))
	for i := range 3 {
		if _, err := client.GetFamilyQuotient(context.Background(), validFQ()); err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
	_, err := client.GetFamilyQuotient(context.Background(), validFQ())
	if code, reason := reasonOf(t, err); code != codes.ResourceExhausted || reason != "daily_quota_exceeded" {
		t.Fatalf("fourth call: %s/%s, want daily_quota_exceeded", code, reason)
	}
}
