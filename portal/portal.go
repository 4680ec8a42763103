// Package portal is the citizen transparency portal of Relais: an HTTPS
// site where a person logs in with the same OpenID Connect provider as
// citizen-initiated calls (FranceConnect; the dev provider in dev mode)
// and sees every access to their data that the broker traced — when,
// which body, for which purpose and on which legal basis, which
// categories of data, with which outcome — filters them, and downloads
// them (CSV, JSON). The list is broker/transparency's: the same join and
// the same deferred-disclosure rule as the operators' SubjectAccesses.
//
// The portal keeps nothing but a pseudonym: on the callback it verifies
// the ID token, reads the identity through the broker's resolver (the
// access token's userinfo JWT), computes the pseudonym with the broker's
// key, and drops the identity and every token. Sessions are server-side
// (SessionStore), behind a __Host- cookie, Secure, HttpOnly and
// SameSite=Lax, with a new id at each login; every form carries a
// synchronizer CSRF token; no URL or parameter names a pseudonym: a page
// always shows its session's own. Pages are server-rendered html/template
// (French by default, English), with no script.
package portal

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	// The portal shows Paris time even on a host without a zoneinfo database.
	_ "time/tzdata"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/oauth2"

	"github.com/relais-broker/relais/broker/subject"
	"github.com/relais-broker/relais/broker/transparency"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
)

// IdentityResolver turns a citizen's access token into the identity the
// broker designates subjects with; broker/citizen's Resolver implements
// it (configured with the portal's client id as the expected audience).
type IdentityResolver interface {
	Resolve(ctx context.Context, accessToken string) (*commonv1.SubjectIdentity, error)
}

// AccessLister lists the accesses to a pseudonym; *transparency.Service
// implements it. The portal always asks for the citizen view.
type AccessLister interface {
	Accesses(ctx context.Context, pseudonym string, view transparency.View) ([]transparency.Access, error)
}

// Limits are the per-client-IP rate limits; zero fields take the defaults.
type Limits struct {
	// LoginsPerMinute bounds /login and /callback (10).
	LoginsPerMinute int
	// PagesPerSecond and PagesBurst bound every other page (5/s, burst 30).
	PagesPerSecond float64
	PagesBurst     int
	// MaxClients bounds the addresses tracked (10000); beyond, new ones
	// are refused until idle ones are forgotten.
	MaxClients int
}

// Config configures a Portal.
type Config struct {
	// BaseURL is the portal's public https origin ("https://host:port",
	// no path): the redirect URI is BaseURL/callback and the post-logout
	// one BaseURL/.
	BaseURL string
	// Issuer, ClientID and ClientSecret are the OpenID provider and the
	// portal's confidential client there.
	Issuer, ClientID, ClientSecret string
	// Scopes asked for (DefaultScopes when empty); ACRValues are sent as
	// acr_values when set (e.g. "eidas1").
	Scopes    []string
	ACRValues []string
	// ProviderName is shown on the login button ("FranceConnect" when empty).
	ProviderName string
	// HTTPClient reaches the provider (http.DefaultClient when nil).
	HTTPClient *http.Client
	// Identities, Pseudonyms and Accesses are required: the resolver, the
	// broker's pseudonymiser (same key as the broker) and the lister.
	Identities IdentityResolver
	Pseudonyms *subject.Pseudonymizer
	Accesses   AccessLister
	// Sessions defaults to a MemoryStore on Now.
	Sessions SessionStore
	// Now is the clock of ID token checks and rate limits (time.Now when nil).
	Now func() time.Time
	// Location of the dates shown (Europe/Paris when nil).
	Location *time.Location
	// Registerer receives the portal's metrics (not registered when nil).
	Registerer prometheus.Registerer
	// Logger gets one line per request, with no personal data (discarded when nil).
	Logger *slog.Logger
	Limits Limits
}

// DefaultScopes ask for the pivot identity, as FranceConnect names it.
var DefaultScopes = []string{"openid", "identite_pivot", "preferred_username"}

// CNILComplaintURL is where the portal sends a citizen who wants to complain.
const CNILComplaintURL = "https://www.cnil.fr/fr/adresser-une-plainte"

// Cookie names. __Host- makes the browser refuse them unless Secure, with
// Path=/ and no Domain: no other host or path can set or read them.
const (
	cookieSession = "__Host-relais-session"
	cookieLogin   = "__Host-relais-login"
	cookieLang    = "__Host-relais-lang"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Portal is the transparency portal's http.Handler.
type Portal struct {
	cfg       Config
	origin    string
	sessions  SessionStore
	loc       *time.Location
	log       *slog.Logger
	m         *metrics
	pages     map[string]*template.Template
	css       []byte
	mux       *http.ServeMux
	loginRate *limiter
	pageRate  *limiter
	csp       string

	provMu sync.Mutex
	prov   *oidcState
}

// oidcState is the discovered provider.
type oidcState struct {
	provider   *oidc.Provider
	oauth      oauth2.Config
	verifier   *oidc.IDTokenVerifier
	endSession string
}

// New checks cfg and builds the portal. It does no I/O: the provider is
// discovered at the first login, and again after a failure, so a provider
// down at start does not stop relaisd.
func New(cfg Config) (*Portal, error) {
	base, err := url.Parse(cfg.BaseURL)
	if err != nil || base.Scheme != "https" || base.Host == "" || (base.Path != "" && base.Path != "/") || base.RawQuery != "" {
		return nil, fmt.Errorf("portal: base url %q must be an https origin (https://host:port)", cfg.BaseURL)
	}
	iss, err := url.Parse(cfg.Issuer)
	if err != nil || iss.Host == "" || (iss.Scheme != "https" && !(iss.Scheme == "http" && isLoopback(iss.Hostname()))) {
		return nil, fmt.Errorf("portal: issuer %q must be an https url", cfg.Issuer)
	}
	switch {
	case cfg.ClientID == "":
		return nil, errors.New("portal: a client id is required")
	case cfg.Identities == nil:
		return nil, errors.New("portal: an identity resolver is required")
	case cfg.Pseudonyms == nil:
		return nil, errors.New("portal: a pseudonymiser is required")
	case cfg.Accesses == nil:
		return nil, errors.New("portal: an access lister is required")
	}
	cfg.BaseURL = strings.TrimSuffix(cfg.BaseURL, "/")
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = DefaultScopes
	}
	if cfg.ProviderName == "" {
		cfg.ProviderName = "FranceConnect"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Location == nil {
		if cfg.Location, err = time.LoadLocation("Europe/Paris"); err != nil {
			return nil, fmt.Errorf("portal: load the paris time zone: %w", err)
		}
	}
	if cfg.Sessions == nil {
		cfg.Sessions = NewMemoryStore(MemoryOptions{Now: cfg.Now})
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	p := &Portal{
		cfg: cfg, origin: base.Scheme + "://" + base.Host, sessions: cfg.Sessions, loc: cfg.Location, log: cfg.Logger, m: m,
		pages: map[string]*template.Template{}, mux: http.NewServeMux(),
	}
	p.loginRate, p.pageRate = newLimiters(cfg.Limits, cfg.Now)
	p.csp = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' " + iss.Scheme + "://" + iss.Host +
		"; frame-ancestors 'none'; base-uri 'none'"
	if err := p.parseTemplates(); err != nil {
		return nil, err
	}
	p.routes()
	return p, nil
}

func (p *Portal) parseTemplates() error {
	sub, err := fs.Sub(assets, "templates")
	if err != nil {
		return err
	}
	for _, page := range []string{"home", "accesses", "error"} {
		t, err := template.New(page).Option("missingkey=error").ParseFS(sub, "layout.html", page+".html")
		if err != nil {
			return fmt.Errorf("portal: template %s: %w", page, err)
		}
		p.pages[page] = t
	}
	p.css, err = assets.ReadFile("static/portal.css")
	return err
}

func (p *Portal) routes() {
	p.mux.Handle("GET /{$}", p.wrap("page", p.pageRate, p.index))
	p.mux.Handle("GET /login", p.wrap("login", p.loginRate, p.login))
	p.mux.Handle("GET /callback", p.wrap("callback", p.loginRate, p.callback))
	p.mux.Handle("POST /logout", p.wrap("logout", p.pageRate, p.logout))
	p.mux.Handle("GET /export.csv", p.wrap("export", p.pageRate, p.exportCSV))
	p.mux.Handle("GET /export.json", p.wrap("export", p.pageRate, p.exportJSON))
	p.mux.Handle("GET /static/portal.css", p.wrap("static", p.pageRate, p.static))
	p.mux.Handle("/", p.wrap("not_found", p.pageRate, func(w http.ResponseWriter, r *http.Request) {
		p.fail(w, r, http.StatusNotFound, "err_not_found")
	}))
}

// ServeHTTP implements http.Handler.
func (p *Portal) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.mux.ServeHTTP(w, r) }

// statusWriter records the status for the request line.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// wrap adds the security headers, the rate limit and the request line.
// The line names the route, never the path's query (a callback's code
// and state) nor anything about the citizen.
func (p *Portal) wrap(route string, lim *limiter, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		hd := sw.Header()
		hd.Set("Content-Security-Policy", p.csp)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "same-origin") // not no-referrer: a form POST would then carry Origin: null
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		hd.Set("Strict-Transport-Security", "max-age=31536000")
		if route != "static" {
			hd.Set("Cache-Control", "no-store")
		}
		if !lim.allow(clientIP(r)) {
			p.m.refusals.WithLabelValues("rate_limited").Inc()
			hd.Set("Retry-After", "60")
			p.fail(sw, r, http.StatusTooManyRequests, "err_rate")
		} else {
			h(sw, r)
		}
		p.log.Info("portal request", "route", route, "method", r.Method, "status", sw.status, "duration_ms", time.Since(start).Milliseconds())
	})
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (p *Portal) static(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(p.css)
}

// setCookie writes one of the portal's cookies with the flags they all
// carry; maxAge < 0 deletes it.
func setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// currentSession returns the request's live session and its id; an
// unknown, expired or tampered id clears the cookie and counts as none.
func (p *Portal) currentSession(w http.ResponseWriter, r *http.Request) (Session, string, bool) {
	c, err := r.Cookie(cookieSession)
	if err != nil || c.Value == "" {
		return Session{}, "", false
	}
	s, err := p.sessions.Session(r.Context(), c.Value)
	if err != nil {
		setCookie(w, cookieSession, "", -1)
		return Session{}, "", false
	}
	return s, c.Value, true
}

// lang picks the request's language and remembers an explicit choice.
func (p *Portal) lang(w http.ResponseWriter, r *http.Request) string {
	l, explicit := pickLang(r)
	if explicit {
		setCookie(w, cookieLang, l, 365*24*3600)
	}
	return l
}

// provider returns the discovered provider, discovering it if needed.
func (p *Portal) provider(ctx context.Context) (*oidcState, error) {
	p.provMu.Lock()
	defer p.provMu.Unlock()
	if p.prov != nil {
		return p.prov, nil
	}
	dctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, p.cfg.HTTPClient), 5*time.Second)
	defer cancel()
	prov, err := oidc.NewProvider(dctx, p.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("portal: discover the identity provider: %w", err)
	}
	var extra struct {
		EndSession string `json:"end_session_endpoint"`
	}
	if err := prov.Claims(&extra); err != nil {
		return nil, fmt.Errorf("portal: read the discovery document: %w", err)
	}
	st := &oidcState{
		provider: prov,
		oauth: oauth2.Config{ClientID: p.cfg.ClientID, ClientSecret: p.cfg.ClientSecret, Endpoint: prov.Endpoint(),
			RedirectURL: p.cfg.BaseURL + "/callback", Scopes: p.cfg.Scopes},
		verifier:   prov.Verifier(&oidc.Config{ClientID: p.cfg.ClientID, Now: p.cfg.Now}),
		endSession: extra.EndSession,
	}
	p.prov = st
	return st, nil
}
