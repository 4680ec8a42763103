// Package anomaly detects abnormal use of the data API by a consumer:
// enumeration (asking for many people the source does not know, or for
// more distinct people than any desk handles) and calls beyond the
// volume the consumer declared in its grant. CNIL recommendation 2023-050
// asks the API manager to detect abnormal use; OWASP API 2023 API6 names
// the enumeration of identities.
//
// # The model
//
// The Detector is a broker.Observer: it sees the audit record of every
// call once it is traced (no personal data; the subject is a keyed
// pseudonym, of which only a salted 64-bit hash is kept, in memory,
// never written). Records are grouped by consumer × service, because the
// thresholds, the declared volume and the policy are per grant (a grant
// is consumer × service), and a source's share of unknown subjects is its
// own.
//
// A call is "answered" when the source said something about the person:
// OK, subject_not_found (NotFound) or subject_not_identifiable
// (FailedPrecondition). Refusals before the source (no grant, invalid
// subject, quotas) say nothing about enumeration and are not counted.
//
//   - enumeration, over a sliding window (Config.Window, 10 minutes by
//     default): once the window holds at least MinSample answered calls
//     (20), the share of subject_not_found / subject_not_identifiable
//     answers above MaxNotFoundRatio (0.5), or more distinct subjects than
//     MaxDistinctSubjects (300), is an anomaly.
//   - volume, per Paris day (the unit ExpectedDailyVolume is declared in,
//     and the day of the daily quotas): calls that reached the source
//     beyond ExpectedDailyVolume × VolumeFactor (1.5) are an anomaly. A
//     day is used rather than a pro rata of the window because consumers
//     legitimately work in batches (the canteen pricing of a whole town in
//     one morning); a grant that declares no volume (0) is not judged.
//
// A grant's AnomalyPolicy overrides MaxNotFoundRatio and
// MaxDistinctSubjects (zero keeps the default) and chooses the action.
// When several grants of the consumer for the service are in force, the
// strictest thresholds and the strongest action apply, and the declared
// volumes add up (volume is not judged if one of them declares none).
//
// An anomaly is raised at most once per window (per day for volume) per
// consumer × service × kind, not per call: it increments
// relais_anomalies_total{consumer,kind}, writes one WARN log line naming
// the consumer, the service, the window and the measured numbers (never a
// pseudonym), is kept in a bounded in-memory list (the admin API's
// ListAnomalies), and applies the action:
//
//   - "alert" (the default): nothing more.
//   - "throttle": for ThrottleFor (1 hour), the consumer's calls are
//     admitted at ThrottleRate (one every 10 seconds) — Throttled is what
//     the chain asks on each call.
//   - "suspend": the consumer is suspended in the registry (Suspender),
//     and the suspension is traced in the audit log as an admin action of
//     the operator "relais-anomaly-detector".
//
// Memory is bounded: at most MaxEvents answered calls per consumer ×
// service are kept (the oldest are forgotten first), idle groups are
// dropped once their window has passed, and the list keeps the last
// MaxAnomalies anomalies. Only the day's volume counts are restored at
// start (SeedDailyCounts, from the audit log); the rest does not survive
// a restart: the detector is an alarm, the audit log is the record.
package anomaly

import (
	"fmt"
	"time"

	"github.com/relais-broker/relais/broker/registry"
)

// Kinds of anomaly, the kind label of relais_anomalies_total.
const (
	// KindEnumeration is a consumer asking for many people the source does
	// not know, or for unusually many distinct people.
	KindEnumeration = "enumeration"
	// KindVolume is a consumer calling beyond its declared daily volume.
	KindVolume = "volume"
)

// Triggers name the threshold an anomaly crossed.
const (
	TriggerNotFoundRatio    = "not_found_ratio"
	TriggerDistinctSubjects = "distinct_subjects"
	TriggerDailyVolume      = "daily_volume"
)

// Actions a grant's policy can ask for when an anomaly is raised.
const (
	// ActionAlert raises the metric, the log line and the list entry only.
	ActionAlert = registry.AnomalyAlert
	// ActionThrottle slows the consumer down for a while.
	ActionThrottle = registry.AnomalyThrottle
	// ActionSuspend suspends the consumer in the registry.
	ActionSuspend = registry.AnomalySuspend
)

// Operator is the operator id under which the detector's own admin
// actions (suspensions) are traced.
const Operator = "relais-anomaly-detector"

// SuspendMethod is the audit Method of a suspension by the detector.
const SuspendMethod = "/relais.internal.v1.Anomaly/Suspend"

// Defaults of Config, chosen for a municipal or social desk: a person
// handles a few files per minute, sources know most people they are
// asked about.
const (
	DefaultWindow              = 10 * time.Minute
	DefaultMinSample           = 20
	DefaultMaxNotFoundRatio    = 0.5
	DefaultMaxDistinctSubjects = 300
	DefaultVolumeFactor        = 1.5
	DefaultThrottleFor         = time.Hour
	DefaultThrottleRate        = 0.1
	DefaultMaxEvents           = 20000
	DefaultMaxAnomalies        = 1000
)

// Thresholds are what an anomaly was judged against.
type Thresholds struct {
	MinSample           int
	MaxNotFoundRatio    float64
	MaxDistinctSubjects int
	// ExpectedDailyVolume is the declared volume, VolumeLimit the number
	// of calls beyond which the day is an anomaly (0: not judged).
	ExpectedDailyVolume int
	VolumeLimit         int
}

// Anomaly is one abnormal-use finding, as listed to operators. It holds
// counts only, never a subject.
type Anomaly struct {
	Consumer string // SIRET
	Service  string // full proto service name
	Kind     string // KindEnumeration or KindVolume
	Trigger  string // which threshold was crossed
	// WindowStart and WindowEnd bound the calls measured: the sliding
	// window for enumeration, the Paris day so far for volume.
	WindowStart, WindowEnd time.Time
	// Calls is the number of answered calls in the window (enumeration)
	// or of calls that reached the source today (volume).
	Calls            int
	NotFound         int
	NotFoundRatio    float64
	DistinctSubjects int
	Thresholds       Thresholds
	// Action is the action taken; ActionError says why it failed, if it did.
	Action      string
	ActionError string
}

// Config tunes the detector; the yaml names are those of the `anomaly:`
// section of relaisd's configuration file. Zero values take the defaults
// above.
type Config struct {
	// Window is the sliding window of the enumeration measures.
	Window time.Duration `yaml:"window"`
	// MinSample is the number of answered calls in the window below which
	// nothing is judged.
	MinSample int `yaml:"min_sample"`
	// MaxNotFoundRatio is the highest acceptable share of answers
	// subject_not_found or subject_not_identifiable, in (0, 1].
	MaxNotFoundRatio float64 `yaml:"max_not_found_ratio"`
	// MaxDistinctSubjects is the highest acceptable number of distinct
	// subjects in the window.
	MaxDistinctSubjects int `yaml:"max_distinct_subjects"`
	// VolumeFactor times the declared daily volume is the day's limit.
	VolumeFactor float64 `yaml:"volume_factor"`
	// DefaultAction applies when a grant's policy names none: "" or
	// "alert", "throttle" or "suspend".
	DefaultAction string `yaml:"default_action"`
	// ThrottleFor is how long a throttled consumer stays throttled, and
	// ThrottleRate the calls per second it is then admitted at.
	ThrottleFor  time.Duration `yaml:"throttle_for"`
	ThrottleRate float64       `yaml:"throttle_rate"`
	// MaxEvents bounds the answered calls kept per consumer × service.
	MaxEvents int `yaml:"max_events"`
	// MaxAnomalies bounds the list (the oldest are dropped).
	MaxAnomalies int `yaml:"max_anomalies"`
}

// withDefaults fills the zero fields.
func (c Config) withDefaults() Config {
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.MinSample == 0 {
		c.MinSample = DefaultMinSample
	}
	if c.MaxNotFoundRatio == 0 {
		c.MaxNotFoundRatio = DefaultMaxNotFoundRatio
	}
	if c.MaxDistinctSubjects == 0 {
		c.MaxDistinctSubjects = DefaultMaxDistinctSubjects
	}
	if c.VolumeFactor == 0 {
		c.VolumeFactor = DefaultVolumeFactor
	}
	if c.DefaultAction == "" {
		c.DefaultAction = ActionAlert
	}
	if c.ThrottleFor == 0 {
		c.ThrottleFor = DefaultThrottleFor
	}
	if c.ThrottleRate == 0 {
		c.ThrottleRate = DefaultThrottleRate
	}
	if c.MaxEvents == 0 {
		c.MaxEvents = DefaultMaxEvents
	}
	if c.MaxAnomalies == 0 {
		c.MaxAnomalies = DefaultMaxAnomalies
	}
	return c
}

// Validate refuses a configuration that cannot be meant, naming the field.
func (c Config) Validate() error {
	switch {
	case c.Window < 0:
		return fmt.Errorf("anomaly: window %s: must be positive", c.Window)
	case c.MinSample < 0:
		return fmt.Errorf("anomaly: min_sample %d: cannot be negative", c.MinSample)
	case c.MaxNotFoundRatio < 0 || c.MaxNotFoundRatio > 1:
		return fmt.Errorf("anomaly: max_not_found_ratio %g: must be in [0,1]", c.MaxNotFoundRatio)
	case c.MaxDistinctSubjects < 0:
		return fmt.Errorf("anomaly: max_distinct_subjects %d: cannot be negative", c.MaxDistinctSubjects)
	case c.VolumeFactor < 0:
		return fmt.Errorf("anomaly: volume_factor %g: cannot be negative", c.VolumeFactor)
	case !validAction(c.DefaultAction):
		return fmt.Errorf("anomaly: default_action %q: want alert, throttle or suspend", c.DefaultAction)
	case c.ThrottleFor < 0:
		return fmt.Errorf("anomaly: throttle_for %s: cannot be negative", c.ThrottleFor)
	case c.ThrottleRate < 0:
		return fmt.Errorf("anomaly: throttle_rate %g: cannot be negative", c.ThrottleRate)
	case c.MaxEvents < 0 || c.MaxAnomalies < 0:
		return fmt.Errorf("anomaly: max_events and max_anomalies cannot be negative")
	}
	return nil
}

func validAction(a string) bool {
	switch a {
	case "", ActionAlert, ActionThrottle, ActionSuspend:
		return true
	}
	return false
}

// actionRank orders actions by strength, for several grants in force.
func actionRank(a string) int {
	switch a {
	case ActionSuspend:
		return 3
	case ActionThrottle:
		return 2
	case ActionAlert:
		return 1
	}
	return 0
}
