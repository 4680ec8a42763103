package portal

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/relais-broker/relais/broker"
	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/citizen"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/scope"
	"github.com/relais-broker/relais/broker/subject"
	"github.com/relais-broker/relais/certs"
	"github.com/relais-broker/relais/internal/devenv"
	"github.com/relais-broker/relais/internal/devidp"
	"github.com/relais-broker/relais/internal/devidp/devidptest"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
)

// demoBroker is the broker of `relaisd dev` — the dev CA, the demo
// registry, the sandbox sources — served over real mTLS on 127.0.0.1,
// tracing into the given audit log with the portal's pseudonymisation key
// and resolving citizen logins through the dev provider.
type demoBroker struct {
	env  *devenv.Env
	addr string
}

// fraudPurpose is a purpose of the demo town hall whose grant defers the
// citizen's information by 90 days.
const fraudPurpose = "controle_fraude"

// prepareDemo opens the dev environment in dir and adds the test bodies
// and a deferred fraud-control grant of the demo town hall.
func prepareDemo(t *testing.T, dir string) *devenv.Env {
	t.Helper()
	ctx := context.Background()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	env, err := devenv.Prepare(ctx, dir, nil, catalog.Default(), time.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Registry.Close() })
	fraud := registry.Grant{Consumer: devenv.FullConsumer.SIRET, Service: fqService, Scopes: scope.Of("family_quotient.value"),
		Purposes:  []registry.Purpose{{Code: fraudPurpose, Label: "Contrôle de la sincérité des déclarations", LegalBasis: "CSS, art. L114-10"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0), Quota: registry.Quota{RatePerSecond: 10, Burst: 10},
		Disclosure: registry.Disclosure{Delay: 90 * 24 * time.Hour, LegalReference: fraudReference}}
	if _, err := env.Registry.Import(ctx, testConsumers(), append(testGrants(t0), fraud)); err != nil {
		t.Fatal(err)
	}
	return env
}

func startDemoBroker(t *testing.T, env *devenv.Env, log audit.Recorder, idp *devidptest.Server) *demoBroker {
	t.Helper()
	pseudo, err := subject.New(testKey)
	if err != nil {
		t.Fatal(err)
	}
	res, err := citizen.New(citizen.Config{Providers: []citizen.ProviderConfig{{Issuer: idp.Issuer, ClientID: devidp.RelaisAudience, AcceptedACR: []string{"eidas1"}}},
		HTTPClient: idp.HTTPClient()})
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(broker.Config{Catalog: catalog.Default(), Sources: env.Sources, Registry: env.Registry, Audit: log, Pseudonyms: pseudo, Citizens: res})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := b.NewGRPCServer(grpc.Creds(credentials.NewTLS(certs.ServerConfig(env.ServerCert, env.Trust))))
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return &demoBroker{env: env, addr: lis.Addr().String()}
}

// dial connects as the demo consumer with its credentials as written on disk.
func (d *demoBroker) dial(t *testing.T, c devenv.DemoConsumer) *grpc.ClientConn {
	t.Helper()
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	dir := d.env.ConsumerDir(c)
	cert, err := tls.X509KeyPair(read(filepath.Join(dir, "cert.pem")), read(filepath.Join(dir, "key.pem")))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(read(filepath.Join(d.env.Dir, "ca.pem"))) {
		t.Fatal("no certificate in ca.pem")
	}
	conn, err := grpc.NewClient(d.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert}, RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// familyQuotient asks the family quotient of a citizen — by typed identity,
// or by the citizen's access token when token is set — and returns the
// call's request id (the reference the portal shows).
func familyQuotient(t *testing.T, conn *grpc.ClientConn, recipient, purpose string, id *commonv1.SubjectIdentity, token string) string {
	t.Helper()
	req := &familyquotientv1.GetFamilyQuotientRequest{AccessContext: &commonv1.AccessContext{Recipient: recipient, Purpose: purpose, CaseReference: "PORTAIL-1"}}
	if token != "" {
		req.CitizenAccessToken = token
	} else {
		req.Subject = id
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var header metadata.MD
	_, err := familyquotientv1.NewFamilyQuotientServiceClient(conn).GetFamilyQuotient(ctx, req, grpc.Header(&header))
	if err != nil {
		t.Fatalf("GetFamilyQuotient (%s): %v", purpose, err)
	}
	ids := header.Get(broker.RequestIDHeader)
	if len(ids) != 1 || ids[0] == "" {
		t.Fatalf("no request id in %v", header)
	}
	return ids[0]
}
