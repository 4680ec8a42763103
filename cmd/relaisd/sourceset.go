package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/relais-broker/relais/adapters/resilience"
	"github.com/relais-broker/relais/adapters/sources"
	"github.com/relais-broker/relais/broker"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/source"
)

// sourceSet is one generation of configured sources: what a SIGHUP
// replaces as a whole. The set owns its adapters' lifecycle: the adapters
// it built (not the base ones it was given) are closed when it is
// replaced, and its probes stop with it.
type sourceSet struct {
	sources map[string]broker.Source
	guards  map[string]*resilience.Guard
	probes  []sources.Built
	closers []io.Closer
}

// sourceConfig is how source sets are built: the base sources (dev mode:
// the sandbox behind every service) overlaid with the sources file, whose
// entries of kind sandbox use the sandbox adapter.
type sourceConfig struct {
	catalog *catalog.Catalog
	base    map[string]broker.Source
	guards  map[string]*resilience.Guard
	file    string
	sandbox source.Adapter
}

// build makes a new set; nothing of it is running yet.
func (c sourceConfig) build() (*sourceSet, error) {
	set := &sourceSet{sources: maps.Clone(c.base), guards: maps.Clone(c.guards)}
	if set.sources == nil {
		set.sources = map[string]broker.Source{}
	}
	if set.guards == nil {
		set.guards = map[string]*resilience.Guard{}
	}
	if c.file == "" {
		return set, nil
	}
	built, err := sources.Load(c.file, c.catalog, c.sandbox)
	if err != nil {
		return nil, err
	}
	for _, b := range built {
		set.sources[b.Service] = broker.Source{ID: b.ID, Adapter: b.Adapter, Timeout: b.Timeout}
		set.guards[b.Service] = b.Guard
		if b.Probe != nil {
			set.probes = append(set.probes, b)
		}
		if b.Closer != nil {
			set.closers = append(set.closers, b.Closer)
		}
	}
	return set, nil
}

// longestTimeout bounds how long a call started on this set can still be
// using one of its adapters.
func (s *sourceSet) longestTimeout() time.Duration {
	var longest time.Duration
	for _, src := range s.sources {
		t := src.Timeout
		if t <= 0 {
			t = broker.DefaultSourceTimeout
		}
		longest = max(longest, t)
	}
	return longest
}

// close closes the adapters the set built.
func (s *sourceSet) close() error {
	var errs []error
	for _, c := range s.closers {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// sourceRunner keeps the current source set: it runs its probes, swaps it
// on reload and retires the previous one — its probes stop at once, its
// adapters are closed once the calls that may still use them are over.
type sourceRunner struct {
	cfg    sourceConfig
	logger *slog.Logger
	// group runs the probes and the retirements; ctx ends them.
	group *errgroup.Group
	ctx   context.Context
	mu    sync.Mutex
	set   *sourceSet
	stop  context.CancelFunc // the current set's probes
}

// current returns the set in force.
func (r *sourceRunner) current() *sourceSet {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.set
}

// start puts set in force and starts its probes under the runner's group.
func (r *sourceRunner) start(set *sourceSet) {
	pctx, stop := context.WithCancel(r.ctx)
	r.mu.Lock()
	prev, prevStop := r.set, r.stop
	r.set, r.stop = set, stop
	r.mu.Unlock()
	for _, p := range set.probes {
		r.group.Go(func() error { p.Guard.Probe(pctx, *p.Probe, p.ProbeInterval, p.Timeout); return nil })
	}
	if prevStop != nil {
		prevStop()
	}
	if prev != nil {
		r.retire(prev)
	}
}

// retire closes a replaced set's adapters after its longest timeout (or
// at shutdown, when the servers have drained).
func (r *sourceRunner) retire(set *sourceSet) {
	if len(set.closers) == 0 {
		return
	}
	r.group.Go(func() error {
		select {
		case <-time.After(set.longestTimeout()):
		case <-r.ctx.Done():
		}
		if err := set.close(); err != nil {
			r.logger.Warn("closing replaced source adapters", "error", err.Error())
		}
		return nil
	})
}

// reload builds a new set from the configuration and swaps it into b.
func (r *sourceRunner) reload(b *broker.Broker) error {
	set, err := r.cfg.build()
	if err != nil {
		return err
	}
	if err := b.SetSources(set.sources); err != nil {
		_ = set.close()
		return err
	}
	r.start(set)
	return nil
}

// reloadOnHUP reloads the source adapters on SIGHUP (grants and
// revocations need no reload: they apply at once) until ctx ends.
func (r *sourceRunner) reloadOnHUP(ctx context.Context, b *broker.Broker) {
	if r.cfg.file == "" {
		return
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := r.reload(b); err != nil {
				r.logger.Error("SIGHUP: sources not reloaded, the previous ones stay", "error", err.Error())
			} else {
				r.logger.Info("SIGHUP: sources reloaded")
			}
		}
	}
}

// closeAll closes the set in force, at shutdown once nothing calls it.
func (r *sourceRunner) closeAll() {
	if set := r.current(); set != nil {
		if err := set.close(); err != nil {
			r.logger.Warn("closing source adapters", "error", err.Error())
		}
	}
}
