// Package citizentest is an OpenID provider for tests of citizen logins:
// a real HTTPS server on 127.0.0.1 (httptest.NewTLSServer) that serves a
// discovery document, a key set and a userinfo endpoint answering signed
// JWTs in the FranceConnect v2 shape, with the knobs the tests need
// (tokens with chosen claims, rotation of the signing key, failures,
// slowness). Test code only.
package citizentest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Audience is the audience Relais is registered under in the tests.
const Audience = "relais"

// Provider is a running test provider.
type Provider struct {
	srv *httptest.Server

	mu       sync.Mutex
	keys     []jose.JSONWebKey // private, newest last; the newest signs
	tokens   map[string]Answer
	failWith int  // status answered by every endpoint when non-zero
	failJWKS bool // the key set answers 503
	signer   *jose.JSONWebKey
	slow     bool // userinfo waits until the request is cancelled
	hits     map[string]int
}

// Answer is what userinfo answers for one access token.
type Answer struct {
	// Claims are signed as the userinfo JWT.
	Claims map[string]any
	// Status, when non-zero and not 200, is answered instead, with
	// Challenge as the WWW-Authenticate header.
	Status    int
	Challenge string
	// Tamper flips a byte of the signature.
	Tamper bool
	// ContentType overrides application/jwt.
	ContentType string
}

// Start starts a provider; Close it at the end of the test.
func Start() *Provider {
	p := &Provider{tokens: map[string]Answer{}, hits: map[string]int{}}
	p.Rotate()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", p.discovery)
	mux.HandleFunc("GET /jwks", p.jwks)
	mux.HandleFunc("GET /userinfo", p.userinfo)
	p.srv = httptest.NewTLSServer(mux)
	return p
}

// Issuer is the provider's issuer URL.
func (p *Provider) Issuer() string { return p.srv.URL }

// Client is an HTTP client trusting the provider's certificate.
func (p *Provider) Client() *http.Client { return p.srv.Client() }

// Close stops the provider: it is then down (connections refused).
func (p *Provider) Close() { p.srv.Close() }

// Rotate adds a new signing key: the JWTs signed from now on name it,
// and the key set lists the old keys too.
func (p *Provider) Rotate() {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys = append(p.keys, jose.JSONWebKey{Key: k, KeyID: fmt.Sprintf("key-%d", len(p.keys)+1), Algorithm: string(jose.ES256), Use: "sig"})
}

// FailWith makes every endpoint answer status (0 restores them).
func (p *Provider) FailWith(status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failWith = status
}

// Slow makes userinfo hang until the caller gives up.
func (p *Provider) Slow(slow bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.slow = slow
}

// FailJWKS makes the key set alone answer 503.
func (p *Provider) FailJWKS(fail bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failJWKS = fail
}

// SignWith signs userinfo with key instead of the newest key of the key
// set (an HS256 secret, or a key the key set does not list).
func (p *Provider) SignWith(key jose.JSONWebKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.signer = &key
}

// Register sets the answer for a token chosen by the test (a JWT access
// token).
func (p *Provider) Register(token string, a Answer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tokens[token] = a
}

// Hits is how many requests an endpoint ("discovery", "jwks", "userinfo") got.
func (p *Provider) Hits(endpoint string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hits[endpoint]
}

// Issue registers an access token and its answer, and returns the token.
func (p *Provider) Issue(a Answer) string {
	token := strings.ReplaceAll(rand.Text(), "=", "") + "-at"
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tokens[token] = a
	return token
}

// Claims are the claims of a valid userinfo for the fictitious citizen
// Zoé Marie DUPONT (usage name MARTIN), issued at now for an hour.
func (p *Provider) Claims(now time.Time) map[string]any {
	return map[string]any{
		"iss":                p.Issuer(),
		"aud":                []string{"citizen-portal", Audience},
		"sub":                "c0ffee-dupont",
		"iat":                now.Unix(),
		"exp":                now.Add(time.Hour).Unix(),
		"acr":                "eidas1",
		"given_name":         "Zoé Marie",
		"family_name":        "DUPONT",
		"preferred_username": "MARTIN",
		"birthdate":          "1984-03-12",
		"gender":             "female",
		"birthplace":         "75056",
		"birthcountry":       "99100",
	}
}

func (p *Provider) hit(w http.ResponseWriter, endpoint string) bool {
	p.mu.Lock()
	p.hits[endpoint]++
	fail := p.failWith
	p.mu.Unlock()
	if fail != 0 {
		http.Error(w, http.StatusText(fail), fail)
		return false
	}
	return true
}

func (p *Provider) discovery(w http.ResponseWriter, _ *http.Request) {
	if !p.hit(w, "discovery") {
		return
	}
	writeJSON(w, map[string]any{
		"issuer":                                p.Issuer(),
		"authorization_endpoint":                p.Issuer() + "/authorize",
		"token_endpoint":                        p.Issuer() + "/token",
		"userinfo_endpoint":                     p.Issuer() + "/userinfo",
		"jwks_uri":                              p.Issuer() + "/jwks",
		"end_session_endpoint":                  p.Issuer() + "/logout",
		"code_challenge_methods_supported":      []string{"S256"},
		"acr_values_supported":                  []string{"eidas1"},
		"userinfo_signing_alg_values_supported": []string{"ES256"},
		"id_token_signing_alg_values_supported": []string{"ES256"},
	})
}

func (p *Provider) jwks(w http.ResponseWriter, _ *http.Request) {
	if !p.hit(w, "jwks") {
		return
	}
	p.mu.Lock()
	if p.failJWKS {
		p.mu.Unlock()
		http.Error(w, "key set unavailable", http.StatusServiceUnavailable)
		return
	}
	set := jose.JSONWebKeySet{}
	for _, k := range p.keys {
		set.Keys = append(set.Keys, k.Public())
	}
	p.mu.Unlock()
	writeJSON(w, set)
}

func (p *Provider) userinfo(w http.ResponseWriter, r *http.Request) {
	if !p.hit(w, "userinfo") {
		return
	}
	p.mu.Lock()
	slow := p.slow
	token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	a, known := p.tokens[token]
	key := p.keys[len(p.keys)-1]
	if p.signer != nil {
		key = *p.signer
	}
	p.mu.Unlock()
	if slow {
		<-r.Context().Done()
		return
	}
	if !known {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="unknown access token"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if a.Status != 0 && a.Status != http.StatusOK {
		if a.Challenge != "" {
			w.Header().Set("WWW-Authenticate", a.Challenge)
		}
		w.WriteHeader(a.Status)
		return
	}
	jwt, err := Sign(key, a.Claims)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if a.Tamper {
		i := strings.LastIndexByte(jwt, '.') + 5
		b := []byte(jwt)
		b[i] = map[bool]byte{true: 'B', false: 'A'}[b[i] == 'A']
		jwt = string(b)
	}
	ct := a.ContentType
	if ct == "" {
		ct = "application/jwt"
	}
	w.Header().Set("Content-Type", ct)
	_, _ = w.Write([]byte(jwt))
}

// Sign signs claims as a compact JWS with key (its kid in the header).
func Sign(key jose.JSONWebKey, claims map[string]any) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(key.Algorithm), Key: key},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
