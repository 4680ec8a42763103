package devidp

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/oauth2"
)

// DefaultLoopbackRedirect is the redirect URI the headless login announces
// when none is given: a loopback /callback, which the public dev clients
// accept on any port. Nothing listens there: the flow stops at the redirect.
const DefaultLoopbackRedirect = "http://127.0.0.1:8450/callback"

// HeadlessLogin goes through the real browser flow of an OpenID provider
// serving this package's login page — authorization request with PKCE S256,
// state and nonce, the login page, the choice of a citizen by its label, the
// redirect with the code, the token exchange — with a plain HTTP client, for
// scripts and tests.
type HeadlessLogin struct {
	// HTTPClient must trust the provider's certificate; it is copied, and
	// the copy gets its own cookie jar and does not follow redirects.
	HTTPClient *http.Client
	// Issuer is the provider's issuer URL (discovery is read from it).
	Issuer string
	// ClientID and ClientSecret (confidential clients only) of the client
	// the tokens are issued to.
	ClientID, ClientSecret string
	// RedirectURL defaults to DefaultLoopbackRedirect.
	RedirectURL string
	// Scopes default to openid plus the pivot identity.
	Scopes []string
	// Citizen is the display label to pick, e.g. "DUPONT Zoé" (case,
	// accents and extra spaces do not count).
	Citizen string
}

// DefaultScopes are the scopes a FranceConnect client asks for the pivot
// identity.
var DefaultScopes = []string{"openid", "identite_pivot", "preferred_username"}

// ErrUnknownCitizen is returned (wrapped, with the list of labels the login
// page offers) when no citizen has the requested label.
var ErrUnknownCitizen = errors.New("no citizen with that label")

// Discovery is the part of the discovery document the headless login and the
// portal use.
type Discovery struct {
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
	UserinfoEndpoint      string `json:"userinfo_endpoint"`
	EndSessionEndpoint    string `json:"end_session_endpoint"`
	JWKSURI               string `json:"jwks_uri"`
}

// Discover reads issuer's discovery document and checks it names issuer.
func Discover(ctx context.Context, c *http.Client, issuer string) (*Discovery, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, issuer+pathDiscovery, nil)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("discovery: status %d", resp.StatusCode)
	}
	var d Discovery
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&d); err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	if d.Issuer != issuer {
		return nil, fmt.Errorf("discovery: document names issuer %q, expected %q", d.Issuer, issuer)
	}
	return &d, nil
}

// Login runs the whole flow and returns the token response (access token,
// and the ID token in Extra("id_token")).
func (h HeadlessLogin) Login(ctx context.Context) (*oauth2.Token, error) {
	c := h.client()
	d, err := Discover(ctx, c, h.Issuer)
	if err != nil {
		return nil, err
	}
	conf := h.OAuth2Config(d)
	verifier := oauth2.GenerateVerifier()
	state, nonce := randomToken(), randomToken()
	authURL := conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", nonce))
	code, err := h.authorize(ctx, c, authURL, state)
	if err != nil {
		return nil, err
	}
	tok, err := conf.Exchange(context.WithValue(ctx, oauth2.HTTPClient, c), code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, fmt.Errorf("token exchange: %w", redactOAuthError(err))
	}
	if s, _ := tok.Extra("id_token").(string); s == "" {
		return nil, errors.New("token response carries no id_token")
	}
	return tok, nil
}

// Code drives the browser part only, from an authorization URL the caller
// built (its own PKCE, state and nonce), to the code the provider redirects
// to RedirectURL with; state is the value the redirect must carry back.
func (h HeadlessLogin) Code(ctx context.Context, authURL, state string) (string, error) {
	return h.authorize(ctx, h.client(), authURL, state)
}

// OAuth2Config is the client configuration for the discovered endpoints.
func (h HeadlessLogin) OAuth2Config(d *Discovery) *oauth2.Config {
	scopes := h.Scopes
	if len(scopes) == 0 {
		scopes = DefaultScopes
	}
	return &oauth2.Config{
		ClientID:     h.ClientID,
		ClientSecret: h.ClientSecret,
		Endpoint:     oauth2.Endpoint{AuthURL: d.AuthorizationEndpoint, TokenURL: d.TokenEndpoint},
		RedirectURL:  h.redirect(),
		Scopes:       scopes,
	}
}

func (h HeadlessLogin) redirect() string {
	if h.RedirectURL != "" {
		return h.RedirectURL
	}
	return DefaultLoopbackRedirect
}

func (h HeadlessLogin) client() *http.Client {
	var c http.Client
	if h.HTTPClient != nil {
		c = *h.HTTPClient
	}
	jar, _ := cookiejar.New(nil) // cookiejar.New never fails without options
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

func randomToken() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// sameEndpoint reports whether u is the redirect target (scheme, host, path).
func sameEndpoint(u, target *url.URL) bool {
	return u.Scheme == target.Scheme && u.Host == target.Host && u.Path == target.Path
}

func (h HeadlessLogin) authorize(ctx context.Context, c *http.Client, authURL, state string) (string, error) {
	target, err := url.Parse(h.redirect())
	if err != nil {
		return "", fmt.Errorf("redirect url: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
	if err != nil {
		return "", fmt.Errorf("authorization request: %w", err)
	}
	for step := 0; step < 10; step++ {
		resp, err := c.Do(req)
		if err != nil {
			return "", fmt.Errorf("login flow: %w", redactURLError(err))
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil {
			return "", fmt.Errorf("login flow: %w", err)
		}
		switch {
		case resp.StatusCode >= 300 && resp.StatusCode < 400:
			loc, err := resp.Location()
			if err != nil {
				return "", fmt.Errorf("login flow: redirect without location")
			}
			if sameEndpoint(loc, target) {
				return codeFromRedirect(loc, state)
			}
			req, err = http.NewRequestWithContext(ctx, http.MethodGet, loc.String(), nil)
			if err != nil {
				return "", fmt.Errorf("login flow: %w", err)
			}
		case resp.StatusCode == http.StatusOK && isHTML(resp.Header.Get("Content-Type")):
			req, err = h.chooseCitizen(ctx, resp.Request.URL, body)
			if err != nil {
				return "", err
			}
		default:
			return "", fmt.Errorf("login flow: %s answered status %d: %s", resp.Request.URL.Path, resp.StatusCode, firstLine(body))
		}
	}
	return "", errors.New("login flow: too many steps")
}

func isHTML(ct string) bool {
	mt, _, _ := mime.ParseMediaType(ct)
	return mt == "text/html"
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

func codeFromRedirect(loc *url.URL, state string) (string, error) {
	q := loc.Query()
	if e := q.Get("error"); e != "" {
		return "", fmt.Errorf("authorization refused: %s: %s", e, q.Get("error_description"))
	}
	if q.Get("state") != state {
		return "", errors.New("authorization response: state does not match")
	}
	code := q.Get("code")
	if code == "" {
		return "", errors.New("authorization response carries no code")
	}
	return code, nil
}

// chooseCitizen reads the login form of page and builds its submission with
// the citizen whose data-label matches.
func (h HeadlessLogin) chooseCitizen(ctx context.Context, page *url.URL, body []byte) (*http.Request, error) {
	doc, err := html.Parse(strings.NewReader(string(body)))
	if err != nil {
		return nil, fmt.Errorf("login page: %w", err)
	}
	var form *html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if form == nil && n.Type == html.ElementNode && n.Data == "form" && attr(n, "method") == "post" {
			form = n
			return
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if form == nil {
		return nil, errors.New("login page: no login form (is this the dev provider?)")
	}
	values := url.Values{}
	var labels []string
	chosen := ""
	want := labelKey(h.Citizen)
	var inputs func(*html.Node)
	inputs = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "input" {
			name := attr(n, "name")
			switch attr(n, "type") {
			case "hidden":
				values.Set(name, attr(n, "value"))
			case "radio":
				if name == formCitizen {
					l := attr(n, "data-label")
					labels = append(labels, l)
					if labelKey(l) == want {
						chosen = attr(n, "value")
					}
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			inputs(c)
		}
	}
	inputs(form)
	if chosen == "" {
		return nil, fmt.Errorf("%w %q; available: %s", ErrUnknownCitizen, h.Citizen, strings.Join(labels, ", "))
	}
	values.Set(formCitizen, chosen)
	action, err := page.Parse(attr(form, "action"))
	if err != nil {
		return nil, fmt.Errorf("login page: form action: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, action.String(), strings.NewReader(values.Encode()))
	if err != nil {
		return nil, fmt.Errorf("login page: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return req, nil
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// redactURLError drops the URL (which may carry a code or a state) from a
// client error.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s %s: %w", ue.Op, redactedURL(ue.URL), ue.Err)
	}
	return err
}

func redactedURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(url)"
	}
	u.RawQuery = ""
	u.Fragment = ""
	return u.String()
}

// redactOAuthError keeps the error code and description of a token
// endpoint refusal and drops its raw body.
func redactOAuthError(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		if re.ErrorCode != "" {
			return fmt.Errorf("%s: %s", re.ErrorCode, re.ErrorDescription)
		}
		if re.Response != nil {
			return fmt.Errorf("status %d", re.Response.StatusCode)
		}
	}
	return redactURLError(err)
}
