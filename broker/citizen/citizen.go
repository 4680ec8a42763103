// Package citizen turns a citizen's OpenID Connect access token (a
// FranceConnect-style login on a consumer's portal) into the civil
// identity the broker designates the subject with. It asks the token's
// identity provider for its userinfo — a JWT signed by a key of the
// provider's key set, as FranceConnect v2 answers it — checks the
// signature, issuer, audience, expiry and login level (acr), and maps the
// pivot identity claims onto a SubjectIdentity.
//
// The token and the claims are personal data: they appear in no error
// and no log line; errors are catalogued (errcat) and their causes name
// only what went wrong.
//
// Providers are discovered lazily: a provider that is down when the
// broker starts does not stop it, and it is used without a restart once
// it answers again.
package citizen

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"buf.build/go/protovalidate"
	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/relais-broker/relais/broker/errcat"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
)

// Defaults of a provider's configuration.
const (
	// DefaultClockSkew is the tolerance on exp and iat: the provider's
	// clock and the broker's may differ by this much.
	DefaultClockSkew = 30 * time.Second
	// DefaultTimeout bounds one resolution (discovery, userinfo and key
	// set included): the citizen is waiting on a portal.
	DefaultTimeout = 2 * time.Second
	// MaxResponseBytes bounds every answer read from a provider
	// (discovery, key set, userinfo): a userinfo JWT is about a kilobyte.
	MaxResponseBytes = 64 << 10
	// DiscoveryRetryDelay is how long a failed discovery is remembered:
	// calls in that window fail at once (with this RetryInfo) rather than
	// each waiting on a provider that is down.
	DiscoveryRetryDelay = time.Second
)

// TokenField is the request field that carries the citizen's access
// token, named in field violations.
const TokenField = "citizen_access_token"

// ProviderConfig is one OpenID provider the broker accepts citizen
// logins from.
type ProviderConfig struct {
	// Issuer is the provider's issuer URL, exactly as its tokens and
	// discovery document say it; https, or http on a loopback address
	// (dev mode).
	Issuer string
	// ClientID is the audience Relais is registered under with the
	// provider: the userinfo's aud must contain it ("relais" in dev).
	ClientID string
	// ClientSecretFile, when set, holds the client secret that verifies
	// HS256-signed userinfo (FranceConnect v1); without it only the
	// provider's key set (RS256, ES256, …) verifies.
	ClientSecretFile string
	// AcceptedACR lists the login levels accepted (e.g. "eidas1"); at
	// least one is required.
	AcceptedACR []string
	// ClockSkew tolerates clock differences on exp and iat; zero means
	// DefaultClockSkew.
	ClockSkew time.Duration
	// Timeout bounds one resolution; zero means DefaultTimeout.
	Timeout time.Duration
}

// Config is what a Resolver is built from.
type Config struct {
	// Providers are keyed by issuer. A JWT access token goes to the
	// provider of its iss; an opaque one (FranceConnect's) to the first.
	Providers []ProviderConfig
	// HTTPClient reaches the providers; nil means a client with the
	// system's roots. Its Timeout is not needed: each resolution is
	// bounded by the provider's Timeout. Redirects are never followed.
	HTTPClient *http.Client
	// Clock returns the current time; nil means time.Now.
	Clock func() time.Time
	// Logger receives provider failures (never a token or a claim); nil
	// discards.
	Logger *slog.Logger
}

// Resolver resolves citizen access tokens into identities. It is safe
// for concurrent use.
type Resolver struct {
	providers []*provider
	now       func() time.Time
	log       *slog.Logger
	validator protovalidate.Validator
}

// New checks cfg and returns a Resolver. It does no I/O: providers are
// discovered on first use.
func New(cfg Config) (*Resolver, error) {
	if len(cfg.Providers) == 0 {
		return nil, errors.New("citizen: at least one provider is required")
	}
	r := &Resolver{now: cfg.Clock, log: cfg.Logger}
	if r.now == nil {
		r.now = time.Now
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	base := cfg.HTTPClient
	if base == nil {
		base = &http.Client{}
	}
	transport := base.Transport
	if transport == nil {
		transport = http.DefaultTransport
	}
	client := &http.Client{
		Transport: limitedTransport{next: transport, limit: MaxResponseBytes},
		Jar:       base.Jar,
		// A provider that redirects the userinfo call elsewhere would
		// send the citizen's token there: never follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	seen := map[string]bool{}
	for i, pc := range cfg.Providers {
		p, err := newProvider(pc, client)
		if err != nil {
			return nil, fmt.Errorf("citizen: provider %d: %w", i+1, err)
		}
		if seen[pc.Issuer] {
			return nil, fmt.Errorf("citizen: provider %d: issuer %q configured twice", i+1, pc.Issuer)
		}
		seen[pc.Issuer] = true
		r.providers = append(r.providers, p)
	}
	v, err := protovalidate.New()
	if err != nil {
		return nil, fmt.Errorf("citizen: validator: %w", err)
	}
	r.validator = v
	return r, nil
}

func newProvider(pc ProviderConfig, client *http.Client) (*provider, error) {
	u, err := url.Parse(pc.Issuer)
	switch {
	case pc.Issuer == "" || err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "":
		return nil, errors.New("issuer must be an absolute url without query or fragment")
	case u.Scheme == "http" && !loopback(u.Hostname()):
		return nil, errors.New("issuer must be https (http only on a loopback address)")
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, errors.New("issuer must be https")
	case pc.ClientID == "":
		return nil, errors.New("client_id is required")
	case len(pc.AcceptedACR) == 0:
		return nil, errors.New("at least one accepted acr is required")
	case pc.ClockSkew < 0 || pc.Timeout < 0:
		return nil, errors.New("clock skew and timeout must not be negative")
	}
	if slices.Contains(pc.AcceptedACR, "") {
		return nil, errors.New("an accepted acr is empty")
	}
	p := &provider{cfg: pc, client: client, sem: make(chan struct{}, 1)}
	if p.cfg.ClockSkew == 0 {
		p.cfg.ClockSkew = DefaultClockSkew
	}
	if p.cfg.Timeout == 0 {
		p.cfg.Timeout = DefaultTimeout
	}
	if pc.ClientSecretFile != "" {
		b, err := os.ReadFile(pc.ClientSecretFile)
		if err != nil {
			return nil, fmt.Errorf("client secret: %w", err)
		}
		p.secret = []byte(strings.TrimSpace(string(b)))
		if len(p.secret) < 32 {
			return nil, errors.New("client secret must be at least 32 bytes (HS256)")
		}
	}
	return p, nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Resolve returns the identity of the citizen whose access token this is,
// or a catalogued error (errcat): citizen_token_* when the token cannot
// designate anyone, identity_provider_* when the provider cannot be used.
// The token is sent to one configured provider only.
func (r *Resolver) Resolve(ctx context.Context, token string) (*commonv1.SubjectIdentity, error) {
	if token == "" {
		return nil, tokenError(errcat.CitizenTokenInvalid, errors.New("empty token"))
	}
	p, err := r.route(token)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	id, err := p.resolve(pctx, token, r.now)
	if err != nil && errors.Is(ctx.Err(), context.Canceled) {
		return nil, errcat.Wrap(errcat.Cancelled, errors.New("caller cancelled while the identity provider was asked"))
	}
	if err != nil {
		var e *errcat.Error
		if errors.As(err, &e) && (e.Reason == errcat.IdentityProviderUnavailable || e.Reason == errcat.IdentityProviderInvalidResponse) {
			// The cause names the provider's failure, never the token.
			r.log.Warn("citizen login: identity provider failed", "issuer", p.cfg.Issuer, "reason", string(e.Reason), "error", e.Cause)
		}
		return nil, err
	}
	if verr := errcat.Validate(r.validator, id); verr != nil {
		return nil, claimsFromViolations(verr)
	}
	return id, nil
}

// route picks the provider a token goes to: the one of its iss when it
// is a JWT, else the first configured. A JWT of an issuer not configured
// is refused without being sent anywhere.
func (r *Resolver) route(token string) (*provider, error) {
	iss, isJWT := unverifiedIssuer(token)
	if !isJWT {
		return r.providers[0], nil
	}
	for _, p := range r.providers {
		if p.cfg.Issuer == iss {
			return p, nil
		}
	}
	return nil, tokenError(errcat.CitizenTokenWrongIssuer, errors.New("jwt access token of an issuer not configured"))
}

// unverifiedIssuer reads the iss of a compact JWS without verifying it:
// only to route the token (the provider verifies it).
func unverifiedIssuer(token string) (string, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", false
	}
	var c struct {
		Iss *string `json:"iss"`
	}
	if json.Unmarshal(payload, &c) != nil || c.Iss == nil {
		return "", false
	}
	return *c.Iss, true
}

// provider is one configured provider and what was discovered of it.
type provider struct {
	cfg    ProviderConfig
	client *http.Client
	secret []byte

	// sem lets one discovery run at a time; waiting on it honours the
	// caller's context (a mutex would not).
	sem      chan struct{}
	mu       sync.Mutex
	disc     *discovered
	failedAt time.Time
	failure  error
}

// discovered is what discovery gave: the userinfo endpoint, the key set
// (go-oidc's: cached, refetched when a signature names an unknown key,
// so rotations are followed) and the algorithms accepted.
type discovered struct {
	userinfo string
	keys     oidc.KeySet
	algs     []jose.SignatureAlgorithm
}

// asymmetric are the algorithms the key set may verify.
var asymmetric = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.ES512, jose.PS256, jose.PS384, jose.PS512, jose.EdDSA}

func (p *provider) discovery(ctx context.Context, now time.Time) (*discovered, error) {
	p.mu.Lock()
	d, failedAt, failure := p.disc, p.failedAt, p.failure
	p.mu.Unlock()
	if d != nil {
		return d, nil
	}
	if wait := failedAt.Add(DiscoveryRetryDelay).Sub(now); failure != nil && wait > 0 {
		return nil, unavailable(failure, wait)
	}
	select {
	case p.sem <- struct{}{}:
		defer func() { <-p.sem }()
	case <-ctx.Done():
		return nil, unavailable(fmt.Errorf("waiting for discovery: %w", ctx.Err()), DiscoveryRetryDelay)
	}
	p.mu.Lock()
	d = p.disc
	p.mu.Unlock()
	if d != nil {
		return d, nil // discovered while this call waited
	}
	d, err := p.discover(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.failedAt, p.failure = now, err
		return nil, unavailable(err, DiscoveryRetryDelay)
	}
	p.disc, p.failure = d, nil
	return d, nil
}

func (p *provider) discover(ctx context.Context) (*discovered, error) {
	octx := oidc.ClientContext(ctx, p.client)
	op, err := oidc.NewProvider(octx, p.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	var meta struct {
		JWKS     string   `json:"jwks_uri"`
		Userinfo string   `json:"userinfo_endpoint"`
		Algs     []string `json:"userinfo_signing_alg_values_supported"`
	}
	if err := op.Claims(&meta); err != nil {
		return nil, fmt.Errorf("discovery document: %w", err)
	}
	if err := sameOrigin(p.cfg.Issuer, meta.Userinfo); err != nil {
		return nil, fmt.Errorf("discovery: userinfo_endpoint: %w", err)
	}
	d := &discovered{userinfo: meta.Userinfo}
	for _, a := range meta.Algs {
		alg := jose.SignatureAlgorithm(a)
		if slices.Contains(asymmetric, alg) {
			d.algs = append(d.algs, alg)
		}
	}
	if len(meta.Algs) == 0 {
		// Not advertised: what FranceConnect v2 signs with.
		d.algs = []jose.SignatureAlgorithm{jose.RS256, jose.ES256}
	}
	if p.secret != nil {
		// The operator configured the secret: HS256 is accepted, advertised or not.
		d.algs = append(d.algs, jose.HS256)
	}
	if len(d.algs) == 0 {
		return nil, errors.New("discovery: no userinfo signing algorithm the broker accepts")
	}
	if meta.JWKS != "" {
		if _, err := url.Parse(meta.JWKS); err != nil {
			return nil, errors.New("discovery: jwks_uri is not a url")
		}
		// The key set ignores cancellation (go-oidc uses the context as
		// a bag of values); the waiting call is bounded by its context.
		// Its fetches run in the background: bound them by the client.
		ks := *p.client
		ks.Timeout = p.cfg.Timeout
		d.keys = oidc.NewRemoteKeySet(oidc.ClientContext(context.Background(), &ks), meta.JWKS)
	} else if p.secret == nil {
		return nil, errors.New("discovery: no jwks_uri and no client secret")
	}
	return d, nil
}

// sameOrigin refuses a userinfo endpoint on another host than the
// issuer's, or not https (http only on loopback): the token goes there.
func sameOrigin(issuer, endpoint string) error {
	iu, _ := url.Parse(issuer)
	eu, err := url.Parse(endpoint)
	switch {
	case endpoint == "" || err != nil:
		return errors.New("missing or not a url")
	case eu.Scheme != iu.Scheme || eu.Host != iu.Host:
		return errors.New("not on the issuer's origin")
	}
	return nil
}

func (p *provider) resolve(ctx context.Context, token string, clock func() time.Time) (*commonv1.SubjectIdentity, error) {
	d, err := p.discovery(ctx, clock())
	if err != nil {
		return nil, err
	}
	raw, err := p.userinfo(ctx, d, token)
	if err != nil {
		return nil, err
	}
	payload, err := p.verify(ctx, d, raw)
	if err != nil {
		return nil, err
	}
	return p.identity(payload, clock())
}

// userinfo asks the provider for the token's userinfo and returns the
// JWT it answered.
func (p *provider) userinfo(ctx context.Context, d *discovered, token string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.userinfo, nil)
	if err != nil {
		return "", unavailable(errors.New("userinfo request could not be built"), DiscoveryRetryDelay)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/jwt")
	resp, err := p.client.Do(req)
	if err != nil {
		return "", unavailable(transportError(ctx, err), DiscoveryRetryDelay)
	}
	defer resp.Body.Close()
	body, err := readAll(resp)
	if err != nil {
		return "", unavailable(transportError(ctx, err), DiscoveryRetryDelay)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusUnauthorized:
		if bearerExpired(resp.Header.Values("WWW-Authenticate")) {
			return "", tokenError(errcat.CitizenTokenExpired, errors.New("userinfo: provider says the token expired"))
		}
		return "", tokenError(errcat.CitizenTokenInvalid, errors.New("userinfo: provider refused the token (401)"))
	case resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusForbidden:
		return "", tokenError(errcat.CitizenTokenInvalid, fmt.Errorf("userinfo: provider refused the token (%d)", resp.StatusCode))
	default:
		return "", unavailable(fmt.Errorf("userinfo: status %d", resp.StatusCode), retryAfter(resp.Header.Get("Retry-After")))
	}
	ct := strings.ToLower(strings.TrimSpace(strings.Split(resp.Header.Get("Content-Type"), ";")[0]))
	if ct != "application/jwt" {
		return "", invalidResponse(errors.New("userinfo is not a signed jwt (content type " + strconv.Quote(ct) + ")"))
	}
	return strings.TrimSpace(string(body)), nil
}

// verify checks the userinfo JWT's signature: the client secret for
// HS256, else the provider's key set (refetched for an unknown key).
func (p *provider) verify(ctx context.Context, d *discovered, raw string) ([]byte, error) {
	jws, err := jose.ParseSigned(raw, d.algs)
	if err != nil {
		return nil, invalidResponse(errors.New("userinfo jwt is malformed or signed with an algorithm not accepted"))
	}
	if len(jws.Signatures) != 1 {
		return nil, invalidResponse(errors.New("userinfo jwt must carry exactly one signature"))
	}
	if jws.Signatures[0].Header.Algorithm == string(jose.HS256) {
		payload, err := jws.Verify(p.secret)
		if err != nil {
			return nil, invalidResponse(errors.New("userinfo jwt signature does not verify with the client secret"))
		}
		return payload, nil
	}
	if d.keys == nil {
		return nil, invalidResponse(errors.New("userinfo jwt is not hs256 and the provider has no key set"))
	}
	payload, err := d.keys.VerifySignature(ctx, raw)
	switch {
	case err == nil:
		return payload, nil
	case ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded):
		return nil, unavailable(fmt.Errorf("key set: %w", transportError(ctx, err)), DiscoveryRetryDelay)
	case strings.Contains(err.Error(), "fetching keys"):
		// go-oidc's wording when the key set itself could not be read.
		return nil, unavailable(errors.New("key set could not be fetched"), DiscoveryRetryDelay)
	default:
		return nil, invalidResponse(errors.New("userinfo jwt signature verifies with no key of the provider's key set"))
	}
}

// claims are the userinfo claims the broker reads (FranceConnect v2
// shape). Pointers tell a missing claim from an empty one.
type claims struct {
	Iss               *string  `json:"iss"`
	Aud               audience `json:"aud"`
	Exp               *float64 `json:"exp"`
	Iat               *float64 `json:"iat"`
	Acr               *string  `json:"acr"`
	GivenName         *string  `json:"given_name"`
	FamilyName        *string  `json:"family_name"`
	PreferredUsername *string  `json:"preferred_username"`
	Birthdate         *string  `json:"birthdate"`
	Gender            *string  `json:"gender"`
	Birthplace        *string  `json:"birthplace"`
	Birthcountry      *string  `json:"birthcountry"`
}

// audience is aud: one string or an array of them.
type audience []string

// UnmarshalJSON accepts both shapes RFC 7519 allows for aud.
func (a *audience) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*a = audience{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("aud is neither a string nor an array of strings")
	}
	*a = many
	return nil
}

// identity checks the verified claims and maps them onto an identity.
func (p *provider) identity(payload []byte, now time.Time) (*commonv1.SubjectIdentity, error) {
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, invalidResponse(errors.New("userinfo claims are not a json object of the expected shape"))
	}
	skew := p.cfg.ClockSkew
	switch {
	case c.Iss == nil || *c.Iss != p.cfg.Issuer:
		return nil, tokenError(errcat.CitizenTokenWrongIssuer, errors.New("userinfo iss is not the provider's issuer"))
	case !slices.Contains(c.Aud, p.cfg.ClientID):
		return nil, tokenError(errcat.CitizenTokenWrongAudience, errors.New("userinfo aud does not contain the client id"))
	case c.Exp == nil:
		return nil, claimError("exp", "missing")
	case !now.Add(-skew).Before(unixTime(*c.Exp)):
		return nil, tokenError(errcat.CitizenTokenExpired, errors.New("userinfo exp is past"))
	case c.Iat == nil:
		return nil, claimError("iat", "missing")
	case unixTime(*c.Iat).After(now.Add(skew)):
		return nil, tokenError(errcat.CitizenTokenInvalid, errors.New("userinfo iat is in the future"))
	case c.Acr == nil || !slices.Contains(p.cfg.AcceptedACR, *c.Acr):
		return nil, tokenError(errcat.CitizenLoginTooWeak, errors.New("acr not accepted"))
	}
	id := &commonv1.SubjectIdentity{}
	if c.GivenName == nil {
		return nil, claimError("given_name", "missing")
	}
	id.GivenNames = strings.Fields(*c.GivenName)
	if len(id.GivenNames) == 0 {
		return nil, claimError("given_name", "empty")
	}
	if c.FamilyName == nil || strings.TrimSpace(*c.FamilyName) == "" {
		return nil, claimError("family_name", "missing")
	}
	id.BirthName = strings.TrimSpace(*c.FamilyName)
	if c.PreferredUsername != nil {
		id.UsageName = strings.TrimSpace(*c.PreferredUsername)
	}
	if c.Birthdate == nil {
		return nil, claimError("birthdate", "missing")
	}
	if _, err := time.Parse(time.DateOnly, *c.Birthdate); err != nil {
		return nil, claimError("birthdate", "not a yyyy-mm-dd date")
	}
	id.BirthDate = *c.Birthdate
	switch {
	case c.Gender == nil:
		return nil, claimError("gender", "missing")
	case *c.Gender == "female":
		id.Sex = commonv1.Sex_SEX_FEMALE
	case *c.Gender == "male":
		id.Sex = commonv1.Sex_SEX_MALE
	default:
		return nil, claimError("gender", "neither female nor male")
	}
	if c.Birthcountry == nil || *c.Birthcountry == "" {
		return nil, claimError("birthcountry", "missing")
	}
	id.BirthCountryCog = *c.Birthcountry
	if c.Birthplace != nil {
		id.BirthPlaceCog = *c.Birthplace
	}
	if id.BirthCountryCog == franceCOG && id.BirthPlaceCog == "" {
		return nil, claimError("birthplace", "missing for a birth in france")
	}
	return id, nil
}

// franceCOG is France's INSEE country code.
const franceCOG = "99100"

func unixTime(f float64) time.Time {
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9))
}

// claimFields maps SubjectIdentity fields to the claims they come from.
var claimFields = map[string]string{
	"birth_name":        "family_name",
	"usage_name":        "preferred_username",
	"given_names":       "given_name",
	"sex":               "gender",
	"birth_date":        "birthdate",
	"birth_place_cog":   "birthplace",
	"birth_country_cog": "birthcountry",
}

// claimsFromViolations turns the identity's validation errors into
// citizen_claims_invalid naming the first claim at fault.
func claimsFromViolations(verr *errcat.Error) *errcat.Error {
	claim := "identity"
	if len(verr.Violations) > 0 {
		field := verr.Violations[0].GetField()
		if i := strings.IndexAny(field, ".["); i >= 0 {
			field = field[:i]
		}
		if c, ok := claimFields[field]; ok {
			claim = c
		} else if strings.Contains(verr.Violations[0].GetReason(), "birth_place") {
			claim = "birthplace"
		}
	}
	return claimError(claim, "breaks the identity rules")
}

func claimError(claim, why string) *errcat.Error {
	return errcat.Wrap(errcat.CitizenClaimsInvalid, fmt.Errorf("claim %s: %s", claim, why)).
		WithMetadata("claim", claim).
		WithViolations([]*errdetails.BadRequest_FieldViolation{{Field: TokenField, Description: "identity claim " + claim + " is missing or invalid"}})
}

func tokenError(reason errcat.Reason, cause error) *errcat.Error {
	e := errcat.Wrap(reason, cause)
	entry, _ := errcat.Lookup(reason)
	return e.WithViolations([]*errdetails.BadRequest_FieldViolation{{Field: TokenField, Description: entry.Message}})
}

func unavailable(cause error, retry time.Duration) *errcat.Error {
	return errcat.Wrap(errcat.IdentityProviderUnavailable, cause).WithRetryAfter(retry)
}

func invalidResponse(cause error) *errcat.Error {
	return errcat.Wrap(errcat.IdentityProviderInvalidResponse, cause)
}

// transportError describes a failed exchange without the request (its
// URL is fine, but *url.Error wording is kept short).
func transportError(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return errors.New("provider did not answer in time")
	}
	if errors.Is(err, errTooLarge) {
		return errTooLarge
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return fmt.Errorf("%s %s: %w", uerr.Op, uerr.URL, uerr.Err)
	}
	return err
}

// bearerExpired reports whether a WWW-Authenticate challenge says the
// token expired (RFC 6750 error_description, as the contract says).
func bearerExpired(challenges []string) bool {
	for _, c := range challenges {
		lc := strings.ToLower(c)
		if strings.Contains(lc, "invalid_token") && strings.Contains(lc, "expired") {
			return true
		}
	}
	return false
}

// retryAfter reads a Retry-After header in seconds; the default delay
// otherwise (an HTTP date is not worth parsing here).
func retryAfter(h string) time.Duration {
	if s, err := strconv.Atoi(strings.TrimSpace(h)); err == nil && s > 0 && s <= 3600 {
		return time.Duration(s) * time.Second
	}
	return DiscoveryRetryDelay
}
