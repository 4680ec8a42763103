package broker_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/relais-broker/relais/broker"
	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/ratelimit"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/source"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
)

func retryDelay(err error) time.Duration {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}

// TestDailyQuota uses the harness clock (noon UTC, 14:00 in Paris): the
// cap is counted per consumer × service and resets at Paris midnight.
func TestDailyQuota(t *testing.T) {
	h := newHarness(t, registry.Quota{RatePerSecond: 100, Burst: 100, DailyCap: 3})
	client := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, sirenFull))
	for i := 0; i < 3; i++ {
		if _, err := client.GetFamilyQuotient(context.Background(), validFQ()); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	_, err := client.GetFamilyQuotient(context.Background(), validFQ())
	if code, reason := reasonOf(t, err); code != codes.ResourceExhausted || reason != "daily_quota_exceeded" {
		t.Fatalf("fourth call: %s/%s", code, reason)
	}
	if d := retryDelay(err); d != 10*time.Hour { // 14:00 → midnight, Paris (CEST)
		t.Fatalf("RetryInfo %s, want 10h", d)
	}
	h.clock.Advance(10 * time.Hour)
	if _, err := client.GetFamilyQuotient(context.Background(), validFQ()); err != nil {
		t.Fatalf("after midnight: %v", err)
	}
}

// TestDailyCountersSurviveARestart: a new broker seeded with the day's
// counts (relaisd rebuilds them from the audit log) keeps the cap.
func TestDailyCountersSurviveARestart(t *testing.T) {
	h := newHarness(t, registry.Quota{RatePerSecond: 100, Burst: 100, DailyCap: 3})
	h.broker.SeedDailyCounts(ratelimit.Day(h.clock.Now()), map[string]int{sirenFull + "|" + fqService: 3})
	client := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, sirenFull))
	if _, err := client.GetFamilyQuotient(context.Background(), validFQ()); err == nil {
		t.Fatal("the seeded count was ignored")
	}
}

func TestDuplicateInFlightIsRefused(t *testing.T) {
	h := newHarness(t, registry.Quota{RatePerSecond: 100, Burst: 100})
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	h.adapter.setAnswer(func(ctx context.Context, req source.Request) (proto.Message, error) {
		entered <- struct{}{}
		<-release
		return fullResponse(req.Method), nil
	})
	client := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, sirenFull))
	var wg sync.WaitGroup
	var firstErr error
	wg.Go(func() { _, firstErr = client.GetFamilyQuotient(context.Background(), validFQ()) })
	<-entered
	_, err := client.GetFamilyQuotient(context.Background(), validFQ())
	if code, reason := reasonOf(t, err); code != codes.Aborted || reason != "duplicate_in_flight" {
		t.Fatalf("duplicate: %s/%s", code, reason)
	}
	other := validFQ()
	other.Subject.BirthName = "Beta"
	h.adapter.setAnswer(func(ctx context.Context, req source.Request) (proto.Message, error) {
		return fullResponse(req.Method), nil
	})
	if _, err := client.GetFamilyQuotient(context.Background(), other); err != nil {
		t.Fatalf("another subject at the same time: %v", err)
	}
	close(release)
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	if _, err := client.GetFamilyQuotient(context.Background(), validFQ()); err != nil {
		t.Fatalf("the same call once the first ended: %v", err)
	}
}

// TestDuplicateDoesNotUseTheDailyQuota: the duplicate guard refuses
// before the daily quota is taken, so a refused duplicate costs nothing.
func TestDuplicateDoesNotUseTheDailyQuota(t *testing.T) {
	h := newHarness(t, registry.Quota{RatePerSecond: 100, Burst: 100, DailyCap: 2})
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	h.adapter.setAnswer(func(ctx context.Context, req source.Request) (proto.Message, error) {
		entered <- struct{}{}
		<-release
		return fullResponse(req.Method), nil
	})
	client := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, sirenFull))
	var wg sync.WaitGroup
	var firstErr error
	wg.Go(func() { _, firstErr = client.GetFamilyQuotient(context.Background(), validFQ()) })
	<-entered
	_, err := client.GetFamilyQuotient(context.Background(), validFQ())
	if code, reason := reasonOf(t, err); code != codes.Aborted || reason != "duplicate_in_flight" {
		t.Fatalf("duplicate: %s/%s", code, reason)
	}
	close(release)
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	if n := h.broker.DailyCount(sirenFull+"|"+fqService, h.clock.Now()); n != 1 {
		t.Fatalf("daily count %d after one call and one refused duplicate, want 1", n)
	}
	h.adapter.setAnswer(nil)
	if _, err := client.GetFamilyQuotient(context.Background(), validFQ()); err != nil {
		t.Fatalf("second call within a cap of 2: %v", err)
	}
}

// fakeThrottle throttles one consumer, as the anomaly detector does.
type fakeThrottle struct{ consumer string }

func (f fakeThrottle) Throttled(consumer string, _ time.Time) (bool, time.Duration) {
	return consumer == f.consumer, 30 * time.Second
}

func TestThrottledConsumerIsRefused(t *testing.T) {
	h := newHarness(t, registry.Quota{}, func(c *broker.Config) { c.Throttle = fakeThrottle{consumer: sirenFull} })
	_, err := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, sirenFull)).GetFamilyQuotient(context.Background(), validFQ())
	if code, reason := reasonOf(t, err); code != codes.ResourceExhausted || reason != "throttled" || retryDelay(err) != 30*time.Second {
		t.Fatalf("throttled consumer: %s/%s %v", code, reason, retryDelay(err))
	}
	if _, err := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, sirenLimited)).GetFamilyQuotient(context.Background(), validFQ()); err != nil {
		t.Fatalf("another consumer: %v", err)
	}
	if h.adapter.Calls() != 1 {
		t.Fatalf("adapter calls = %d, want 1", h.adapter.Calls())
	}
}

// downCounter is a shared quota store that cannot be reached.
type downCounter struct{}

func (downCounter) Take(context.Context, string, int, time.Time) (bool, time.Duration, error) {
	return false, 0, errors.New("database unreachable")
}

// TestQuotaStoreDownFailsClosed: when the daily counter cannot answer, the
// call is refused (quota_unavailable), not served uncounted.
func TestQuotaStoreDownFailsClosed(t *testing.T) {
	h := newHarness(t, registry.Quota{}, func(c *broker.Config) { c.DailyQuota = downCounter{} })
	_, err := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, sirenFull)).GetFamilyQuotient(context.Background(), validFQ())
	if code, reason := reasonOf(t, err); code != codes.Unavailable || reason != "quota_unavailable" {
		t.Fatalf("got %s/%s", code, reason)
	}
	if h.adapter.Calls() != 0 {
		t.Fatal("a call was served uncounted")
	}
	if recs := h.audit.Records(); len(recs) != 1 || recs[0].Reason != "quota_unavailable" {
		t.Fatalf("records = %+v", recs)
	}
}
