// Package devenv prepares what `relaisd dev` runs on: an embedded dev CA
// kept in the data directory, the broker's server certificate, ready-to-use
// demo consumer credentials, the demo grants and the sandbox sources for
// every typed service. Nothing here is meant for production.
package devenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/relais-broker/relais/adapters/sandbox"
	"github.com/relais-broker/relais/broker"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/certs"
)

// SandboxSourceID names the sandbox source in metadata and audit records.
const SandboxSourceID = "sandbox"

// Env is a prepared dev environment.
type Env struct {
	// Dir is DIR/dev, where the CA and the demo credentials live.
	Dir string
	// CA is the embedded dev CA.
	CA *certs.DevCA
	// ServerCert is the broker's certificate source, and Trust its client CA pool.
	ServerCert *certs.CertSource
	Trust      *certs.TrustPool
	// Registry is the placeholder registry with the demo grants.
	Registry *registry.Memory
	// Sources wires the sandbox adapter to every typed service.
	Sources map[string]broker.Source
}

// Prepare creates or reuses DIR/dev and returns the environment. hosts are
// the names and addresses the server certificate must cover, in addition
// to localhost, 127.0.0.1 and ::1.
func Prepare(ctx context.Context, dataDir string, hosts []string, cat *catalog.Catalog, now func() time.Time) (*Env, error) {
	dir := filepath.Join(dataDir, "dev")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("dev: create %s: %w", dir, err)
	}
	ca, err := certs.OpenDevCA(dir, now)
	if err != nil {
		return nil, err
	}
	env := &Env{Dir: dir, CA: ca, Registry: DemoRegistry(cat, now()), Sources: make(map[string]broker.Source)}
	if err := env.issueServer(ctx, hosts); err != nil {
		return nil, err
	}
	bundle, err := ca.TrustBundle(ctx)
	if err != nil {
		return nil, err
	}
	env.Trust = certs.NewTrustPool()
	if err := env.Trust.Set(bundle); err != nil {
		return nil, err
	}
	for _, c := range DemoConsumers() {
		if err := env.ensureConsumer(ctx, c, now()); err != nil {
			return nil, err
		}
	}
	adapter := sandbox.New(sandbox.Default(), sandbox.Options{SourceID: SandboxSourceID, Clock: now})
	for _, svc := range cat.Services() {
		env.Sources[svc] = broker.Source{ID: SandboxSourceID, Adapter: adapter, Timeout: 2 * time.Second}
	}
	return env, nil
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
	return e.ServerCert.Set(cred.CertPEM, cred.KeyPEM)
}

// ConsumerDir is where a demo consumer's credentials are written.
func (e *Env) ConsumerDir(c DemoConsumer) string {
	return filepath.Join(e.Dir, "consumers", c.Dir)
}

// consumerTTL is the life of demo consumer certificates.
const consumerTTL = 30 * 24 * time.Hour

// ensureConsumer keeps valid existing credentials (a user may have copied
// them) and issues new ones when missing, unreadable, from another CA or
// expiring within a day.
func (e *Env) ensureConsumer(ctx context.Context, c DemoConsumer, now time.Time) error {
	dir := e.ConsumerDir(c)
	if e.stillValid(dir, now.Add(24*time.Hour)) {
		return nil
	}
	cred, err := e.CA.IssueClient(ctx, certs.ClientRequest{Kind: identity.KindConsumer, ID: c.SIRET, CommonName: c.Name, TTL: consumerTTL})
	if err != nil {
		return fmt.Errorf("dev: issue credentials for %s: %w", c.Dir, err)
	}
	bundle, err := e.CA.TrustBundle(ctx)
	if err != nil {
		return err
	}
	return certs.WriteCredential(dir, cred, bundle)
}

func (e *Env) stillValid(dir string, until time.Time) bool {
	if _, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")); err != nil {
		return false
	}
	raw, err := os.ReadFile(filepath.Join(dir, "cert.pem"))
	if err != nil {
		return false
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		return false
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil || until.After(cert.NotAfter) {
		return false
	}
	bundle, err := e.CA.TrustBundle(context.Background())
	if err != nil {
		return false
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(bundle)
	_, err = cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: until})
	return err == nil
}
