package broker_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

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
	sirenLogin     = "21990000500006" // family quotient by citizen login only
	sirenBoth      = "21990000600004" // family quotient typed or by citizen login
	sirenDeferred  = "21990000700002" // family quotient, accesses disclosed late
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
// scopes and the requests it was given and answers what the test sets.
type fakeAdapter struct {
	mu     sync.Mutex
	calls  int
	scopes []scope.Set
	inputs []proto.Message
	answer func(ctx context.Context, req source.Request) (proto.Message, error)
}

func (f *fakeAdapter) Fetch(ctx context.Context, req source.Request) (proto.Message, error) {
	f.mu.Lock()
	f.calls++
	f.scopes = append(f.scopes, req.Scopes)
	f.inputs = append(f.inputs, proto.Clone(req.Input))
	answer := f.answer
	f.mu.Unlock()
	if answer != nil {
		return answer(ctx, req)
	}
	return fullResponse(req.Method), nil
}

// Inputs are the requests the adapter received, in order.
func (f *fakeAdapter) Inputs() []proto.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]proto.Message(nil), f.inputs...)
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
	httpAddr string
	observer *recordingObserver
	logs     *syncBuffer
	spans    *spanSink
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
func newHarness(t testing.TB, quota registry.Quota, options ...func(*broker.Config)) *harness {
	t.Helper()
	h := &harness{adapter: &fakeAdapter{}, audit: &audit.Memory{}, clock: &fakeClock{now: testNow}, dir: t.TempDir(), revoked: certs.NewRevocations(),
		observer: &recordingObserver{}, logs: &syncBuffer{}, spans: newSpanSink()}
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
			{SIRET: sirenLogin, Name: "Login", Status: registry.StatusActive},
			{SIRET: sirenBoth, Name: "Both", Status: registry.StatusActive},
			{SIRET: sirenDeferred, Name: "Deferred", Status: registry.StatusActive},
		},
		[]registry.Grant{
			window(registry.Grant{Consumer: sirenFull, Service: fqService, Scopes: fqScopes}),
			window(registry.Grant{Consumer: sirenFull, Service: c2sService, Scopes: c2sScopes}),
			window(registry.Grant{Consumer: sirenLimited, Service: fqService, Scopes: scope.Of("family_quotient.value")}),
			window(registry.Grant{Consumer: sirenSuspended, Service: fqService, Scopes: fqScopes}),
			window(registry.Grant{Consumer: sirenLogin, Service: fqService, Scopes: fqScopes, Designations: []string{registry.DesignationCitizenLogin}}),
			window(registry.Grant{Consumer: sirenBoth, Service: fqService, Scopes: fqScopes, Designations: []string{registry.DesignationTyped, registry.DesignationCitizenLogin}}),
			// Two grants deferring disclosure: the longest delay wins.
			window(registry.Grant{Consumer: sirenDeferred, Service: fqService, Scopes: scope.Of("family_quotient.value"),
				Disclosure: registry.Disclosure{Delay: 30 * 24 * time.Hour, LegalReference: "CSS L114-9"}}),
			window(registry.Grant{Consumer: sirenDeferred, Service: fqService, Scopes: fqScopes,
				Disclosure: registry.Disclosure{Delay: 90 * 24 * time.Hour, LegalReference: "CSS L114-17"}}),
		})
	cfg := broker.Config{
		Catalog:        cat,
		Sources:        map[string]broker.Source{fqService: {ID: "fake", Adapter: h.adapter, Timeout: 300 * time.Millisecond}, c2sService: {ID: "fake", Adapter: h.adapter}},
		Registry:       h.registry,
		Audit:          h.audit,
		Clock:          h.clock.Now,
		Revocations:    h.revoked,
		Pseudonyms:     testPseudonyms,
		Observer:       h.observer,
		Logger:         slog.New(slog.NewJSONHandler(h.logs, nil)),
		TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(h.spans)),
	}
	for _, o := range options {
		o(&cfg)
	}
	b, err := broker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.broker = b
	tlsCfg := certs.ServerConfig(serverCert, trust, certs.RejectRevoked(h.revoked))
	srv, _ := b.NewGRPCServer(append(broker.ServerOptions(), grpc.Creds(credentials.NewTLS(tlsCfg)))...)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = lis.Addr().String()
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	// The HTTPS/JSON gateway on its own listener, as relaisd serves it.
	hlis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.httpAddr = hlis.Addr().String()
	web := &http.Server{Handler: b.HTTPHandler(), TLSConfig: tlsCfg, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = web.ServeTLS(hlis, "", "") }()
	t.Cleanup(func() { _ = web.Close() })
	return h
}

// httpClient returns an HTTPS client presenting a fresh certificate for kind/id.
func (h *harness) httpClient(t *testing.T, kind identity.Kind, id string) *http.Client {
	t.Helper()
	cred, err := h.ca.IssueClient(context.Background(), certs.ClientRequest{Kind: kind, ID: id, CommonName: "test " + id, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	src := certs.NewCertSource()
	if err := src.Set(cred.CertPEM, cred.KeyPEM); err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: certs.ClientConfig(src, h.roots, "localhost")}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// recordingObserver is a hand-written broker.Observer (the metrics one
// in relaisd): it keeps what it is told.
// It is told last, after the record and the log line.
type recordingObserver struct {
	mu     sync.Mutex
	recs   []audit.Record
	notify chan struct{}
}

func (o *recordingObserver) ObserveCall(r audit.Record, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.recs = append(o.recs, r)
	if o.notify != nil {
		close(o.notify)
	}
	o.notify = make(chan struct{})
}

// waitFor waits until the call of request id has been observed: it is
// then traced completely.
func (o *recordingObserver) waitFor(t *testing.T, id string) {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		o.mu.Lock()
		for _, r := range o.recs {
			if r.RequestID == id {
				o.mu.Unlock()
				return
			}
		}
		if o.notify == nil {
			o.notify = make(chan struct{})
		}
		notify := o.notify
		o.mu.Unlock()
		select {
		case <-notify:
		case <-timeout.C:
			t.Fatalf("call %s never observed", id)
		}
	}
}

func (o *recordingObserver) Records() []audit.Record {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]audit.Record(nil), o.recs...)
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// conn dials the broker as the holder of a certificate for kind/id.
func (h *harness) conn(t testing.TB, kind identity.Kind, id string) *grpc.ClientConn {
	t.Helper()
	cc, _ := h.connCred(t, kind, id)
	return cc
}

// connCred is conn that also returns the credential it dialled with.
func (h *harness) connCred(t testing.TB, kind identity.Kind, id string) (*grpc.ClientConn, *certs.Credential) {
	t.Helper()
	cred, err := h.ca.IssueClient(context.Background(), certs.ClientRequest{Kind: kind, ID: id, CommonName: "test " + id, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return h.dialCred(t, cred), cred
}

// dialCred opens a new connection presenting cred.
func (h *harness) dialCred(t testing.TB, cred *certs.Credential) *grpc.ClientConn {
	t.Helper()
	src := certs.NewCertSource()
	if err := src.Set(cred.CertPEM, cred.KeyPEM); err != nil {
		t.Fatal(err)
	}
	return h.dial(t, certs.ClientConfig(src, h.roots, "localhost"))
}

func (h *harness) dial(t testing.TB, cfg *tls.Config) *grpc.ClientConn {
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

// spanSink is a span processor that tells the test when spans end, so
// that a test waits for the span instead of racing its end (a server
// span ends after the client has its answer).
type spanSink struct {
	mu     sync.Mutex
	ended  []sdktrace.ReadOnlySpan
	notify chan struct{}
}

func newSpanSink() *spanSink { return &spanSink{notify: make(chan struct{})} }

func (s *spanSink) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (s *spanSink) OnEnd(span sdktrace.ReadOnlySpan) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended = append(s.ended, span)
	close(s.notify)
	s.notify = make(chan struct{})
}
func (s *spanSink) Shutdown(context.Context) error   { return nil }
func (s *spanSink) ForceFlush(context.Context) error { return nil }

// wait returns the first ended span match accepts, waiting for it to end.
func (s *spanSink) wait(t *testing.T, match func(sdktrace.ReadOnlySpan) bool) sdktrace.ReadOnlySpan {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		s.mu.Lock()
		for _, span := range s.ended {
			if match(span) {
				s.mu.Unlock()
				return span
			}
		}
		notify := s.notify
		s.mu.Unlock()
		select {
		case <-notify:
		case <-timeout.C:
			t.Fatal("no matching span ended")
		}
	}
}
