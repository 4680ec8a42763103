package resilience_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relais-broker/relais/adapters/resilience"
	"github.com/relais-broker/relais/broker/source"
	healthcoverv1 "github.com/relais-broker/relais/proto/relais/healthcover/v1"
)

// scripted is a source whose answer the test sets.
type scripted struct {
	calls  atomic.Int32
	answer func(ctx context.Context) error
}

func (s *scripted) Fetch(ctx context.Context, _ source.Request) (proto.Message, error) {
	s.calls.Add(1)
	if err := s.answer(ctx); err != nil {
		return nil, err
	}
	return &healthcoverv1.GetSolidarityHealthCoverResponse{}, nil
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

var req = source.Request{Method: "/relais.healthcover.v1.SolidarityHealthCoverService/GetSolidarityHealthCover"}

func TestBreakerOpensAndCloses(t *testing.T) {
	clk := &clock{now: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
	failing := true
	src := &scripted{answer: func(context.Context) error {
		if failing {
			return source.ErrUnavailable
		}
		return nil
	}}
	g := resilience.New(src, resilience.Config{FailureThreshold: 3, OpenFor: 10 * time.Second, Clock: clk.Now})
	for i := 0; i < 3; i++ {
		if _, err := g.Fetch(context.Background(), req); !errors.Is(err, source.ErrUnavailable) {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	_, err := g.Fetch(context.Background(), req)
	var retry *source.RetryableError
	if !errors.As(err, &retry) || !errors.Is(err, resilience.ErrBreakerOpen) || retry.RetryAfter != 10*time.Second || src.calls.Load() != 3 {
		t.Fatalf("open breaker: %v after %d source calls", err, src.calls.Load())
	}
	if st := g.Status(); st.State != resilience.StateDown {
		t.Fatalf("status while open: %v", st)
	}
	clk.Add(10 * time.Second) // half-open: one probe, still failing
	if _, err := g.Fetch(context.Background(), req); !errors.Is(err, source.ErrUnavailable) || errors.Is(err, resilience.ErrBreakerOpen) || src.calls.Load() != 4 {
		t.Fatalf("failed probe: %v", err)
	}
	if _, err := g.Fetch(context.Background(), req); !errors.Is(err, resilience.ErrBreakerOpen) {
		t.Fatalf("after a failed probe the breaker must open again: %v", err)
	}
	clk.Add(10 * time.Second)
	failing = false
	if _, err := g.Fetch(context.Background(), req); err != nil {
		t.Fatalf("successful probe: %v", err)
	}
	if _, err := g.Fetch(context.Background(), req); err != nil {
		t.Fatalf("closed again: %v", err)
	}
	// Answers about the subject are not source failures.
	src.answer = func(context.Context) error { return source.ErrSubjectNotFound }
	for i := 0; i < 10; i++ {
		_, _ = g.Fetch(context.Background(), req)
	}
	if _, err := g.Fetch(context.Background(), req); errors.Is(err, resilience.ErrBreakerOpen) {
		t.Fatal("not-found answers opened the breaker")
	}
}

func TestMaintenanceWindowAnswersWithoutCalling(t *testing.T) {
	clk := &clock{now: time.Date(2026, 11, 23, 22, 30, 0, 0, time.UTC)}
	src := &scripted{answer: func(context.Context) error { return nil }}
	g := resilience.New(src, resilience.Config{Clock: clk.Now, Maintenance: []resilience.Window{{
		From: time.Date(2026, 11, 23, 22, 0, 0, 0, time.UTC), Until: time.Date(2026, 11, 23, 23, 0, 0, 0, time.UTC)}}})
	_, err := g.Fetch(context.Background(), req)
	var retry *source.RetryableError
	if !errors.As(err, &retry) || !errors.Is(err, resilience.ErrMaintenance) || retry.RetryAfter != 30*time.Minute || src.calls.Load() != 0 {
		t.Fatalf("in maintenance: %v (%d calls)", err, src.calls.Load())
	}
	if st := g.Status(); st.State != resilience.StateMaintenance {
		t.Fatalf("status: %v", st)
	}
	clk.Add(30 * time.Minute)
	if _, err := g.Fetch(context.Background(), req); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

func TestRetriesOnlyWithinTheDeadline(t *testing.T) {
	n := 0
	src := &scripted{answer: func(context.Context) error {
		n++
		if n == 1 {
			return source.ErrUnavailable
		}
		return nil
	}}
	g := resilience.New(src, resilience.Config{Retries: 1, RetryBackoff: 10 * time.Millisecond, MinAttempt: 50 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := g.Fetch(ctx, req); err != nil || n != 2 {
		t.Fatalf("retry within the deadline: %v after %d calls", err, n)
	}
	n = 0
	short, cancel2 := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel2()
	if _, err := g.Fetch(short, req); !errors.Is(err, source.ErrUnavailable) || n != 1 {
		t.Fatalf("no time left: %v after %d calls", err, n)
	}
	// A source that says when to come back is not retried.
	n = 0
	src.answer = func(context.Context) error { n++; return &source.RetryableError{RetryAfter: time.Minute} }
	if _, err := g.Fetch(ctx, req); err == nil || n != 1 {
		t.Fatalf("retry-after: %v after %d calls", err, n)
	}
}

// TestAHangingSourceDoesNotSlowAnother fills one source's slots with hung
// calls and measures the other source's latency meanwhile.
func TestAHangingSourceDoesNotSlowAnother(t *testing.T) {
	hang := &scripted{answer: func(ctx context.Context) error { <-ctx.Done(); return source.ErrTimeout }}
	fast := &scripted{answer: func(context.Context) error { return nil }}
	slow := resilience.New(hang, resilience.Config{MaxConcurrent: 4})
	quick := resilience.New(fast, resilience.Config{MaxConcurrent: 4})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ { // 4 hang, 16 refused at once: saturated
		wg.Go(func() { _, _ = slow.Fetch(ctx, req) })
	}
	time.Sleep(50 * time.Millisecond)
	var worst time.Duration
	for i := 0; i < 200; i++ {
		start := time.Now()
		if _, err := quick.Fetch(context.Background(), req); err != nil {
			t.Fatalf("the healthy source failed: %v", err)
		}
		worst = max(worst, time.Since(start))
	}
	_, err := slow.Fetch(context.Background(), req)
	if !errors.Is(err, resilience.ErrSaturated) {
		t.Fatalf("a fifth call to the hung source: %v, want saturated", err)
	}
	cancel()
	wg.Wait()
	if worst > 500*time.Millisecond { // far below the hung source's 2 s: isolation, not speed
		t.Fatalf("the healthy source took up to %s while the other hung", worst)
	}
	t.Logf("healthy source: worst of 200 calls %s while the other source hung (its 2 s deadline)", worst)
}

func TestStatusFromTraffic(t *testing.T) {
	i := 0
	src := &scripted{answer: func(context.Context) error {
		i++
		if i%4 == 0 {
			return source.ErrUnavailable
		}
		return nil
	}}
	g := resilience.New(src, resilience.Config{FailureThreshold: 100})
	for n := 0; n < 40; n++ {
		_, _ = g.Fetch(context.Background(), req)
	}
	st := g.Status()
	if st.State != resilience.StateDegraded || st.Calls != 40 || st.ErrorRatio != 0.25 || st.LastSuccess.IsZero() {
		t.Fatalf("status: %+v", st)
	}
}

func TestProbeFeedsTheStatus(t *testing.T) {
	src := &scripted{answer: func(context.Context) error { return nil }}
	g := resilience.New(src, resilience.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.Probe(ctx, req, 10*time.Millisecond, time.Second); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for g.Status().Calls < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if st := g.Status(); st.Calls < 3 || st.State != resilience.StateOK || st.LastSuccess.IsZero() {
		t.Fatalf("status after probes: %+v", st)
	}
}
