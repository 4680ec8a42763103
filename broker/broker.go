// Package broker is the core of Relais: it serves the typed source
// services through one fixed interceptor chain (chain.go) and a single
// generic handler that fetches attributes from the source adapter on
// demand, strips what the caller is not entitled to and traces the access
// before answering. It imports neither adapters nor cmd: adapters meet it
// through the source.Adapter contract, storage through registry.Reader
// and audit.Recorder.
package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"buf.build/go/protovalidate"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/authn"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/ratelimit"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/source"
	"github.com/relais-broker/relais/broker/subject"
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
}

// Observer is told about every call once it is traced: its audit record
// (no personal data) and how long the source took (zero if not called).
type Observer interface {
	ObserveCall(r audit.Record, sourceLatency time.Duration)
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
	daily      *ratelimit.Daily
	observer   Observer
	allowDup   bool
	inFlight   sync.Map
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
		daily:      ratelimit.NewDaily(),
		observer:   cfg.Observer,
		allowDup:   cfg.AllowDuplicateCalls,
		revoked:    cfg.Revocations,
		pseudonyms: cfg.Pseudonyms,
	}
	if b.catalog == nil {
		b.catalog = catalog.Default()
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.now == nil {
		b.now = time.Now
	}
	if err := b.SetSources(cfg.Sources); err != nil {
		return nil, err
	}
	v, err := protovalidate.New()
	if err != nil {
		return nil, fmt.Errorf("broker: validator: %w", err)
	}
	b.validator = v
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
// not reset them.
func (b *Broker) SeedDailyCounts(day string, counts map[string]int) {
	b.daily.Seed(day, counts, b.now())
}

// DailyCount is today's count of calls for key (ratelimit.Key), for
// diagnostics and tests.
func (b *Broker) DailyCount(key string, now time.Time) int { return b.daily.Count(key, now) }

// Catalog returns the catalogue the broker serves.
func (b *Broker) Catalog() *catalog.Catalog { return b.catalog }
