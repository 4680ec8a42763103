// Package broker is the core of Relais: it serves the typed source
// services through one fixed interceptor chain (chain.go) and a single
// generic handler that fetches attributes from the source adapter on
// demand, strips what the caller is not entitled to and traces the access
// before answering. It imports neither adapters nor cmd: adapters meet it
// through the source.Adapter contract, storage through registry.Reader
// and audit.Recorder.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync/atomic"
	"time"

	"buf.build/go/protovalidate"
	"go.opentelemetry.io/otel/trace"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/authn"
	"github.com/relais-broker/relais/broker/callchain"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/fastvalid"
	"github.com/relais-broker/relais/broker/ratelimit"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/source"
	"github.com/relais-broker/relais/broker/subject"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
)

// Source is a configured source adapter for one typed service.
type Source struct {
	// ID names the source in metadata, logs and the audit log, e.g. "sandbox".
	ID string
	// Adapter fetches the attributes.
	Adapter source.Adapter
	// Timeout bounds each call to the source; the caller's own deadline
	// applies when it is shorter. Zero means DefaultSourceTimeout.
	Timeout time.Duration
}

// DefaultSourceTimeout bounds a source call when none is configured.
const DefaultSourceTimeout = 10 * time.Second

// Config is what the broker is built from.
type Config struct {
	// Catalog lists the typed services; nil means catalog.Default().
	Catalog *catalog.Catalog
	// Sources maps a full service name to its source. A service without a
	// source answers service_not_configured.
	Sources map[string]Source
	// Registry answers who the consumers are and what they are granted.
	Registry registry.Reader
	// Audit records every call; a call whose record fails returns no data.
	Audit audit.Recorder
	// Logger receives one line per call, never personal data. Nil discards.
	Logger *slog.Logger
	// Clock returns the current time; nil means time.Now.
	Clock func() time.Time
	// Revocations lists revoked client certificates, checked on every
	// call so that connections opened before a revocation are refused
	// too. Nil revokes nothing.
	Revocations authn.RevocationChecker
	// Pseudonyms computes the subject pseudonym of audit records; nil
	// records none.
	Pseudonyms *subject.Pseudonymizer
	// Observer, when set, sees every call's record (metrics).
	Observer Observer
	// AllowDuplicateCalls turns off the refusal of an identical call
	// (consumer, method, subject) already in flight. Only for load tests
	// that repeat one subject.
	AllowDuplicateCalls bool
	// DailyQuota counts calls against the grants' daily caps; nil means
	// the in-memory counter of this process (ratelimit.Daily). Replicas
	// sharing consumers need a shared one (ratelimit/pgquota).
	DailyQuota ratelimit.DailyCounter
	// InFlight is the duplicate-call guard; nil means the in-memory one
	// of this process (ratelimit.MemInFlight).
	InFlight ratelimit.InFlight
	// RateShare, when set, is this replica's part of each grant's
	// per-second rate and burst among the live replicas
	// (*cluster.RateShare), so that N replicas together hold the grant's
	// rate; nil means this process is alone. Daily caps are not shared
	// this way: DailyQuota counts them exactly.
	RateShare RateShare
	// Throttle, when set, refuses the calls of a consumer whose abnormal
	// use its grant's anomaly policy throttles (broker/anomaly).
	Throttle Throttle
	// Citizens resolves the subjects designated by the citizen's own
	// login (citizen_access_token): *citizen.Resolver. Nil means citizen
	// login is not configured: such calls are refused
	// (citizen_login_not_configured), after the grants.
	Citizens CitizenResolver
	// TracerProvider gives HTTPS gateway calls their server span (gRPC
	// calls get theirs from the server's stats handler); nil means none.
	TracerProvider trace.TracerProvider
}

// Observer is told about every call once it is traced: its audit record
// (no personal data) and how long the source took (zero if not called).
type Observer = callchain.Observer

// Observers fans every call out to several observers, in order: the
// broker takes one Observer, relaisd has metrics and anomaly detection.
func Observers(obs ...Observer) Observer { return fanOut(obs) }

type fanOut []Observer

func (f fanOut) ObserveCall(r audit.Record, sourceLatency time.Duration) {
	for _, o := range f {
		if o != nil {
			o.ObserveCall(r, sourceLatency)
		}
	}
}

// RateShare scales a grant's quota to this replica's part of it at now,
// without I/O (it runs on every call): satisfied by *cluster.RateShare.
type RateShare interface {
	Quota(q registry.Quota, now time.Time) registry.Quota
}

// Throttle says whether a consumer's calls are held back after abnormal
// use, and for how long.
type Throttle interface {
	Throttled(consumer string, now time.Time) (bool, time.Duration)
}

// CitizenResolver turns a citizen's access token into the identity it
// designates, asking the identity provider (broker/citizen). Errors are
// catalogued (*errcat.Error) and hold neither the token nor any claim;
// any other error is reported as identity_provider_unavailable.
type CitizenResolver interface {
	Resolve(ctx context.Context, token string) (*commonv1.SubjectIdentity, error)
}

// Broker serves the typed source services.
type Broker struct {
	catalog    *catalog.Catalog
	sources    atomic.Pointer[map[string]Source]
	registry   registry.Reader
	audit      audit.Recorder
	log        *slog.Logger
	now        func() time.Time
	validator  protovalidate.Validator
	limiter    *ratelimit.Limiter
	revoked    authn.RevocationChecker
	pseudonyms *subject.Pseudonymizer
	daily      ratelimit.DailyCounter
	inFlight   ratelimit.InFlight
	throttle   Throttle
	citizens   CitizenResolver
	share      RateShare
	observer   Observer
	allowDup   bool
	tracer     trace.Tracer
	chain      *callchain.Chain[*call]
}

// New checks cfg and returns a Broker.
func New(cfg Config) (*Broker, error) {
	if cfg.Registry == nil {
		return nil, errors.New("broker: a registry is required")
	}
	if cfg.Audit == nil {
		return nil, errors.New("broker: an audit recorder is required")
	}
	b := &Broker{
		catalog:    cfg.Catalog,
		registry:   cfg.Registry,
		audit:      cfg.Audit,
		log:        cfg.Logger,
		now:        cfg.Clock,
		limiter:    ratelimit.New(),
		daily:      cfg.DailyQuota,
		inFlight:   cfg.InFlight,
		throttle:   cfg.Throttle,
		citizens:   cfg.Citizens,
		share:      cfg.RateShare,
		observer:   cfg.Observer,
		allowDup:   cfg.AllowDuplicateCalls,
		revoked:    cfg.Revocations,
		pseudonyms: cfg.Pseudonyms,
	}
	if b.catalog == nil {
		b.catalog = catalog.Default()
	}
	if v := reflect.ValueOf(b.citizens); b.citizens != nil && v.Kind() == reflect.Pointer && v.IsNil() {
		// A nil *citizen.Resolver in the interface: not configured, not a
		// resolver to call (it would panic on the first token).
		b.citizens = nil
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.now == nil {
		b.now = time.Now
	}
	if b.daily == nil {
		b.daily = ratelimit.NewDaily()
	}
	if b.inFlight == nil {
		b.inFlight = ratelimit.NewMemInFlight(b.now)
	}
	if cfg.TracerProvider != nil {
		b.tracer = cfg.TracerProvider.Tracer("github.com/relais-broker/relais/broker")
	}
	if err := b.SetSources(cfg.Sources); err != nil {
		return nil, err
	}
	// The generated Go checks of the proto rules (no CEL on the hot
	// path), protovalidate's verdicts exactly; protovalidate itself for
	// the messages without generated checks.
	v, err := fastvalid.New()
	if err != nil {
		return nil, fmt.Errorf("broker: validator: %w", err)
	}
	b.validator = v
	if b.chain, err = b.newChain(); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	return b, nil
}

// SetSources replaces the sources, for a reload without restart: calls
// already fetching finish with the source they started with.
func (b *Broker) SetSources(sources map[string]Source) error {
	known := make(map[string]bool)
	for _, s := range b.catalog.Services() {
		known[s] = true
	}
	next := make(map[string]Source, len(sources))
	for svc, src := range sources {
		if !known[svc] {
			return fmt.Errorf("broker: source %q configured for unknown service %q", src.ID, svc)
		}
		if src.Adapter == nil || src.ID == "" {
			return fmt.Errorf("broker: source for %s needs an id and an adapter", svc)
		}
		if src.Timeout <= 0 {
			src.Timeout = DefaultSourceTimeout
		}
		next[svc] = src
	}
	b.sources.Store(&next)
	return nil
}

func (b *Broker) source(service string) (Source, bool) {
	src, ok := (*b.sources.Load())[service]
	return src, ok
}

// SeedDailyCounts restores today's daily-quota counters (keyed by
// ratelimit.Key), from the audit log at start, so that a restart does
// not reset them. Shared counters keep their counts: it does nothing.
func (b *Broker) SeedDailyCounts(day string, counts map[string]int) {
	if s, ok := b.daily.(ratelimit.Seeder); ok {
		s.Seed(day, counts, b.now())
	}
}

// DailyCount is today's count of calls for key (ratelimit.Key) in the
// in-memory counter, for diagnostics and tests; -1 with a shared counter.
func (b *Broker) DailyCount(key string, now time.Time) int {
	if d, ok := b.daily.(interface{ Count(string, time.Time) int }); ok {
		return d.Count(key, now)
	}
	return -1
}

// Catalog returns the catalogue the broker serves.
func (b *Broker) Catalog() *catalog.Catalog { return b.catalog }
