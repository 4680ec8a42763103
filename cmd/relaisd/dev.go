package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/relais-broker/relais/broker/catalog"
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
		vaultAddr: *vaultAddr, vaultTokenFile: *vaultTokenFile, crlRefresh: *crlRefresh, trustRefresh: *trustRefresh, sourcesFile: *sourcesFile, opsListen: *opsListen, otlp: *otlp, httpListen: *httpListen}
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
	keys, err := devenv.LoadKeys(o.dataDir)
	if err != nil {
		return err
	}
	st := &stack{
		Catalog: cat, CA: env.CA, ServerCert: env.ServerCert, Keeper: env.ServerKeeper, Trust: env.Trust, Registry: env.Registry,
		Sources: sourceConfig{catalog: cat, base: env.Sources, guards: env.Guards, file: o.sourcesFile, sandbox: env.Sandbox},
		Signing: keys.Signing, Pseudonym: keys.Pseudonym,
		AuditPath: filepath.Join(o.dataDir, AuditFile), Listen: o.listen, AdminListen: o.adminListen, OpsListen: o.opsListen, HTTPListen: o.httpListen,
		CRLRefresh: o.crlRefresh, TrustRefresh: o.trustRefresh,
	}
	tc := tracing.Config{Exporter: "none"}
	if o.otlp != "" {
		tc = tracing.Config{Exporter: "otlp", Endpoint: o.otlp, Insecure: true}
	}
	if st.Tracing, err = tracing.Setup(ctx, tc); err != nil {
		return err
	}
	return runStack(ctx, st, logger, func(data, adminAddr, opsAddr, web string) {
		printWelcome(stdout, data, adminAddr, o.dataDir, env, []string{
			fmt.Sprintf("HTTPS/JSON:     https://%s/<package.Service>/<Method> (mTLS; OpenAPI at /docs/openapi.json)", web),
			fmt.Sprintf("operations:     http://%s/metrics /healthz /readyz", opsAddr),
			fmt.Sprintf("audit log:      %s (verify: relaisctl audit verify --db %s --public-key %s)",
				st.AuditPath, st.AuditPath, filepath.Join(keys.Dir, devenv.AuditPublicKeyFile)),
		})
	})
}

func printWelcome(w io.Writer, addr, adminAddr, dataDir string, env *devenv.Env, extra []string) {
	full := env.ConsumerDir(devenv.FullConsumer)
	limited := env.ConsumerDir(devenv.LimitedConsumer)
	fmt.Fprintf(w, "relaisd dev: listening on %s (mTLS only; sandbox sources, fictitious data)\n", addr)
	fmt.Fprintf(w, "data directory: %s\n", dataDir)
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
