package devidp

import (
	"context"
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// FranceConnect's scopes, accepted (and not stripped) by the provider. The
// userinfo answer always carries the whole pivot identity: the dev provider
// plays the part of an identity provider whose clients are all entitled to it.
var fcScopes = []string{
	"given_name", "family_name", "preferred_username", "birthdate", "gender",
	"birthplace", "birthcountry", "birth", "identite_pivot",
}

var supportedScopes = append([]string{oidc.ScopeOpenID, oidc.ScopeProfile}, fcScopes...)

var supportedClaims = []string{
	"sub", "aud", "exp", "iat", "iss", "auth_time", "nonce", "acr", "azp", "at_hash", "c_hash",
	"given_name", "family_name", "preferred_username", "birthdate", "gender", "birthplace", "birthcountry",
}

// storage is the in-memory op.Storage of a Provider.
type storage struct {
	p        *Provider
	clients  map[string]*Client
	users    []*user
	bySub    map[string]*user
	key      signingKey
	lifetime time.Duration

	mu       sync.Mutex
	requests map[string]*authRequest
	codes    map[string]codeEntry
	tokens   map[string]*accessToken
}

type codeEntry struct {
	requestID string
	expires   time.Time
}

// accessToken is what an opaque access token designates.
type accessToken struct {
	id       string
	clientID string
	subject  string
	audience []string
	scopes   []string
	expires  time.Time
}

func newStorage(p *Provider, clients map[string]*Client, users []*user, key signingKey, lifetime time.Duration) *storage {
	s := &storage{
		p: p, clients: clients, users: users, key: key, lifetime: lifetime,
		bySub:    map[string]*user{},
		requests: map[string]*authRequest{},
		codes:    map[string]codeEntry{},
		tokens:   map[string]*accessToken{},
	}
	for _, u := range users {
		s.bySub[u.sub] = u
	}
	return s
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

func (s *storage) userByLabel(label string) *user {
	k := labelKey(label)
	for _, u := range s.users {
		if labelKey(u.Label) == k {
			return u
		}
	}
	return nil
}

// token returns the live access token with that id, or why it is not.
func (s *storage) token(id, subject string) (*accessToken, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[id]
	if !ok || t.subject != subject {
		return nil, errTokenUnknown
	}
	if !s.p.now().Before(t.expires) {
		return nil, errTokenExpired
	}
	cp := *t
	return &cp, nil
}

var (
	errTokenUnknown = errors.New("access token invalid")
	errTokenExpired = errors.New("access token expired")
)

// --- op.AuthStorage ---

func (s *storage) CreateAuthRequest(_ context.Context, req *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	c, ok := s.clients[req.ClientID]
	if !ok {
		return nil, oidc.ErrInvalidClient().WithDescription("unknown client")
	}
	if slices.Contains(req.Prompt, oidc.PromptNone) {
		return nil, oidc.ErrLoginRequired().WithDescription("no session: the citizen must pick an identity")
	}
	if c.Secret == "" && (req.CodeChallenge == "" || req.CodeChallengeMethod != oidc.CodeChallengeMethodS256) {
		return nil, oidc.ErrInvalidRequest().WithDescription("public clients must use pkce with code_challenge_method S256")
	}
	if req.CodeChallenge != "" && req.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		return nil, oidc.ErrInvalidRequest().WithDescription("only code_challenge_method S256 is supported")
	}
	r := &authRequest{
		id:          randomID(),
		clientID:    req.ClientID,
		redirectURI: req.RedirectURI,
		state:       req.State,
		nonce:       req.Nonce,
		scopes:      slices.Clone([]string(req.Scopes)),
		respType:    req.ResponseType,
		respMode:    req.ResponseMode,
		created:     s.p.now(),
	}
	if req.CodeChallenge != "" {
		r.challenge = &oidc.CodeChallenge{Challenge: req.CodeChallenge, Method: req.CodeChallengeMethod}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.purgeLocked()
	if len(s.requests) >= maxPendingRequests {
		return nil, oidc.ErrServerError().WithDescription("too many logins in progress")
	}
	s.requests[r.id] = r
	return r, nil
}

// Bounds of the in-memory state of a long-running `relaisd dev`.
const (
	maxPendingRequests = 10000
	requestLifetime    = 30 * time.Minute
	// expiredTokenMemory keeps expired tokens long enough to answer
	// "access token expired" rather than "invalid".
	expiredTokenMemory = 24 * time.Hour
)

// purgeLocked drops abandoned authorization requests, expired codes and
// tokens expired for a day.
func (s *storage) purgeLocked() {
	now := s.p.now()
	for id, r := range s.requests {
		if now.Sub(r.created) > requestLifetime {
			delete(s.requests, id)
		}
	}
	for c, e := range s.codes {
		if !now.Before(e.expires) {
			delete(s.codes, c)
		}
	}
	for id, t := range s.tokens {
		if now.Sub(t.expires) > expiredTokenMemory {
			delete(s.tokens, id)
		}
	}
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.requests[id]
	if !ok {
		return nil, errors.New("unknown or finished authorization request")
	}
	return r, nil
}

// finishLogin marks the request as authenticated as u.
func (s *storage) finishLogin(id string, u *user) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.requests[id]
	if !ok {
		return errors.New("unknown or finished authorization request")
	}
	if r.done {
		return errors.New("authorization request already used")
	}
	r.subject = u.sub
	r.done = true
	r.authTime = s.p.now()
	return nil
}

func (s *storage) AuthRequestByCode(_ context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.codes[code]
	if !ok {
		return nil, oidc.ErrInvalidGrant().WithDescription("invalid or used authorization code")
	}
	if !s.p.now().Before(e.expires) {
		delete(s.codes, code)
		return nil, oidc.ErrInvalidGrant().WithDescription("authorization code expired")
	}
	r, ok := s.requests[e.requestID]
	if !ok {
		return nil, oidc.ErrInvalidGrant().WithDescription("invalid or used authorization code")
	}
	return r, nil
}

func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.requests[id]; !ok {
		return errors.New("unknown authorization request")
	}
	s.codes[code] = codeEntry{requestID: id, expires: s.p.now().Add(codeLifetime)}
	return nil
}

func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.requests, id)
	for code, e := range s.codes {
		if e.requestID == id {
			delete(s.codes, code)
		}
	}
	return nil
}

func (s *storage) CreateAccessToken(_ context.Context, req op.TokenRequest) (string, time.Time, error) {
	ar, ok := req.(*authRequest)
	if !ok {
		return "", time.Time{}, oidc.ErrUnsupportedGrantType()
	}
	c, ok := s.clients[ar.clientID]
	if !ok {
		return "", time.Time{}, oidc.ErrInvalidClient()
	}
	aud := append([]string{c.ID}, c.Audiences...)
	t := &accessToken{
		id:       randomID(),
		clientID: c.ID,
		subject:  ar.subject,
		audience: aud,
		scopes:   slices.Clone(ar.scopes),
		expires:  s.p.now().Add(s.lifetime),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[t.id] = t
	return t.id, t.expires, nil
}

func (s *storage) CreateAccessAndRefreshTokens(context.Context, op.TokenRequest, string) (string, string, time.Time, error) {
	return "", "", time.Time{}, oidc.ErrUnsupportedGrantType().WithDescription("refresh tokens are not issued")
}

func (s *storage) TokenRequestByRefreshToken(context.Context, string) (op.RefreshTokenRequest, error) {
	return nil, op.ErrInvalidRefreshToken
}

// TerminateSession revokes every access token of the user for the client:
// after end session the broker sees them as invalid.
func (s *storage) TerminateSession(_ context.Context, userID, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, t := range s.tokens {
		if t.subject == userID && (clientID == "" || t.clientID == clientID) {
			delete(s.tokens, id)
		}
	}
	return nil
}

func (s *storage) RevokeToken(_ context.Context, tokenOrTokenID, _, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[tokenOrTokenID]
	if !ok {
		return nil
	}
	if t.clientID != clientID {
		return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
	}
	delete(s.tokens, tokenOrTokenID)
	return nil
}

func (s *storage) GetRefreshTokenInfo(context.Context, string, string) (string, string, error) {
	return "", "", op.ErrInvalidRefreshToken
}

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) { return s.key, nil }

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{s.key.alg}, nil
}

func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{publicKey{s.key}}, nil
}

// --- op.OPStorage ---

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	c, ok := s.clients[id]
	if !ok {
		return nil, errors.New("unknown client")
	}
	return opClient{c: c, loginURL: s.p.issuer + pathLogin + "?authRequestID="}, nil
}

func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	c, ok := s.clients[id]
	if !ok || c.Secret == "" || !constantTimeEqual(c.Secret, secret) {
		return errors.New("invalid client credentials")
	}
	return nil
}

func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest keeps the ID token to the protocol claims, as
// FranceConnect's: the identity is read from userinfo.
func (s *storage) SetUserinfoFromRequest(_ context.Context, info *oidc.UserInfo, req op.IDTokenRequest, _ []string) error {
	info.Subject = req.GetSubject()
	return nil
}

// SetUserinfoFromToken serves op's JSON userinfo; the Provider answers
// userinfo itself (signed JWT), so this is only reached through op's API.
func (s *storage) SetUserinfoFromToken(_ context.Context, info *oidc.UserInfo, tokenID, subject, _ string) error {
	t, err := s.token(tokenID, subject)
	if err != nil {
		return err
	}
	u := s.bySub[t.subject]
	if u == nil {
		return errTokenUnknown
	}
	info.Subject = u.sub
	for k, v := range identityClaims(u) {
		info.AppendClaims(k, v)
	}
	return nil
}

func (s *storage) SetIntrospectionFromToken(_ context.Context, resp *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	t, err := s.token(tokenID, subject)
	if err != nil {
		return err
	}
	if !slices.Contains(t.audience, clientID) {
		return errors.New("token not issued for this client")
	}
	resp.Active = true
	resp.Subject = t.subject
	resp.ClientID = t.clientID
	resp.Audience = t.audience
	resp.Scope = t.scopes
	resp.Expiration = oidc.FromTime(t.expires)
	return nil
}

func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("jwt profile is not supported")
}

func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("jwt profile is not supported")
}

func (s *storage) Health(context.Context) error { return nil }

// --- auth request ---

type authRequest struct {
	id          string
	clientID    string
	redirectURI string
	state       string
	nonce       string
	scopes      []string
	respType    oidc.ResponseType
	respMode    oidc.ResponseMode
	challenge   *oidc.CodeChallenge
	created     time.Time

	subject  string
	done     bool
	authTime time.Time
}

func (a *authRequest) GetID() string { return a.id }
func (a *authRequest) GetACR() string {
	if a.done {
		return ACR
	}
	return ""
}
func (a *authRequest) GetAMR() []string                      { return nil }
func (a *authRequest) GetAudience() []string                 { return []string{a.clientID} }
func (a *authRequest) GetAuthTime() time.Time                { return a.authTime }
func (a *authRequest) GetClientID() string                   { return a.clientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return a.challenge }
func (a *authRequest) GetNonce() string                      { return a.nonce }
func (a *authRequest) GetRedirectURI() string                { return a.redirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType    { return a.respType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode    { return a.respMode }
func (a *authRequest) GetScopes() []string                   { return a.scopes }
func (a *authRequest) GetState() string                      { return a.state }
func (a *authRequest) GetSubject() string                    { return a.subject }
func (a *authRequest) Done() bool                            { return a.done }

// --- client ---

type opClient struct {
	c        *Client
	loginURL string
}

func (c opClient) GetID() string                    { return c.c.ID }
func (c opClient) RedirectURIs() []string           { return c.c.RedirectURIs }
func (c opClient) PostLogoutRedirectURIs() []string { return c.c.PostLogoutRedirectURIs }
func (c opClient) ApplicationType() op.ApplicationType {
	if c.c.Secret == "" {
		return op.ApplicationTypeNative
	}
	return op.ApplicationTypeWeb
}
func (c opClient) AuthMethod() oidc.AuthMethod {
	if c.c.Secret == "" {
		return oidc.AuthMethodNone
	}
	return oidc.AuthMethodBasic
}
func (c opClient) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c opClient) GrantTypes() []oidc.GrantType        { return []oidc.GrantType{oidc.GrantTypeCode} }
func (c opClient) LoginURL(id string) string           { return c.loginURL + id }
func (c opClient) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeBearer }
func (c opClient) IDTokenLifetime() time.Duration      { return 10 * time.Minute }
func (c opClient) DevMode() bool                       { return false }
func (c opClient) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c opClient) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c opClient) IsScopeAllowed(scope string) bool     { return slices.Contains(fcScopes, scope) }
func (c opClient) IDTokenUserinfoClaimsAssertion() bool { return false }
func (c opClient) ClockSkew() time.Duration             { return 0 }

// --- keys ---

type signingKey struct {
	id  string
	alg jose.SignatureAlgorithm
	key crypto.Signer
}

func (k signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return k.alg }
func (k signingKey) Key() any                                    { return k.key }
func (k signingKey) ID() string                                  { return k.id }

type publicKey struct{ k signingKey }

func (k publicKey) ID() string                         { return k.k.id }
func (k publicKey) Algorithm() jose.SignatureAlgorithm { return k.k.alg }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return k.k.key.Public() }

var _ op.Storage = (*storage)(nil)
var _ op.CanSetUserinfoFromRequest = (*storage)(nil)
