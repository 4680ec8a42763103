package broker_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/relais-broker/relais/broker"
	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/scope"
	"github.com/relais-broker/relais/broker/source"
	"github.com/relais-broker/relais/broker/subject"
	"github.com/relais-broker/relais/certs"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
	healthcoverv1 "github.com/relais-broker/relais/proto/relais/healthcover/v1"
)

// Fictitious consumers of the tests.
const (
	sirenFull      = "21990000100005" // every scope, purpose "cantine"
	sirenLimited   = "21990000200003" // family quotient value only
	sirenSuspended = "21990000300001"
	sirenUnknown   = "21990000400009" // has a certificate, not registered
	fqService      = "relais.familyquotient.v1.FamilyQuotientService"
	c2sService     = "relais.healthcover.v1.SolidarityHealthCoverService"
)

var testNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

var testPseudonyms = func() *subject.Pseudonymizer {
	p, err := subject.New(bytes.Repeat([]byte{42}, 32))
	if err != nil {
		panic(err)
	}
	return p
}()

// fakeAdapter is a hand-written source: it counts calls, remembers the
// scopes it was given and answers what the test sets.
type fakeAdapter struct {
	mu     sync.Mutex
	calls  int
	scopes []scope.Set
	answer func(ctx context.Context, req source.Request) (proto.Message, error)
}

func (f *fakeAdapter) Fetch(ctx context.Context, req source.Request) (proto.Message, error) {
	f.mu.Lock()
	f.calls++
	f.scopes = append(f.scopes, req.Scopes)
	answer := f.answer
	f.mu.Unlock()
	if answer != nil {
		return answer(ctx, req)
	}
	return fullResponse(req.Method), nil
}

func (f *fakeAdapter) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakeAdapter) setAnswer(a func(ctx context.Context, req source.Request) (proto.Message, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answer = a
}

func sourceMeta() *commonv1.SourceMetadata {
	return &commonv1.SourceMetadata{SourceId: "fake", Provider: "CNAF", ProducedAt: timestamppb.New(testNow)}
}

func fullResponse(method string) proto.Message {
	switch method {
	case "/" + fqService + "/GetFamilyQuotient":
		return &familyquotientv1.GetFamilyQuotientResponse{
			Source: sourceMeta(), Value: proto.Int32(612), ReferenceYear: proto.Int32(2026), ReferenceMonth: proto.Int32(5),
			Regime:        familyquotientv1.Regime_REGIME_CNAF,
			Beneficiaries: []*commonv1.Person{{BirthName: "ALPHA", GivenNames: []string{"Test"}}},
			Children:      []*commonv1.Person{{BirthName: "ALPHA", GivenNames: []string{"Kid"}, BirthDate: "2015-01-02"}},
			Address:       &commonv1.PostalAddress{StreetLine: "1 rue de l'Essai", PostalCode: "75001", City: "PARIS"},
		}
	case "/" + c2sService + "/GetSolidarityHealthCover":
		return &healthcoverv1.GetSolidarityHealthCoverResponse{Source: sourceMeta(), IsBeneficiary: proto.Bool(true),
			WithFinancialParticipation: proto.Bool(false), RightsStartDate: "2026-01-01", RightsEndDate: "2026-12-31"}
	}
	return nil
}

type harness struct {
	addr     string
	adapter  *fakeAdapter
	audit    *audit.Memory
	registry *registry.Memory
	ca       *certs.DevCA
	roots    *x509.CertPool
	clock    *fakeClock
	dir      string
	revoked  *certs.Revocations
	broker   *broker.Broker
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newHarness starts a broker on 127.0.0.1 over real mTLS with the fake
// adapter behind the family-quotient and C2S services (the student
// services are left without source).
func newHarness(t *testing.T, quota registry.Quota) *harness {
	t.Helper()
	h := &harness{adapter: &fakeAdapter{}, audit: &audit.Memory{}, clock: &fakeClock{now: testNow}, dir: t.TempDir(), revoked: certs.NewRevocations()}
	ca, err := certs.OpenDevCA(h.dir, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	h.ca = ca
	bundle, err := ca.TrustBundle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	h.roots = x509.NewCertPool()
	h.roots.AppendCertsFromPEM(bundle)
	trust := certs.NewTrustPool()
	if err := trust.Set(bundle); err != nil {
		t.Fatal(err)
	}
	serverCred, err := ca.IssueServer(context.Background(), []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	serverCert := certs.NewCertSource()
	if err := serverCert.Set(serverCred.CertPEM, serverCred.KeyPEM); err != nil {
		t.Fatal(err)
	}

	canteen := []registry.Purpose{{Code: "cantine", Label: "Cantine", LegalBasis: "CRPA L114-8"}}
	window := func(g registry.Grant) registry.Grant {
		g.NotBefore, g.NotAfter, g.Quota, g.Purposes = testNow.Add(-time.Hour), testNow.Add(24*time.Hour), quota, canteen
		return g
	}
	cat := catalog.Default()
	fqScopes, _ := cat.ServiceScopes(fqService)
	c2sScopes, _ := cat.ServiceScopes(c2sService)
	h.registry = registry.NewMemory(
		[]registry.Consumer{
			{SIRET: sirenFull, Name: "Full", Status: registry.StatusActive},
			{SIRET: sirenLimited, Name: "Limited", Status: registry.StatusActive},
			{SIRET: sirenSuspended, Name: "Suspended", Status: registry.StatusSuspended},
		},
		[]registry.Grant{
			window(registry.Grant{Consumer: sirenFull, Service: fqService, Scopes: fqScopes}),
			window(registry.Grant{Consumer: sirenFull, Service: c2sService, Scopes: c2sScopes}),
			window(registry.Grant{Consumer: sirenLimited, Service: fqService, Scopes: scope.Of("family_quotient.value")}),
			window(registry.Grant{Consumer: sirenSuspended, Service: fqService, Scopes: fqScopes}),
		})
	b, err := broker.New(broker.Config{
		Catalog:     cat,
		Sources:     map[string]broker.Source{fqService: {ID: "fake", Adapter: h.adapter, Timeout: 300 * time.Millisecond}, c2sService: {ID: "fake", Adapter: h.adapter}},
		Registry:    h.registry,
		Audit:       h.audit,
		Clock:       h.clock.Now,
		Revocations: h.revoked,
		Pseudonyms:  testPseudonyms,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.broker = b
	srv, _ := b.NewGRPCServer(grpc.Creds(credentials.NewTLS(certs.ServerConfig(serverCert, trust, certs.RejectRevoked(h.revoked)))))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = lis.Addr().String()
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return h
}

// conn dials the broker as the holder of a certificate for kind/id.
func (h *harness) conn(t *testing.T, kind identity.Kind, id string) *grpc.ClientConn {
	t.Helper()
	cc, _ := h.connCred(t, kind, id)
	return cc
}

// connCred is conn that also returns the credential it dialled with.
func (h *harness) connCred(t *testing.T, kind identity.Kind, id string) (*grpc.ClientConn, *certs.Credential) {
	t.Helper()
	cred, err := h.ca.IssueClient(context.Background(), certs.ClientRequest{Kind: kind, ID: id, CommonName: "test " + id, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return h.dialCred(t, cred), cred
}

// dialCred opens a new connection presenting cred.
func (h *harness) dialCred(t *testing.T, cred *certs.Credential) *grpc.ClientConn {
	t.Helper()
	src := certs.NewCertSource()
	if err := src.Set(cred.CertPEM, cred.KeyPEM); err != nil {
		t.Fatal(err)
	}
	return h.dial(t, certs.ClientConfig(src, h.roots, "localhost"))
}

func (h *harness) dial(t *testing.T, cfg *tls.Config) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// validFQ is a valid family-quotient request.
func validFQ() *familyquotientv1.GetFamilyQuotientRequest {
	return &familyquotientv1.GetFamilyQuotientRequest{
		AccessContext: &commonv1.AccessContext{Recipient: sirenFull, Purpose: "cantine", CaseReference: "DOSSIER-1"},
		Subject: &commonv1.SubjectIdentity{BirthName: "Alpha", GivenNames: []string{"Test"}, Sex: commonv1.Sex_SEX_FEMALE,
			BirthDate: "1980-01-02", BirthPlaceCog: "75056", BirthCountryCog: "99100"},
	}
}
