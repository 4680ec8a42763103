package renewal_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/relais-broker/relais/broker"
	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/renewal"
	"github.com/relais-broker/relais/broker/scope"
	"github.com/relais-broker/relais/certs"
	"github.com/relais-broker/relais/certs/renewer"
	"github.com/relais-broker/relais/internal/tlstest"
	credentialsv1 "github.com/relais-broker/relais/proto/relais/credentials/v1"
	healthcoverv1 "github.com/relais-broker/relais/proto/relais/healthcover/v1"
)

const (
	siretA         = "21990000100005"
	siretB         = "21990000200003"
	siretSuspended = "21990000300001"
	hcService      = "relais.healthcover.v1.SolidarityHealthCoverService"
)

type env struct {
	addr    string
	pki     *tlstest.PKI
	revoked *certs.Revocations
	audit   *audit.Memory
}

// start serves the broker's data API with the renewal service over mTLS,
// with a dev CA as issuer and a registry where A's grant ends at grantEnd.
func start(t *testing.T, grantEnd time.Time) *env {
	t.Helper()
	e := &env{pki: tlstest.New(t), revoked: certs.NewRevocations(), audit: &audit.Memory{}}
	now := time.Now()
	reg := registry.NewMemory(
		[]registry.Consumer{
			{SIRET: siretA, Name: "Mairie A", Status: registry.StatusActive},
			{SIRET: siretB, Name: "Mairie B (no grant)", Status: registry.StatusActive},
			{SIRET: siretSuspended, Name: "Suspendue", Status: registry.StatusSuspended},
		},
		[]registry.Grant{
			{Consumer: siretA, Service: hcService, Scopes: scope.Of("solidarity_health_cover.status"), NotBefore: now.Add(-time.Hour), NotAfter: grantEnd,
				Purposes: []registry.Purpose{{Code: "test"}}, Quota: registry.Quota{RatePerSecond: 1000, Burst: 1000}},
			{Consumer: siretSuspended, Service: hcService, Scopes: scope.Of("solidarity_health_cover.status"), NotBefore: now.Add(-time.Hour), NotAfter: grantEnd},
		})
	b, err := broker.New(broker.Config{Registry: reg, Audit: e.audit, Revocations: e.revoked})
	if err != nil {
		t.Fatal(err)
	}
	ren, err := renewal.New(renewal.Config{Signer: e.pki.CA, Registry: reg, Audit: e.audit, Revocations: e.revoked, TTL: 7 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := b.NewGRPCServer(e.pki.ServerCreds(certs.RejectRevoked(e.revoked)))
	ren.Register(srv)
	e.addr = tlstest.Serve(t, srv)
	return e
}

// client dials as a fresh credential of siret, returning its cert source.
func (e *env) client(t *testing.T, siret string) (*grpc.ClientConn, *certs.CertSource, *certs.Credential) {
	t.Helper()
	cred := e.pki.Issue(t, identity.KindConsumer, siret)
	conn, src := e.pki.DialSource(t, e.addr, cred)
	return conn, src, cred
}

func reason(err error) (codes.Code, string) {
	st := status.Convert(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return st.Code(), info.GetReason()
		}
	}
	return st.Code(), ""
}

func csr(t *testing.T, uri string, key any) string {
	t.Helper()
	u, _ := url.Parse(uri)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}, URIs: []*url.URL{u}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func TestRenewUnderLoad(t *testing.T) {
	grantEnd := time.Now().Add(3 * 24 * time.Hour)
	e := start(t, grantEnd)
	conn, src, old := e.client(t, siretA)
	var renewed atomic.Int32
	r, err := renewer.New(renewer.Config{Source: src, Conn: conn, Dir: t.TempDir(), OnRenew: func(*x509.Certificate) { renewed.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	// Continuous calls on the connection and on fresh connections (which
	// handshake with whatever certificate is current) while renewing.
	stop := make(chan struct{})
	var calls, failures atomic.Int32
	var wg sync.WaitGroup
	call := func(c *grpc.ClientConn) {
		_, err := healthcoverv1.NewSolidarityHealthCoverServiceClient(c).GetSolidarityHealthCover(context.Background(), &healthcoverv1.GetSolidarityHealthCoverRequest{})
		// No source is configured: the call goes through authn and
		// validation and is refused there, which is enough to prove the
		// credential is accepted.
		if code, _ := reason(err); code == codes.Unauthenticated || code == codes.Unavailable {
			failures.Add(1)
			t.Errorf("call failed during renewal: %v", err)
		}
		calls.Add(1)
	}
	for range 2 {
		wg.Go(func() {
			for i := 0; i < 500; i++ {
				select {
				case <-stop:
					return
				default:
				}
				call(conn)
			}
		})
	}
	for i := 0; i < 3; i++ {
		if err := r.RenewNow(context.Background()); err != nil {
			t.Fatalf("renewal %d: %v", i, err)
		}
		fresh, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(credentials.NewTLS(certs.ClientConfig(src, e.pki.Roots, "localhost"))))
		if err != nil {
			t.Fatal(err)
		}
		call(fresh)
		_ = fresh.Close()
	}
	close(stop)
	wg.Wait()
	if failures.Load() != 0 || renewed.Load() != 3 {
		t.Fatalf("%d failed calls of %d, %d renewals", failures.Load(), calls.Load(), renewed.Load())
	}
	t.Logf("%d calls during 3 renewals, 0 failed", calls.Load())
	leaf := src.Certificate().Leaf
	if identity.SerialHex(leaf) == old.Serial {
		t.Fatal("the certificate was not replaced")
	}
	id, err := identity.FromCertificate(leaf)
	if err != nil || id.ID != siretA {
		t.Fatalf("renewed identity %v, %v", id, err)
	}
	if leaf.NotAfter.After(grantEnd) {
		t.Fatalf("renewed certificate ends %s, after the grant (%s)", leaf.NotAfter, grantEnd)
	}
	recs := e.audit.Records()
	n := 0
	for _, rec := range recs {
		if rec.Method == renewal.Method && rec.Code == "OK" && rec.Consumer == siretA {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("%d renewal audit records, want 3", n)
	}
}

func TestRenewRefusals(t *testing.T) {
	e := start(t, time.Now().Add(3*24*time.Hour))
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	connA, _, credA := e.client(t, siretA)
	connB, _, _ := e.client(t, siretB)
	connS, _, _ := e.client(t, siretSuspended)
	connRevoked, _, credRevoked := e.client(t, siretA)
	_ = credA
	renew := func(c *grpc.ClientConn, csrPEM string) error {
		_, err := credentialsv1.NewCredentialServiceClient(c).Renew(context.Background(), &credentialsv1.RenewRequest{CsrPem: csrPEM})
		return err
	}
	// Open the revoked client's connection before revoking.
	if err := renew(connRevoked, csr(t, "urn:relais:consumer:"+siretA, ecKey)); err != nil {
		t.Fatal(err)
	}
	e.revoked.Add(credRevoked.Serial)
	for _, tc := range []struct {
		name   string
		conn   *grpc.ClientConn
		csr    string
		code   codes.Code
		reason string
	}{
		{"foreign identity", connA, csr(t, "urn:relais:consumer:"+siretB, ecKey), codes.InvalidArgument, "invalid_csr"},
		{"weak RSA key", connA, csr(t, "urn:relais:consumer:"+siretA, weak), codes.InvalidArgument, "invalid_csr"},
		{"garbage", connA, "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", codes.InvalidArgument, "invalid_csr"},
		{"empty", connA, "", codes.InvalidArgument, "invalid_csr"},
		{"no grant", connB, csr(t, "urn:relais:consumer:"+siretB, ecKey), codes.PermissionDenied, "no_grant"},
		{"suspended", connS, csr(t, "urn:relais:consumer:"+siretSuspended, ecKey), codes.PermissionDenied, "consumer_suspended"},
		{"revoked", connRevoked, csr(t, "urn:relais:consumer:"+siretA, ecKey), codes.Unauthenticated, "credential_revoked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, r := reason(renew(tc.conn, tc.csr))
			if code != tc.code || r != tc.reason {
				t.Fatalf("got %s/%q, want %s/%q", code, r, tc.code, tc.reason)
			}
		})
	}
}
