package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/relais-broker/relais/broker"
	"github.com/relais-broker/relais/broker/admin"
	"github.com/relais-broker/relais/broker/anomaly"
	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/audit/auditlog"
	"github.com/relais-broker/relais/broker/audit/seal"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/cluster"
	"github.com/relais-broker/relais/broker/metrics"
	"github.com/relais-broker/relais/broker/ops"
	"github.com/relais-broker/relais/broker/ratelimit"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/registry/pgreg"
	"github.com/relais-broker/relais/broker/reminders"
	"github.com/relais-broker/relais/broker/renewal"
	"github.com/relais-broker/relais/broker/subject"
	"github.com/relais-broker/relais/certs"
	"github.com/relais-broker/relais/docs"
	"github.com/relais-broker/relais/internal/tracing"
)

// stack is what a running broker is made of, whatever built it: dev mode
// (internal/devenv) or a configuration file (relaisd serve).
type stack struct {
	Catalog    *catalog.Catalog
	CA         certs.Authority
	ServerCert *certs.CertSource
	Keeper     *certs.ServerCertKeeper
	Trust      *certs.TrustPool
	// Stores hold the registry, the audit log, the quotas: bbolt files or
	// one PostgreSQL database. Chain is this broker's audit chain.
	Stores *stores
	Chain  string
	// Sources are built from this: base sources overlaid with a sources
	// file, rebuilt on SIGHUP.
	Sources sourceConfig
	// Signer signs audit checkpoints (a key file, or Vault transit);
	// Pseudonym keys subject pseudonyms.
	Signer    seal.Signer
	Pseudonym []byte
	// Retention of audit records (12 months when zero).
	Retention                      time.Duration
	Listen, AdminListen, OpsListen string
	// HTTPListen serves the HTTPS/JSON gateway and the API documentation.
	HTTPListen               string
	CRLRefresh, TrustRefresh time.Duration
	// AllowDuplicateCalls: see LimitsConfig.
	AllowDuplicateCalls bool
	// Tracing instruments the gRPC servers and the gateway; nil means none.
	Tracing *tracing.Tracing
	// Anomaly tunes the abnormal-use detector (zero: its defaults).
	Anomaly anomaly.Config
	// Reminders mails the consumers' contacts before their certificates
	// and grants end; DataDir holds its bbolt file (store kind bbolt).
	Reminders RemindersConfig
	DataDir   string
	// ExpectedReplicas is how many replicas the deployment runs (0:
	// unknown), for the "replicas missing" alert.
	ExpectedReplicas int
	// DrainPeriod: on SIGTERM, /readyz turns not ready at once and the
	// listeners keep serving this long, so a load balancer stops routing
	// here before the servers stop.
	DrainPeriod time.Duration
	// Citizens resolves the access tokens of citizen-initiated calls
	// through the identity providers; nil: citizen login not configured.
	Citizens broker.CitizenResolver
	// Pages are the HTTPS services people open in a browser, each on its
	// own listener (opened beforehand, so that their URLs are known to
	// the identity provider): the transparency portal, the dev identity
	// provider.
	Pages []page
}

// page is one browser-facing HTTPS service of the stack.
type page struct {
	// Name is the service's role in logs ("portal", "identity provider").
	Name     string
	Listener net.Listener
	// Build makes the handler once the stack's components exist.
	Build func(pageDeps) (http.Handler, error)
}

// pageDeps are the components a page may read.
type pageDeps struct {
	AuditLog   *auditlog.Log
	Audit      admin.AuditReader
	Registry   registry.Store
	Pseudonyms *subject.Pseudonymizer
	Metrics    *metrics.Metrics
	Logger     *slog.Logger
}

// listeners are the broker's four sockets, by role.
type listeners struct {
	data, admin, ops, web net.Listener
}

func listen(st *stack) (*listeners, error) {
	var ls listeners
	for _, l := range []struct {
		addr string
		to   *net.Listener
	}{{st.Listen, &ls.data}, {st.AdminListen, &ls.admin}, {st.OpsListen, &ls.ops}, {st.HTTPListen, &ls.web}} {
		n, err := net.Listen("tcp", l.addr)
		if err != nil {
			ls.close()
			return nil, err
		}
		*l.to = n
	}
	return &ls, nil
}

func (ls *listeners) close() {
	for _, l := range []net.Listener{ls.data, ls.admin, ls.ops, ls.web} {
		if l != nil {
			l.Close()
		}
	}
}

// runStack serves the data API, the admin API, the HTTPS/JSON gateway and
// the operations endpoints until ctx ends. It builds the components, then
// runs every server and background loop under one errgroup, and shuts
// down in one order: servers drain their in-flight calls, the loops stop,
// then the audit log writes its final checkpoint and closes, and only
// then the stores. announce is told the bound addresses.
func runStack(ctx context.Context, st *stack, logger *slog.Logger, announce func(data, admin, ops, web string)) (err error) {
	revoked := revocations{local: certs.NewRevocations(), registry: st.Stores.Registry}
	pseudonyms, err := subject.New(st.Pseudonym)
	if err != nil {
		return err
	}
	mets := metrics.New()
	auditLog, err := auditlog.Open(st.Stores.Audit, auditlog.Options{Signer: st.Signer, Chain: st.Chain,
		Retention: st.Retention, OnCommit: mets.ObserveAuditCommit, OnCommitError: func(error) { mets.ObserveAuditFailure() }})
	if err != nil {
		return err
	}
	// Last in the shutdown order: nothing writes to the log once the group is done.
	defer func() {
		if cerr := auditLog.Close(); cerr != nil {
			logger.Error("audit log close", "error", cerr.Error())
			err = errors.Join(err, cerr)
		}
	}()
	if st.Tracing != nil {
		defer func() { _ = st.Tracing.Shutdown(context.Background()) }()
	}
	detector, err := anomaly.New(st.Anomaly, anomaly.Deps{Registry: st.Stores.Registry, Suspender: st.Stores.Registry, Audit: auditLog, Metrics: mets, Logger: logger})
	if err != nil {
		return err
	}
	firstSources, err := st.Sources.build()
	if err != nil {
		return err
	}
	cfg := broker.Config{
		Catalog: st.Catalog, Sources: firstSources.sources, Registry: st.Stores.Registry, Audit: auditLog, Logger: logger,
		Revocations: revoked, Pseudonyms: pseudonyms, Observer: broker.Observers(mets, detector), Throttle: detector,
		DailyQuota: st.Stores.DailyQuota, InFlight: st.Stores.InFlight, AllowDuplicateCalls: st.AllowDuplicateCalls,
		// Each replica enforces its share of a grant's rate: the grant's rate
		// divided by the live replicas (see broker/cluster for the tolerance).
		RateShare: cluster.NewRateShare(st.Stores.Cluster),
	}
	if st.Citizens != nil {
		cfg.Citizens = st.Citizens
	}
	if st.Tracing != nil {
		cfg.TracerProvider = st.Tracing.TracerProvider()
	}
	b, err := broker.New(cfg)
	if err == nil {
		err = seedDailyCounts(ctx, b, auditLog, detector)
	}
	if err != nil {
		_ = firstSources.close()
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	// The CA as the alert rules see it: issuance, trust bundle and CRL
	// outcomes are counted.
	st.CA = newObservedCA(st.CA, mets)
	st.Keeper.Issuer = st.CA
	runner := &sourceRunner{cfg: st.Sources, logger: logger, group: g, ctx: gctx}
	runner.start(firstSources)
	// Closed after the group (deferred calls run last-in first-out, before the audit log's).
	defer runner.closeAll()
	rem, closeRem, err := startReminders(gctx, g, st.Reminders, st.Stores, st.DataDir, auditLog, mets, logger)
	if err != nil {
		return errors.Join(err, abort(g))
	}
	defer func() { _ = closeRem() }()
	var draining atomic.Bool
	servers, err := st.servers(b, runner, revoked, pseudonyms, mets, auditLog, detector, rem, &draining, logger)
	if err != nil {
		return errors.Join(err, abort(g))
	}
	pages, err := st.pageServers(pageDeps{AuditLog: auditLog, Audit: auditReader{Log: auditLog, pool: st.Stores.Pool}, Registry: st.Stores.Registry,
		Pseudonyms: pseudonyms, Metrics: mets, Logger: logger})
	if err != nil {
		return errors.Join(err, abort(g))
	}
	ls, err := listen(st)
	if err != nil {
		for _, p := range st.Pages {
			p.Listener.Close()
		}
		return errors.Join(err, abort(g))
	}
	for i, p := range st.Pages {
		srv := pages[i]
		g.Go(func() error { return ignoreStopped(srv.ServeTLS(p.Listener, "", "")) })
	}
	// Servers: each returns when stopped; the drain stops them all.
	g.Go(func() error { return ignoreStopped(servers.data.Serve(ls.data)) })
	g.Go(func() error { return ignoreStopped(servers.admin.Serve(ls.admin)) })
	g.Go(func() error { return ignoreStopped(servers.ops.Serve(ls.ops)) })
	g.Go(func() error { return ignoreStopped(servers.web.ServeTLS(ls.web, "", "")) })
	g.Go(func() error {
		<-gctx.Done()
		draining.Store(true)
		if st.DrainPeriod > 0 {
			logger.Info("shutting down: not ready, still serving during the drain period", "drain_period", st.DrainPeriod.String())
			time.Sleep(st.DrainPeriod)
		}
		logger.Info("shutting down: draining in-flight calls")
		drain(logger, append([]*http.Server{servers.web}, pages...), servers.data, servers.admin)
		return servers.ops.Close()
	})
	// Background loops, all stopped by gctx.
	st.Keeper.Logger = logger
	g.Go(func() error { st.Keeper.Run(gctx); return nil })
	g.Go(func() error { certs.KeepTrust(gctx, st.CA, st.Trust, st.TrustRefresh, logger); return nil })
	g.Go(func() error { certs.WatchCRL(gctx, revoked.local, st.CA, st.CRLRefresh, logger, nil); return nil })
	g.Go(func() error { return st.Stores.Cluster.Run(gctx) })
	// With a shared database, a committed registry change made by any
	// replica reaches this one's snapshot (LISTEN/NOTIFY, reload on
	// reconnect, periodic version check).
	if f, ok := st.Stores.Registry.(interface {
		Follow(context.Context, pgreg.FollowOptions) error
	}); ok {
		g.Go(func() error {
			return f.Follow(gctx, pgreg.FollowOptions{Logger: logger, OnReload: mets.ObserveRegistryReload})
		})
	}
	// One replica at a time applies the retention (to every chain).
	g.Go(func() error {
		return st.Stores.Cluster.Lease("audit-retention").Run(gctx, func(ctx context.Context) error { purgeDaily(ctx, auditLog, logger); return nil })
	})
	g.Go(func() error { st.watchGauges(gctx, mets, runner); return nil })
	g.Go(func() error {
		mets.WatchReadiness(gctx, 10*time.Second, readinessResults(st.readiness(auditLog, &draining)))
		return nil
	})
	g.Go(func() error { runner.reloadOnHUP(gctx, b); return nil })

	announce(ls.data.Addr().String(), ls.admin.Addr().String(), ls.ops.Addr().String(), ls.web.Addr().String())
	return g.Wait()
}

// servers are the broker's four servers, not yet serving.
type servers struct {
	data, admin *grpc.Server
	ops, web    *http.Server
}

func (st *stack) servers(b *broker.Broker, runner *sourceRunner, revoked revocations, pseudonyms *subject.Pseudonymizer,
	mets *metrics.Metrics, auditLog *auditlog.Log, detector *anomaly.Detector, rem *reminders.Job, draining *atomic.Bool, logger *slog.Logger) (*servers, error) {
	reg := st.Stores.Registry
	renew, err := renewal.New(renewal.Config{Signer: st.CA, Registry: reg, Records: reg, Catalog: st.Catalog, Audit: auditLog, Revocations: revoked, Logger: logger})
	if err != nil {
		return nil, err
	}
	admCfg := admin.Config{Issuer: st.CA, Revocations: revoked, Registry: reg,
		Sources: func() []admin.SourceInfo { return sourceInfo(st.Catalog, runner.current()) },
		Audit:   auditLog, AuditLog: auditReader{Log: auditLog, pool: st.Stores.Pool}, Pseudonyms: pseudonyms, Logger: logger, Anomalies: detector,
		Backups: st.Stores.Backups}
	if rem != nil { // a nil *Job would be a non-nil interface
		admCfg.Reminders = rem
	}
	adm, err := admin.New(admCfg)
	if err != nil {
		return nil, err
	}
	// The gateway's clients may rightly offer no ALPN (HTTP/1.1); a gRPC
	// client without h2 is closed by the transport, so it is logged and
	// counted instead of vanishing silently.
	tlsCfg := certs.ServerConfig(st.ServerCert, st.Trust, certs.RejectRevoked(revoked))
	grpcTLS := certs.ServerConfig(st.ServerCert, st.Trust, certs.RejectRevoked(revoked), certs.OnNoALPN(mets.RegisterNoALPN(logger)))
	opts := append(broker.ServerOptions(), grpc.Creds(credentials.NewTLS(grpcTLS)))
	if st.Tracing != nil {
		opts = append(opts, st.Tracing.ServerOption())
	}
	data, _ := b.NewGRPCServer(opts...)
	renew.Register(data)
	mets.SetAuditQueue(auditLog.QueueDepth)
	return &servers{
		data:  data,
		admin: adm.NewGRPCServer(opts...),
		ops:   &http.Server{Handler: withPprof(ops.Handler(mets.Handler(), st.readiness(auditLog, draining))), ReadHeaderTimeout: 5 * time.Second},
		web:   &http.Server{Handler: webHandler(b), TLSConfig: tlsCfg, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 16 << 10},
	}, nil
}

// pageServers builds the servers of the stack's pages, not yet serving;
// on error the pages' listeners are closed.
func (st *stack) pageServers(deps pageDeps) ([]*http.Server, error) {
	var out []*http.Server
	for _, p := range st.Pages {
		h, err := p.Build(deps)
		if err != nil {
			for _, q := range st.Pages {
				q.Listener.Close()
			}
			return nil, fmt.Errorf("%s: %w", p.Name, err)
		}
		out = append(out, &http.Server{Handler: h, TLSConfig: certs.PublicServerConfig(st.ServerCert), ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 32 << 10,
			ErrorLog: slog.NewLogLogger(deps.Logger.With("server", p.Name).Handler(), slog.LevelWarn)})
	}
	return out, nil
}

// abort ends a group whose servers never started and waits for what it
// runs (the probes).
func abort(g *errgroup.Group) error {
	g.Go(func() error { return errAborted })
	if err := g.Wait(); !errors.Is(err, errAborted) {
		return err
	}
	return nil
}

var errAborted = errors.New("start aborted")

// ignoreStopped treats a server's normal end as success.
func ignoreStopped(err error) error {
	if err == nil || errors.Is(err, grpc.ErrServerStopped) || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// drain stops the servers gracefully within drainTimeout, then forcibly.
func drain(logger *slog.Logger, webs []*http.Server, grpcServers ...*grpc.Server) {
	shutdownCtx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, web := range webs {
		wg.Go(func() {
			if err := web.Shutdown(shutdownCtx); err != nil {
				_ = web.Close()
			}
		})
	}
	for _, s := range grpcServers {
		wg.Go(func() {
			stopped := make(chan struct{})
			go func() { s.GracefulStop(); close(stopped) }()
			select {
			case <-stopped:
			case <-shutdownCtx.Done():
				logger.Warn("drain timeout: closing the remaining calls")
				s.Stop()
				<-stopped
			}
		})
	}
	wg.Wait()
}

// withPprof adds Go's profiling endpoints (/debug/pprof/) to the
// operations listener when RELAIS_PPROF=1 — for benchmarks; profiles hold
// stacks and sizes, not memory contents.
func withPprof(h http.Handler) http.Handler {
	if os.Getenv("RELAIS_PPROF") != "1" {
		return h
	}
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	return mux
}

// webHandler serves the HTTPS/JSON gateway and, under /docs/, the API
// documentation generated from the proto.
func webHandler(b *broker.Broker) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /docs/openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(docs.OpenAPI)
	})
	mux.HandleFunc("GET /docs/api.md", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/markdown; charset=utf-8")
		_, _ = w.Write(docs.Reference)
	})
	mux.HandleFunc("GET /docs/proto.tar.gz", docs.ServeProtoBundle)
	mux.Handle("/", b.HTTPHandler())
	return mux
}

// sourceInfo describes the services and the sources in force.
func sourceInfo(cat *catalog.Catalog, set *sourceSet) []admin.SourceInfo {
	var out []admin.SourceInfo
	for _, svc := range cat.Services() {
		src := set.sources[svc]
		info := admin.SourceInfo{Service: svc, ID: src.ID, Timeout: src.Timeout}
		if g := set.guards[svc]; g != nil {
			info.Status = func() admin.SourceStatus {
				s := g.Status()
				return admin.SourceStatus{State: string(s.State), LastSuccess: s.LastSuccess, ErrorRatio: s.ErrorRatio, Calls: s.Calls, P50: s.P50, P99: s.P99}
			}
		}
		out = append(out, info)
	}
	return out
}

// readiness lists what /readyz checks: the dependencies must really work.
func (st *stack) readiness(auditLog *auditlog.Log, draining *atomic.Bool) []ops.Check {
	return append([]ops.Check{{Name: "draining", Fn: func(context.Context) error {
		if draining.Load() {
			return errors.New("shutting down: draining in-flight calls")
		}
		return nil
	}}}, append(st.Stores.readiness(), []ops.Check{
		{Name: "registry", Fn: func(ctx context.Context) error { _, err := st.Stores.Registry.ListConsumers(ctx); return err }},
		{Name: "audit_log", Fn: func(context.Context) error { return auditLog.Healthy() }},
		{Name: "trust_bundle", Fn: func(context.Context) error {
			if st.Trust.Pool() == nil {
				return errors.New("no CA trust bundle loaded")
			}
			return nil
		}},
		{Name: "certificates", Fn: func(ctx context.Context) error {
			c := st.ServerCert.Certificate()
			if c == nil || time.Now().After(c.Leaf.NotAfter) {
				return errors.New("the broker's certificate is missing or expired")
			}
			if _, err := st.CA.TrustBundle(ctx); err != nil && time.Until(c.Leaf.NotAfter) < time.Hour {
				return fmt.Errorf("CA unreachable and the certificate expires within the hour: %w", err)
			}
			return nil
		}},
	}...)...)
}

// watchGauges refreshes the gauges that are states, not events: source
// states and certificate expiries.
func (st *stack) watchGauges(ctx context.Context, mets *metrics.Metrics, runner *sourceRunner) {
	for {
		set := runner.current()
		for svc, g := range set.guards {
			mets.SetSourceState(set.sources[svc].ID+"/"+svc, string(g.Status().State))
		}
		if c := st.ServerCert.Certificate(); c != nil {
			mets.SetCertExpiry("server", c.Leaf.NotAfter)
		}
		if recs, err := st.Stores.Registry.ListCredentials(ctx, ""); err == nil {
			var soonest time.Time
			for _, r := range recs {
				if r.Kind == "consumer" && r.Status == "active" && r.NotAfter.After(time.Now()) && (soonest.IsZero() || r.NotAfter.Before(soonest)) {
					soonest = r.NotAfter
				}
			}
			if !soonest.IsZero() {
				mets.SetCertExpiry("consumer_soonest", soonest)
			}
			if gs, err := st.Stores.Registry.ListGrants(ctx, registry.GrantFilter{}); err == nil {
				mets.SetRegistryExpiries(time.Now(), recs, gs)
			}
		}
		mets.SetReplicas(st.Stores.Cluster.Live(time.Now()), st.ExpectedReplicas)
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Second):
		}
	}
}

// purgeDaily applies the retention once a day (and at start).
func purgeDaily(ctx context.Context, l *auditlog.Log, logger *slog.Logger) {
	for {
		if n, err := l.Purge(ctx); err != nil {
			logger.Error("audit retention purge failed", "error", err.Error())
		} else if n > 0 {
			logger.Info("audit retention purge", "records", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(24 * time.Hour):
		}
	}
}

// seedDailyCounts rebuilds today's daily-quota counters from the audit
// log (calls that reached a source), so a restart does not reset them.
func seedDailyCounts(ctx context.Context, b *broker.Broker, log *auditlog.Log, also ...interface{ SeedDailyCounts(string, map[string]int) }) error {
	now := time.Now()
	midnight := ratelimit.NextMidnight(now).AddDate(0, 0, -1)
	recs, err := log.Query(ctx, audit.Filter{From: midnight, Limit: 1 << 24})
	if err != nil {
		return fmt.Errorf("daily counters from the audit log: %w", err)
	}
	counts := map[string]int{}
	for _, r := range recs {
		m, ok := b.Catalog().Method(r.Method)
		if r.Source == "" || r.Consumer == "" || !ok {
			continue
		}
		counts[ratelimit.Key(r.Consumer, m.Service)]++
	}
	b.SeedDailyCounts(ratelimit.Day(now), counts)
	for _, a := range also {
		a.SeedDailyCounts(ratelimit.Day(now), counts)
	}
	return nil
}
