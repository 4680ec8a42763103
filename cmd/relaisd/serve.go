package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/relais-broker/relais/adapters/sandbox"
	"github.com/relais-broker/relais/broker/audit/seal"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/cluster"
	"github.com/relais-broker/relais/certs"
	"github.com/relais-broker/relais/certs/vaultca"
	"github.com/relais-broker/relais/internal/devenv"
	"github.com/relais-broker/relais/internal/keyfile"
	"github.com/relais-broker/relais/internal/tracing"
	"github.com/relais-broker/relais/internal/vaultkeys"
)

// runCheckConfig validates a configuration file without starting.
func runCheckConfig(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relaisd check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/relais/relaisd.yaml", "configuration file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if _, err := loadConfig(*path); err != nil {
		fmt.Fprintf(stderr, "relaisd check-config: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: configuration OK\n", *path)
	return 0
}

// runServe runs the broker from a configuration file.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relaisd serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/relais/relaisd.yaml", "configuration file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintf(stderr, "relaisd serve: %v\n", err)
		return 1
	}
	logger, err := newLogger(cfg.Log.Format, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "relaisd serve: %v\n", err)
		return 2
	}
	if err := serve(ctx, cfg, logger, stdout); err != nil {
		fmt.Fprintf(stderr, "relaisd serve: %v\n", err)
		return 1
	}
	return 0
}

func serve(ctx context.Context, cfg *Config, logger *slog.Logger, stdout io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cat := catalog.Default()
	ca, closeCA, err := configuredCA(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeCA()
	var ips []net.IP
	for _, ip := range cfg.TLS.ServerIPs {
		ips = append(ips, net.ParseIP(ip))
	}
	st := &stack{
		Catalog: cat, CA: ca, ServerCert: certs.NewCertSource(), Trust: certs.NewTrustPool(),
		Sources:   sourceConfig{catalog: cat, file: cfg.SourcesFile, sandbox: sandbox.New(sandbox.Default(), sandbox.Options{SourceID: "sandbox"})},
		Retention: cfg.Audit.Retention, Anomaly: cfg.Anomaly, DrainPeriod: *cfg.DrainPeriod,
		Reminders: cfg.Reminders, DataDir: cfg.DataDir, ExpectedReplicas: cfg.ExpectedReplicas,
		Listen: cfg.Listen.Data, AdminListen: cfg.Listen.Admin, OpsListen: cfg.Listen.Ops, HTTPListen: cfg.Listen.HTTP,
		CRLRefresh: cfg.TLS.CRLRefresh, TrustRefresh: cfg.TLS.TrustRefresh, AllowDuplicateCalls: cfg.Limits.AllowDuplicateCalls,
	}
	if st.Tracing, err = tracing.Setup(ctx, cfg.Tracing); err != nil {
		return err
	}
	st.Keeper = &certs.ServerCertKeeper{Issuer: ca, Source: st.ServerCert, DNSNames: cfg.TLS.ServerNames, IPs: ips, TTL: cfg.TLS.ServerTTL}
	if err := st.Keeper.Issue(ctx); err != nil {
		return fmt.Errorf("the broker's certificate: %w", err)
	}
	bundle, err := ca.TrustBundle(ctx)
	if err == nil {
		err = st.Trust.Set(bundle)
	}
	if err != nil {
		return fmt.Errorf("trust bundle: %w", err)
	}
	if st.Signer, st.Pseudonym, err = auditKeys(ctx, cfg, ca); err != nil {
		return err
	}
	if st.Stores, err = configuredStores(ctx, cfg, cat, logger, st.Signer); err != nil {
		return err
	}
	defer st.Stores.Close()
	st.Chain = st.Stores.Replica
	resolver, err := cfg.CitizenLogin.resolver()
	if err != nil {
		return err
	}
	if resolver != nil { // a nil *Resolver would be a non-nil interface
		st.Citizens = resolver
	}
	portalAt := ""
	if cfg.Listen.Portal != "" {
		ln, err := net.Listen("tcp", cfg.Listen.Portal)
		if err != nil {
			return fmt.Errorf("listen.portal: %w", err)
		}
		p, err := cfg.Portal.page(ln)
		if err != nil {
			ln.Close()
			return err
		}
		st.Pages, portalAt = append(st.Pages, p), ", portal on "+ln.Addr().String()
	}
	return runStack(ctx, st, logger, func(data, admin, ops, web string) {
		fmt.Fprintf(stdout, "relaisd: data API on %s, admin API on %s, operations on http://%s, HTTPS/JSON on %s%s\n", data, admin, ops, web, portalAt)
	})
}

// configuredCA is Vault (AppRole) or, for evaluation, a dev CA directory.
func configuredCA(ctx context.Context, cfg *Config) (certs.Authority, func(), error) {
	if v := cfg.TLS.Vault; v != nil {
		secret, err := v.secretID()
		if err != nil {
			return nil, nil, fmt.Errorf("tls.vault.secret_id_file: %w", err)
		}
		ca, err := vaultca.New(ctx, vaultca.Config{Addr: v.Addr, CAFile: v.CAFile, Mount: v.Mount, RootMount: v.RootMount, AppRoleID: v.RoleID, AppRoleSecretID: secret})
		if err != nil {
			return nil, nil, err
		}
		return ca, ca.Close, nil
	}
	ca, err := certs.OpenDevCA(cfg.TLS.DevCADir, nil)
	return ca, func() {}, err
}

// configuredStores opens the stores the configuration names. A
// PostgreSQL schema must have been migrated (relaisctl db migrate).
func configuredStores(ctx context.Context, cfg *Config, cat *catalog.Catalog, logger *slog.Logger, signer seal.Signer) (*stores, error) {
	if cfg.Store.Kind != StorePostgres {
		// An audit.db of an earlier version is migrated at start, verified
		// with the signing key and the earlier keys of its keyring.
		ring := ""
		if cfg.Audit.SigningKeyFile != "" {
			if f := filepath.Join(filepath.Dir(cfg.Audit.SigningKeyFile), devenv.AuditPublicKeyFile); fileExists(f) {
				ring = f
			}
		}
		keys, err := auditKeyring(signer, ring)
		if err != nil {
			return nil, err
		}
		return openBoltStores(cfg.DataDir, cat, time.Now, boltOptions{Keys: keys, Logger: logger})
	}
	dsn, err := cfg.Store.dsn()
	if err != nil {
		return nil, err
	}
	self := cluster.Replica{ID: cfg.ReplicaID, DataAddr: cfg.Listen.Data, AdminAddr: cfg.Listen.Admin, StartedAt: time.Now()}
	return openPostgresStores(ctx, dsn, false, cat, time.Now, self, nil, logger)
}

// auditKeys reads the checkpoint signer and the pseudonym key: from files
// (the same content on every replica), or from Vault with the broker's
// AppRole — the signing key as a transit key whose private half never
// leaves Vault, the pseudonym key from KV v2.
func auditKeys(ctx context.Context, cfg *Config, ca certs.Authority) (seal.Signer, []byte, error) {
	a := cfg.Audit
	var client *api.Client
	if a.SigningKeyVault != nil || a.PseudonymKeyVault != nil {
		v, ok := ca.(*vaultca.CA)
		if !ok {
			return nil, nil, errors.New("audit keys in Vault need tls.vault")
		}
		client = v.Client()
	}
	var signer seal.Signer
	if k := a.SigningKeyVault; k != nil {
		s, err := vaultkeys.NewTransitSigner(ctx, client, k.Mount, k.Key)
		if err != nil {
			return nil, nil, fmt.Errorf("audit.signing_key_vault: %w", err)
		}
		signer = s
	} else {
		key, err := keyfile.ReadSigningKey(a.SigningKeyFile)
		if err != nil {
			return nil, nil, err
		}
		signer = seal.Ed25519Signer(key)
	}
	if k := a.PseudonymKeyVault; k != nil {
		key, err := vaultkeys.PseudonymKey(ctx, client, k.Mount, k.Path)
		if err != nil {
			return nil, nil, fmt.Errorf("audit.pseudonym_key_vault: %w", err)
		}
		return signer, key, nil
	}
	key, err := cfg.pseudonymKey()
	return signer, key, err
}

// fileExists reports whether path names an existing file.
func fileExists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir()
}
