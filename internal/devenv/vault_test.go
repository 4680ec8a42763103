package devenv_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker"
	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/renewal"
	"github.com/relais-broker/relais/certs"
	"github.com/relais-broker/relais/certs/renewer"
	"github.com/relais-broker/relais/certs/vaultca"
	"github.com/relais-broker/relais/internal/devenv"
	"github.com/relais-broker/relais/internal/vaultdev"
	credentialsv1 "github.com/relais-broker/relais/proto/relais/credentials/v1"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"net"
)

// TestRotationsUnderLoadWithVault: clients call continuously while, in
// turn, a client's certificate is renewed through the broker, the
// broker's own certificate is re-issued and Vault's issuing intermediate
// is rotated. No call fails.
func TestRotationsUnderLoadWithVault(t *testing.T) {
	ctx := context.Background()
	v := vaultdev.Start(t)
	ca, err := vaultca.New(ctx, vaultca.Config{Addr: v.Addr, Token: v.Token})
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	if _, err := vaultca.Bootstrap(ctx, ca.Client(), vaultca.BootstrapOptions{}); err != nil {
		t.Fatal(err)
	}
	onboard := func(ctx context.Context, siret string) error {
		_, err := vaultca.EnsureConsumer(ctx, ca.Client(), "", siret, 0)
		return err
	}
	cat := catalog.Default()
	env, err := devenv.Prepare(ctx, t.TempDir(), nil, cat, time.Now, &devenv.Vault{Authority: ca, Onboard: onboard})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Registry.Close()
	revoked := certs.NewRevocations()
	auditLog := &audit.Memory{}
	b, err := broker.New(broker.Config{Catalog: cat, Sources: env.Sources, Registry: env.Registry, Audit: auditLog, Revocations: revoked})
	if err != nil {
		t.Fatal(err)
	}
	ren, err := renewal.New(renewal.Config{Signer: ca, Registry: env.Registry, Audit: auditLog, Revocations: revoked})
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := b.NewGRPCServer(grpc.Creds(credentials.NewTLS(certs.ServerConfig(env.ServerCert, env.Trust, certs.RejectRevoked(revoked)))))
	credentialsv1.RegisterCredentialServiceServer(srv, ren)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	d := &devBroker{env: env, addr: lis.Addr().String(), cat: cat}

	// The renewing client: its tls.Config reads a CertSource the renewer swaps.
	conn, src := d.dialSource(t, devenv.LimitedConsumer)
	r, err := renewer.New(renewer.Config{Source: src, Conn: conn})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var calls, failures atomic.Int32
	call := func(c *grpc.ClientConn) {
		if _, err := d.call(t, c, hcService, zoe, "aide_sociale_facultative"); err != nil {
			failures.Add(1)
			t.Errorf("call during rotation: %v", err)
		}
		calls.Add(1)
	}
	wg.Add(2)
	go func() { // the open connection
		defer wg.Done()
		for i := 0; i < 1000; i++ {
			select {
			case <-stop:
				return
			case <-time.After(60 * time.Millisecond): // under the demo quota
			}
			call(conn)
		}
	}()
	go func() { // fresh connections, which handshake with the current certificates
		defer wg.Done()
		for i := 0; i < 1000; i++ {
			select {
			case <-stop:
				return
			case <-time.After(60 * time.Millisecond):
			}
			fresh, _ := d.dialSource(t, devenv.LimitedConsumer)
			call(fresh)
			_ = fresh.Close()
		}
	}()
	wait := func() { // let some calls straddle each change
		for target := calls.Load() + 6; calls.Load() < target; {
			time.Sleep(10 * time.Millisecond)
		}
	}
	wait()
	if err := r.RenewNow(ctx); err != nil {
		t.Fatalf("client renewal: %v", err)
	}
	wait()
	if err := env.ServerKeeper.Issue(ctx); err != nil {
		t.Fatalf("server certificate: %v", err)
	}
	wait()
	if _, err := ca.RotateIssuer(ctx); err != nil {
		t.Fatalf("issuer rotation: %v", err)
	}
	if err := env.ServerKeeper.Issue(ctx); err != nil { // now from the new intermediate
		t.Fatalf("server certificate after rotation: %v", err)
	}
	if err := r.RenewNow(ctx); err != nil {
		t.Fatalf("client renewal after rotation: %v", err)
	}
	wait()
	close(stop)
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d of %d calls failed", failures.Load(), calls.Load())
	}
	t.Logf("%d calls across a client renewal, a server certificate re-issue, an intermediate rotation and both again: 0 failed", calls.Load())
}
