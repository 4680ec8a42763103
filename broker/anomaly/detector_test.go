package anomaly_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/relais-broker/relais/broker/anomaly"
	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/ratelimit"
	"github.com/relais-broker/relais/broker/registry"
)

const (
	siret   = "21990000100005"
	other   = "21990000200003"
	service = "relais.familyquotient.v1.FamilyQuotientService"
	method  = "/" + service + "/GetFamilyQuotient"
)

// clock is an injected clock tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	// 09:00 Paris time, so that a test's calls stay on one Paris day.
	return &clock{t: time.Date(2026, 3, 10, 8, 0, 0, 0, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// counter is a hand-written anomaly.Counter.
type counter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *counter) ObserveAnomaly(consumer, kind string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts = map[string]int{}
	}
	c.counts[consumer+"/"+kind]++
}

func (c *counter) get(consumer, kind string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[consumer+"/"+kind]
}

// suspender is a hand-written registry that records suspensions.
type suspender struct {
	mu    sync.Mutex
	calls []string
	fail  error
}

func (s *suspender) SetConsumerStatus(_ context.Context, siret string, st registry.Status) (registry.Consumer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return registry.Consumer{}, s.fail
	}
	s.calls = append(s.calls, siret+"="+string(st))
	return registry.Consumer{SIRET: siret, Status: st}, nil
}

func (s *suspender) got() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.calls...)
}

// fixture is a detector with its fakes.
type fixture struct {
	d       *anomaly.Detector
	clock   *clock
	metrics *counter
	susp    *suspender
	audit   *audit.Memory
	logs    *bytes.Buffer
	logMu   *sync.Mutex
}

// lockedWriter serialises the log writes of concurrent calls.
type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func grant(consumer string, volume int, p registry.AnomalyPolicy, now time.Time) registry.Grant {
	return registry.Grant{ID: "g-" + consumer, Consumer: consumer, Service: service, NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0),
		ExpectedDailyVolume: volume, Anomaly: p}
}

func newFixture(t *testing.T, cfg anomaly.Config, grants ...registry.Grant) *fixture {
	t.Helper()
	f := &fixture{clock: newClock(), metrics: &counter{}, susp: &suspender{}, audit: &audit.Memory{}, logs: &bytes.Buffer{}, logMu: &sync.Mutex{}}
	if grants == nil {
		grants = []registry.Grant{grant(siret, 0, registry.AnomalyPolicy{}, f.clock.Now()), grant(other, 0, registry.AnomalyPolicy{}, f.clock.Now())}
	}
	reg := registry.NewMemory([]registry.Consumer{{SIRET: siret, Status: registry.StatusActive}, {SIRET: other, Status: registry.StatusActive}}, grants)
	d, err := anomaly.New(cfg, anomaly.Deps{Registry: reg, Suspender: f.susp, Audit: f.audit, Metrics: f.metrics,
		Logger: slog.New(slog.NewJSONHandler(lockedWriter{f.logMu, f.logs}, nil)), Clock: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	f.d = d
	return f
}

func (f *fixture) logText() string {
	f.logMu.Lock()
	defer f.logMu.Unlock()
	return f.logs.String()
}

// outcomes of a call, as the broker records them.
var (
	ok         = audit.Record{Code: "OK", Source: "sandbox"}
	notFound   = audit.Record{Code: "NotFound", Reason: "subject_not_found", Source: "sandbox"}
	ambiguous  = audit.Record{Code: "FailedPrecondition", Reason: "subject_not_identifiable", Source: "sandbox"}
	noGrant    = audit.Record{Code: "PermissionDenied", Reason: "no_grant"}
	badSubject = audit.Record{Code: "InvalidArgument", Reason: "invalid_subject"}
)

func pseudonym(i int) string { return fmt.Sprintf("pseudonym-%04d", i) }

// call observes one call of consumer on subject with the given outcome.
func (f *fixture) call(consumer string, subject int, out audit.Record) {
	r := out
	r.Time, r.Consumer, r.Method, r.Subject, r.Latency = f.clock.Now(), consumer, method, pseudonym(subject), 3*time.Millisecond
	f.d.ObserveCall(r, time.Millisecond)
}

func TestEnumerationOfUnknownSubjectsIsRaisedOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t, anomaly.Config{})
	start := f.clock.Now()
	for i := range 200 {
		f.call(siret, i, notFound)
		f.clock.Advance(1400 * time.Microsecond) // 200 calls in 280 ms, as in the issue
	}
	list := f.d.Anomalies("")
	if len(list) != 1 {
		t.Fatalf("%d anomalies, want exactly 1 (once per window): %+v", len(list), list)
	}
	a := list[0]
	if a.Consumer != siret || a.Service != service || a.Kind != anomaly.KindEnumeration || a.Trigger != anomaly.TriggerNotFoundRatio {
		t.Errorf("anomaly %+v", a)
	}
	// Raised as soon as the minimum sample was reached.
	if a.Calls != anomaly.DefaultMinSample || a.NotFound != anomaly.DefaultMinSample || a.NotFoundRatio != 1 || a.DistinctSubjects != anomaly.DefaultMinSample {
		t.Errorf("measures %+v", a)
	}
	if !a.WindowEnd.After(start) || a.WindowEnd.Sub(a.WindowStart) != anomaly.DefaultWindow {
		t.Errorf("window %s – %s", a.WindowStart, a.WindowEnd)
	}
	if a.Thresholds.MaxNotFoundRatio != anomaly.DefaultMaxNotFoundRatio || a.Thresholds.MinSample != anomaly.DefaultMinSample || a.Action != anomaly.ActionAlert {
		t.Errorf("thresholds/action %+v %q", a.Thresholds, a.Action)
	}
	if n := f.metrics.get(siret, anomaly.KindEnumeration); n != 1 {
		t.Errorf("relais_anomalies_total = %d, want 1", n)
	}
	logs := f.logText()
	if strings.Count(logs, `"level":"WARN"`) != 1 {
		t.Errorf("want one WARN line:\n%s", logs)
	}
	for _, want := range []string{`"consumer":"` + siret + `"`, `"kind":"enumeration"`, `"window_start"`, `"window_end"`, `"not_found_ratio":1`, `"calls":20`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log line misses %s:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "pseudonym-") || strings.Contains(fmt.Sprintf("%+v", list), "pseudonym-") {
		t.Error("a pseudonym reached the log or the list")
	}
	if len(f.audit.Records()) != 0 || len(f.susp.got()) != 0 {
		t.Error("the alert action must not suspend")
	}
	if f.d.Anomalies(other) != nil {
		t.Error("the consumer filter leaks another consumer's anomalies")
	}
}

func TestNormalUseRaisesNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, anomaly.Config{}, grant(siret, 1000, registry.AnomalyPolicy{}, newClock().Now()))
	for i := range 200 {
		out := ok
		if i%10 == 0 {
			out = notFound // a few typos: 10 % unknown is normal
		}
		f.call(siret, i%3, out)
		f.clock.Advance(1400 * time.Microsecond)
	}
	if list := f.d.Anomalies(""); len(list) != 0 {
		t.Fatalf("normal use raised %+v", list)
	}
	if f.logText() != "" {
		t.Errorf("normal use logged:\n%s", f.logText())
	}
}

func TestThresholds(t *testing.T) {
	t.Parallel()
	now := newClock().Now()
	cases := []struct {
		name    string
		cfg     anomaly.Config
		policy  registry.AnomalyPolicy
		calls   int
		out     func(i int) (subject int, r audit.Record)
		trigger string // "" for none
		atCall  int
	}{
		{"below the minimum sample nothing is judged", anomaly.Config{}, registry.AnomalyPolicy{}, 19,
			func(i int) (int, audit.Record) { return i, notFound }, "", 0},
		{"not identifiable counts as unknown", anomaly.Config{}, registry.AnomalyPolicy{}, 20,
			func(i int) (int, audit.Record) { return i, ambiguous }, anomaly.TriggerNotFoundRatio, 20},
		{"exactly the ratio is not beyond it", anomaly.Config{}, registry.AnomalyPolicy{}, 40,
			func(i int) (int, audit.Record) { return i % 5, [2]audit.Record{ok, notFound}[i%2] }, "", 0},
		{"refusals before the source are not a sample", anomaly.Config{}, registry.AnomalyPolicy{}, 200,
			func(i int) (int, audit.Record) { return i, [2]audit.Record{noGrant, badSubject}[i%2] }, "", 0},
		{"calls that asked no source are not a sample", anomaly.Config{}, registry.AnomalyPolicy{}, 40,
			func(i int) (int, audit.Record) { return i, [2]audit.Record{{Code: "OK"}, notFound}[i%2] }, anomaly.TriggerNotFoundRatio, 40},
		{"the grant lowers the ratio", anomaly.Config{}, registry.AnomalyPolicy{MaxNotFoundRatio: 0.1}, 40,
			func(i int) (int, audit.Record) { return i % 5, [5]audit.Record{notFound, ok, ok, ok, ok}[i%5] }, anomaly.TriggerNotFoundRatio, 20},
		{"default distinct subjects", anomaly.Config{}, registry.AnomalyPolicy{}, 400,
			func(i int) (int, audit.Record) { return i, ok }, anomaly.TriggerDistinctSubjects, 301},
		{"the grant lowers distinct subjects", anomaly.Config{}, registry.AnomalyPolicy{MaxDistinctSubjects: 50}, 400,
			func(i int) (int, audit.Record) { return i, ok }, anomaly.TriggerDistinctSubjects, 51},
		{"a looser grant does not loosen the configuration", anomaly.Config{MaxDistinctSubjects: 30}, registry.AnomalyPolicy{MaxDistinctSubjects: 500}, 100,
			func(i int) (int, audit.Record) { return i, ok }, anomaly.TriggerDistinctSubjects, 31},
		{"configured minimum sample", anomaly.Config{MinSample: 5}, registry.AnomalyPolicy{}, 10,
			func(i int) (int, audit.Record) { return i, notFound }, anomaly.TriggerNotFoundRatio, 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, tc.cfg, grant(siret, 0, tc.policy, now))
			at := 0
			for i := range tc.calls {
				subj, out := tc.out(i)
				f.call(siret, subj, out)
				if at == 0 && len(f.d.Anomalies("")) > 0 {
					at = i + 1
				}
				f.clock.Advance(time.Second)
			}
			list := f.d.Anomalies("")
			if tc.trigger == "" {
				if len(list) != 0 {
					t.Fatalf("raised %+v", list)
				}
				return
			}
			if len(list) != 1 || list[0].Trigger != tc.trigger || list[0].Kind != anomaly.KindEnumeration {
				t.Fatalf("want one %s anomaly, got %+v", tc.trigger, list)
			}
			if at != tc.atCall {
				t.Errorf("raised at call %d, want %d", at, tc.atCall)
			}
		})
	}
}

func TestWindowSlides(t *testing.T) {
	t.Parallel()
	f := newFixture(t, anomaly.Config{})
	// 15 unknown subjects, then 11 minutes of silence: they leave the window.
	for i := range 15 {
		f.call(siret, i, notFound)
	}
	f.clock.Advance(11 * time.Minute)
	for i := range 10 {
		f.call(siret, 100+i, notFound)
	}
	if list := f.d.Anomalies(""); len(list) != 0 {
		t.Fatalf("calls older than the window were counted: %+v", list)
	}
	// 10 more inside the window: 20 in the window now.
	for i := range 10 {
		f.call(siret, 200+i, notFound)
	}
	if n := len(f.d.Anomalies("")); n != 1 {
		t.Fatalf("%d anomalies after 20 unknown subjects in the window, want 1", n)
	}
	// The same enumeration going on within the window is not raised again…
	for i := range 100 {
		f.call(siret, 300+i, notFound)
		f.clock.Advance(5 * time.Second) // 500 s < 10 min
	}
	if n := len(f.d.Anomalies("")); n != 1 {
		t.Fatalf("%d anomalies within one window, want 1", n)
	}
	// …but it is in the next window.
	f.clock.Advance(2 * time.Minute)
	for i := range 30 {
		f.call(siret, 500+i, notFound)
	}
	list := f.d.Anomalies("")
	if len(list) != 2 {
		t.Fatalf("%d anomalies after the window passed, want 2", len(list))
	}
	if !list[1].WindowStart.After(list[0].WindowEnd.Add(-time.Second)) {
		t.Errorf("second window %s starts before the first ended %s", list[1].WindowStart, list[0].WindowEnd)
	}
	// Once the window has slid past the ratio, normal calls stay quiet.
	f.clock.Advance(11 * time.Minute)
	for i := range 100 {
		f.call(siret, i%3, ok)
	}
	if n := len(f.d.Anomalies("")); n != 2 {
		t.Fatalf("normal calls after the window raised: %d anomalies", n)
	}
	if f.metrics.get(siret, anomaly.KindEnumeration) != 2 {
		t.Errorf("metric = %d, want 2", f.metrics.get(siret, anomaly.KindEnumeration))
	}
}

func TestConsumersAreJudgedApart(t *testing.T) {
	t.Parallel()
	f := newFixture(t, anomaly.Config{})
	for i := range 100 {
		f.call(siret, i, notFound)
		f.call(other, i%3, ok)
	}
	if len(f.d.Anomalies(siret)) != 1 || len(f.d.Anomalies(other)) != 0 {
		t.Fatalf("anomalies %+v", f.d.Anomalies(""))
	}
	// Admin actions and calls with no authenticated consumer are not calls of a consumer.
	f.d.ObserveCall(audit.Record{Operator: "admin", Method: "/relais.admin.v1.ConsumerAdminService/ListConsumers", Code: "OK"}, 0)
	f.d.ObserveCall(audit.Record{Method: method, Code: "Unauthenticated", Reason: "credential_missing"}, 0)
	f.d.ObserveCall(audit.Record{Consumer: other, Method: "not-a-method", Code: "OK"}, 0)
	if len(f.d.Anomalies("")) != 1 {
		t.Fatal("ignored records raised something")
	}
}

func TestDeclaredVolume(t *testing.T) {
	t.Parallel()
	now := newClock().Now()
	f := newFixture(t, anomaly.Config{}, grant(siret, 100, registry.AnomalyPolicy{}, now), grant(other, 0, registry.AnomalyPolicy{}, now))
	// 150 calls (1.5 × 100) over the morning: within the declared volume.
	for i := range 150 {
		f.call(siret, i%3, ok)
		f.call(other, i%3, ok) // no declared volume: never judged
		f.clock.Advance(30 * time.Second)
	}
	if list := f.d.Anomalies(""); len(list) != 0 {
		t.Fatalf("within the volume: %+v", list)
	}
	f.call(siret, 1, ok)
	list := f.d.Anomalies("")
	if len(list) != 1 || list[0].Kind != anomaly.KindVolume || list[0].Trigger != anomaly.TriggerDailyVolume || list[0].Calls != 151 {
		t.Fatalf("want one volume anomaly at call 151, got %+v", list)
	}
	a := list[0]
	if a.Thresholds.ExpectedDailyVolume != 100 || a.Thresholds.VolumeLimit != 150 {
		t.Errorf("thresholds %+v", a.Thresholds)
	}
	if got := a.WindowStart.In(time.FixedZone("CET", 3600)); got.Hour() != 0 || got.Minute() != 0 || !a.WindowEnd.Equal(f.clock.Now()) {
		t.Errorf("volume window %s – %s, want Paris midnight – now", a.WindowStart, a.WindowEnd)
	}
	// Calls refused before the source do not count; calls that reached a
	// failing source do.
	f.call(siret, 1, noGrant)
	f.call(siret, 1, audit.Record{Code: "Unavailable", Reason: "source_unavailable", Source: "sandbox"})
	if n := len(f.d.Anomalies("")); n != 1 {
		t.Fatalf("volume raised twice in one day: %d", n)
	}
	// A new Paris day starts from zero.
	f.clock.Advance(24 * time.Hour)
	for range 150 {
		f.call(siret, 2, ok)
		f.clock.Advance(time.Minute)
	}
	if n := len(f.d.Anomalies("")); n != 1 {
		t.Fatalf("the day did not reset: %d anomalies", n)
	}
	f.call(siret, 2, ok)
	if n := f.metrics.get(siret, anomaly.KindVolume); n != 2 {
		t.Fatalf("relais_anomalies_total{kind=volume} = %d, want 2 (once per day)", n)
	}
}

func TestSeveralGrantsInForce(t *testing.T) {
	t.Parallel()
	now := newClock().Now()
	revoked := grant(siret, 10, registry.AnomalyPolicy{MaxDistinctSubjects: 5, Action: anomaly.ActionSuspend}, now)
	revoked.ID, revoked.RevokedAt = "revoked", now.Add(-time.Minute)
	a := grant(siret, 40, registry.AnomalyPolicy{MaxDistinctSubjects: 40, Action: anomaly.ActionAlert}, now)
	b := grant(siret, 60, registry.AnomalyPolicy{MaxDistinctSubjects: 25, Action: anomaly.ActionThrottle}, now)
	b.ID = "b"
	f := newFixture(t, anomaly.Config{}, revoked, a, b)
	for i := range 30 {
		f.call(siret, i, ok)
		f.clock.Advance(time.Second)
	}
	list := f.d.Anomalies("")
	if len(list) != 1 || list[0].Calls != 26 || list[0].Action != anomaly.ActionThrottle {
		t.Fatalf("want the strictest live threshold (25) and the strongest live action (throttle), got %+v", list)
	}
	if list[0].Thresholds.ExpectedDailyVolume != 100 || list[0].Thresholds.VolumeLimit != 150 {
		t.Errorf("declared volumes of the live grants add up: %+v", list[0].Thresholds)
	}
	if len(f.susp.got()) != 0 {
		t.Error("the revoked grant's policy was applied")
	}
}

func TestThrottleAction(t *testing.T) {
	t.Parallel()
	f := newFixture(t, anomaly.Config{}, grant(siret, 0, registry.AnomalyPolicy{Action: anomaly.ActionThrottle}, newClock().Now()))
	if th, _ := f.d.Throttled(siret, f.clock.Now()); th {
		t.Fatal("throttled before any anomaly")
	}
	for i := range 20 {
		f.call(siret, i, notFound)
	}
	list := f.d.Anomalies("")
	if len(list) != 1 || list[0].Action != anomaly.ActionThrottle || list[0].ActionError != "" {
		t.Fatalf("anomalies %+v", list)
	}
	now := f.clock.Now()
	if th, _ := f.d.Throttled(siret, now); th {
		t.Fatal("the first call of a throttled consumer is admitted")
	}
	th, retry := f.d.Throttled(siret, now)
	if !th || retry != 10*time.Second {
		t.Fatalf("second call at once: throttled=%v retry=%s, want true 10s", th, retry)
	}
	if th, _ := f.d.Throttled(other, now); th {
		t.Fatal("another consumer is throttled")
	}
	if th, _ := f.d.Throttled(siret, now.Add(10*time.Second)); th {
		t.Fatal("one call per 10 s is admitted")
	}
	if th, retry := f.d.Throttled(siret, now.Add(12*time.Second)); !th || retry != 8*time.Second {
		t.Fatalf("at +12s: %v %s, want true 8s", th, retry)
	}
	// Until ThrottleFor has passed, then never again.
	end := now.Add(anomaly.DefaultThrottleFor)
	if th, retry := f.d.Throttled(siret, end.Add(-time.Second)); th && retry > time.Second {
		t.Fatalf("retry %s goes beyond the end of the throttle", retry)
	}
	for i := range 5 {
		if th, _ := f.d.Throttled(siret, end.Add(time.Duration(i)*time.Millisecond)); th {
			t.Fatal("still throttled after ThrottleFor")
		}
	}
	if len(f.susp.got()) != 0 || len(f.audit.Records()) != 0 {
		t.Error("throttle must not suspend")
	}
}

func TestSuspendAction(t *testing.T) {
	t.Parallel()
	f := newFixture(t, anomaly.Config{}, grant(siret, 0, registry.AnomalyPolicy{Action: anomaly.ActionSuspend}, newClock().Now()))
	for i := range 50 {
		f.call(siret, i, notFound)
	}
	if got := f.susp.got(); len(got) != 1 || got[0] != siret+"=suspended" {
		t.Fatalf("suspensions %v, want exactly one of %s", got, siret)
	}
	recs := f.audit.Records()
	if len(recs) != 1 {
		t.Fatalf("%d audit records, want 1", len(recs))
	}
	r := recs[0]
	if r.Operator != anomaly.Operator || r.Method != anomaly.SuspendMethod || r.Target != siret || r.Reason != anomaly.KindEnumeration ||
		r.Code != "OK" || r.RequestID == "" || !r.Time.Equal(f.clock.Now()) || r.Subject != "" || r.Consumer != "" {
		t.Errorf("audit record %+v", r)
	}
	list := f.d.Anomalies("")
	if len(list) != 1 || list[0].Action != anomaly.ActionSuspend || list[0].ActionError != "" {
		t.Fatalf("anomalies %+v", list)
	}
	if !strings.Contains(f.logText(), `"action":"suspend"`) {
		t.Errorf("the log line does not say the consumer was suspended:\n%s", f.logText())
	}
}

func TestSuspendFailures(t *testing.T) {
	t.Parallel()
	now := newClock().Now()
	t.Run("registry refuses", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, anomaly.Config{DefaultAction: anomaly.ActionSuspend}, grant(siret, 0, registry.AnomalyPolicy{}, now))
		f.susp.fail = errors.New("database unavailable")
		for i := range 20 {
			f.call(siret, i, notFound)
		}
		list := f.d.Anomalies("")
		if len(list) != 1 || !strings.Contains(list[0].ActionError, "database unavailable") {
			t.Fatalf("anomalies %+v", list)
		}
		if recs := f.audit.Records(); len(recs) != 1 || recs[0].Code != "Internal" {
			t.Fatalf("the failed suspension must be traced too: %+v", recs)
		}
		if f.metrics.get(siret, anomaly.KindEnumeration) != 1 {
			t.Error("the anomaly must be counted whatever the action did")
		}
	})
	t.Run("audit refuses", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, anomaly.Config{DefaultAction: anomaly.ActionSuspend}, grant(siret, 0, registry.AnomalyPolicy{}, now))
		f.audit.SetFail(errors.New("disk full"))
		for i := range 20 {
			f.call(siret, i, notFound)
		}
		list := f.d.Anomalies("")
		if len(list) != 1 || !strings.Contains(list[0].ActionError, "audit: disk full") {
			t.Fatalf("anomalies %+v", list)
		}
	})
	t.Run("nothing to suspend with", func(t *testing.T) {
		t.Parallel()
		reg := registry.NewMemory(nil, []registry.Grant{grant(siret, 0, registry.AnomalyPolicy{Action: anomaly.ActionSuspend}, now)})
		c := newClock()
		d, err := anomaly.New(anomaly.Config{}, anomaly.Deps{Registry: reg, Clock: c.Now})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 20 {
			d.ObserveCall(audit.Record{Consumer: siret, Method: method, Subject: pseudonym(i), Code: "NotFound", Reason: "subject_not_found", Source: "sandbox"}, 0)
		}
		if list := d.Anomalies(""); len(list) != 1 || list[0].ActionError != "no suspender configured" {
			t.Fatalf("anomalies %+v", list)
		}
	})
}

func TestConcurrentCallsRaiseOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t, anomaly.Config{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				f.call(siret, w*1000+i, notFound)
				f.d.Throttled(siret, f.clock.Now())
			}
		}()
	}
	wg.Wait()
	if n := len(f.d.Anomalies("")); n != 1 {
		t.Fatalf("%d anomalies from concurrent calls in one window, want 1", n)
	}
}

func TestMemoryIsBounded(t *testing.T) {
	t.Parallel()
	f := newFixture(t, anomaly.Config{MaxEvents: 50, MaxAnomalies: 3, MaxDistinctSubjects: 1000})
	for i := range 1000 {
		f.call(siret, i, ok)
	}
	// Only the last 50 calls are kept: 50 distinct subjects, never 1000.
	for i := range 10 {
		f.call(siret, 5000+i, notFound)
	}
	list := f.d.Anomalies("")
	if len(list) != 0 {
		// 10 misses out of the 50 kept calls: 20 %, not an anomaly.
		t.Fatalf("anomalies %+v", list)
	}
	for i := range 20 {
		f.call(siret, 6000+i, notFound)
	}
	list = f.d.Anomalies("")
	if len(list) != 1 || list[0].Calls != 50 || list[0].NotFound != 26 || list[0].DistinctSubjects != 50 {
		t.Fatalf("the window must hold the last 50 calls: %+v", list)
	}
	// The list keeps the last MaxAnomalies.
	for w := range 5 {
		f.clock.Advance(11 * time.Minute)
		for i := range 20 {
			f.call(siret, 10000*(w+1)+i, notFound)
		}
	}
	list = f.d.Anomalies("")
	if len(list) != 3 || !list[2].WindowEnd.Equal(f.clock.Now()) {
		t.Fatalf("list %d entries, want the last 3", len(list))
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  anomaly.Config
		want string
	}{
		{anomaly.Config{Window: -time.Second}, "window"},
		{anomaly.Config{MinSample: -1}, "min_sample"},
		{anomaly.Config{MaxNotFoundRatio: 1.5}, "max_not_found_ratio"},
		{anomaly.Config{MaxDistinctSubjects: -3}, "max_distinct_subjects"},
		{anomaly.Config{VolumeFactor: -1}, "volume_factor"},
		{anomaly.Config{DefaultAction: "ban"}, `default_action "ban"`},
		{anomaly.Config{ThrottleFor: -time.Minute}, "throttle_for"},
		{anomaly.Config{ThrottleRate: -1}, "throttle_rate"},
		{anomaly.Config{MaxEvents: -1}, "max_events"},
	} {
		_, err := anomaly.New(tc.cfg, anomaly.Deps{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want it to name %s", tc.cfg, err, tc.want)
		}
	}
	d, err := anomaly.New(anomaly.Config{}, anomaly.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	c := d.Config()
	if c.Window != 10*time.Minute || c.MinSample != 20 || c.MaxNotFoundRatio != 0.5 || c.MaxDistinctSubjects != 300 || c.VolumeFactor != 1.5 ||
		c.DefaultAction != anomaly.ActionAlert || c.ThrottleFor != time.Hour || c.ThrottleRate != 0.1 {
		t.Errorf("defaults %+v", c)
	}
}

func TestConfigFromYAML(t *testing.T) {
	t.Parallel()
	const section = `
window: 15m
min_sample: 30
max_not_found_ratio: 0.4
max_distinct_subjects: 1000
volume_factor: 2
default_action: throttle
throttle_for: 30m
throttle_rate: 0.5
`
	var cfg anomaly.Config
	dec := yaml.NewDecoder(strings.NewReader(section))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	want := anomaly.Config{Window: 15 * time.Minute, MinSample: 30, MaxNotFoundRatio: 0.4, MaxDistinctSubjects: 1000, VolumeFactor: 2,
		DefaultAction: anomaly.ActionThrottle, ThrottleFor: 30 * time.Minute, ThrottleRate: 0.5}
	if cfg != want {
		t.Fatalf("decoded %+v, want %+v", cfg, want)
	}
	if _, err := anomaly.New(cfg, anomaly.Deps{}); err != nil {
		t.Fatal(err)
	}
}

func TestSeededDailyCountsCountTowardsVolume(t *testing.T) {
	t.Parallel()
	now := newClock().Now()
	f := newFixture(t, anomaly.Config{}, grant(siret, 100, registry.AnomalyPolicy{}, now))
	f.d.SeedDailyCounts("2026-03-09", map[string]int{siret + "|" + service: 1000}) // yesterday: ignored
	f.d.SeedDailyCounts(ratelimit.Day(now), map[string]int{siret + "|" + service: 149, "malformed": 3, other + "|" + service: 500})
	f.call(siret, 1, ok)
	if n := len(f.d.Anomalies("")); n != 0 {
		t.Fatalf("call 150 of the day raised %d anomalies", n)
	}
	f.call(siret, 1, ok)
	if list := f.d.Anomalies(""); len(list) != 1 || list[0].Kind != anomaly.KindVolume || list[0].Calls != 151 {
		t.Fatalf("want the volume anomaly at call 151 of the day, got %+v", list)
	}
}
