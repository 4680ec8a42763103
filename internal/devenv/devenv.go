// Package devenv prepares what `relaisd dev` runs on: an embedded dev CA
// kept in the data directory, the broker's server certificate, ready-to-use
// demo consumer credentials, the demo grants and the sandbox sources for
// every typed service. Nothing here is meant for production.
package devenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/relais-broker/relais/adapters/resilience"
	"github.com/relais-broker/relais/adapters/sandbox"
	"github.com/relais-broker/relais/broker"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/registry/boltreg"
	"github.com/relais-broker/relais/certs"
)

// SandboxSourceID names the sandbox source in metadata and audit records.
const SandboxSourceID = "sandbox"

// Env is a prepared dev environment.
type Env struct {
	// Dir is DIR/dev (embedded CA) or DIR/vault (Vault), where the trust
	// bundle ca.pem and the demo credentials live.
	Dir string
	// CA issues and revokes: the embedded dev CA, or Vault.
	CA certs.Authority
	// ServerCert is the broker's certificate source, and Trust its client CA pool.
	ServerCert *certs.CertSource
	Trust      *certs.TrustPool
	// Registry holds the habilitations, seeded with the demo consumers and
	// grants on first start (by default the bbolt file DIR/registry.db,
	// which Prepare opens: close it when done).
	Registry Registry
	// Sources wires the sandbox adapter to every typed service.
	Sources map[string]broker.Source
	// Sandbox is the sandbox adapter (unguarded).
	Sandbox *sandbox.Adapter
	// Guards protect each service's source and report its status.
	Guards map[string]*resilience.Guard
	// ServerKeeper renews ServerCert; run it for the life of the server.
	ServerKeeper *certs.ServerCertKeeper
}

// DemoOperator is the id of the demo operator, whose credential in
// DIR/dev/operators/admin calls the admin API.
const DemoOperator = "admin"

// OperatorDir is where the demo operator's credential is written.
func (e *Env) OperatorDir() string { return filepath.Join(e.Dir, "operators", DemoOperator) }

// Vault is how dev mode uses a Vault PKI instead of the embedded CA.
type Vault struct {
	// Authority is the Vault-backed issuer.
	Authority certs.Authority
	// Onboard prepares the CA for a consumer before its first credential
	// (with Vault: the consumer's PKI role).
	Onboard func(ctx context.Context, siret string) error
}

// Registry is what dev mode needs of a registry store: the store, and
// Import to seed the demo data.
type Registry interface {
	registry.Store
	Import(ctx context.Context, consumers []registry.Consumer, grants []registry.Grant) ([]registry.Grant, error)
}

// Prepare creates or reuses DIR/dev (or DIR/vault when vault is not nil)
// with the bbolt registry DIR/registry.db, and returns the environment.
// hosts are the names and addresses the server certificate must cover, in
// addition to localhost, 127.0.0.1 and ::1.
func Prepare(ctx context.Context, dataDir string, hosts []string, cat *catalog.Catalog, now func() time.Time, vault *Vault) (*Env, error) {
	reg, err := boltreg.Open(filepath.Join(dataDir, RegistryFile), boltreg.Options{Catalog: cat, Clock: now})
	if err != nil {
		return nil, err
	}
	env, err := PrepareWith(ctx, dataDir, hosts, cat, now, vault, reg)
	if err != nil {
		reg.Close()
	}
	return env, err
}

// PrepareWith is Prepare on a registry the caller opened (and closes),
// for instance on PostgreSQL.
func PrepareWith(ctx context.Context, dataDir string, hosts []string, cat *catalog.Catalog, now func() time.Time, vault *Vault, reg Registry) (*Env, error) {
	dir := filepath.Join(dataDir, "dev")
	if vault != nil {
		dir = filepath.Join(dataDir, "vault")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("dev: create %s: %w", dir, err)
	}
	if err := seedRegistry(ctx, reg, cat, now); err != nil {
		return nil, err
	}
	env := &Env{Dir: dir, Registry: reg, Sources: make(map[string]broker.Source)}
	if vault != nil {
		env.CA = vault.Authority
	} else {
		ca, err := certs.OpenDevCA(dir, now)
		if err != nil {
			return nil, err
		}
		env.CA = ca
	}
	if err := env.issueServer(ctx, hosts); err != nil {
		return nil, err
	}
	bundle, err := env.CA.TrustBundle(ctx)
	if err != nil {
		return nil, err
	}
	env.Trust = certs.NewTrustPool()
	if err := env.Trust.Set(bundle); err != nil {
		return nil, err
	}
	if vault != nil {
		if err := certs.WriteTrustBundle(dir, bundle); err != nil {
			return nil, err
		}
		for _, c := range DemoConsumers() {
			if err := vault.Onboard(ctx, c.SIRET); err != nil {
				return nil, fmt.Errorf("dev: onboard %s in the CA: %w", c.Dir, err)
			}
		}
	}
	for _, c := range DemoConsumers() {
		if err := env.ensureClient(ctx, identity.KindConsumer, c.SIRET, c.Name, env.ConsumerDir(c), now()); err != nil {
			return nil, err
		}
	}
	if err := env.ensureClient(ctx, identity.KindOperator, DemoOperator, "Opérateur de démonstration", env.OperatorDir(), now()); err != nil {
		return nil, err
	}
	adapter := sandbox.New(sandbox.Default(), sandbox.Options{SourceID: SandboxSourceID, Clock: now})
	env.Sandbox = adapter
	env.Guards = map[string]*resilience.Guard{}
	for _, svc := range cat.Services() {
		// One guard per service: each sandbox "source" has its own limits.
		g := resilience.New(adapter, resilience.Config{})
		env.Guards[svc] = g
		env.Sources[svc] = broker.Source{ID: SandboxSourceID, Adapter: g, Timeout: 2 * time.Second}
	}
	return env, nil
}

// RegistryFile is the registry's file name in the data directory.
const RegistryFile = "registry.db"

// AuditFile is the bbolt audit log's file name in the data directory:
// brokers before the segment log; migrated to AuditDir at start.
const AuditFile = "audit.db"

// AuditDir is the audit log's directory (broker/audit/seglog) in the
// data directory.
const AuditDir = "audit"

// AuditBackupFile is the audit log's file in an online backup: its
// export, verifiable offline and restored into a new AuditDir.
const AuditBackupFile = "audit.jsonl"

// seedRegistry imports the demo consumers and grants when the registry
// holds no consumer yet (first start). Two dev replicas starting at once
// on one database may both try: the second import fails with ErrExists,
// which is success here.
func seedRegistry(ctx context.Context, reg Registry, cat *catalog.Catalog, now func() time.Time) error {
	existing, err := reg.ListConsumers(ctx)
	if err == nil && len(existing) == 0 {
		consumers, grants := DemoData(cat, now())
		if _, err = reg.Import(ctx, consumers, grants); errors.Is(err, registry.ErrExists) {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("dev: registry: %w", err)
	}
	return nil
}

// serverTTL is the life of the dev server certificate, reissued at each start.
const serverTTL = 30 * 24 * time.Hour

func (e *Env) issueServer(ctx context.Context, hosts []string) error {
	dns := []string{"localhost"}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	for _, h := range hosts {
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, h)
		}
	}
	cred, err := e.CA.IssueServer(ctx, dns, ips, serverTTL)
	if err != nil {
		return fmt.Errorf("dev: issue server certificate: %w", err)
	}
	e.ServerCert = certs.NewCertSource()
	e.ServerKeeper = &certs.ServerCertKeeper{Issuer: e.CA, Source: e.ServerCert, DNSNames: dns, IPs: ips, TTL: serverTTL}
	return e.ServerCert.Set(cred.FullChainPEM(), cred.KeyPEM)
}

// ConsumerDir is where a demo consumer's credentials are written.
func (e *Env) ConsumerDir(c DemoConsumer) string {
	return filepath.Join(e.Dir, "consumers", c.Dir)
}

// consumerTTL is the life of demo consumer certificates.
const consumerTTL = 30 * 24 * time.Hour

// ensureClient keeps valid existing credentials (a user may have copied
// them) and issues new ones when missing, unreadable, from another CA or
// expiring within a day.
func (e *Env) ensureClient(ctx context.Context, kind identity.Kind, id, name, dir string, now time.Time) error {
	if e.stillValid(dir, now.Add(24*time.Hour)) {
		return nil
	}
	cred, err := e.CA.IssueClient(ctx, certs.ClientRequest{Kind: kind, ID: id, CommonName: name, TTL: consumerTTL})
	if err != nil {
		return fmt.Errorf("dev: issue credentials for %s: %w", id, err)
	}
	bundle, err := e.CA.TrustBundle(ctx)
	if err != nil {
		return err
	}
	if err := certs.WriteCredential(dir, cred, bundle); err != nil {
		return err
	}
	return e.Registry.PutCredential(ctx, registry.CredentialRecord{
		Serial: cred.Serial, Kind: string(kind), Subject: id, NotBefore: cred.NotBefore, NotAfter: cred.NotAfter,
		Status: registry.CredentialActive, IssuedBy: "relaisd dev",
	})
}

func (e *Env) stillValid(dir string, until time.Time) bool {
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil || until.After(pair.Leaf.NotAfter) {
		return false
	}
	bundle, err := e.CA.TrustBundle(context.Background())
	if err != nil {
		return false
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AppendCertsFromPEM(bundle)
	for _, der := range pair.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	_, err = pair.Leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: until})
	return err == nil
}
