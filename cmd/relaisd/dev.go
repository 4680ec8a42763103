package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/relais-broker/relais/broker/audit/seal"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/cluster"
	"github.com/relais-broker/relais/internal/devenv"
	"github.com/relais-broker/relais/internal/tracing"
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
	httpListen := fs.String("http-listen", "127.0.0.1:8443", "address of the HTTPS/JSON gateway (mTLS) and of the API documentation (/docs/openapi.json, /docs/api.md)")
	opsListen := fs.String("ops-listen", "127.0.0.1:9090", "address of the operations HTTP listener: /metrics, /healthz, /readyz")
	otlp := fs.String("otlp-endpoint", "", "export traces over OTLP/gRPC to this collector (host:port, plaintext on loopback); none by default")
	sourcesFile := fs.String("sources", "", "YAML file choosing the adapter of each service (sandbox, httpjson, remote); services it omits stay on the sandbox")
	dataDir := fs.String("data-dir", "relais-dev", "directory for the dev CA, demo credentials and stores")
	postgres := fs.String("postgres", "", "keep every store in this PostgreSQL database (DSN, e.g. postgres://user@127.0.0.1:5432/relais) instead of bbolt files; the schema is migrated, and the dev CA and keys are shared through the database so another dev broker on the same DSN joins as a replica")
	drainPeriod := fs.Duration("drain-period", 0, "on SIGTERM, stay not ready but serving this long before stopping (replicas behind a load balancer)")
	replicaID := fs.String("replica-id", "", "with --postgres, this broker's name among the replicas of the database (its audit chain); default the first free of dev-1 … dev-9")
	logFormat := fs.String("log-format", "json", "log format: json or text")
	idpListen := fs.String("idp-listen", "127.0.0.1:8445", "address of the local OpenID provider (FranceConnect-like) whose users are the sandbox's fictitious citizens: the identity of citizen-initiated calls and of the portal's logins")
	idpIssuer := fs.String("idp-issuer", "", "the local OpenID provider's public URL when it is reached through a proxy (default https://<idp-listen address>)")
	idpTokenLifetime := fs.Duration("idp-token-lifetime", 10*time.Minute, "lifetime of the access tokens the local OpenID provider issues")
	portalListen := fs.String("portal-listen", "127.0.0.1:8444", "address of the citizens' transparency portal (who accessed my data); empty turns it off")
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
	if *idpTokenLifetime <= 0 {
		fmt.Fprintln(stderr, "relaisd dev: --idp-token-lifetime must be positive")
		return 2
	}
	if *crlRefresh <= 0 || *trustRefresh <= 0 {
		fmt.Fprintln(stderr, "relaisd dev: --crl-refresh and --trust-refresh must be positive")
		return 2
	}
	opts := devOptions{listen: *listen, adminListen: *adminListen, host: host, dataDir: *dataDir,
		vaultAddr: *vaultAddr, vaultTokenFile: *vaultTokenFile, crlRefresh: *crlRefresh, trustRefresh: *trustRefresh, sourcesFile: *sourcesFile, opsListen: *opsListen, otlp: *otlp, httpListen: *httpListen,
		postgres: *postgres, replicaID: *replicaID, drainPeriod: *drainPeriod, idpListen: *idpListen, portalListen: *portalListen,
		idpIssuer: *idpIssuer, idpTokenLifetime: *idpTokenLifetime}
	if !validReplicaID(opts.replicaID) {
		fmt.Fprintf(stderr, "relaisd dev: --replica-id %q: 1 to 64 letters, digits, '.', '_' or '-'\n", opts.replicaID)
		return 2
	}

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
	sourcesFile, opsListen, otlp       string
	httpListen                         string
	crlRefresh, trustRefresh           time.Duration
	// postgres is the DSN of the shared database ("" for bbolt files).
	postgres, replicaID string
	drainPeriod         time.Duration
	// idpListen and portalListen: the dev identity provider and the
	// transparency portal ("" turns the portal off).
	idpListen, portalListen string
	// idpIssuer overrides the provider's URL (behind a proxy);
	// idpTokenLifetime is its access tokens' lifetime.
	idpIssuer        string
	idpTokenLifetime time.Duration
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
	sts, joined, err := devStores(ctx, o, cat, vault != nil, logger)
	if err != nil {
		return err
	}
	defer sts.Close()
	env, keys, err := prepareDev(ctx, o, cat, vault, sts)
	if err != nil {
		return err
	}
	st := &stack{
		Catalog: cat, CA: env.CA, ServerCert: env.ServerCert, Keeper: env.ServerKeeper, Trust: env.Trust, Stores: sts, Chain: sts.Replica,
		Sources: sourceConfig{catalog: cat, base: env.Sources, guards: env.Guards, file: o.sourcesFile, sandbox: env.Sandbox},
		Signer:  seal.Ed25519Signer(keys.Signing), Pseudonym: keys.Pseudonym,
		Listen: o.listen, AdminListen: o.adminListen, OpsListen: o.opsListen, HTTPListen: o.httpListen,
		CRLRefresh: o.crlRefresh, TrustRefresh: o.trustRefresh, DrainPeriod: o.drainPeriod,
		Reminders: devReminders(o.dataDir), DataDir: o.dataDir,
	}
	citizens, err := devPages(o, env, logger)
	if err != nil {
		return err
	}
	st.Citizens, st.Pages = citizens.resolver, citizens.pages
	tc := tracing.Config{Exporter: "none"}
	if o.otlp != "" {
		tc = tracing.Config{Exporter: "otlp", Endpoint: o.otlp, Insecure: true}
	}
	if st.Tracing, err = tracing.Setup(ctx, tc); err != nil {
		return err
	}
	return runStack(ctx, st, logger, func(data, adminAddr, opsAddr, web string) {
		printWelcome(stdout, data, adminAddr, o.dataDir, env, []string{
			fmt.Sprintf("HTTPS/JSON:     https://%s/<package.Service>/<Method> (mTLS; OpenAPI at /docs/openapi.json, proto bundle at /docs/proto.tar.gz)", web),
			fmt.Sprintf("operations:     http://%s/metrics /healthz /readyz", opsAddr),
			fmt.Sprintf("audit log:      %s (verify the running broker: relaisctl audit verify --online --admin-addr %s --operator-dir %s --public-key %s)",
				auditWhere(o, sts), adminAddr, env.OperatorDir(), filepath.Join(keys.Dir, devenv.AuditPublicKeyFile)),
			fmt.Sprintf("citizen login:  %s (local OpenID provider, fictitious citizens; discovery %s/.well-known/openid-configuration)", citizens.issuer, citizens.issuer),
			portalLine(citizens.portalURL),
		}, storeLine(o, sts, joined))
	})
}

func printWelcome(w io.Writer, addr, adminAddr, dataDir string, env *devenv.Env, extra []string, store string) {
	full := env.ConsumerDir(devenv.FullConsumer)
	limited := env.ConsumerDir(devenv.LimitedConsumer)
	fmt.Fprintf(w, "relaisd dev: listening on %s (mTLS only; sandbox sources, fictitious data)\n", addr)
	fmt.Fprintf(w, "data directory: %s\n", dataDir)
	fmt.Fprintf(w, "stores:         %s\n", store)
	fmt.Fprintf(w, "admin API:      %s (operator credential: %s)\n", adminAddr, env.OperatorDir())
	fmt.Fprintf(w, "trust bundle:   %s\n", filepath.Join(env.Dir, "ca.pem"))
	for _, line := range extra {
		fmt.Fprintln(w, line)
	}
	fmt.Fprintf(w, "demo consumers:\n")
	fmt.Fprintf(w, "  %-16s SIRET %s, every scope:    %s\n", devenv.FullConsumer.Dir, devenv.FullConsumer.SIRET, full)
	fmt.Fprintf(w, "  %-16s SIRET %s, limited scopes: %s\n", devenv.LimitedConsumer.Dir, devenv.LimitedConsumer.SIRET, limited)
	fmt.Fprintf(w, "first call:\n  %s\n", devenv.FirstCallCommand(env, devenv.FullConsumer, addr))
}

// devStores opens the dev broker's stores: bbolt files in the data
// directory, or the PostgreSQL database of --postgres (schema migrated,
// dev CA and keys pulled from it; joined says they were there already).
func devStores(ctx context.Context, o devOptions, cat *catalog.Catalog, vault bool, logger *slog.Logger) (*stores, bool, error) {
	// The data directory is created on first start.
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return nil, false, err
	}
	if o.postgres == "" {
		sts, err := openBoltStores(o.dataDir, cat, time.Now, boltOptions{Logger: logger})
		return sts, false, err
	}
	self := cluster.Replica{ID: o.replicaID, DataAddr: o.listen, AdminAddr: o.adminListen, StartedAt: time.Now()}
	sts, err := openPostgresStores(ctx, o.postgres, true, cat, time.Now, self, devReplicaIDs, logger)
	if err != nil {
		return nil, false, err
	}
	material := devenv.PGMaterial{Pool: sts.Pool}
	joined := false
	if err = material.Init(ctx); err == nil {
		joined, err = devenv.PullMaterial(ctx, material, o.dataDir, vault)
	}
	if err != nil {
		sts.Close()
		return nil, false, err
	}
	return sts, joined, nil
}

// prepareDev prepares the dev environment on the stores; with a shared
// database it then shares the dev CA and keys it created, and prepares
// again with the database's copy when another dev broker stored its own
// first (both started at once).
func prepareDev(ctx context.Context, o devOptions, cat *catalog.Catalog, vault *devenv.Vault, sts *stores) (*devenv.Env, *devenv.Keys, error) {
	for attempt := 0; ; attempt++ {
		env, err := devenv.PrepareWith(ctx, o.dataDir, []string{o.host}, cat, time.Now, vault, sts.Registry)
		if err != nil {
			return nil, nil, err
		}
		keys, err := devenv.LoadKeys(o.dataDir)
		if err != nil || sts.Pool == nil {
			return env, keys, err
		}
		changed, err := devenv.PushMaterial(ctx, devenv.PGMaterial{Pool: sts.Pool}, o.dataDir, vault != nil)
		if err != nil {
			return nil, nil, err
		}
		if !changed || attempt > 0 {
			return env, keys, nil
		}
	}
}

// devReplicaIDs are the ids dev brokers on one database take in turn.
var devReplicaIDs = []string{"dev-1", "dev-2", "dev-3", "dev-4", "dev-5", "dev-6", "dev-7", "dev-8", "dev-9"}

func storeLine(o devOptions, sts *stores, joined bool) string {
	if sts.Pool == nil {
		return "bbolt files in " + o.dataDir
	}
	live := sts.Cluster.Live(time.Now())
	if joined {
		return fmt.Sprintf("PostgreSQL; replica %s joined the installation already in this database (same CA, keys and registry; %d live replicas)", sts.Replica, live)
	}
	return fmt.Sprintf("PostgreSQL; replica %s of a new installation (dev CA and keys stored in the database)", sts.Replica)
}

func auditWhere(o devOptions, sts *stores) string {
	if sts.Pool == nil {
		return filepath.Join(o.dataDir, devenv.AuditDir) + string(filepath.Separator)
	}
	return "PostgreSQL, chain " + sts.Replica
}
