// Package devidptest starts the dev OpenID provider (internal/devidp) for a
// test, over real TLS on 127.0.0.1, and logs citizens in through its real
// login flow, so tests of the broker's citizen-login path and of the example
// portal run against the same provider as `relaisd dev`.
package devidptest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/relais-broker/relais/internal/devidp"
)

// Options configures Start; zero values give the test users and the three
// default clients.
type Options struct {
	// Users defaults to Users().
	Users []devidp.User
	// Clients defaults to devidp.DefaultClients with a transparency-portal
	// redirect of https://127.0.0.1:8444/callback and secret TransparencySecret.
	Clients []devidp.Client
	// Now is the provider's clock (token expiry); time.Now when nil.
	Now func() time.Time
	// AccessTokenLifetime defaults to devidp.DefaultAccessTokenLifetime.
	AccessTokenLifetime time.Duration
	// Logger receives the provider's request lines; discarded when nil.
	Logger *slog.Logger
	// TLSConfig, when set, is the server's TLS configuration, e.g. with a
	// certificate of the dev CA (internal/tlstest) that a browser trusts,
	// given in Certificates (httptest puts its own certificate there when
	// it is empty, and a client without SNI would get that one);
	// httptest's self-signed certificate is used otherwise.
	TLSConfig *tls.Config
}

// TransparencySecret is the transparency-portal client's secret in tests.
const TransparencySecret = "transparency-portal-test-secret"

// Server is a running dev provider.
type Server struct {
	// TLS is the underlying server; Close it to simulate a provider that is
	// down (the port then refuses connections).
	TLS *httptest.Server
	// Provider is the provider being served.
	Provider *devidp.Provider
	// Issuer is the issuer URL, https://127.0.0.1:port.
	Issuer string
	// Roots trusts the server's certificate (for the broker's HTTP client).
	Roots *x509.CertPool
}

// Start serves a provider until the test ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	issuer := "https://" + srv.Listener.Addr().String()
	cfg := devidp.Config{
		Issuer:              issuer,
		Users:               o.Users,
		Clients:             o.Clients,
		Now:                 o.Now,
		AccessTokenLifetime: o.AccessTokenLifetime,
		Logger:              o.Logger,
	}
	if cfg.Users == nil {
		cfg.Users = Users()
	}
	if cfg.Clients == nil {
		cfg.Clients = devidp.DefaultClients("https://127.0.0.1:8444/callback", TransparencySecret)
	}
	p, err := devidp.New(cfg)
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	srv.Config.Handler = p
	srv.TLS = o.TLSConfig
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	return &Server{TLS: srv, Provider: p, Issuer: issuer, Roots: roots}
}

// HTTPClient returns a client that trusts the server.
func (s *Server) HTTPClient() *http.Client { return s.TLS.Client() }

// DiscoveryURL is the URL of the discovery document.
func (s *Server) DiscoveryURL() string { return s.Provider.DiscoveryURL() }

// Login logs citizen (a display label such as "DUPONT Zoé") in for clientID
// through the real login flow and returns the token response.
func (s *Server) Login(t testing.TB, clientID, citizen string) *oauth2.Token {
	t.Helper()
	h := devidp.HeadlessLogin{HTTPClient: s.HTTPClient(), Issuer: s.Issuer, ClientID: clientID, Citizen: citizen}
	if clientID == devidp.ClientTransparencyPortal {
		h.ClientSecret = TransparencySecret
		h.RedirectURL = "https://127.0.0.1:8444/callback"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok, err := h.Login(ctx)
	if err != nil {
		t.Fatalf("devidptest: login %s for %s: %v", citizen, clientID, err)
	}
	return tok
}

// Token returns an access token of citizen for clientID.
func (s *Server) Token(t testing.TB, clientID, citizen string) string {
	t.Helper()
	return s.Login(t, clientID, citizen).AccessToken
}

// Users are fictitious citizens whose identities are those of the sandbox
// data set (adapters/sandbox/citizens.yaml), so a token resolves to a
// citizen the sandbox adapter knows: DUPONT Zoé (born in Paris), LEROY
// Camille (usage name MARTIN), BENALI Yasmine (born abroad, Algeria) and
// DUBOIS Alice (usage name LEFEBVRE).
func Users() []devidp.User {
	return []devidp.User{
		{ID: "dupont-zoe", GivenNames: []string{"Zoé", "Marie"}, BirthName: "DUPONT", BirthDate: "1984-03-12",
			Gender: devidp.GenderFemale, BirthPlaceCOG: "75056", BirthCountryCOG: "99100"},
		{ID: "leroy-camille", GivenNames: []string{"Camille"}, BirthName: "LEROY", UsageName: "MARTIN", BirthDate: "1981-01-17",
			Gender: devidp.GenderFemale, BirthPlaceCOG: "69123", BirthCountryCOG: "99100"},
		{ID: "benali-yasmine", GivenNames: []string{"Yasmine"}, BirthName: "BENALI", BirthDate: "1986-04-23",
			Gender: devidp.GenderFemale, BirthCountryCOG: "99350"},
		{ID: "dubois-alice", GivenNames: []string{"Alice"}, BirthName: "DUBOIS", UsageName: "LEFEBVRE", BirthDate: "1988-12-01",
			Gender: devidp.GenderFemale, BirthPlaceCOG: "44109", BirthCountryCOG: "99100"},
	}
}
