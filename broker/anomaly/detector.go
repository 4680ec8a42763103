package anomaly

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/ratelimit"
	"github.com/relais-broker/relais/broker/registry"
)

// Suspender suspends a consumer; registry.Store satisfies it.
type Suspender interface {
	SetConsumerStatus(ctx context.Context, siret string, s registry.Status) (registry.Consumer, error)
}

// Counter counts raised anomalies; metrics.Metrics satisfies it
// (relais_anomalies_total).
type Counter interface {
	ObserveAnomaly(consumer, kind string)
}

// Deps are what the detector reads and acts through. All are optional
// except that suspending needs Suspender and Audit.
type Deps struct {
	// Registry gives the grants: declared volume and per-grant policy.
	// Nil judges every consumer against Config alone, volume never.
	Registry registry.Reader
	// Suspender applies the "suspend" action.
	Suspender Suspender
	// Audit traces the detector's own admin actions.
	Audit audit.Recorder
	// Metrics counts anomalies.
	Metrics Counter
	// Logger receives the WARN line of each anomaly. Nil discards.
	Logger *slog.Logger
	// Clock returns the current time; nil means time.Now.
	Clock func() time.Time
}

// actionTimeout bounds a suspension (registry write and audit record).
const actionTimeout = 5 * time.Second

// Detector watches every call's record for abnormal use. It is safe for
// concurrent use; ObserveCall and Throttled are on the call path and take
// one short lock.
type Detector struct {
	cfg  Config
	deps Deps
	now  func() time.Time
	log  *slog.Logger
	seed maphash.Seed

	mu        sync.Mutex
	groups    map[group]*window
	nextSweep time.Time
	list      []Anomaly
	// day is the Paris day being counted, valid in [dayStart, dayEnd).
	day              string
	dayStart, dayEnd time.Time

	tmu        sync.Mutex
	throttles  map[string]*throttle
	nThrottled atomic.Int64
}

// group is what measures are kept for: consumer × service.
type group struct{ consumer, service string }

// event is one answered call, without its subject: a salted hash only.
type event struct {
	at      time.Time
	subject uint64
	hasSubj bool
	miss    bool
}

// window holds one group's measures.
type window struct {
	events   []event // oldest first, from head
	head     int
	misses   int
	subjects map[uint64]int
	// enumRaised is when enumeration was last raised (once per window).
	enumRaised time.Time
	// day and dayCalls count calls that reached the source on a Paris day;
	// volumeRaised is the day volume was raised on.
	day, volumeRaised string
	dayCalls          int
}

type throttle struct {
	until time.Time
	lim   *rate.Limiter
}

// New checks cfg and returns a detector.
func New(cfg Config, deps Deps) (*Detector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Detector{
		cfg: cfg.withDefaults(), deps: deps, now: deps.Clock, log: deps.Logger, seed: maphash.MakeSeed(),
		groups: map[group]*window{}, throttles: map[string]*throttle{},
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	return d, nil
}

// Config returns the effective configuration, defaults filled in.
func (d *Detector) Config() Config { return d.cfg }

// outcome classifies a record: answered when the source said something
// about the person, a miss when that was "unknown" or "ambiguous". Only
// calls that reached a source can be answered (a credential renewal is OK
// but asks no source).
func outcome(r audit.Record) (answered, miss bool) {
	switch {
	case r.Source == "":
		return false, false
	case r.Code == "OK":
		return true, false
	case r.Reason == "subject_not_found", r.Reason == "subject_not_identifiable":
		return true, true
	}
	return false, false
}

// serviceOf returns the service of a "/pkg.Service/Method" path.
func serviceOf(method string) (string, bool) {
	m := strings.TrimPrefix(method, "/")
	i := strings.LastIndexByte(m, '/')
	if i <= 0 || len(m) == len(method) {
		return "", false
	}
	return m[:i], true
}

// ObserveCall implements broker.Observer. Admin actions and calls
// without an authenticated consumer are ignored.
func (d *Detector) ObserveCall(r audit.Record, _ time.Duration) {
	if r.Consumer == "" || r.Operator != "" {
		return
	}
	service, ok := serviceOf(r.Method)
	if !ok {
		return
	}
	reached := r.Source != ""
	if !reached {
		return
	}
	answered, miss := outcome(r)
	var subj uint64
	if r.Subject != "" {
		subj = maphash.String(d.seed, r.Subject)
	}
	now := d.now()
	g := group{r.Consumer, service}

	d.mu.Lock()
	d.sweepLocked(now)
	w := d.groups[g]
	if w == nil {
		w = &window{subjects: map[uint64]int{}}
		d.groups[g] = w
	}
	w.expire(now.Add(-d.cfg.Window))
	if answered {
		w.push(event{at: now, subject: subj, hasSubj: r.Subject != "", miss: miss}, d.cfg.MaxEvents)
	}
	day := d.dayOf(now)
	if w.day != day {
		w.day, w.dayCalls = day, 0
	}
	w.dayCalls++
	m := measures{answered: w.len(), misses: w.misses, distinct: len(w.subjects), dayCalls: w.dayCalls}
	enumCandidate := answered && m.answered >= d.cfg.MinSample && (w.enumRaised.IsZero() || now.Sub(w.enumRaised) >= d.cfg.Window)
	volumeCandidate := w.volumeRaised != day
	d.mu.Unlock()
	if !enumCandidate && !volumeCandidate {
		return
	}

	th, action := d.thresholds(g, now)
	var found []Anomaly
	if enumCandidate {
		ratio := float64(m.misses) / float64(m.answered)
		trigger := ""
		switch {
		case ratio > th.MaxNotFoundRatio:
			trigger = TriggerNotFoundRatio
		case m.distinct > th.MaxDistinctSubjects:
			trigger = TriggerDistinctSubjects
		}
		if trigger != "" {
			found = append(found, Anomaly{Consumer: g.consumer, Service: g.service, Kind: KindEnumeration, Trigger: trigger,
				WindowStart: now.Add(-d.cfg.Window), WindowEnd: now, Calls: m.answered, NotFound: m.misses, NotFoundRatio: ratio,
				DistinctSubjects: m.distinct, Thresholds: th})
		}
	}
	if volumeCandidate && th.VolumeLimit > 0 && m.dayCalls > th.VolumeLimit {
		found = append(found, Anomaly{Consumer: g.consumer, Service: g.service, Kind: KindVolume, Trigger: TriggerDailyVolume,
			WindowStart: ratelimit.NextMidnight(now).AddDate(0, 0, -1), WindowEnd: now, Calls: m.dayCalls, Thresholds: th})
	}
	if len(found) == 0 {
		return
	}
	// Claim the anomalies: a concurrent call may have raised them already.
	d.mu.Lock()
	claimed := found[:0]
	if w = d.groups[g]; w == nil {
		found = nil // swept meanwhile: nothing left to judge
	}
	for _, a := range found {
		switch {
		case a.Kind == KindEnumeration && (w.enumRaised.IsZero() || now.Sub(w.enumRaised) >= d.cfg.Window):
			w.enumRaised = now
			claimed = append(claimed, a)
		case a.Kind == KindVolume && w.volumeRaised != day:
			w.volumeRaised = day
			claimed = append(claimed, a)
		}
	}
	d.mu.Unlock()
	for _, a := range claimed {
		d.raise(a, action, now)
	}
}

// measures is a copy of a window's counts, taken under the lock.
type measures struct{ answered, misses, distinct, dayCalls int }

// thresholds combines the configuration with the grants in force for the
// group: strictest override, strongest action, declared volumes added up.
func (d *Detector) thresholds(g group, now time.Time) (Thresholds, string) {
	th := Thresholds{MinSample: d.cfg.MinSample, MaxNotFoundRatio: d.cfg.MaxNotFoundRatio, MaxDistinctSubjects: d.cfg.MaxDistinctSubjects}
	action := ""
	if d.deps.Registry == nil {
		return th, d.cfg.DefaultAction
	}
	grants, err := d.deps.Registry.Grants(context.Background(), g.consumer, g.service)
	if err != nil {
		d.log.Error("anomaly: registry read failed, judging with the defaults", "consumer", g.consumer, "service", g.service, "error", err.Error())
		return th, d.cfg.DefaultAction
	}
	volume, undeclared, inForce := 0, false, 0
	for _, gr := range grants {
		if !gr.RevokedAt.IsZero() || now.Before(gr.NotBefore) || !now.Before(gr.NotAfter) {
			continue
		}
		inForce++
		p := gr.Anomaly
		if p.MaxNotFoundRatio > 0 && p.MaxNotFoundRatio < th.MaxNotFoundRatio {
			th.MaxNotFoundRatio = p.MaxNotFoundRatio
		}
		if p.MaxDistinctSubjects > 0 && p.MaxDistinctSubjects < th.MaxDistinctSubjects {
			th.MaxDistinctSubjects = p.MaxDistinctSubjects
		}
		if actionRank(p.Action) > actionRank(action) {
			action = p.Action
		}
		if gr.ExpectedDailyVolume <= 0 {
			undeclared = true
		}
		volume += gr.ExpectedDailyVolume
	}
	if inForce > 0 && !undeclared {
		th.ExpectedDailyVolume = volume
		th.VolumeLimit = int(math.Ceil(float64(volume) * d.cfg.VolumeFactor))
	}
	if action == "" {
		action = d.cfg.DefaultAction
	}
	return th, action
}

// raise applies the action, then counts, logs and lists the anomaly.
func (d *Detector) raise(a Anomaly, action string, now time.Time) {
	a.Action = action
	switch action {
	case ActionThrottle:
		d.throttle(a.Consumer, now)
	case ActionSuspend:
		if err := d.suspend(a); err != nil {
			a.ActionError = err.Error()
		}
	}
	if d.deps.Metrics != nil {
		d.deps.Metrics.ObserveAnomaly(a.Consumer, a.Kind)
	}
	attrs := []slog.Attr{
		slog.String("consumer", a.Consumer), slog.String("service", a.Service),
		slog.String("kind", a.Kind), slog.String("trigger", a.Trigger),
		slog.Time("window_start", a.WindowStart), slog.Time("window_end", a.WindowEnd),
		slog.Int("calls", a.Calls),
	}
	if a.Kind == KindEnumeration {
		attrs = append(attrs, slog.Int("not_found", a.NotFound), slog.Float64("not_found_ratio", a.NotFoundRatio),
			slog.Int("distinct_subjects", a.DistinctSubjects), slog.Int("min_sample", a.Thresholds.MinSample),
			slog.Float64("max_not_found_ratio", a.Thresholds.MaxNotFoundRatio), slog.Int("max_distinct_subjects", a.Thresholds.MaxDistinctSubjects))
	} else {
		attrs = append(attrs, slog.Int("expected_daily_volume", a.Thresholds.ExpectedDailyVolume), slog.Int("volume_limit", a.Thresholds.VolumeLimit))
	}
	attrs = append(attrs, slog.String("action", a.Action))
	if a.ActionError != "" {
		attrs = append(attrs, slog.String("action_error", a.ActionError))
	}
	d.log.LogAttrs(context.Background(), slog.LevelWarn, "abnormal use detected", attrs...)
	d.mu.Lock()
	d.list = append(d.list, a)
	if over := len(d.list) - d.cfg.MaxAnomalies; over > 0 {
		d.list = append(d.list[:0:0], d.list[over:]...)
	}
	d.mu.Unlock()
}

func (d *Detector) throttle(consumer string, now time.Time) {
	d.tmu.Lock()
	defer d.tmu.Unlock()
	t, ok := d.throttles[consumer]
	if !ok {
		t = &throttle{lim: rate.NewLimiter(rate.Limit(d.cfg.ThrottleRate), 1)}
		t.lim.AllowN(now, 0)
		d.throttles[consumer] = t
		d.nThrottled.Add(1)
	}
	t.until = now.Add(d.cfg.ThrottleFor)
}

// Throttled reports whether the consumer's call must be refused now
// because an anomaly throttled it, and when to retry. A throttled
// consumer is admitted at ThrottleRate until ThrottleFor has passed.
func (d *Detector) Throttled(consumer string, now time.Time) (bool, time.Duration) {
	if d.nThrottled.Load() == 0 {
		return false, 0
	}
	d.tmu.Lock()
	defer d.tmu.Unlock()
	t, ok := d.throttles[consumer]
	if !ok {
		return false, 0
	}
	if !now.Before(t.until) {
		delete(d.throttles, consumer)
		d.nThrottled.Add(-1)
		return false, 0
	}
	if t.lim.AllowN(now, 1) {
		return false, 0
	}
	missing := 1 - t.lim.TokensAt(now)
	wait := time.Duration(math.Ceil(missing / d.cfg.ThrottleRate * float64(time.Second)))
	if left := t.until.Sub(now); left < wait {
		wait = left
	}
	return true, wait
}

// errNoSuspender is the action error when suspending is not wired.
var errNoSuspender = errors.New("no suspender configured")

// suspend suspends the consumer in the registry and traces it as an
// admin action. The audit record is written whatever the outcome.
func (d *Detector) suspend(a Anomaly) error {
	if d.deps.Suspender == nil || d.deps.Audit == nil {
		return errNoSuspender
	}
	ctx, cancel := context.WithTimeout(context.Background(), actionTimeout)
	defer cancel()
	start := d.now()
	rec := audit.Record{Time: start, RequestID: audit.NewRequestID(), Operator: Operator, Method: SuspendMethod,
		Target: a.Consumer, Code: "OK", Reason: a.Kind}
	_, err := d.deps.Suspender.SetConsumerStatus(ctx, a.Consumer, registry.StatusSuspended)
	if err != nil {
		rec.Code = "Internal"
		err = fmt.Errorf("suspend: %w", err)
	}
	rec.Latency = d.now().Sub(start)
	if aerr := d.deps.Audit.Append(ctx, rec); aerr != nil {
		d.log.Error("anomaly: the suspension could not be traced", "request_id", rec.RequestID, "consumer", a.Consumer, "error", aerr.Error())
		err = errors.Join(err, fmt.Errorf("audit: %w", aerr))
	}
	return err
}

// SeedDailyCounts restores today's counts of calls that reached a source
// (keyed by ratelimit.Key, as the broker's daily quotas are seeded from
// the audit log at start), so that a restart does not reset the volume
// measure. Counts of another day than now's are ignored.
func (d *Detector) SeedDailyCounts(day string, counts map[string]int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if day != d.dayOf(d.now()) {
		return
	}
	for key, n := range counts {
		consumer, service, ok := strings.Cut(key, "|")
		if !ok || consumer == "" || service == "" || n <= 0 {
			continue
		}
		g := group{consumer, service}
		w := d.groups[g]
		if w == nil {
			w = &window{subjects: map[uint64]int{}}
			d.groups[g] = w
		}
		if w.day != day {
			w.day, w.dayCalls = day, 0
		}
		w.dayCalls += n
	}
}

// Anomalies lists the anomalies raised, oldest first; consumer, when
// not empty, keeps that consumer's.
func (d *Detector) Anomalies(consumer string) []Anomaly {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Anomaly
	for _, a := range d.list {
		if consumer == "" || a.Consumer == consumer {
			out = append(out, a)
		}
	}
	return out
}

// sweepLocked drops, once per window, the groups with nothing left to
// measure, so that memory follows the active consumers only.
func (d *Detector) sweepLocked(now time.Time) {
	if now.Before(d.nextSweep) {
		return
	}
	d.nextSweep = now.Add(d.cfg.Window)
	cutoff := now.Add(-d.cfg.Window)
	today := d.dayOf(now)
	for g, w := range d.groups {
		w.expire(cutoff)
		if w.len() == 0 && w.day != today && (w.enumRaised.IsZero() || !w.enumRaised.After(cutoff)) {
			delete(d.groups, g)
		}
	}
}

// dayOf returns the Paris day of now, formatting it once per day.
// Callers hold mu.
func (d *Detector) dayOf(now time.Time) string {
	if now.Before(d.dayStart) || !now.Before(d.dayEnd) {
		d.dayEnd = ratelimit.NextMidnight(now)
		d.dayStart = d.dayEnd.AddDate(0, 0, -1)
		d.day = ratelimit.Day(now)
	}
	return d.day
}

func (w *window) len() int { return len(w.events) - w.head }

// push appends an event, forgetting the oldest beyond max.
func (w *window) push(e event, max int) {
	for w.len() >= max {
		w.pop()
	}
	w.events = append(w.events, e)
	if e.miss {
		w.misses++
	}
	if e.hasSubj {
		w.subjects[e.subject]++
	}
}

func (w *window) pop() {
	e := w.events[w.head]
	w.events[w.head] = event{}
	w.head++
	if e.miss {
		w.misses--
	}
	if e.hasSubj {
		if n := w.subjects[e.subject] - 1; n > 0 {
			w.subjects[e.subject] = n
		} else {
			delete(w.subjects, e.subject)
		}
	}
	if w.head > len(w.events)/2 {
		w.events = append(w.events[:0], w.events[w.head:]...)
		w.head = 0
	}
}

// expire forgets the events before cutoff.
func (w *window) expire(cutoff time.Time) {
	for w.len() > 0 && w.events[w.head].at.Before(cutoff) {
		w.pop()
	}
}
