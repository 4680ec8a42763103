package main_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/relais-broker/relais/internal/devenv"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
)

// portalSession is a citizen's browser on the portal of a running
// relaisd dev: a cookie jar and the dev CA.
type portalSession struct {
	t      *testing.T
	d      *devBroker
	client *http.Client
}

func newPortalSession(t *testing.T, d *devBroker) *portalSession {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(d.dataDir, "dev", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	jar, _ := cookiejar.New(nil)
	return &portalSession{t: t, d: d, client: &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}}
}

var (
	loginRequestID = regexp.MustCompile(`name="authRequestID" value="([^"]+)"`)
	csrfField      = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
)

// login goes from the portal's login link through the provider's login
// page, choosing citizenID, back to the portal's page.
func (s *portalSession) login(citizenID string) string {
	s.t.Helper()
	resp, err := s.client.Get(s.d.portalURL + "/login")
	if err != nil {
		s.t.Fatal(err)
	}
	page := readAll(s.t, resp)
	m := loginRequestID.FindStringSubmatch(page)
	if resp.StatusCode != http.StatusOK || m == nil || !strings.HasPrefix(resp.Request.URL.String(), s.d.issuer) {
		s.t.Fatalf("GET /login ended at %s (%d), not the provider's login page", resp.Request.URL, resp.StatusCode)
	}
	loginURL := resp.Request.URL.ResolveReference(&url.URL{Path: "login"})
	resp, err = s.client.PostForm(loginURL.String(), url.Values{"authRequestID": {m[1]}, "citizen": {citizenID}})
	if err != nil {
		s.t.Fatal(err)
	}
	page = readAll(s.t, resp)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Request.URL.String(), s.d.portalURL) {
		s.t.Fatalf("after the provider's login: %s (%d)", resp.Request.URL, resp.StatusCode)
	}
	return page
}

// exported is the portal's JSON export of the logged-in citizen's
// accesses, as references (request ids) → citizen_initiated; nil when
// the portal answers without a session.
func (s *portalSession) exported() map[string]bool {
	s.t.Helper()
	resp, err := s.client.Get(s.d.portalURL + "/export.json")
	if err != nil {
		s.t.Fatal(err)
	}
	body := readAll(s.t, resp)
	if !strings.HasSuffix(resp.Request.URL.Path, "/export.json") {
		return nil // sent back to the home page: no session
	}
	var doc struct {
		Accesses []struct {
			Reference        string `json:"reference"`
			CitizenInitiated bool   `json:"citizen_initiated"`
		} `json:"accesses"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		s.t.Fatalf("export.json (%d): %v\n%s", resp.StatusCode, err, body)
	}
	out := map[string]bool{}
	for _, r := range doc.Accesses {
		out[r.Reference] = r.CitizenInitiated
	}
	return out
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDevPortalListsEachCitizensOwnAccesses: the portal `relaisd dev`
// serves, reached as a browser does (cookies, redirects through the dev
// provider's login page), lists exactly the accesses the test made to
// each citizen through the demo consumers — typed and citizen-initiated —
// and nothing of anyone else's; logout ends the session.
func TestDevPortalListsEachCitizensOwnAccesses(t *testing.T) {
	d := startDev(t)
	ctx := context.Background()
	call := func(consumer devenv.DemoConsumer, purpose string, req *familyquotientv1.GetFamilyQuotientRequest) string {
		t.Helper()
		req.AccessContext = &commonv1.AccessContext{Recipient: consumer.SIRET, Purpose: purpose, CaseReference: "PORTAIL-1"}
		var md metadata.MD
		if _, err := familyquotientv1.NewFamilyQuotientServiceClient(grpcConn(t, d, consumer.Dir)).GetFamilyQuotient(ctx, req, grpc.Header(&md)); err != nil {
			t.Fatalf("%s: %v", consumer.Dir, err)
		}
		if ids := md.Get("x-request-id"); len(ids) == 1 {
			return ids[0]
		}
		t.Fatal("no x-request-id in the answer")
		return ""
	}
	camille := &commonv1.SubjectIdentity{BirthName: "LEROY", UsageName: "MARTIN", GivenNames: []string{"Camille"}, Sex: commonv1.Sex_SEX_FEMALE,
		BirthDate: "1981-01-17", BirthPlaceCog: "69123", BirthCountryCog: "99100"}
	zoeTyped := call(devenv.FullConsumer, "tarification_sociale", &familyquotientv1.GetFamilyQuotientRequest{Subject: zoeIdentity()})
	zoeByLogin := call(devenv.FullConsumer, "tarification_sociale", &familyquotientv1.GetFamilyQuotientRequest{
		CitizenAccessToken: citizenToken(t, d, d.issuer, "citizen-portal", "DUPONT Zoé")})
	zoeByCCAS := call(devenv.LimitedConsumer, "aide_sociale_facultative", &familyquotientv1.GetFamilyQuotientRequest{Subject: zoeIdentity()})
	camilleTyped := call(devenv.FullConsumer, "tarification_sociale", &familyquotientv1.GetFamilyQuotientRequest{Subject: camille})

	zoe := newPortalSession(t, d)
	if page := zoe.login("dupont-zoe"); !strings.Contains(page, "Mairie d&#39;Exemple-sur-Loire") && !strings.Contains(page, "Mairie d'Exemple-sur-Loire") {
		t.Fatalf("Zoé's page does not name the town hall:\n%s", page)
	}
	if got, want := keys(zoe.exported()), sorted(zoeTyped, zoeByLogin, zoeByCCAS); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("Zoé's accesses %v, want exactly %v", got, want)
	}
	if !zoe.exported()[zoeByLogin] || zoe.exported()[zoeTyped] {
		t.Fatalf("citizen_initiated wrong: %v (by login %s)", zoe.exported(), zoeByLogin)
	}
	other := newPortalSession(t, d)
	other.login("leroy-camille")
	if got := keys(other.exported()); strings.Join(got, " ") != camilleTyped {
		t.Fatalf("Camille's accesses %v, want exactly [%s]", got, camilleTyped)
	}

	// Logout (POST with the page's CSRF token) ends Zoé's session.
	resp, err := zoe.client.Get(d.portalURL + "/")
	if err != nil {
		t.Fatal(err)
	}
	m := csrfField.FindStringSubmatch(readAll(t, resp))
	if m == nil {
		t.Fatal("no CSRF token on the logged-in page")
	}
	noRedirect := *zoe.client
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	req, _ := http.NewRequest(http.MethodPost, d.portalURL+"/logout", strings.NewReader(url.Values{"csrf": {m[1]}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", d.portalURL)
	resp, err = noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode/100 != 3 {
		t.Fatalf("logout answered %d", resp.StatusCode)
	}
	if got := zoe.exported(); got != nil {
		t.Fatalf("after logout the export still answers %v", got)
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sorted(s ...string) []string {
	sort.Strings(s)
	return s
}
