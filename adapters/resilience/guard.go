// Package resilience wraps a source adapter so that a slow or failing
// source only hurts its own calls: a concurrency limit per source, a
// circuit breaker (open after repeated failures, then half-open probes),
// configured maintenance windows (answered at once with a retry time,
// without calling the source), retries of retryable failures only within
// the caller's deadline, and live status (state, last success, error
// ratio, latency percentiles) computed from the traffic.
//
// Every source gets its own Guard: separate limits, separate breaker, so a
// source that hangs fills only its own slots.
package resilience

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relais-broker/relais/broker/source"
)

// Window is a maintenance window, [From, Until).
type Window struct {
	From, Until time.Time
}

// Config configures a Guard.
type Config struct {
	// MaxConcurrent bounds the calls in flight to the source (16 when
	// zero); a call beyond it is refused at once as unavailable.
	MaxConcurrent int
	// FailureThreshold consecutive failures open the breaker (5 when
	// zero); it stays open OpenFor (30 s when zero), then lets
	// HalfOpenProbes calls through (1 when zero): a success closes it, a
	// failure opens it again.
	FailureThreshold int
	OpenFor          time.Duration
	HalfOpenProbes   int
	// Retries of a retryable failure (unavailable without a retry time,
	// or timeout), each only if the caller's deadline leaves at least
	// RetryBackoff plus MinAttempt. Fetches are reads, hence idempotent.
	Retries      int
	RetryBackoff time.Duration
	MinAttempt   time.Duration
	// Maintenance windows of the source.
	Maintenance []Window
	Clock       func() time.Time
}

// State is the health of a source as the broker sees it.
type State string

// States.
const (
	StateOK          State = "ok"
	StateDegraded    State = "degraded"
	StateDown        State = "down"
	StateMaintenance State = "maintenance"
)

// Guard is a source.Adapter wrapping another with the protections above.
type Guard struct {
	inner source.Adapter
	cfg   Config
	slots chan struct{}

	mu          sync.Mutex
	failures    int       // consecutive
	openUntil   time.Time // breaker open until
	probes      int       // half-open calls in flight
	lastSuccess time.Time
	window      outcomes
}

var _ source.Adapter = (*Guard)(nil)

// ErrBreakerOpen and ErrSaturated and ErrMaintenance are wrapped (with
// source.ErrUnavailable) when the guard answers without calling.
var (
	ErrBreakerOpen = errors.New("source circuit breaker is open after repeated failures")
	ErrSaturated   = errors.New("source has too many calls in flight")
	ErrMaintenance = errors.New("source is in a maintenance window")
)

// New wraps inner.
func New(inner source.Adapter, cfg Config) *Guard {
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = 16
	}
	if cfg.FailureThreshold <= 0 {
		cfg.FailureThreshold = 5
	}
	if cfg.OpenFor <= 0 {
		cfg.OpenFor = 30 * time.Second
	}
	if cfg.HalfOpenProbes <= 0 {
		cfg.HalfOpenProbes = 1
	}
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = 50 * time.Millisecond
	}
	if cfg.MinAttempt <= 0 {
		cfg.MinAttempt = 100 * time.Millisecond
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return &Guard{inner: inner, cfg: cfg, slots: make(chan struct{}, cfg.MaxConcurrent)}
}

// Fetch implements source.Adapter.
func (g *Guard) Fetch(ctx context.Context, req source.Request) (proto.Message, error) {
	now := g.cfg.Clock()
	if w, ok := g.inMaintenance(now); ok {
		return nil, &source.RetryableError{RetryAfter: w.Until.Sub(now), Cause: ErrMaintenance}
	}
	probe, wait := g.admit(now)
	if wait > 0 {
		return nil, &source.RetryableError{RetryAfter: wait, Cause: ErrBreakerOpen}
	}
	if probe {
		defer g.endProbe()
	}
	select {
	case g.slots <- struct{}{}:
		defer func() { <-g.slots }()
	default:
		return nil, &source.RetryableError{RetryAfter: time.Second, Cause: ErrSaturated}
	}
	for attempt := 0; ; attempt++ {
		start := g.cfg.Clock()
		resp, err := g.inner.Fetch(ctx, req)
		g.record(start, err)
		if err == nil || attempt >= g.cfg.Retries || !retryable(err) || !g.timeLeft(ctx) {
			return resp, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(g.cfg.RetryBackoff):
		}
	}
}

// retryable: a transient failure the source did not ask us to wait for.
func retryable(err error) bool {
	var r *source.RetryableError
	if errors.As(err, &r) && r.RetryAfter > 0 {
		return false
	}
	return errors.Is(err, source.ErrUnavailable) || errors.Is(err, source.ErrTimeout)
}

func (g *Guard) timeLeft(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && time.Until(dl) >= g.cfg.RetryBackoff+g.cfg.MinAttempt
}

func (g *Guard) inMaintenance(now time.Time) (Window, bool) {
	for _, w := range g.cfg.Maintenance {
		if !now.Before(w.From) && now.Before(w.Until) {
			return w, true
		}
	}
	return Window{}, false
}

// admit decides whether the breaker lets a call through: closed, or
// half-open with a probe slot free (probe true). Otherwise wait > 0.
func (g *Guard) admit(now time.Time) (probe bool, wait time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.failures < g.cfg.FailureThreshold {
		return false, 0
	}
	if now.Before(g.openUntil) {
		return false, g.openUntil.Sub(now)
	}
	if g.probes >= g.cfg.HalfOpenProbes {
		return false, g.cfg.RetryBackoff
	}
	g.probes++
	return true, 0
}

func (g *Guard) endProbe() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.probes--
}

// failure tells a source failure from an answer about the subject.
func failure(err error) bool {
	return err != nil && !errors.Is(err, source.ErrSubjectNotFound) && !errors.Is(err, source.ErrNotIdentifiable) &&
		!errors.Is(err, context.Canceled)
}

func (g *Guard) record(start time.Time, err error) {
	now := g.cfg.Clock()
	g.mu.Lock()
	defer g.mu.Unlock()
	failed := failure(err)
	g.window.add(now, now.Sub(start), failed)
	if !failed {
		g.failures = 0
		g.lastSuccess = now
		return
	}
	g.failures++
	if g.failures >= g.cfg.FailureThreshold {
		g.openUntil = now.Add(g.cfg.OpenFor)
	}
}

// Status is a source's live status.
type Status struct {
	State       State
	LastSuccess time.Time
	// ErrorRatio and the latency percentiles cover the last StatusWindow.
	ErrorRatio float64
	Calls      int
	P50, P99   time.Duration
	// BreakerOpenUntil is set while the breaker is open.
	BreakerOpenUntil time.Time
}

// StatusWindow is the period Status summarises.
const StatusWindow = 5 * time.Minute

// Status reports the source's state from the recent traffic.
func (g *Guard) Status() Status {
	now := g.cfg.Clock()
	g.mu.Lock()
	defer g.mu.Unlock()
	st := Status{LastSuccess: g.lastSuccess}
	st.Calls, st.ErrorRatio, st.P50, st.P99 = g.window.summary(now.Add(-StatusWindow))
	switch _, maint := g.inMaintenance(now); {
	case maint:
		st.State = StateMaintenance
	case g.failures >= g.cfg.FailureThreshold:
		st.State, st.BreakerOpenUntil = StateDown, g.openUntil
	case st.ErrorRatio > 0.1:
		st.State = StateDegraded
	default:
		st.State = StateOK
	}
	return st
}

func (s Status) String() string {
	return fmt.Sprintf("%s (calls %d, errors %.0f%%, p50 %s, p99 %s)", s.State, s.Calls, 100*s.ErrorRatio, s.P50, s.P99)
}
