package portal

import (
	"context"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relais-broker/relais/internal/localserver"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/citizen"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/scope"
	"github.com/relais-broker/relais/broker/subject"
	"github.com/relais-broker/relais/broker/transparency"
	"github.com/relais-broker/relais/internal/devidp"
	"github.com/relais-broker/relais/internal/devidp/devidptest"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
)

// Test bodies (valid SIRETs) and citizens of devidptest.Users().
const (
	sirTown   = "21690123100011"
	sirCCAS   = "26690123400010"
	sirFraud  = "13000000000005"
	zoe       = "DUPONT Zoé"
	camille   = "LEROY Camille"
	fqService = "relais.familyquotient.v1.FamilyQuotientService"
	fqMethod  = "/" + fqService + "/GetFamilyQuotient"
)

var testKey = subject.Key("relais-portal-test-pseudonym-key-0123456789")

// clock is an injected, settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// recordingLister remembers every pseudonym the portal asked for.
type recordingLister struct {
	inner AccessLister
	mu    sync.Mutex
	asked []string
}

func (r *recordingLister) Accesses(ctx context.Context, p string, v transparency.View) ([]transparency.Access, error) {
	r.mu.Lock()
	r.asked = append(r.asked, p)
	r.mu.Unlock()
	if v != transparency.CitizenView {
		panic("the portal asked for another view than the citizen's")
	}
	return r.inner.Accesses(ctx, p, v)
}

func (r *recordingLister) Asked() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.asked...)
}

// recordingResolver keeps the tokens it was given, to scan logs for them.
type recordingResolver struct {
	inner  IdentityResolver
	mu     sync.Mutex
	tokens []string
}

func (r *recordingResolver) Resolve(ctx context.Context, tok string) (*commonv1.SubjectIdentity, error) {
	r.mu.Lock()
	r.tokens = append(r.tokens, tok)
	r.mu.Unlock()
	return r.inner.Resolve(ctx, tok)
}

// memAudit is an in-memory subject index.
type memAudit struct {
	mu   sync.Mutex
	recs []audit.Record
}

func (m *memAudit) Subject(_ context.Context, p string) ([]audit.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []audit.Record
	for _, r := range m.recs {
		if r.Subject == p {
			out = append(out, r)
		}
	}
	return out, nil
}

func (m *memAudit) add(rs ...audit.Record) {
	m.mu.Lock()
	m.recs = append(m.recs, rs...)
	m.mu.Unlock()
}

// memRegistry is the registry part transparency reads.
type memRegistry struct {
	consumers []registry.Consumer
	grants    []registry.Grant
}

func (m *memRegistry) Consumer(_ context.Context, siret string) (registry.Consumer, error) {
	for _, c := range m.consumers {
		if c.SIRET == siret {
			return c, nil
		}
	}
	return registry.Consumer{}, registry.ErrNotFound
}

func (m *memRegistry) ListGrants(_ context.Context, f registry.GrantFilter) ([]registry.Grant, error) {
	var out []registry.Grant
	for _, g := range m.grants {
		if f.Consumer == "" || g.Consumer == f.Consumer {
			out = append(out, g)
		}
	}
	return out, nil
}

// testConsumers and testGrants are the bodies of the tests: a town hall,
// a social action centre and a fraud-control body whose grant defers
// disclosure by 90 days.
func testConsumers() []registry.Consumer {
	return []registry.Consumer{
		{SIRET: sirTown, Name: "Mairie de Villeurbanne", Status: registry.StatusActive, Contacts: []registry.Contact{{Name: "Délégué à la protection des données", Email: "dpo@mairie-villeurbanne.example", Phone: "04 00 00 00 00"}}},
		{SIRET: sirCCAS, Name: "CCAS de Villeurbanne", Status: registry.StatusActive, Contacts: []registry.Contact{{Name: "Service social", Email: "ccas@villeurbanne.example"}}},
		{SIRET: sirFraud, Name: "Cellule de contrôle des fraudes", Status: registry.StatusActive},
	}
}

const fraudReference = "Code de la sécurité sociale, art. L114-9"

func testGrants(start time.Time) []registry.Grant {
	g := func(consumer, code, label, basis string, d registry.Disclosure) registry.Grant {
		return registry.Grant{Consumer: consumer, Service: fqService, Scopes: scope.Of("family_quotient.value", "family_quotient.children", "family_quotient.address"),
			Purposes:  []registry.Purpose{{Code: code, Label: label, LegalBasis: basis}},
			NotBefore: start.AddDate(-1, 0, 0), NotAfter: start.AddDate(2, 0, 0), Quota: registry.Quota{RatePerSecond: 10, Burst: 10},
			Designations: []string{registry.DesignationTyped, registry.DesignationCitizenLogin}, Disclosure: d}
	}
	return []registry.Grant{
		g(sirTown, "cantine", "Tarif de la cantine scolaire", "Code de l'éducation, art. L131-13", registry.Disclosure{}),
		g(sirCCAS, "aide_sociale", "Aide sociale facultative", "CASF, art. L123-5", registry.Disclosure{}),
		g(sirFraud, "controle", "Contrôle des prestations", "CSS, art. L114-10", registry.Disclosure{Delay: 90 * 24 * time.Hour, LegalReference: fraudReference}),
	}
}

// identityOf is the identity the resolver reads for a devidptest user.
func identityOf(t testing.TB, label string) *commonv1.SubjectIdentity {
	t.Helper()
	for _, u := range devidptest.Users() {
		l := u.Label
		if l == "" {
			l = u.BirthName + " " + u.GivenNames[0]
		}
		if l != label {
			continue
		}
		sex := commonv1.Sex_SEX_FEMALE
		if u.Gender == devidp.GenderMale {
			sex = commonv1.Sex_SEX_MALE
		}
		return &commonv1.SubjectIdentity{GivenNames: u.GivenNames, BirthName: u.BirthName, UsageName: u.UsageName, Sex: sex,
			BirthDate: u.BirthDate, BirthPlaceCog: u.BirthPlaceCOG, BirthCountryCog: u.BirthCountryCOG}
	}
	t.Fatalf("no test citizen %s", label)
	return nil
}

// brokerPseudonym is the pseudonym the broker writes for a data call on
// this citizen, computed as the broker does, from the request.
func brokerPseudonym(t testing.TB, label string) string {
	p, err := subject.New(testKey)
	if err != nil {
		t.Fatal(err)
	}
	return p.Of(&familyquotientv1.GetFamilyQuotientRequest{Subject: identityOf(t, label)})
}

// accessRecord is the audit record of a family-quotient call by consumer
// on the citizen with this pseudonym, as the broker writes it.
func accessRecord(pseudo, ref, consumer, purpose string, at time.Time) audit.Record {
	return audit.Record{Time: at, RequestID: ref, Consumer: consumer, Recipient: consumer, CertSerial: "01:02", Method: fqMethod,
		Purpose: purpose, CaseReference: "dossier-" + ref, Subject: pseudo, FieldsRequested: []string{"value", "children"},
		FieldsReturned: []string{"value", "reference_year", "children.birth_date"}, Source: "sandbox", Code: "OK", Latency: 3 * time.Millisecond}
}

type stackOptions struct {
	audit    transparency.AuditReader
	registry transparency.Registry
	limits   Limits
	// resolver replaces the real broker/citizen resolver (logic tests).
	resolver IdentityResolver
	// discloseNow is the transparency clock (the portal's when nil).
	discloseNow func() time.Time
	idpDown     bool
}

// stack is a portal served over real TLS on 127.0.0.1, logging in
// through the real dev provider.
type stack struct {
	t        testing.TB
	idp      *devidptest.Server
	srv      *httptest.Server
	portal   *Portal
	base     string
	clock    *clock
	lister   *recordingLister
	resolver *recordingResolver
	logs     *localserver.Buffer
	metrics  *prometheus.Registry
	sessions *MemoryStore
}

var t0 = time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)

func newStack(t testing.TB, o stackOptions) *stack {
	t.Helper()
	s := &stack{t: t, clock: &clock{t: time.Now()}, logs: &localserver.Buffer{}, metrics: prometheus.NewRegistry()}
	s.srv = httptest.NewUnstartedServer(nil)
	s.base = "https://" + s.srv.Listener.Addr().String()
	s.idp = devidptest.Start(t, devidptest.Options{Clients: devidp.DefaultClients(s.base+"/callback", devidptest.TransparencySecret)})
	if o.idpDown {
		s.idp.TLS.Close()
	}
	var res IdentityResolver = o.resolver
	if res == nil {
		r, err := citizen.New(citizen.Config{Providers: []citizen.ProviderConfig{{Issuer: s.idp.Issuer, ClientID: devidp.ClientTransparencyPortal, AcceptedACR: []string{"eidas1"}}},
			HTTPClient: s.idp.HTTPClient()})
		if err != nil {
			t.Fatal(err)
		}
		res = r
	}
	s.resolver = &recordingResolver{inner: res}
	if o.audit == nil {
		o.audit = &memAudit{}
	}
	if o.registry == nil {
		o.registry = &memRegistry{consumers: testConsumers(), grants: testGrants(t0)}
	}
	if o.discloseNow == nil {
		o.discloseNow = s.clock.Now
	}
	svc, err := transparency.New(transparency.Config{Audit: o.audit, Registry: o.registry, Now: o.discloseNow})
	if err != nil {
		t.Fatal(err)
	}
	s.lister = &recordingLister{inner: svc}
	pseudo, err := subject.New(testKey)
	if err != nil {
		t.Fatal(err)
	}
	s.sessions = NewMemoryStore(MemoryOptions{Now: s.clock.Now})
	s.portal, err = New(Config{
		BaseURL: s.base, Issuer: s.idp.Issuer, ClientID: devidp.ClientTransparencyPortal, ClientSecret: devidptest.TransparencySecret,
		ACRValues: []string{"eidas1"}, ProviderName: "FranceConnect (démonstration)", HTTPClient: s.idp.HTTPClient(),
		Identities: s.resolver, Pseudonyms: pseudo, Accesses: s.lister, Sessions: s.sessions, Now: s.clock.Now,
		Registerer: s.metrics, Logger: slog.New(slog.NewTextHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Limits: o.limits,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.srv.Config.Handler = s.portal
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	return s
}

// client is a browser-like HTTP client: a cookie jar, the test
// certificate trusted (portal and provider share it), redirects followed.
func (s *stack) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	c := s.srv.Client()
	return &http.Client{Transport: c.Transport, Jar: jar, Timeout: 10 * time.Second}
}

// noRedirect is client c that stops at the first redirect.
func noRedirect(c *http.Client) *http.Client {
	cc := *c
	cc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cc
}

var (
	reRequestID = regexp.MustCompile(`name="authRequestID" value="([^"]+)"`)
	reCitizen   = regexp.MustCompile(`<input type="radio" name="citizen" id="[^"]*" value="([^"]+)" data-label="([^"]+)"`)
)

// login goes through the real login flow as citizen label from a page
// that has led to the provider's login page (resp), and returns the
// portal's answer after the callback.
func (s *stack) choose(c *http.Client, resp *http.Response, label string) *http.Response {
	s.t.Helper()
	body := readAll(s.t, resp)
	m := reRequestID.FindStringSubmatch(body)
	if m == nil {
		s.t.Fatalf("not the provider's login page (%s %d): %.300s", resp.Request.URL.Path, resp.StatusCode, body)
	}
	id := ""
	for _, c := range reCitizen.FindAllStringSubmatch(body, -1) {
		if html.UnescapeString(c[2]) == label {
			id = html.UnescapeString(c[1])
		}
	}
	if id == "" {
		s.t.Fatalf("no citizen %s on the login page", label)
	}
	action, _ := resp.Request.URL.Parse("login")
	out, err := c.PostForm(action.String(), url.Values{"authRequestID": {html.UnescapeString(m[1])}, "citizen": {id}})
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// login logs label in with client c and returns the page it lands on.
func (s *stack) login(c *http.Client, label string) (*http.Response, string) {
	s.t.Helper()
	resp, err := c.Get(s.base + "/login")
	if err != nil {
		s.t.Fatal(err)
	}
	out := s.choose(c, resp, label)
	return out, readAll(s.t, out)
}

func (s *stack) get(c *http.Client, path string) (*http.Response, string) {
	s.t.Helper()
	resp, err := c.Get(s.base + path)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp, readAll(s.t, resp)
}

func readAll(t testing.TB, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var reCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrfOf reads the logout form's token from a page.
func csrfOf(t testing.TB, page string) string {
	t.Helper()
	m := reCSRF.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no csrf token on the page")
	}
	return html.UnescapeString(m[1])
}

// cookie returns the value of the named cookie the jar holds for the portal.
func (s *stack) cookie(c *http.Client, name string) string {
	u, _ := url.Parse(s.base)
	for _, k := range c.Jar.Cookies(u) {
		if k.Name == name {
			return k.Value
		}
	}
	return ""
}

func isHome(page string) bool {
	return strings.Contains(page, `id="login"`) && !strings.Contains(page, `id="logout"`)
}

func isAccesses(page string) bool {
	return strings.Contains(page, `id="logout"`) && strings.Contains(page, `id="filters"`)
}
