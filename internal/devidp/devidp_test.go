package devidp_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relais-broker/relais/internal/localserver"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/relais-broker/relais/internal/devidp"
	"github.com/relais-broker/relais/internal/devidp/devidptest"
	"github.com/relais-broker/relais/internal/tlstest"
)

// clock is an injected clock the test moves by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func getJSON(t *testing.T, c *http.Client, u string, v any) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d", u, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func TestDiscovery(t *testing.T) {
	s := devidptest.Start(t, devidptest.Options{})
	var d map[string]any
	getJSON(t, s.HTTPClient(), s.DiscoveryURL(), &d)
	if d["issuer"] != s.Issuer {
		t.Errorf("issuer %v, want %s", d["issuer"], s.Issuer)
	}
	for _, k := range []string{"userinfo_endpoint", "jwks_uri", "authorization_endpoint", "token_endpoint", "end_session_endpoint"} {
		v, _ := d[k].(string)
		if !strings.HasPrefix(v, s.Issuer+"/") {
			t.Errorf("%s = %q, want a url under the issuer", k, v)
		}
	}
	want := map[string][]any{
		"code_challenge_methods_supported":      {"S256"},
		"acr_values_supported":                  {"eidas1"},
		"userinfo_signing_alg_values_supported": {"ES256"},
		"response_types_supported":              {"code"},
	}
	for k, w := range want {
		got, _ := d[k].([]any)
		if !slices.Equal(got, w) {
			t.Errorf("%s = %v, want %v", k, got, w)
		}
	}
	var jwks jose.JSONWebKeySet
	getJSON(t, s.HTTPClient(), d["jwks_uri"].(string), &jwks)
	if len(jwks.Keys) != 1 || jwks.Keys[0].Algorithm != "ES256" || !jwks.Keys[0].IsPublic() {
		t.Fatalf("jwks: %+v", jwks.Keys)
	}
}

// flow is a hand-driven authorization-code flow, so each step can be broken.
type flow struct {
	s        *devidptest.Server
	h        devidp.HeadlessLogin
	conf     *oauth2.Config
	verifier string
	state    string
	nonce    string
}

func newFlow(t *testing.T, s *devidptest.Server, clientID, citizen string) *flow {
	t.Helper()
	h := devidp.HeadlessLogin{HTTPClient: s.HTTPClient(), Issuer: s.Issuer, ClientID: clientID, Citizen: citizen,
		RedirectURL: "http://127.0.0.1:39999/callback"}
	d, err := devidp.Discover(ctx(t), s.HTTPClient(), s.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	return &flow{s: s, h: h, conf: h.OAuth2Config(d), verifier: oauth2.GenerateVerifier(), state: "st-" + citizen[:3], nonce: "n-0123456789"}
}

func (f *flow) authURL(opts ...oauth2.AuthCodeOption) string {
	if len(opts) == 0 {
		opts = []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(f.verifier)}
	}
	return f.conf.AuthCodeURL(f.state, append(opts, oauth2.SetAuthURLParam("nonce", f.nonce))...)
}

func (f *flow) code(t *testing.T) string {
	t.Helper()
	code, err := f.h.Code(ctx(t), f.authURL(), f.state)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

func (f *flow) exchange(t *testing.T, code string, opts ...oauth2.AuthCodeOption) (*oauth2.Token, error) {
	return f.conf.Exchange(context.WithValue(ctx(t), oauth2.HTTPClient, f.s.HTTPClient()), code, opts...)
}

// userinfo calls the userinfo endpoint with token and returns status,
// WWW-Authenticate, content type and body.
func userinfo(t *testing.T, s *devidptest.Server, token string) (int, string, string, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.Issuer+"/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := s.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), resp.Header.Get("Content-Type"), b
}

// verifiedUserinfo checks the userinfo JWT against the JWKS and returns
// its claims.
func verifiedUserinfo(t *testing.T, s *devidptest.Server, token string) map[string]any {
	t.Helper()
	status, _, ct, body := userinfo(t, s, token)
	if status != http.StatusOK || ct != "application/jwt" {
		t.Fatalf("userinfo: status %d, content type %q", status, ct)
	}
	jws, err := jose.ParseSigned(string(body), []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	var jwks jose.JSONWebKeySet
	getJSON(t, s.HTTPClient(), s.Issuer+"/keys", &jwks)
	keys := jwks.Key(jws.Signatures[0].Header.KeyID)
	if len(keys) != 1 {
		t.Fatalf("userinfo kid %q not in jwks", jws.Signatures[0].Header.KeyID)
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		t.Fatalf("userinfo signature: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

func TestCodeFlowAndUserinfo(t *testing.T) {
	start := time.Now().Truncate(time.Second)
	clk := &clock{t: start}
	s := devidptest.Start(t, devidptest.Options{Now: clk.Now})
	cases := []struct {
		label string
		want  map[string]any
	}{
		{"DUPONT Zoé", map[string]any{"given_name": "Zoé Marie", "family_name": "DUPONT", "birthdate": "1984-03-12",
			"gender": "female", "birthplace": "75056", "birthcountry": "99100"}},
		{"LEROY Camille", map[string]any{"given_name": "Camille", "family_name": "LEROY", "preferred_username": "MARTIN",
			"birthdate": "1981-01-17", "gender": "female", "birthplace": "69123", "birthcountry": "99100"}},
		{"BENALI Yasmine", map[string]any{"given_name": "Yasmine", "family_name": "BENALI", "birthdate": "1986-04-23",
			"gender": "female", "birthplace": "", "birthcountry": "99350"}},
	}
	for _, tc := range cases {
		t.Run(tc.label, func(t *testing.T) {
			f := newFlow(t, s, devidp.ClientCitizenPortal, tc.label)
			code := f.code(t)
			tok, err := f.exchange(t, code, oauth2.VerifierOption(f.verifier))
			if err != nil {
				t.Fatal(err)
			}
			// The ID token, verified as the portal does (go-oidc).
			p, err := oidc.NewProvider(oidc.ClientContext(ctx(t), s.HTTPClient()), s.Issuer)
			if err != nil {
				t.Fatal(err)
			}
			idt, err := p.Verifier(&oidc.Config{ClientID: devidp.ClientCitizenPortal}).Verify(ctx(t), tok.Extra("id_token").(string))
			if err != nil {
				t.Fatalf("id token: %v", err)
			}
			var idc struct {
				Nonce string `json:"nonce"`
				ACR   string `json:"acr"`
				Given string `json:"given_name"`
			}
			if err := idt.Claims(&idc); err != nil {
				t.Fatal(err)
			}
			if idc.Nonce != f.nonce || idc.ACR != "eidas1" || idc.Given != "" {
				t.Errorf("id token nonce %q acr %q given_name %q", idc.Nonce, idc.ACR, idc.Given)
			}
			if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
				t.Errorf("at_hash: %v", err)
			}
			sub, _ := s.Provider.Subject(tc.label)
			if idt.Subject != sub || sub == "" {
				t.Errorf("id token sub %q, want %q", idt.Subject, sub)
			}

			claims := verifiedUserinfo(t, s, tok.AccessToken)
			for k, v := range tc.want {
				if claims[k] != v {
					t.Errorf("userinfo %s = %#v, want %#v", k, claims[k], v)
				}
			}
			if _, has := claims["preferred_username"]; has != (tc.want["preferred_username"] != nil) {
				t.Errorf("preferred_username present = %v", has)
			}
			aud, _ := claims["aud"].([]any)
			if !slices.Equal(aud, []any{"citizen-portal", "relais"}) {
				t.Errorf("aud = %v", claims["aud"])
			}
			if claims["iss"] != s.Issuer || claims["sub"] != sub || claims["acr"] != "eidas1" {
				t.Errorf("iss %v sub %v acr %v", claims["iss"], claims["sub"], claims["acr"])
			}
			if exp := int64(claims["exp"].(float64)); exp != start.Add(devidp.DefaultAccessTokenLifetime).Unix() {
				t.Errorf("exp = %d, want %d", exp, start.Add(devidp.DefaultAccessTokenLifetime).Unix())
			}
			if iat := int64(claims["iat"].(float64)); iat != start.Unix() {
				t.Errorf("iat = %d, want %d", iat, start.Unix())
			}

			// The code is single-use.
			if _, err := f.exchange(t, code, oauth2.VerifierOption(f.verifier)); err == nil {
				t.Error("second exchange of the same code succeeded")
			}
		})
	}
}

func oauthErr(t *testing.T, err error) string {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("want a token endpoint refusal, got %v", err)
	}
	return re.ErrorCode + ": " + re.ErrorDescription
}

func TestPKCE(t *testing.T) {
	s := devidptest.Start(t, devidptest.Options{})
	t.Run("missing verifier", func(t *testing.T) {
		f := newFlow(t, s, devidp.ClientCitizenPortal, "DUPONT Zoé")
		_, err := f.exchange(t, f.code(t))
		if got := oauthErr(t, err); got != "invalid_request: code_verifier required" {
			t.Errorf("got %q", got)
		}
	})
	t.Run("wrong verifier", func(t *testing.T) {
		f := newFlow(t, s, devidp.ClientCitizenPortal, "DUPONT Zoé")
		_, err := f.exchange(t, f.code(t), oauth2.VerifierOption(oauth2.GenerateVerifier()))
		if got := oauthErr(t, err); got != "invalid_grant: invalid code_verifier" {
			t.Errorf("got %q", got)
		}
	})
	for name, opts := range map[string][]oauth2.AuthCodeOption{
		"no challenge":    {oauth2.SetAuthURLParam("unused", "x")},
		"plain challenge": {oauth2.SetAuthURLParam("code_challenge", "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopq"), oauth2.SetAuthURLParam("code_challenge_method", "plain")},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFlow(t, s, devidp.ClientCitizenPortal, "DUPONT Zoé")
			_, err := f.h.Code(ctx(t), f.authURL(opts...), f.state)
			if err == nil || !strings.Contains(err.Error(), "invalid_request") || !strings.Contains(err.Error(), "S256") {
				t.Errorf("authorization without s256 pkce: %v", err)
			}
		})
	}
}

func TestRedirectURIChecked(t *testing.T) {
	s := devidptest.Start(t, devidptest.Options{})
	for _, redirect := range []string{"https://attacker.example/callback", "http://127.0.0.1:8450/other"} {
		f := newFlow(t, s, devidp.ClientCitizenPortal, "DUPONT Zoé")
		f.conf.RedirectURL = redirect
		f.h.RedirectURL = redirect
		_, err := f.h.Code(ctx(t), f.authURL(), f.state)
		if err == nil || !strings.Contains(err.Error(), "status 400") {
			t.Errorf("redirect %s: %v", redirect, err)
		}
	}
	// Any loopback port is accepted (RFC 8252).
	f := newFlow(t, s, devidp.ClientCitizenPortal, "DUPONT Zoé")
	f.h.RedirectURL, f.conf.RedirectURL = "http://127.0.0.1:1234/callback", "http://127.0.0.1:1234/callback"
	if _, err := f.h.Code(ctx(t), f.authURL(), f.state); err != nil {
		t.Errorf("loopback redirect on another port: %v", err)
	}
	// And the token request must name the same redirect.
	code := f.code(t)
	f.conf.RedirectURL = "http://127.0.0.1:1235/callback"
	if _, err := f.exchange(t, code, oauth2.VerifierOption(f.verifier)); err == nil {
		t.Error("exchange with another redirect_uri succeeded")
	}
}

func TestUserinfoRefusals(t *testing.T) {
	clk := &clock{t: time.Now()}
	s := devidptest.Start(t, devidptest.Options{Now: clk.Now})
	tok := s.Token(t, devidp.ClientCitizenPortal, "DUPONT Zoé")
	tampered := []byte(tok)
	tampered[len(tampered)/2] ^= 1
	for name, bad := range map[string]string{"garbage": "not-a-token", "tampered": string(tampered)} {
		status, www, _, _ := userinfo(t, s, bad)
		if status != http.StatusUnauthorized || www != `Bearer error="invalid_token", error_description="access token invalid"` {
			t.Errorf("%s: %d %s", name, status, www)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, s.Issuer+"/userinfo", nil)
	resp, err := s.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no token: %d", resp.StatusCode)
	}

	clk.Add(devidp.DefaultAccessTokenLifetime - time.Second)
	if status, _, _, _ := userinfo(t, s, tok); status != http.StatusOK {
		t.Fatalf("token refused before its expiry: %d", status)
	}
	clk.Add(time.Second)
	status, www, _, _ := userinfo(t, s, tok)
	if status != http.StatusUnauthorized || www != `Bearer error="invalid_token", error_description="access token expired"` {
		t.Errorf("expired: %d %s", status, www)
	}
	// A day later a new login purges it: then it is just unknown.
	clk.Add(25 * time.Hour)
	s.Token(t, devidp.ClientCitizenPortal, "LEROY Camille")
	if status, www, _, _ := userinfo(t, s, tok); status != http.StatusUnauthorized || !strings.Contains(www, `"access token invalid"`) {
		t.Errorf("purged: %d %s", status, www)
	}
}

func TestOtherTownHasNoRelaisAudience(t *testing.T) {
	s := devidptest.Start(t, devidptest.Options{})
	claims := verifiedUserinfo(t, s, s.Token(t, devidp.ClientOtherTown, "DUPONT Zoé"))
	aud, _ := claims["aud"].([]any)
	if !slices.Equal(aud, []any{"other-town"}) {
		t.Errorf("aud = %v, want [other-town]", claims["aud"])
	}
}

func TestConfidentialClient(t *testing.T) {
	s := devidptest.Start(t, devidptest.Options{})
	claims := verifiedUserinfo(t, s, s.Token(t, devidp.ClientTransparencyPortal, "LEROY Camille"))
	if aud, _ := claims["aud"].([]any); !slices.Equal(aud, []any{"transparency-portal"}) {
		t.Errorf("aud = %v", claims["aud"])
	}
	h := devidp.HeadlessLogin{HTTPClient: s.HTTPClient(), Issuer: s.Issuer, ClientID: devidp.ClientTransparencyPortal,
		ClientSecret: "wrong", RedirectURL: "https://127.0.0.1:8444/callback", Citizen: "LEROY Camille"}
	if _, err := h.Login(ctx(t)); err == nil || !strings.Contains(err.Error(), "token exchange") {
		t.Errorf("wrong secret: %v", err)
	}
}

func TestEndSessionRevokesTokens(t *testing.T) {
	s := devidptest.Start(t, devidptest.Options{})
	tok := s.Login(t, devidp.ClientCitizenPortal, "DUPONT Zoé")
	other := s.Token(t, devidp.ClientCitizenPortal, "LEROY Camille")
	c := s.HTTPClient()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	q := url.Values{
		"id_token_hint":            {tok.Extra("id_token").(string)},
		"post_logout_redirect_uri": {"http://127.0.0.1:8450/"},
		"state":                    {"bye"},
	}
	resp, err := c.Get(s.Issuer + "/end_session?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || loc != "http://127.0.0.1:8450/?state=bye" {
		t.Fatalf("end session: %d %q", resp.StatusCode, loc)
	}
	if status, www, _, _ := userinfo(t, s, tok.AccessToken); status != http.StatusUnauthorized || !strings.Contains(www, "access token invalid") {
		t.Errorf("token after logout: %d %s", status, www)
	}
	if status, _, _, _ := userinfo(t, s, other); status != http.StatusOK {
		t.Errorf("another citizen's token after logout: %d", status)
	}
	// Unregistered post-logout redirect: refused.
	q.Set("post_logout_redirect_uri", "https://attacker.example/")
	q.Set("id_token_hint", s.Login(t, devidp.ClientCitizenPortal, "DUPONT Zoé").Extra("id_token").(string))
	resp, err = c.Get(s.Issuer + "/end_session?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("foreign post_logout_redirect_uri: %d", resp.StatusCode)
	}
}

func TestUnknownCitizenListsLabels(t *testing.T) {
	s := devidptest.Start(t, devidptest.Options{})
	h := devidp.HeadlessLogin{HTTPClient: s.HTTPClient(), Issuer: s.Issuer, ClientID: devidp.ClientCitizenPortal, Citizen: "MARTIN Paul"}
	_, err := h.Login(ctx(t))
	if !errors.Is(err, devidp.ErrUnknownCitizen) || !strings.Contains(err.Error(), "DUPONT Zoé, LEROY Camille, BENALI Yasmine") {
		t.Fatalf("got %v", err)
	}
	// Case, accents and spaces do not count.
	h.Citizen = "  dupont   zoe "
	if _, err := h.Login(ctx(t)); err != nil {
		t.Errorf("loose label: %v", err)
	}
}

func TestLoginPage(t *testing.T) {
	s := devidptest.Start(t, devidptest.Options{})
	f := newFlow(t, s, devidp.ClientCitizenPortal, "DUPONT Zoé")
	c := s.HTTPClient()
	resp, err := c.Get(f.authURL()) // follows to the login page
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(body)
	for _, want := range []string{`<html lang="fr">`, "Environnement de démonstration — identités fictives",
		`<legend>Citoyens fictifs</legend>`, `data-label="DUPONT Zoé"`, "née le 12 mars 1984", `<label for="c-dupont-zoe">`} {
		if !strings.Contains(page, want) {
			t.Errorf("login page lacks %q", want)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("csp %q", csp)
	}
	// Submitting without a choice re-renders with an alert and changes nothing.
	id := resp.Request.URL.Query().Get("authRequestID")
	resp, err = c.PostForm(s.Issuer+"/login", url.Values{"authRequestID": {id}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `role="alert"`) {
		t.Errorf("empty choice: %d", resp.StatusCode)
	}
	// Cancel sends access_denied back to the client.
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err = c.PostForm(s.Issuer+"/login", url.Values{"authRequestID": {id}, "cancel": {"1"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := resp.Location()
	if loc == nil || loc.Query().Get("error") != "access_denied" || loc.Query().Get("state") != f.state {
		t.Errorf("cancel: %d %v", resp.StatusCode, loc)
	}
}

// TestNoTokenInLogs runs flows that succeed and fail with the provider's
// logger and op's (slog.Default) captured, and looks for every secret.
func TestNoTokenInLogs(t *testing.T) {
	var buf localserver.Buffer
	h := slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})
	prev := slog.Default()
	slog.SetDefault(slog.New(h))
	t.Cleanup(func() { slog.SetDefault(prev) })

	s := devidptest.Start(t, devidptest.Options{Logger: slog.New(h)})
	f := newFlow(t, s, devidp.ClientCitizenPortal, "DUPONT Zoé")
	code := f.code(t)
	tok, err := f.exchange(t, code, oauth2.VerifierOption(f.verifier))
	if err != nil {
		t.Fatal(err)
	}
	verifiedUserinfo(t, s, tok.AccessToken)
	_, _ = f.exchange(t, code, oauth2.VerifierOption(f.verifier)) // refused: used code
	f2 := newFlow(t, s, devidp.ClientCitizenPortal, "LEROY Camille")
	code2 := f2.code(t)
	_, _ = f2.exchange(t, code2, oauth2.VerifierOption("wrong-verifier-wrong-verifier-wrong-verifier")) // refused
	userinfo(t, s, tok.AccessToken+"x")
	c := s.HTTPClient()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if resp, err := c.Get(s.Issuer + "/end_session?id_token_hint=" + url.QueryEscape(tok.Extra("id_token").(string)) + "x"); err == nil {
		resp.Body.Close()
	}

	logs := buf.String()
	if !strings.Contains(logs, "devidp request") || !strings.Contains(logs, "request error") {
		t.Fatalf("logs were not captured:\n%s", logs)
	}
	for name, secret := range map[string]string{
		"access token": tok.AccessToken, "id token": tok.Extra("id_token").(string), "code": code, "code2": code2,
		"verifier": f.verifier, "nonce": f.nonce, "birth date": "1984-03-12", "given name": "Zoé",
	} {
		if strings.Contains(logs, secret) {
			t.Errorf("%s found in the logs", name)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	ok := devidptest.Users()[:1]
	clients := devidp.DefaultClients("", "")
	for name, cfg := range map[string]devidp.Config{
		"http issuer":     {Issuer: "http://127.0.0.1:1", Users: ok, Clients: clients},
		"trailing slash":  {Issuer: "https://127.0.0.1:1/", Users: ok, Clients: clients},
		"no users":        {Issuer: "https://127.0.0.1:1", Clients: clients},
		"no clients":      {Issuer: "https://127.0.0.1:1", Users: ok},
		"bad birth date":  {Issuer: "https://127.0.0.1:1", Users: []devidp.User{{ID: "a", BirthName: "A", GivenNames: []string{"B"}, BirthDate: "1984-13-01", Gender: "female", BirthCountryCOG: "99350"}}, Clients: clients},
		"france no place": {Issuer: "https://127.0.0.1:1", Users: []devidp.User{{ID: "a", BirthName: "A", GivenNames: []string{"B"}, BirthDate: "1984-01-01", Gender: "male", BirthCountryCOG: "99100"}}, Clients: clients},
		"http redirect":   {Issuer: "https://127.0.0.1:1", Users: ok, Clients: []devidp.Client{{ID: "x", RedirectURIs: []string{"http://example.org/cb"}}}},
		"same label":      {Issuer: "https://127.0.0.1:1", Users: []devidp.User{withLabel(ok[0], "a", "X"), withLabel(ok[0], "b", "x")}, Clients: clients},
	} {
		if _, err := devidp.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "1984") {
			t.Errorf("%s: error echoes a birth date: %v", name, err)
		}
	}
	// Homonyms get labels with all their given names, then their birth date.
	minh := devidp.User{ID: "nguyen-minh", BirthName: "NGUYEN", GivenNames: []string{"Minh"}, BirthDate: "1990-05-05", Gender: "male", BirthCountryCOG: "99243"}
	minhDuc := minh
	minhDuc.ID, minhDuc.GivenNames = "nguyen-minh-duc", []string{"Minh", "Duc"}
	twin := minh
	twin.ID, twin.BirthDate = "nguyen-minh-2", "1991-06-06"
	p, err := devidp.New(devidp.Config{Issuer: "https://127.0.0.1:1", Users: []devidp.User{minh, minhDuc, twin, ok[0]}, Clients: clients})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"NGUYEN Minh (1990-05-05)", "NGUYEN Minh Duc", "NGUYEN Minh (1991-06-06)", "DUPONT Zoé"}
	if got := p.Labels(); !slices.Equal(got, want) {
		t.Errorf("labels %q, want %q", got, want)
	}
}

func withLabel(u devidp.User, id, label string) devidp.User {
	u.ID, u.Label = id, label
	return u
}

// TestIssuerWithPath serves the provider below a path, as behind a shared
// listener.
func TestIssuerWithPath(t *testing.T) {
	srv := httptest.NewUnstartedServer(nil)
	issuer := "https://" + srv.Listener.Addr().String() + "/idp"
	p, err := devidp.New(devidp.Config{Issuer: issuer, Users: devidptest.Users(), Clients: devidp.DefaultClients("", "")})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = p
	srv.StartTLS()
	t.Cleanup(srv.Close)
	h := devidp.HeadlessLogin{HTTPClient: srv.Client(), Issuer: issuer, ClientID: devidp.ClientCitizenPortal, Citizen: "DUPONT Zoé"}
	tok, err := h.Login(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, issuer+"/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/jwt" {
		t.Errorf("userinfo below a path: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	resp, err = srv.Client().Get("https://" + srv.Listener.Addr().String() + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("outside the issuer path: %d", resp.StatusCode)
	}
}

// TestStartWithDevCACertificate serves the provider with a certificate of
// a dev CA, as relaisd dev does and as a browser test needs.
func TestStartWithDevCACertificate(t *testing.T) {
	pki := tlstest.New(t)
	s := devidptest.Start(t, devidptest.Options{TLSConfig: &tls.Config{Certificates: []tls.Certificate{*pki.Server.Certificate()}}})
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.Roots}}}
	h := devidp.HeadlessLogin{HTTPClient: c, Issuer: s.Issuer, ClientID: devidp.ClientCitizenPortal, Citizen: "DUPONT Zoé"}
	if _, err := h.Login(ctx(t)); err != nil {
		t.Fatalf("login trusting the dev ca: %v", err)
	}
	if _, err := s.HTTPClient().Get(s.DiscoveryURL()); err != nil {
		t.Fatalf("harness client: %v", err)
	}
}
