package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/relais-broker/relais/adapters/sources"
	"github.com/relais-broker/relais/broker"
	"github.com/relais-broker/relais/broker/admin"
	"github.com/relais-broker/relais/broker/audit/boltlog"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/metrics"
	"github.com/relais-broker/relais/broker/ops"
	"github.com/relais-broker/relais/broker/ratelimit"
	"github.com/relais-broker/relais/broker/renewal"
	"github.com/relais-broker/relais/broker/subject"
	"github.com/relais-broker/relais/certs"
	"github.com/relais-broker/relais/internal/devenv"
	credentialsv1 "github.com/relais-broker/relais/proto/relais/credentials/v1"
)

// drainTimeout bounds the graceful stop of in-flight calls.
const drainTimeout = 10 * time.Second

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relaisd dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:4443", "address of the mTLS data API")
	adminListen := fs.String("admin-listen", "127.0.0.1:4444", "address of the mTLS admin API (operator certificates only)")
	vaultAddr := fs.String("vault-addr", "", "use this Vault's PKI instead of the embedded dev CA (token from $VAULT_TOKEN or --vault-token-file)")
	vaultTokenFile := fs.String("vault-token-file", "", "file holding the Vault token (dev only: a token able to bootstrap the PKI)")
	crlRefresh := fs.Duration("crl-refresh", 30*time.Second, "how often revocations are reloaded from the CA's CRL")
	trustRefresh := fs.Duration("trust-refresh", 5*time.Minute, "how often the CA trust bundle is reloaded")
	opsListen := fs.String("ops-listen", "127.0.0.1:9090", "address of the operations HTTP listener: /metrics, /healthz, /readyz")
	sourcesFile := fs.String("sources", "", "YAML file choosing the adapter of each service (sandbox, httpjson, remote); services it omits stay on the sandbox")
	dataDir := fs.String("data-dir", "relais-dev", "directory for the dev CA, demo credentials and stores")
	logFormat := fs.String("log-format", "json", "log format: json or text")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "relaisd dev: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	logger, err := newLogger(*logFormat, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "relaisd dev: %v\n", err)
		return 2
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		fmt.Fprintf(stderr, "relaisd dev: --listen %q: %v\n", *listen, err)
		return 2
	}
	if _, _, err := net.SplitHostPort(*adminListen); err != nil {
		fmt.Fprintf(stderr, "relaisd dev: --admin-listen %q: %v\n", *adminListen, err)
		return 2
	}
	if *crlRefresh <= 0 || *trustRefresh <= 0 {
		fmt.Fprintln(stderr, "relaisd dev: --crl-refresh and --trust-refresh must be positive")
		return 2
	}
	opts := devOptions{listen: *listen, adminListen: *adminListen, host: host, dataDir: *dataDir,
		vaultAddr: *vaultAddr, vaultTokenFile: *vaultTokenFile, crlRefresh: *crlRefresh, trustRefresh: *trustRefresh, sourcesFile: *sourcesFile, opsListen: *opsListen}
	if err := serveDev(ctx, opts, logger, stdout); err != nil {
		fmt.Fprintf(stderr, "relaisd dev: %v\n", err)
		return 1
	}
	return 0
}

func newLogger(format string, w io.Writer) (*slog.Logger, error) {
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	default:
		return nil, fmt.Errorf("--log-format must be json or text, not %q", format)
	}
}

type devOptions struct {
	listen, adminListen, host, dataDir string
	vaultAddr, vaultTokenFile          string
	sourcesFile, opsListen             string
	crlRefresh, trustRefresh           time.Duration
}

func serveDev(ctx context.Context, o devOptions, logger *slog.Logger, stdout io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cat := catalog.Default()
	var vault *devenv.Vault
	if o.vaultAddr != "" {
		v, closeVault, err := devVault(ctx, o.vaultAddr, o.vaultTokenFile, []string{"localhost", o.host})
		if err != nil {
			return err
		}
		defer closeVault()
		vault = v
	}
	env, err := devenv.Prepare(ctx, o.dataDir, []string{o.host}, cat, time.Now, vault)
	if err != nil {
		return err
	}
	defer env.Registry.Close()
	if o.sourcesFile != "" {
		built, err := sources.Load(o.sourcesFile, cat, env.Sandbox)
		if err != nil {
			return err
		}
		for _, b := range built {
			env.Sources[b.Service] = broker.Source{ID: b.ID, Adapter: b.Adapter, Timeout: b.Timeout}
			env.Guards[b.Service] = b.Guard
			if b.Probe != nil {
				go b.Guard.Probe(ctx, *b.Probe, b.ProbeInterval, b.Timeout)
			}
		}
	}
	revoked := certs.NewRevocations()
	keys, err := devenv.LoadKeys(o.dataDir)
	if err != nil {
		return err
	}
	pseudonyms, err := subject.New(keys.Pseudonym)
	if err != nil {
		return err
	}
	mets := metrics.New()
	auditLog, err := boltlog.Open(filepath.Join(o.dataDir, AuditFile), boltlog.Options{SigningKey: keys.Signing, OnCommit: mets.ObserveAuditCommit})
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
		Catalog:     cat,
		Sources:     env.Sources,
		Registry:    env.Registry,
		Audit:       auditLog,
		Logger:      logger,
		Revocations: revoked,
		Pseudonyms:  pseudonyms,
		Observer:    mets,
	})
	if err != nil {
		return err
	}
	if err := seedDailyCounts(ctx, b, auditLog); err != nil {
		return err
	}
	renew, err := renewal.New(renewal.Config{Signer: env.CA, Registry: env.Registry, Records: env.Registry, Catalog: cat, Audit: auditLog, Revocations: revoked})
	if err != nil {
		return err
	}
	var sourceInfo []admin.SourceInfo
	for _, svc := range cat.Services() {
		src := env.Sources[svc]
		info := admin.SourceInfo{Service: svc, ID: src.ID, Timeout: src.Timeout}
		if g := env.Guards[svc]; g != nil {
			info.Status = func() admin.SourceStatus {
				st := g.Status()
				return admin.SourceStatus{State: string(st.State), LastSuccess: st.LastSuccess, ErrorRatio: st.ErrorRatio, Calls: st.Calls, P50: st.P50, P99: st.P99}
			}
		}
		sourceInfo = append(sourceInfo, info)
	}
	adm, err := admin.New(admin.Config{Issuer: env.CA, Revocations: revoked, Registry: env.Registry, Sources: sourceInfo, Audit: auditLog, AuditLog: auditLog, Pseudonyms: pseudonyms, Logger: logger})
	if err != nil {
		return err
	}
	tlsCfg := certs.ServerConfig(env.ServerCert, env.Trust, certs.RejectRevoked(revoked))
	lis, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	adminLis, err := net.Listen("tcp", o.adminListen)
	if err != nil {
		lis.Close()
		return err
	}
	srv, _ := b.NewGRPCServer(append(broker.ServerOptions(), grpc.Creds(credentials.NewTLS(tlsCfg)))...)
	credentialsv1.RegisterCredentialServiceServer(srv, renew)
	adminSrv := adm.NewGRPCServer(append(broker.ServerOptions(), grpc.Creds(credentials.NewTLS(tlsCfg)))...)
	mets.SetAuditQueue(auditLog.QueueDepth)
	opsLis, err := net.Listen("tcp", o.opsListen)
	if err != nil {
		lis.Close()
		adminLis.Close()
		return err
	}
	opsSrv := &http.Server{Handler: ops.Handler(mets.Handler(), readiness(env, auditLog)), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = opsSrv.Serve(opsLis) }()
	defer opsSrv.Close()
	go watchGauges(ctx, mets, env)

	env.ServerKeeper.Logger = logger
	go env.ServerKeeper.Run(ctx)
	go certs.KeepTrust(ctx, env.CA, env.Trust, o.trustRefresh, logger)
	go certs.WatchCRL(ctx, revoked, env.CA, o.crlRefresh, logger, nil)

	fmt.Fprintf(stdout, "operations:     http://%s/metrics /healthz /readyz\n", opsLis.Addr())
	fmt.Fprintf(stdout, "audit log:      %s (verify: relaisctl audit verify --db %s --public-key %s)\n",
		filepath.Join(o.dataDir, AuditFile), filepath.Join(o.dataDir, AuditFile), filepath.Join(keys.Dir, devenv.AuditPublicKeyFile))
	printWelcome(stdout, lis.Addr().String(), adminLis.Addr().String(), o.dataDir, env)
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(lis) }()
	go func() { errc <- adminSrv.Serve(adminLis) }()
	var serveErr error
	select {
	case serveErr = <-errc:
	case <-ctx.Done():
	}
	logger.Info("shutting down: draining in-flight calls")
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); adminSrv.GracefulStop(); close(stopped) }()
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

func printWelcome(w io.Writer, addr, adminAddr, dataDir string, env *devenv.Env) {
	full := env.ConsumerDir(devenv.FullConsumer)
	limited := env.ConsumerDir(devenv.LimitedConsumer)
	fmt.Fprintf(w, "relaisd dev: listening on %s (mTLS only; sandbox sources, fictitious data)\n", addr)
	fmt.Fprintf(w, "data directory: %s\n", dataDir)
	fmt.Fprintf(w, "admin API:      %s (operator credential: %s)\n", adminAddr, env.OperatorDir())
	fmt.Fprintf(w, "trust bundle:   %s\n", filepath.Join(env.Dir, "ca.pem"))
	fmt.Fprintf(w, "demo consumers:\n")
	fmt.Fprintf(w, "  %-16s SIRET %s, every scope:    %s\n", devenv.FullConsumer.Dir, devenv.FullConsumer.SIRET, full)
	fmt.Fprintf(w, "  %-16s SIRET %s, limited scopes: %s\n", devenv.LimitedConsumer.Dir, devenv.LimitedConsumer.SIRET, limited)
	fmt.Fprintf(w, "first call:\n  %s\n", devenv.FirstCallCommand(env, devenv.FullConsumer, addr))
}

// AuditFile is the audit log's file name in the data directory.
const AuditFile = "audit.db"

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
		if r.Source == "" || r.Consumer == "" {
			continue
		}
		service := strings.TrimPrefix(r.Method, "/")
		if i := strings.LastIndexByte(service, '/'); i >= 0 {
			service = service[:i]
		}
		counts[r.Consumer+"|"+service]++
	}
	b.SeedDailyCounts(ratelimit.Day(now), counts)
	return nil
}

// readiness lists what /readyz checks: the dependencies must really work.
func readiness(env *devenv.Env, auditLog *boltlog.Log) []ops.Check {
	return []ops.Check{
		{Name: "registry", Fn: func(ctx context.Context) error { _, err := env.Registry.ListConsumers(ctx); return err }},
		{Name: "audit_log", Fn: func(context.Context) error { return auditLog.Healthy() }},
		{Name: "trust_bundle", Fn: func(context.Context) error {
			if env.Trust.Pool() == nil {
				return errors.New("no CA trust bundle loaded")
			}
			return nil
		}},
		{Name: "certificates", Fn: func(ctx context.Context) error {
			c := env.ServerCert.Certificate()
			if c == nil || time.Now().After(c.Leaf.NotAfter) {
				return errors.New("the broker's certificate is missing or expired")
			}
			if _, err := env.CA.TrustBundle(ctx); err != nil && time.Until(c.Leaf.NotAfter) < time.Hour {
				return fmt.Errorf("CA unreachable and the certificate expires within the hour: %w", err)
			}
			return nil
		}},
	}
}

// watchGauges refreshes the gauges that are states, not events: source
// states and certificate expiries.
func watchGauges(ctx context.Context, mets *metrics.Metrics, env *devenv.Env) {
	for {
		for svc, g := range env.Guards {
			mets.SetSourceState(env.Sources[svc].ID+"/"+svc, string(g.Status().State))
		}
		if c := env.ServerCert.Certificate(); c != nil {
			mets.SetCertExpiry("server", c.Leaf.NotAfter)
		}
		if recs, err := env.Registry.ListCredentials(ctx, ""); err == nil {
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
