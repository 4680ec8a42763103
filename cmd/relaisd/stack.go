package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/relais-broker/relais/adapters/resilience"
	"github.com/relais-broker/relais/adapters/sources"
	"github.com/relais-broker/relais/broker"
	"github.com/relais-broker/relais/broker/admin"
	"github.com/relais-broker/relais/broker/audit/boltlog"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/metrics"
	"github.com/relais-broker/relais/broker/ops"
	"github.com/relais-broker/relais/broker/ratelimit"
	"github.com/relais-broker/relais/broker/registry/boltreg"
	"github.com/relais-broker/relais/broker/renewal"
	"github.com/relais-broker/relais/broker/source"
	"github.com/relais-broker/relais/broker/subject"
	"github.com/relais-broker/relais/certs"
	"github.com/relais-broker/relais/docs"
	"github.com/relais-broker/relais/internal/tracing"
	credentialsv1 "github.com/relais-broker/relais/proto/relais/credentials/v1"
)

// AuditFile is the audit log's file name in the data directory.
const AuditFile = "audit.db"

// stack is what a running broker is made of, whatever built it: dev mode
// (internal/devenv) or a configuration file (relaisd serve).
type stack struct {
	Catalog    *catalog.Catalog
	CA         certs.Authority
	ServerCert *certs.CertSource
	Keeper     *certs.ServerCertKeeper
	Trust      *certs.TrustPool
	Registry   *boltreg.Store
	Sources    map[string]broker.Source
	Guards     map[string]*resilience.Guard
	probes     []sources.Built
	// Signing signs audit checkpoints; Pseudonym keys subject pseudonyms.
	Signing   ed25519.PrivateKey
	Pseudonym []byte
	AuditPath string
	// Retention of audit records (12 months when zero).
	Retention                      time.Duration
	Listen, AdminListen, OpsListen string
	// HTTPListen serves the HTTPS/JSON gateway and the API documentation.
	HTTPListen               string
	CRLRefresh, TrustRefresh time.Duration
	// AllowDuplicateCalls: see LimitsConfig.
	AllowDuplicateCalls bool
	// Tracing instruments the gRPC servers; nil means none.
	Tracing *tracing.Tracing
	// mu guards Sources and Guards once serving (reloads swap them).
	mu sync.Mutex
	// broker is set once running; reload, when set, swaps the sources.
	broker *broker.Broker
	reload func() error
}

// loadSources puts the adapters of a sources file in place; sandbox
// serves the entries of kind sandbox.
func (st *stack) loadSources(path string, sandbox source.Adapter) error {
	built, err := sources.Load(path, st.Catalog, sandbox)
	if err != nil {
		return err
	}
	for _, b := range built {
		st.Sources[b.Service] = broker.Source{ID: b.ID, Adapter: b.Adapter, Timeout: b.Timeout}
		st.Guards[b.Service] = b.Guard
		if b.Probe != nil {
			st.probes = append(st.probes, b)
		}
	}
	return nil
}

// runStack serves the data API, the admin API and the operations
// endpoints until ctx ends, then drains in-flight calls and closes the
// audit log (its final checkpoint). announce is told the bound addresses.
func runStack(ctx context.Context, st *stack, logger *slog.Logger, announce func(data, admin, ops, web string)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	revoked := certs.NewRevocations()
	pseudonyms, err := subject.New(st.Pseudonym)
	if err != nil {
		return err
	}
	mets := metrics.New()
	auditLog, err := boltlog.Open(st.AuditPath, boltlog.Options{SigningKey: st.Signing, Retention: st.Retention, OnCommit: mets.ObserveAuditCommit})
	if err != nil {
		return err
	}
	defer func() {
		if err := auditLog.Close(); err != nil {
			logger.Error("audit log close", "error", err.Error())
		}
	}()
	go purgeDaily(ctx, auditLog, logger)
	b, err := broker.New(broker.Config{
		Catalog: st.Catalog, Sources: st.Sources, Registry: st.Registry, Audit: auditLog, Logger: logger,
		Revocations: revoked, Pseudonyms: pseudonyms, Observer: mets, AllowDuplicateCalls: st.AllowDuplicateCalls,
	})
	if err != nil {
		return err
	}
	st.broker = b
	if err := seedDailyCounts(ctx, b, auditLog); err != nil {
		return err
	}
	renew, err := renewal.New(renewal.Config{Signer: st.CA, Registry: st.Registry, Records: st.Registry, Catalog: st.Catalog, Audit: auditLog, Revocations: revoked})
	if err != nil {
		return err
	}
	adm, err := admin.New(admin.Config{Issuer: st.CA, Revocations: revoked, Registry: st.Registry, Sources: st.sourceInfo, Audit: auditLog,
		AuditLog: auditLog, Pseudonyms: pseudonyms, Logger: logger})
	if err != nil {
		return err
	}
	tlsCfg := certs.ServerConfig(st.ServerCert, st.Trust, certs.RejectRevoked(revoked))
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for _, addr := range []string{st.Listen, st.AdminListen, st.OpsListen, st.HTTPListen} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		listeners = append(listeners, l)
	}
	serverOpts := append(broker.ServerOptions(), grpc.Creds(credentials.NewTLS(tlsCfg)))
	if st.Tracing != nil {
		serverOpts = append(serverOpts, st.Tracing.ServerOption())
		defer func() { _ = st.Tracing.Shutdown(context.Background()) }()
	}
	srv, _ := b.NewGRPCServer(serverOpts...)
	credentialsv1.RegisterCredentialServiceServer(srv, renew)
	adminSrv := adm.NewGRPCServer(serverOpts...)
	mets.SetAuditQueue(auditLog.QueueDepth)
	opsSrv := &http.Server{Handler: withPprof(ops.Handler(mets.Handler(), st.readiness(auditLog))), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = opsSrv.Serve(listeners[2]) }()
	defer opsSrv.Close()
	webSrv := &http.Server{Handler: webHandler(b), TLSConfig: tlsCfg, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 16 << 10}
	go func() { _ = webSrv.ServeTLS(listeners[3], "", "") }()
	defer webSrv.Close()
	go st.watchGauges(ctx, mets)
	for _, p := range st.probes {
		go p.Guard.Probe(ctx, *p.Probe, p.ProbeInterval, p.Timeout)
	}
	st.Keeper.Logger = logger
	go st.Keeper.Run(ctx)
	go certs.KeepTrust(ctx, st.CA, st.Trust, st.TrustRefresh, logger)
	go certs.WatchCRL(ctx, revoked, st.CA, st.CRLRefresh, logger, nil)

	announce(listeners[0].Addr().String(), listeners[1].Addr().String(), listeners[2].Addr().String(), listeners[3].Addr().String())
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(listeners[0]) }()
	go func() { errc <- adminSrv.Serve(listeners[1]) }()
	var serveErr error
	select {
	case serveErr = <-errc:
	case <-ctx.Done():
	}
	logger.Info("shutting down: draining in-flight calls")
	stopped := make(chan struct{})
	go func() {
		shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), drainTimeout)
		defer cancelShutdown()
		_ = webSrv.Shutdown(shutdownCtx)
		srv.GracefulStop()
		adminSrv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(drainTimeout):
		srv.Stop()
		adminSrv.Stop()
	}
	if serveErr != nil && !errors.Is(serveErr, grpc.ErrServerStopped) {
		return serveErr
	}
	return nil
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
	mux.Handle("/", b.HTTPHandler())
	return mux
}

func (st *stack) sourceInfo() []admin.SourceInfo {
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []admin.SourceInfo
	for _, svc := range st.Catalog.Services() {
		src := st.Sources[svc]
		info := admin.SourceInfo{Service: svc, ID: src.ID, Timeout: src.Timeout}
		if g := st.Guards[svc]; g != nil {
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
func (st *stack) readiness(auditLog *boltlog.Log) []ops.Check {
	return []ops.Check{
		{Name: "registry", Fn: func(ctx context.Context) error { _, err := st.Registry.ListConsumers(ctx); return err }},
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
	}
}

// watchGauges refreshes the gauges that are states, not events: source
// states and certificate expiries.
func (st *stack) watchGauges(ctx context.Context, mets *metrics.Metrics) {
	for {
		st.mu.Lock()
		for svc, g := range st.Guards {
			mets.SetSourceState(st.Sources[svc].ID+"/"+svc, string(g.Status().State))
		}
		st.mu.Unlock()
		if c := st.ServerCert.Certificate(); c != nil {
			mets.SetCertExpiry("server", c.Leaf.NotAfter)
		}
		if recs, err := st.Registry.ListCredentials(ctx, ""); err == nil {
			var soonest time.Time
			for _, r := range recs {
				if r.Kind == "consumer" && r.Status == "active" && r.NotAfter.After(time.Now()) && (soonest.IsZero() || r.NotAfter.Before(soonest)) {
					soonest = r.NotAfter
				}
			}
			if !soonest.IsZero() {
				mets.SetCertExpiry("consumer_soonest", soonest)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Second):
		}
	}
}

// purgeDaily applies the retention once a day (and at start).
func purgeDaily(ctx context.Context, l *boltlog.Log, logger *slog.Logger) {
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
func seedDailyCounts(ctx context.Context, b *broker.Broker, log *boltlog.Log) error {
	now := time.Now()
	midnight := ratelimit.NextMidnight(now).AddDate(0, 0, -1)
	recs, err := log.Query(ctx, boltlog.Filter{From: midnight, Limit: 1 << 24})
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
	return nil
}
