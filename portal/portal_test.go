package portal

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/subject"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
)

// seeded is a stack whose audit index holds accesses for Zoé (three
// bodies, one deferred, one at her initiative, one refused) and Camille.
func seeded(t *testing.T, o stackOptions) (*stack, *memAudit) {
	t.Helper()
	a := &memAudit{}
	pz, pc := brokerPseudonym(t, zoe), brokerPseudonym(t, camille)
	r1 := accessRecord(pz, "ref-zoe-1", sirTown, "cantine", t0.AddDate(0, -2, 0))
	r2 := accessRecord(pz, "ref-zoe-2", sirCCAS, "aide_sociale", t0.AddDate(0, -1, 0))
	r2.SubjectOrigin = audit.OriginCitizenLogin
	r3 := accessRecord(pz, "ref-zoe-3", sirTown, "cantine", t0)
	r3.Code, r3.Reason, r3.FieldsReturned = "PermissionDenied", "scope_not_granted", nil
	r4 := accessRecord(pz, "ref-zoe-deferred", sirFraud, "controle", t0.Add(time.Hour))
	r4.DiscloseAfter, r4.DisclosureReference = t0.Add(time.Hour).AddDate(0, 0, 90), fraudReference
	c1 := accessRecord(pc, "ref-camille-1", sirTown, "cantine", t0.AddDate(0, 0, -3))
	a.add(r1, r2, r3, r4, c1)
	o.audit = a
	return newStack(t, o), a
}

func TestLoginShowsExactlyTheCitizensAccesses(t *testing.T) {
	s, _ := seeded(t, stackOptions{})
	c := s.client()
	_, home := s.get(c, "/")
	if !isHome(home) || !strings.Contains(home, "FranceConnect (démonstration)") {
		t.Fatalf("home page is not the login page: %.500s", home)
	}
	resp, page := s.login(c, zoe)
	if resp.Request.URL.Path != "/" || resp.StatusCode != http.StatusOK || !isAccesses(page) {
		t.Fatalf("after login: %s %d %.500s", resp.Request.URL, resp.StatusCode, page)
	}
	for _, want := range []string{"ref-zoe-1", "ref-zoe-2", "ref-zoe-3", "Mairie de Villeurbanne", sirTown, "Tarif de la cantine scolaire",
		"Code de l&#39;éducation, art. L131-13", "Quotient familial (montant, mois de référence, régime)", "Enfants du foyer",
		"À votre initiative", "Refusée par Relais", "Données transmises", "dpo@mairie-villeurbanne.example", CNILComplaintURL, `lang="fr"`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	for _, hidden := range []string{"ref-camille-1", "ref-zoe-deferred", "Cellule de contrôle des fraudes"} {
		if strings.Contains(page, hidden) {
			t.Errorf("the page shows %q", hidden)
		}
	}
	if !strings.Contains(page, `id="deferred-notice"`) {
		t.Error("no deferred-disclosure notice")
	}
	if asked := s.lister.Asked(); len(asked) == 0 || slices.ContainsFunc(asked, func(p string) bool { return p != brokerPseudonym(t, zoe) }) {
		t.Errorf("the portal asked for pseudonyms %v, want only the broker's pseudonym of Zoé", asked)
	}
	if got := testutil.ToFloat64(s.portal.m.logins.WithLabelValues("succeeded")); got != 1 {
		t.Errorf("logins succeeded = %v", got)
	}
}

func TestSecondCitizenSeesNoneOfTheFirst(t *testing.T) {
	s, _ := seeded(t, stackOptions{})
	_, pz := s.login(s.client(), zoe)
	_, pc := s.login(s.client(), camille)
	if !strings.Contains(pz, "ref-zoe-1") || !strings.Contains(pc, "ref-camille-1") {
		t.Fatal("each citizen should see their own access")
	}
	if strings.Contains(pc, "ref-zoe") || strings.Contains(pz, "ref-camille") {
		t.Error("a citizen sees another's accesses")
	}
}

func TestDeferredAccessShownAfterItsDate(t *testing.T) {
	disclose := &clock{t: t0.Add(2 * time.Hour)}
	s, _ := seeded(t, stackOptions{discloseNow: disclose.Now})
	c := s.client()
	_, page := s.login(c, zoe)
	if strings.Contains(page, "ref-zoe-deferred") {
		t.Fatal("deferred access shown before its date")
	}
	disclose.Set(t0.Add(time.Hour).AddDate(0, 0, 90))
	_, page = s.get(c, "/")
	for _, want := range []string{"ref-zoe-deferred", "Cellule de contrôle des fraudes", "Information différée jusqu&#39;au", fraudReference} {
		if !strings.Contains(page, want) {
			t.Errorf("after its date the page lacks %q", want)
		}
	}
}

func TestFiltersAndExports(t *testing.T) {
	s, _ := seeded(t, stackOptions{})
	c := s.client()
	s.login(c, zoe)
	from := t0.AddDate(0, -1, -1).In(s.portal.loc).Format("2006-01-02")
	_, page := s.get(c, "/?from="+from+"&body="+sirTown)
	if !strings.Contains(page, "ref-zoe-3") || strings.Contains(page, "ref-zoe-1") || strings.Contains(page, "ref-zoe-2") {
		t.Errorf("filtered page rows wrong")
	}
	// The export links carry the filter; the CSV holds exactly those rows.
	resp, body := s.get(c, "/export.csv?from="+from+"&body="+sirTown)
	if cd := resp.Header.Get("Content-Disposition"); resp.StatusCode != 200 || !strings.HasPrefix(cd, "attachment;") || !strings.Contains(cd, ".csv") {
		t.Fatalf("csv export: %d %q", resp.StatusCode, cd)
	}
	rows, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(body, "\ufeff"))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0][0] != "date_heure" || rows[1][1] != "Mairie de Villeurbanne" || rows[1][2] != sirTown || rows[1][9] != "Refusée par Relais" || rows[1][11] != "ref-zoe-3" {
		t.Errorf("csv rows %q", rows)
	}
	// Unfiltered JSON: every visible access, none deferred.
	resp, body = s.get(c, "/export.json?lang=en")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("json export %d", resp.StatusCode)
	}
	var doc jsonExport
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, a := range doc.Accesses {
		refs = append(refs, a.Reference)
	}
	if !slices.Equal(refs, []string{"ref-zoe-3", "ref-zoe-2", "ref-zoe-1"}) || doc.Language != "en" || !doc.Accesses[1].CitizenInitiated ||
		doc.Accesses[2].Purpose.LegalBasis != "Code de l'éducation, art. L131-13" || len(doc.Accesses[2].Categories) != 2 {
		t.Errorf("json export %+v", doc)
	}
	if got := testutil.ToFloat64(s.portal.m.exports.WithLabelValues("csv")); got != 1 {
		t.Errorf("csv exports = %v", got)
	}
}

func TestBadFilterIsRefusedPrecisely(t *testing.T) {
	s, _ := seeded(t, stackOptions{})
	c := s.client()
	s.login(c, zoe)
	for _, tc := range []struct{ query, want string }{
		{"from=2026-13-01", "La date de début doit être une date au format AAAA-MM-JJ."},
		{"to=hier", "La date de fin doit être une date au format AAAA-MM-JJ."},
		{"from=2026-05-02&to=2026-05-01", "La date de début doit précéder la date de fin."},
		{"body=123", "numéro SIRET (14 chiffres)"},
	} {
		resp, page := s.get(c, "/?"+tc.query)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, tc.want) || !strings.Contains(page, `aria-invalid="true"`) {
			t.Errorf("%s: %d, message %q missing", tc.query, resp.StatusCode, tc.want)
		}
		if !strings.Contains(page, "ref-zoe-1") || !strings.Contains(page, "ref-zoe-3") {
			t.Errorf("%s: a refused filter must leave the list as it was", tc.query)
		}
		if resp, _ := s.get(c, "/export.csv?"+tc.query); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("export with %s: %d", tc.query, resp.StatusCode)
		}
	}
}

func TestSessionFixation(t *testing.T) {
	s, _ := seeded(t, stackOptions{})
	c := s.client()
	// An attacker plants a well-formed session id before the login.
	planted, _ := newID()
	u, _ := url.Parse(s.base)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: cookieSession, Value: planted, Path: "/"}})
	// The pre-login cookie, as set by /login.
	resp, err := noRedirect(c).Get(s.base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	prelogin := s.cookie(c, cookieLogin)
	if resp.StatusCode != http.StatusFound || prelogin == "" {
		t.Fatalf("/login: %d, pre-login cookie %q", resp.StatusCode, prelogin)
	}
	follow, err := c.Get(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	page := readAll(t, s.choose(c, follow, zoe))
	if !isAccesses(page) {
		t.Fatal("login failed")
	}
	sid := s.cookie(c, cookieSession)
	if sid == "" || sid == planted || sid == prelogin {
		t.Fatalf("session id %q: must be new, neither the planted %q nor the pre-login %q", sid, planted, prelogin)
	}
	if s.cookie(c, cookieLogin) != "" {
		t.Error("the pre-login cookie outlived the callback")
	}
	for name, v := range map[string]string{"planted id": planted, "pre-login id": prelogin} {
		other := s.client()
		other.Jar.SetCookies(u, []*http.Cookie{{Name: cookieSession, Value: v, Path: "/"}})
		if _, p := s.get(other, "/"); !isHome(p) {
			t.Errorf("the %s opens a session", name)
		}
	}
	// Logging in again replaces the session: the old id is dead.
	s.login(c, zoe)
	if again := s.cookie(c, cookieSession); again == sid {
		t.Error("a second login kept the session id")
	}
	other := s.client()
	other.Jar.SetCookies(u, []*http.Cookie{{Name: cookieSession, Value: sid, Path: "/"}})
	if _, p := s.get(other, "/"); !isHome(p) {
		t.Error("the session replaced by a new login still works")
	}
}

func TestCallbackReplayAndForgedState(t *testing.T) {
	s, _ := seeded(t, stackOptions{})
	c := s.client()
	nr := noRedirect(c)
	resp, _ := nr.Get(s.base + "/login")
	resp.Body.Close()
	auth, _ := c.Get(resp.Header.Get("Location"))
	// Stop at the redirect back to the portal, to replay it.
	body := readAll(t, auth)
	m := reRequestID.FindStringSubmatch(body)
	cm := reCitizen.FindStringSubmatch(body)
	action, _ := auth.Request.URL.Parse("login")
	r, err := nr.PostForm(action.String(), url.Values{"authRequestID": {m[1]}, "citizen": {cm[1]}})
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	next := r.Header.Get("Location")
	for !strings.HasPrefix(next, s.base+"/callback") { // the provider may hop through its own callback
		loc, _ := auth.Request.URL.Parse(next)
		r, err = nr.Get(loc.String())
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		next = r.Header.Get("Location")
	}
	cb, _ := url.Parse(next)
	forged := *cb
	q := forged.Query()
	q.Set("state", "forged")
	forged.RawQuery = q.Encode()
	if resp, page := s.get(c, forged.RequestURI()); resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "La connexion a expiré") {
		t.Errorf("forged state: %d", resp.StatusCode)
	}
	// The forged attempt consumed the pending login: the real callback fails too.
	if resp, _ := s.get(c, cb.RequestURI()); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("callback after a forged one: %d", resp.StatusCode)
	}
	if s.cookie(c, cookieSession) != "" {
		t.Error("a session was opened")
	}
	if got := testutil.ToFloat64(s.portal.m.refusals.WithLabelValues("login_state")); got != 2 {
		t.Errorf("login_state refusals = %v", got)
	}
}

func TestCSRFOnEveryForm(t *testing.T) {
	s, _ := seeded(t, stackOptions{})
	c := s.client()
	_, page := s.login(c, zoe)
	token := csrfOf(t, page)
	// Every POST form of the page carries the token; each refuses without it.
	forms := reForm.FindAllStringSubmatch(page, -1)
	if len(forms) == 0 {
		t.Fatal("no POST form found")
	}
	for _, f := range forms {
		action := f[1]
		if !strings.Contains(f[0], `name="csrf"`) {
			t.Errorf("form %s has no csrf field", action)
		}
		for name, form := range map[string]url.Values{"missing": {}, "wrong": {"csrf": {token[:len(token)-1] + "x"}}, "empty": {"csrf": {""}}} {
			resp, err := noRedirect(c).PostForm(s.base+action, form)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s with %s token: %d, want 403", action, name, resp.StatusCode)
			}
		}
		req, _ := http.NewRequest(http.MethodPost, s.base+action, strings.NewReader(url.Values{"csrf": {token}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "https://evil.example")
		resp, err := noRedirect(c).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s from another origin: %d, want 403", action, resp.StatusCode)
		}
	}
	// The refusals changed nothing: still logged in.
	if _, p := s.get(c, "/"); !isAccesses(p) {
		t.Fatal("a refused logout ended the session")
	}
	if got := testutil.ToFloat64(s.portal.m.refusals.WithLabelValues("csrf")); got != 4 {
		t.Errorf("csrf refusals = %v", got)
	}
	// With the token: the session ends here and at the provider.
	resp, err := noRedirect(c).PostForm(s.base+"/logout", url.Values{"csrf": {token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, s.idp.Issuer) || !strings.Contains(loc, url.QueryEscape(s.base+"/")) {
		t.Fatalf("logout: %d to %q", resp.StatusCode, loc)
	}
	if n, _ := s.sessions.Len(); n != 0 {
		t.Errorf("%d sessions left after logout", n)
	}
	back, err := c.Get(loc)
	if err != nil {
		t.Fatal(err)
	}
	if p := readAll(t, back); back.Request.URL.String() != s.base+"/" || !isHome(p) {
		t.Errorf("after the provider's logout: %s", back.Request.URL)
	}
}

var reForm = regexp.MustCompile(`(?s)<form method="post" action="([^"]+)".*?</form>`)

func TestCookieFlags(t *testing.T) {
	s, _ := seeded(t, stackOptions{})
	c := s.client()
	nr := noRedirect(c)
	check := func(resp *http.Response, name string) {
		t.Helper()
		var found bool
		for _, k := range resp.Cookies() {
			if k.Name != name {
				continue
			}
			found = true
			if !strings.HasPrefix(k.Name, "__Host-") || !k.Secure || !k.HttpOnly || k.SameSite != http.SameSiteLaxMode || k.Path != "/" || k.Domain != "" {
				t.Errorf("cookie %s: %+v", name, k)
			}
		}
		if !found {
			t.Errorf("no cookie %s set", name)
		}
	}
	resp, _ := nr.Get(s.base + "/?lang=en")
	resp.Body.Close()
	check(resp, cookieLang)
	resp, _ = nr.Get(s.base + "/login")
	resp.Body.Close()
	check(resp, cookieLogin)
	// Walk the flow by hand to see the callback's Set-Cookie.
	auth, _ := c.Get(resp.Header.Get("Location"))
	body := readAll(t, auth)
	action, _ := auth.Request.URL.Parse("login")
	r, _ := nr.PostForm(action.String(), url.Values{"authRequestID": {reRequestID.FindStringSubmatch(body)[1]}, "citizen": {reCitizen.FindStringSubmatch(body)[1]}})
	r.Body.Close()
	for next := r.Header.Get("Location"); ; next = r.Header.Get("Location") {
		loc, _ := auth.Request.URL.Parse(next)
		r, _ = nr.Get(loc.String())
		r.Body.Close()
		if strings.HasPrefix(loc.String(), s.base+"/callback") {
			break
		}
	}
	check(r, cookieSession)
	if got := r.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("callback Cache-Control %q", got)
	}
	_, page := s.get(c, "/")
	if !isAccesses(page) {
		t.Fatal("not logged in")
	}
	resp, _ = c.Get(s.base + "/")
	resp.Body.Close()
	for h, want := range map[string]string{"Cache-Control": "no-store", "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe") {
		t.Errorf("CSP %q", csp)
	}
}

func TestTamperedOrForeignSessionShowsLogin(t *testing.T) {
	s, _ := seeded(t, stackOptions{})
	c := s.client()
	s.login(c, zoe)
	sid := s.cookie(c, cookieSession)
	flip := []byte(sid)
	if flip[5] == 'A' {
		flip[5] = 'B'
	} else {
		flip[5] = 'A'
	}
	u, _ := url.Parse(s.base)
	for name, v := range map[string]string{"tampered": string(flip), "truncated": sid[:42], "extended": sid + "A", "garbage": "not-a-session", "foreign": "x" + strings.Repeat("A", 42)} {
		other := s.client()
		other.Jar.SetCookies(u, []*http.Cookie{{Name: cookieSession, Value: v, Path: "/"}})
		resp, page := s.get(other, "/")
		if !isHome(page) {
			t.Errorf("%s session id: not the login page", name)
		}
		if !slices.ContainsFunc(resp.Cookies(), func(k *http.Cookie) bool { return k.Name == cookieSession && k.MaxAge < 0 }) {
			t.Errorf("%s session id: cookie not cleared", name)
		}
		if r, _ := s.get(other, "/export.csv"); r.Request.URL.Path != "/" {
			t.Errorf("%s session id: export answered", name)
		}
	}
}

func TestNoParameterReachesAnotherPseudonym(t *testing.T) {
	s, _ := seeded(t, stackOptions{})
	c := s.client()
	s.login(c, zoe)
	other := brokerPseudonym(t, camille)
	for _, path := range []string{
		"/?pseudonym=" + other, "/?subject=" + other, "/?subject_pseudonym=" + other, "/?body=" + sirTown + "&pseudonym=" + other,
		"/export.csv?pseudonym=" + other, "/export.json?subject=" + other, "/" + other, "/accesses/" + other, "/export.json/" + other,
		"/?lang=en&pseudonym=" + other + "&from=2020-01-01",
	} {
		_, page := s.get(c, path)
		if strings.Contains(page, "ref-camille") {
			t.Errorf("%s shows Camille's accesses", path)
		}
	}
	for _, p := range s.lister.Asked() {
		if p != brokerPseudonym(t, zoe) {
			t.Fatalf("the lister was asked for another pseudonym")
		}
	}
	// And the pseudonym itself is never shown nor put in a URL.
	_, page := s.get(c, "/")
	if strings.Contains(page, brokerPseudonym(t, zoe)) {
		t.Error("the page shows the pseudonym")
	}
}

func TestLogsHoldNoPersonalData(t *testing.T) {
	s, _ := seeded(t, stackOptions{})
	c := s.client()
	_, page := s.login(c, zoe)
	s.get(c, "/export.csv")
	s.get(c, "/?from=2026-01-01")
	if _, err := c.PostForm(s.base+"/logout", url.Values{"csrf": {csrfOf(t, page)}}); err != nil {
		t.Fatal(err)
	}
	logs := s.logs.String()
	if !strings.Contains(logs, "portal login") || !strings.Contains(logs, "portal logout") {
		t.Fatalf("expected login and logout lines, got:\n%s", logs)
	}
	secrets := []string{brokerPseudonym(t, zoe), "DUPONT", "Zoé", "1984-03-12", "75056", "ref-zoe", "2026-01-01"}
	s.resolver.mu.Lock()
	secrets = append(secrets, s.resolver.tokens...)
	s.resolver.mu.Unlock()
	if len(secrets) < 8 {
		t.Fatal("the resolver saw no token")
	}
	for _, sec := range secrets {
		if strings.Contains(logs, sec) {
			t.Errorf("the log holds personal data or a token (%.8s…)", sec)
		}
	}
	// Nor does the session store: only a pseudonym and the CSRF token.
	s.sessions.mu.Lock()
	defer s.sessions.mu.Unlock()
	for _, sess := range s.sessions.sessions {
		if sess.Pseudonym == "" || len(sess.CSRF) != 43 {
			t.Errorf("session %+v", sess)
		}
	}
}

func TestLanguages(t *testing.T) {
	s, _ := seeded(t, stackOptions{})
	c := s.client()
	req, _ := http.NewRequest(http.MethodGet, s.base+"/", nil)
	req.Header.Set("Accept-Language", "en-GB,en;q=0.9,fr;q=0.5")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if p := readAll(t, resp); !strings.Contains(p, `<html lang="en">`) || !strings.Contains(p, "Know who accessed your data") {
		t.Error("Accept-Language en does not give English")
	}
	_, p := s.get(c, "/")
	if !strings.Contains(p, `<html lang="fr">`) {
		t.Error("French is not the default")
	}
	s.get(c, "/?lang=en")
	_, p = s.get(c, "/")
	if !strings.Contains(p, `<html lang="en">`) {
		t.Error("the explicit choice is not remembered")
	}
	_, p = s.login(c, zoe)
	if !strings.Contains(p, "Accesses to your data") || !strings.Contains(p, "Data returned") || !strings.Contains(p, "At your initiative") {
		t.Error("the accesses page is not in English")
	}
}

func TestMessagesComplete(t *testing.T) {
	for k := range messages[langFR] {
		if messages[langEN][k] == "" {
			t.Errorf("no English text for %s", k)
		}
	}
	for k := range messages[langEN] {
		if messages[langFR][k] == "" {
			t.Errorf("no French text for %s", k)
		}
	}
}

func TestRateLimits(t *testing.T) {
	s, _ := seeded(t, stackOptions{limits: Limits{LoginsPerMinute: 2, PagesPerSecond: 1, PagesBurst: 3}})
	nr := noRedirect(s.client())
	codes := []int{}
	for range 3 {
		resp, err := nr.Get(s.base + "/login")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
	}
	if !slices.Equal(codes, []int{302, 302, 429}) {
		t.Errorf("login codes %v", codes)
	}
	codes = codes[:0]
	for range 4 {
		resp, _ := nr.Get(s.base + "/")
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
	}
	if !slices.Equal(codes, []int{200, 200, 200, 429}) {
		t.Errorf("page codes %v", codes)
	}
	s.clock.Advance(time.Second) // the injected clock refills the bucket
	if resp, _ := nr.Get(s.base + "/"); resp.StatusCode != 200 {
		t.Errorf("after a second: %d", resp.StatusCode)
	}
	if got := testutil.ToFloat64(s.portal.m.refusals.WithLabelValues("rate_limited")); got != 2 {
		t.Errorf("rate_limited refusals = %v", got)
	}
}

func TestProviderDown(t *testing.T) {
	s, _ := seeded(t, stackOptions{idpDown: true})
	resp, page := s.get(s.client(), "/login")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(page, "Le service d&#39;identité ne répond pas") {
		t.Errorf("provider down: %d", resp.StatusCode)
	}
	if resp, p := s.get(s.client(), "/"); resp.StatusCode != 200 || !isHome(p) {
		t.Error("the home page needs the provider")
	}
}

// failingResolver refuses every token, as the broker's resolver does for
// a token of another audience.
type failingResolver struct{}

func (failingResolver) Resolve(context.Context, string) (*commonv1.SubjectIdentity, error) {
	return nil, errors.New("citizen_token_invalid")
}

func TestResolverRefusalOpensNoSession(t *testing.T) {
	s, _ := seeded(t, stackOptions{resolver: failingResolver{}})
	c := s.client()
	resp, page := s.login(c, zoe)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(page, "La connexion n&#39;a pas abouti") || s.cookie(c, cookieSession) != "" {
		t.Errorf("refused identity: %d, session %q", resp.StatusCode, s.cookie(c, cookieSession))
	}
	if n, _ := s.sessions.Len(); n != 0 {
		t.Errorf("%d sessions", n)
	}
}

func TestPseudonymIsTheBrokers(t *testing.T) {
	p, _ := subject.New(testKey)
	for _, label := range []string{zoe, camille} {
		if got, want := p.OfIdentity(identityOf(t, label)), brokerPseudonym(t, label); got != want || got == "" {
			t.Errorf("%s: portal pseudonym %s, broker's %s", label, got, want)
		}
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	p, _ := subject.New(testKey)
	ok := Config{BaseURL: "https://127.0.0.1:8444", Issuer: "https://127.0.0.1:8445", ClientID: "transparency-portal",
		Identities: failingResolver{}, Pseudonyms: p, Accesses: &recordingLister{}}
	if _, err := New(ok); err != nil {
		t.Fatalf("good config refused: %v", err)
	}
	for name, mod := range map[string]func(*Config){
		"http base":        func(c *Config) { c.BaseURL = "http://127.0.0.1:8444" },
		"base with path":   func(c *Config) { c.BaseURL = "https://127.0.0.1:8444/portal" },
		"http issuer":      func(c *Config) { c.Issuer = "http://idp.example" },
		"no client":        func(c *Config) { c.ClientID = "" },
		"no resolver":      func(c *Config) { c.Identities = nil },
		"no pseudonymiser": func(c *Config) { c.Pseudonyms = nil },
		"no lister":        func(c *Config) { c.Accesses = nil },
	} {
		c := ok
		mod(&c)
		if _, err := New(c); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

func TestCSVGuardsFormulas(t *testing.T) {
	for in, want := range map[string]string{"=HYPERLINK(1)": "'=HYPERLINK(1)", "+1": "'+1", "@x": "'@x", "Mairie": "Mairie", "": ""} {
		if got := cell(in); got != want {
			t.Errorf("cell(%q) = %q", in, got)
		}
	}
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	_ = w.Write([]string{cell("-2+3")})
	w.Flush()
	if !strings.HasPrefix(b.String(), "'-2+3") {
		t.Errorf("csv %q", b.String())
	}
}

func TestLoginCancelledAtTheProvider(t *testing.T) {
	s, _ := seeded(t, stackOptions{})
	c := s.client()
	resp, err := c.Get(s.base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	action, _ := resp.Request.URL.Parse("login")
	out, err := c.PostForm(action.String(), url.Values{"authRequestID": {reRequestID.FindStringSubmatch(body)[1]}, "cancel": {"1"}})
	if err != nil {
		t.Fatal(err)
	}
	page := readAll(t, out)
	if out.Request.URL.Path != "/callback" || out.StatusCode != http.StatusBadRequest || !strings.Contains(page, "La connexion a été annulée.") {
		t.Errorf("cancel: %s %d", out.Request.URL.Path, out.StatusCode)
	}
	if s.cookie(c, cookieSession) != "" {
		t.Error("a cancelled login opened a session")
	}
	if got := testutil.ToFloat64(s.portal.m.logins.WithLabelValues("cancelled")); got != 1 {
		t.Errorf("cancelled logins = %v", got)
	}
}
