// Package devidp is a local OpenID Connect provider for `relaisd dev` and the
// tests: its users are fictitious citizens picked on a login page, and it
// answers like FranceConnect v2 (pivot identity claims, userinfo as a signed
// JWT, acr eidas1), so the broker's citizen-login path and the example
// town-hall portal run end to end without the real FranceConnect. It is
// built on the op package of zitadel/oidc, which owns the protocol (discovery,
// authorization code with PKCE, token endpoint, JWKS, end session); this
// package only adds the in-memory storage, the login page and a userinfo
// endpoint shaped like FranceConnect's. It keeps everything in memory and
// never logs a token, a code or an identity attribute.
package devidp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
	"golang.org/x/text/unicode/norm"
)

// ACR is the only authentication context the provider asserts, FranceConnect's
// "substantial-free" eIDAS level that Relais accepts in dev mode.
const ACR = "eidas1"

// RelaisAudience is the resource audience a client registered to call Relais
// gets in the userinfo `aud`; the broker requires it (its provider client_id).
const RelaisAudience = "relais"

// Default client identifiers, the three clients of the dev contract.
const (
	// ClientCitizenPortal is the example town-hall portal (public, PKCE).
	ClientCitizenPortal = "citizen-portal"
	// ClientOtherTown is a public client without the relais audience, for
	// wrong-audience tests.
	ClientOtherTown = "other-town"
	// ClientTransparencyPortal is the citizens' transparency portal
	// (confidential client with a secret).
	ClientTransparencyPortal = "transparency-portal"
)

// DefaultAccessTokenLifetime is how long an access token is valid when the
// configuration does not say.
const DefaultAccessTokenLifetime = 10 * time.Minute

// codeLifetime bounds how long an authorization code can be exchanged.
const codeLifetime = time.Minute

// Gender is the FranceConnect `gender` claim.
type Gender string

// The two values FranceConnect sends.
const (
	GenderFemale Gender = "female"
	GenderMale   Gender = "male"
)

// User is one fictitious citizen the login page offers, with the pivot
// identity fields FranceConnect returns.
type User struct {
	// ID is a stable slug, unique among the users (the sandbox citizen id);
	// the `sub` claim is derived from it.
	ID string
	// Label is what the login page and the `token` command show and match,
	// e.g. "DUPONT Zoé"; when empty it is the birth name and first given
	// name, disambiguated with the other given names when two users share it.
	Label string
	// GivenNames in civil-registry order; sent as one space-separated claim.
	GivenNames []string
	// BirthName is the family name at birth (`family_name`).
	BirthName string
	// UsageName is the name in use (`preferred_username`), empty when none.
	UsageName string
	// BirthDate is written YYYY-MM-DD.
	BirthDate string
	// Gender is female or male.
	Gender Gender
	// BirthPlaceCOG is the INSEE code of the birth commune, empty when born
	// abroad.
	BirthPlaceCOG string
	// BirthCountryCOG is the INSEE code of the birth country, 99100 for France.
	BirthCountryCOG string
}

// Client is an OAuth client registered with the provider.
type Client struct {
	// ID is the client_id.
	ID string
	// Secret makes the client confidential (client_secret_basic or _post);
	// empty makes it public, which requires PKCE with S256.
	Secret string
	// RedirectURIs are the registered redirect URIs. For a public client a
	// loopback one (http://127.0.0.1/callback) matches any port (RFC 8252).
	RedirectURIs []string
	// PostLogoutRedirectURIs are where end session may send the browser back.
	PostLogoutRedirectURIs []string
	// Audiences are the resource audiences added to the client id in the
	// userinfo `aud` ("relais" for clients allowed to call Relais).
	Audiences []string
}

// Config configures a Provider.
type Config struct {
	// Issuer is the https URL the provider is served at, exactly as it
	// appears in `iss` (no trailing slash).
	Issuer string
	// Users are the citizens offered on the login page, in that order.
	Users []User
	// Clients are the registered OAuth clients (see DefaultClients).
	Clients []Client
	// Now is the clock of token expiry and userinfo `iat`; time.Now when nil.
	Now func() time.Time
	// AccessTokenLifetime defaults to DefaultAccessTokenLifetime.
	AccessTokenLifetime time.Duration
	// SigningKey signs ID tokens and userinfo (*ecdsa.PrivateKey P-256 →
	// ES256, *rsa.PrivateKey → RS256); a P-256 key is generated when nil.
	SigningKey crypto.Signer
	// Logger receives one line per request (method, path, status; never the
	// query string, a header or a body); discarded when nil. The op package
	// itself logs protocol errors through slog.Default.
	Logger *slog.Logger
}

// DefaultClients returns the three dev clients of the contract:
// citizen-portal and other-town (public, PKCE, any loopback /callback
// redirect; only citizen-portal has the relais audience) and
// transparency-portal (confidential, redirected to transparencyRedirect,
// e.g. "https://127.0.0.1:8444/callback"; omitted when empty).
func DefaultClients(transparencyRedirect, transparencySecret string) []Client {
	cs := []Client{
		{
			ID:                     ClientCitizenPortal,
			RedirectURIs:           []string{"http://127.0.0.1/callback", "http://localhost/callback"},
			PostLogoutRedirectURIs: []string{"http://127.0.0.1/", "http://localhost/"},
			Audiences:              []string{RelaisAudience},
		},
		{
			ID:                     ClientOtherTown,
			RedirectURIs:           []string{"http://127.0.0.1/callback", "http://localhost/callback"},
			PostLogoutRedirectURIs: []string{"http://127.0.0.1/", "http://localhost/"},
		},
	}
	if transparencyRedirect != "" {
		post := transparencyRedirect
		if u, err := url.Parse(transparencyRedirect); err == nil {
			post = (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: "/"}).String()
		}
		cs = append(cs, Client{
			ID:                     ClientTransparencyPortal,
			Secret:                 transparencySecret,
			RedirectURIs:           []string{transparencyRedirect},
			PostLogoutRedirectURIs: []string{post},
		})
	}
	return cs
}

// Provider is the dev OpenID provider; it is an http.Handler to serve over
// TLS at the issuer URL.
type Provider struct {
	issuer   string
	prefix   string // path of the issuer URL, "" at the root
	now      func() time.Time
	log      *slog.Logger
	store    *storage
	op       *op.Provider
	mux      *http.ServeMux
	signer   jose.Signer
	keyAlg   jose.SignatureAlgorithm
	keyID    string
	userList []*user
}

// user is a validated User with its derived subject.
type user struct {
	User
	sub string
}

var (
	datePattern = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)
	cogPattern  = regexp.MustCompile(`^[0-9][0-9AB][0-9]{3}$`)
	slugPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
)

// New validates cfg and builds the provider. Nothing is served until the
// caller serves the returned handler.
func New(cfg Config) (*Provider, error) {
	iss, err := url.Parse(cfg.Issuer)
	if err != nil || iss.Scheme != "https" || iss.Host == "" || iss.RawQuery != "" || iss.Fragment != "" || strings.HasSuffix(cfg.Issuer, "/") {
		return nil, errors.New("devidp: issuer must be an https url without query, fragment or trailing slash")
	}
	users, err := validateUsers(cfg.Users)
	if err != nil {
		return nil, err
	}
	clients, err := validateClients(cfg.Clients)
	if err != nil {
		return nil, err
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	lifetime := cfg.AccessTokenLifetime
	if lifetime == 0 {
		lifetime = DefaultAccessTokenLifetime
	}
	if lifetime < 0 {
		return nil, errors.New("devidp: access token lifetime must be positive")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	key := cfg.SigningKey
	if key == nil {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("devidp: generate signing key: %w", err)
		}
	}
	var alg jose.SignatureAlgorithm
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, errors.New("devidp: ecdsa signing key must be p-256")
		}
		alg = jose.ES256
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, errors.New("devidp: rsa signing key must have at least 2048 bits")
		}
		alg = jose.RS256
	default:
		return nil, fmt.Errorf("devidp: unsupported signing key type %T", key)
	}
	kid, err := keyID(key)
	if err != nil {
		return nil, err
	}
	var cryptoKey [32]byte
	if _, err := rand.Read(cryptoKey[:]); err != nil {
		return nil, fmt.Errorf("devidp: generate token key: %w", err)
	}
	p := &Provider{
		issuer:   cfg.Issuer,
		prefix:   strings.TrimSuffix(iss.EscapedPath(), "/"),
		now:      now,
		log:      logger,
		keyAlg:   alg,
		keyID:    kid,
		userList: users,
	}
	p.store = newStorage(p, clients, users, signingKey{id: kid, alg: alg, key: key}, lifetime)
	p.signer, err = jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: &jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("devidp: userinfo signer: %w", err)
	}
	p.op, err = op.NewProvider(&op.Config{
		CryptoKey:                cryptoKey,
		CryptoKeyId:              "devidp",
		DefaultLogoutRedirectURI: cfg.Issuer + pathLoggedOut,
		CodeMethodS256:           true,
		AuthMethodPost:           true,
		SupportedUILocales:       []language.Tag{language.French},
		SupportedScopes:          supportedScopes,
		SupportedClaims:          supportedClaims,
	}, p.store, op.StaticIssuer(cfg.Issuer))
	if err != nil {
		return nil, fmt.Errorf("devidp: %w", err)
	}
	issuerCtx := op.NewIssuerInterceptor(p.op.IssuerFromRequest)
	p.mux = http.NewServeMux()
	p.mux.Handle("GET "+pathDiscovery, issuerCtx.HandlerFunc(p.discovery))
	p.mux.HandleFunc("/"+strings.TrimPrefix(p.op.UserinfoEndpoint().Relative(), "/"), p.userinfo)
	p.mux.HandleFunc("GET "+pathLogin, p.loginPage)
	p.mux.Handle("POST "+pathLogin, issuerCtx.HandlerFunc(p.loginSubmit))
	p.mux.HandleFunc("GET "+pathLoggedOut, p.loggedOut)
	p.mux.HandleFunc("GET "+pathStyle, serveStyle)
	p.mux.Handle("/", p.op)
	return p, nil
}

// Issuer returns the issuer URL (the discovery document is at
// Issuer()+"/.well-known/openid-configuration").
func (p *Provider) Issuer() string { return p.issuer }

// DiscoveryURL returns the URL of the discovery document, for banners.
func (p *Provider) DiscoveryURL() string { return p.issuer + pathDiscovery }

// Labels returns the users' display labels in login-page order.
func (p *Provider) Labels() []string {
	out := make([]string, len(p.userList))
	for i, u := range p.userList {
		out[i] = u.Label
	}
	return out
}

// Subject returns the `sub` claim of the user with that display label.
func (p *Provider) Subject(label string) (string, bool) {
	u := p.store.userByLabel(label)
	if u == nil {
		return "", false
	}
	return u.sub, true
}

// ServeHTTP serves the provider's endpoints below the issuer's path.
func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	start := time.Now()
	defer func() {
		// Path only: the query of /authorize, /callback and /end_session
		// carries codes, states and ID token hints.
		p.log.LogAttrs(r.Context(), slog.LevelInfo, "devidp request",
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", rec.status), slog.Duration("duration", time.Since(start)))
	}()
	if p.prefix != "" {
		rest, ok := strings.CutPrefix(r.URL.Path, p.prefix)
		if !ok || (rest != "" && rest[0] != '/') {
			http.NotFound(rec, r)
			return
		}
		if rest == "" {
			rest = "/"
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = rest
		r2.URL.RawPath = ""
		r = r2
	}
	rec.Header().Set("Cache-Control", "no-store")
	p.mux.ServeHTTP(rec, r)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func keyID(key crypto.Signer) (string, error) {
	jwk := jose.JSONWebKey{Key: key.Public()}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("devidp: key thumbprint: %w", err)
	}
	return hex.EncodeToString(tp[:8]), nil
}

func validateUsers(in []User) ([]*user, error) {
	if len(in) == 0 {
		return nil, errors.New("devidp: at least one user is required")
	}
	out := make([]*user, 0, len(in))
	ids := map[string]bool{}
	for i, u := range in {
		where := fmt.Sprintf("devidp: user %d", i)
		if !slugPattern.MatchString(u.ID) {
			return nil, fmt.Errorf("%s: id must be 1 to 64 letters, digits, dots, dashes or underscores", where)
		}
		if ids[u.ID] {
			return nil, fmt.Errorf("%s: duplicate id %q", where, u.ID)
		}
		ids[u.ID] = true
		if strings.TrimSpace(u.BirthName) == "" || len(u.GivenNames) == 0 {
			return nil, fmt.Errorf("%s (%s): birth name and at least one given name are required", where, u.ID)
		}
		for _, g := range u.GivenNames {
			if g == "" || strings.TrimSpace(g) != g {
				return nil, fmt.Errorf("%s (%s): empty or padded given name", where, u.ID)
			}
		}
		if !datePattern.MatchString(u.BirthDate) {
			return nil, fmt.Errorf("%s (%s): birth date must be written YYYY-MM-DD", where, u.ID)
		}
		if _, err := time.Parse(time.DateOnly, u.BirthDate); err != nil {
			return nil, fmt.Errorf("%s (%s): birth date is not a calendar date", where, u.ID)
		}
		if u.Gender != GenderFemale && u.Gender != GenderMale {
			return nil, fmt.Errorf("%s (%s): gender must be female or male", where, u.ID)
		}
		if !cogPattern.MatchString(u.BirthCountryCOG) || !strings.HasPrefix(u.BirthCountryCOG, "99") {
			return nil, fmt.Errorf("%s (%s): birth country must be an insee cog code 99xxx", where, u.ID)
		}
		if u.BirthCountryCOG == "99100" && !cogPattern.MatchString(u.BirthPlaceCOG) {
			return nil, fmt.Errorf("%s (%s): born in france needs an insee cog birth place", where, u.ID)
		}
		if u.BirthCountryCOG != "99100" && u.BirthPlaceCOG != "" {
			return nil, fmt.Errorf("%s (%s): born abroad must have an empty birth place", where, u.ID)
		}
		sum := sha256.Sum256([]byte("relais-devidp-sub:" + u.ID))
		out = append(out, &user{User: u, sub: hex.EncodeToString(sum[:16])})
	}
	// Labels: explicit ones as given, the others "BIRTHNAME First", then
	// with all given names, then with the birth date, until unique.
	level := make([]int, len(out))
	for iter := 0; iter < 3; iter++ {
		count := map[string]int{}
		for i, u := range out {
			if in[i].Label == "" {
				u.Label = autoLabel(u, level[i])
			}
			count[labelKey(u.Label)]++
		}
		changed := false
		for i, u := range out {
			if in[i].Label == "" && count[labelKey(u.Label)] > 1 && level[i] < 2 {
				level[i]++
				changed = true
			}
		}
		if !changed {
			break
		}
	}
	seen := map[string]string{}
	for _, u := range out {
		k := labelKey(u.Label)
		if other, dup := seen[k]; dup {
			return nil, fmt.Errorf("devidp: users %s and %s have the same label", other, u.ID)
		}
		seen[k] = u.ID
	}
	return out, nil
}

func autoLabel(u *user, level int) string {
	switch level {
	case 0:
		return u.BirthName + " " + u.GivenNames[0]
	case 1:
		return u.BirthName + " " + strings.Join(u.GivenNames, " ")
	default:
		return u.BirthName + " " + strings.Join(u.GivenNames, " ") + " (" + u.BirthDate + ")"
	}
}

// labelKey is how labels are compared: case, accents and runs of spaces do
// not count, so "dupont zoe" finds "DUPONT Zoé" from a shell.
func labelKey(s string) string {
	var b strings.Builder
	for _, r := range norm.NFD.String(s) {
		if unicode.Is(unicode.Mn, r) {
			continue
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return strings.Join(strings.Fields(b.String()), " ")
}

func validateClients(in []Client) (map[string]*Client, error) {
	if len(in) == 0 {
		return nil, errors.New("devidp: at least one client is required")
	}
	out := map[string]*Client{}
	for i, c := range in {
		if !slugPattern.MatchString(c.ID) {
			return nil, fmt.Errorf("devidp: client %d: id must be 1 to 64 letters, digits, dots, dashes or underscores", i)
		}
		if _, dup := out[c.ID]; dup {
			return nil, fmt.Errorf("devidp: duplicate client %q", c.ID)
		}
		if len(c.RedirectURIs) == 0 {
			return nil, fmt.Errorf("devidp: client %q: at least one redirect uri is required", c.ID)
		}
		for _, r := range append(append([]string(nil), c.RedirectURIs...), c.PostLogoutRedirectURIs...) {
			u, err := url.Parse(r)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Fragment != "" {
				return nil, fmt.Errorf("devidp: client %q: redirect uris must be absolute http(s) urls without fragment", c.ID)
			}
			if u.Scheme == "http" {
				if _, loop := op.HTTPLoopbackOrLocalhost(r); !loop {
					return nil, fmt.Errorf("devidp: client %q: plain http redirects must be loopback", c.ID)
				}
			}
		}
		cc := c
		out[c.ID] = &cc
	}
	return out, nil
}
