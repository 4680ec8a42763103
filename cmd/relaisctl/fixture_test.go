package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/relais-broker/relais/broker/admin"
	"github.com/relais-broker/relais/broker/audit/audittest"
	"github.com/relais-broker/relais/broker/audit/seal"
	"github.com/relais-broker/relais/broker/audit/seglog"
	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/registry/boltreg"
	"github.com/relais-broker/relais/certs"
	"github.com/relais-broker/relais/internal/devenv"
	"github.com/relais-broker/relais/internal/keyfile"
	"github.com/relais-broker/relais/internal/tlstest"
)

// testBroker is a real admin API over real bbolt stores in a data
// directory: what relaisd serves operators, without the data API.
type testBroker struct {
	dataDir, caDir, opDir, keyDir, pub, addr string
	reg                                      *boltreg.Store
	log                                      *seglog.Log
}

// newKeys writes the audit keys into a new directory.
func newKeys(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if code, _, errOut := relaisctl(t, "keys", "generate", "--dir", dir); code != 0 {
		t.Fatalf("keys generate: %d %s", code, errOut)
	}
	return dir
}

// startBroker serves the admin API on the stores of dataDir (created
// when empty), signing the audit log with the key of keyDir, and writes
// an operator credential. caDir is the dev CA (created when new).
func startBroker(t *testing.T, dataDir, keyDir, caDir string) *testBroker {
	t.Helper()
	ctx := context.Background()
	b := &testBroker{dataDir: dataDir, caDir: caDir, keyDir: keyDir, opDir: filepath.Join(t.TempDir(), "operator"),
		pub: filepath.Join(keyDir, devenv.AuditPublicKeyFile)}
	var err error
	if b.reg, err = boltreg.Open(filepath.Join(dataDir, devenv.RegistryFile), boltreg.Options{}); err != nil {
		t.Fatal(err)
	}
	key, err := keyfile.ReadSigningKey(filepath.Join(keyDir, devenv.AuditSigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if b.log, err = seglog.Open(filepath.Join(dataDir, devenv.AuditDir), seglog.Options{SigningKey: key, CheckpointEvery: 10, Store: seglog.StoreOptions{SegmentSize: 1 << 20}}); err != nil {
		t.Fatal(err)
	}
	ca, err := certs.OpenDevCA(caDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	bundle, _ := ca.TrustBundle(ctx)
	trust := certs.NewTrustPool()
	if err := trust.Set(bundle); err != nil {
		t.Fatal(err)
	}
	srvCred, err := ca.IssueServer(ctx, []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	src := certs.NewCertSource()
	if err := src.Set(srvCred.FullChainPEM(), srvCred.KeyPEM); err != nil {
		t.Fatal(err)
	}
	revoked := certs.NewRevocations()
	srv, err := admin.New(admin.Config{Issuer: ca, Revocations: revoked, Audit: b.log, AuditLog: b.log, Registry: b.reg,
		Backups: []admin.BackupFile{{Name: devenv.RegistryFile, Source: b.reg}, {Name: devenv.AuditBackupFile, Source: exportSnapshot{b.log.Store()}}}})
	if err != nil {
		t.Fatal(err)
	}
	g := srv.NewGRPCServer(tlsCreds(src, trust, revoked))
	b.addr = tlstest.Serve(t, g)
	op, err := ca.IssueClient(ctx, certs.ClientRequest{Kind: identity.KindOperator, ID: "alice", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.WriteCredential(b.opDir, op, bundle); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.Stop()
		_ = b.log.Close()
		_ = b.reg.Close()
	})
	return b
}

// stop closes the stores (the broker is gone; its files stay).
func (b *testBroker) stop(t *testing.T) {
	t.Helper()
	if err := b.log.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.reg.Close(); err != nil {
		t.Fatal(err)
	}
}

// admin are the flags that reach b.
func (b *testBroker) admin() []string {
	return []string{"--admin-addr", b.addr, "--operator-dir", b.opDir}
}

// ctl runs relaisctl args against b.
func (b *testBroker) ctl(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return relaisctl(t, append(args, b.admin()...)...)
}

// seed adds a consumer with one grant and n audit records.
func (b *testBroker) seed(t *testing.T, siret string, n int) {
	t.Helper()
	ctx := context.Background()
	if _, err := b.reg.AddConsumer(ctx, registry.Consumer{SIRET: siret, Name: "Mairie de Test-sur-Loire", Status: registry.StatusActive}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		if err := b.log.Append(ctx, audittest.Record(i)); err != nil {
			t.Fatal(err)
		}
	}
}

// runIn is relaisctl with its output captured.
func runIn(ctx context.Context, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

func tlsCreds(src *certs.CertSource, trust *certs.TrustPool, revoked *certs.Revocations) grpc.ServerOption {
	return grpc.Creds(credentials.NewTLS(certs.ServerConfig(src, trust, certs.RejectRevoked(revoked))))
}

// exportSnapshot is what relaisd backs up of its audit directory
// (cmd/relaisd auditSnapshot): the export, from one snapshot.
type exportSnapshot struct{ st *seglog.Store }

func (e exportSnapshot) WriteSnapshot(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	err := e.st.Export(context.Background(), seal.NewWriter(cw).Write)
	return cw.n, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
