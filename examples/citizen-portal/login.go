package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/relais-broker/relais/internal/devidp"
)

// oidcClient is the portal's OpenID Connect relying party: authorization
// code with PKCE S256, state and nonce, the ID token verified with go-oidc.
type oidcClient struct {
	issuer, clientID, clientSecret, redirectURL string
	scopes                                      []string
	http                                        *http.Client

	mu       sync.Mutex
	provider *oidc.Provider // discovered on first use: the portal may start before the provider
}

// pendingLogin is what the callback must find again: never sent to the
// browser except the state, which the provider echoes.
type pendingLogin struct {
	state, nonce, verifier string
}

func (c *oidcClient) ctx(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, c.http)
}

func (c *oidcClient) discover(ctx context.Context) (*oidc.Provider, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.provider != nil {
		return c.provider, nil
	}
	p, err := oidc.NewProvider(c.ctx(ctx), c.issuer)
	if err != nil {
		return nil, fmt.Errorf("identity provider discovery: %w", err)
	}
	c.provider = p
	return p, nil
}

func (c *oidcClient) oauth(p *oidc.Provider) *oauth2.Config {
	scopes := c.scopes
	if len(scopes) == 0 {
		scopes = devidp.DefaultScopes
	}
	return &oauth2.Config{
		ClientID: c.clientID, ClientSecret: c.clientSecret, RedirectURL: c.redirectURL,
		Endpoint: p.Endpoint(), Scopes: scopes,
	}
}

// start returns the authorization URL and what the callback needs.
func (c *oidcClient) start(ctx context.Context) (string, pendingLogin, error) {
	p, err := c.discover(ctx)
	if err != nil {
		return "", pendingLogin{}, err
	}
	pl := pendingLogin{state: random(), nonce: random(), verifier: oauth2.GenerateVerifier()}
	u := c.oauth(p).AuthCodeURL(pl.state, oauth2.S256ChallengeOption(pl.verifier),
		oauth2.SetAuthURLParam("nonce", pl.nonce), oauth2.SetAuthURLParam("acr_values", devidp.ACR))
	return u, pl, nil
}

// finish exchanges the code (with the PKCE verifier), verifies the ID token
// (signature, issuer, audience, expiry, nonce) and returns the access token
// and the raw ID token.
func (c *oidcClient) finish(ctx context.Context, code string, pl pendingLogin) (string, string, error) {
	p, err := c.discover(ctx)
	if err != nil {
		return "", "", err
	}
	tok, err := c.oauth(p).Exchange(c.ctx(ctx), code, oauth2.VerifierOption(pl.verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode != "" {
			return "", "", fmt.Errorf("token exchange refused: %s: %s", re.ErrorCode, re.ErrorDescription)
		}
		return "", "", errors.New("token exchange failed")
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return "", "", errors.New("token response carries no id_token")
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: c.clientID}).Verify(ctx, raw)
	if err != nil {
		return "", "", fmt.Errorf("id token refused: %w", err)
	}
	if idt.Nonce != pl.nonce {
		return "", "", errors.New("id token refused: nonce does not match")
	}
	if err := idt.VerifyAccessToken(tok.AccessToken); err != nil && idt.AccessTokenHash != "" {
		return "", "", errors.New("id token refused: at_hash does not match the access token")
	}
	return tok.AccessToken, raw, nil
}

// endSessionURL is the provider's logout URL sending the browser back to
// postLogout.
func (c *oidcClient) endSessionURL(ctx context.Context, postLogout string) (string, error) {
	p, err := c.discover(ctx)
	if err != nil {
		return "", err
	}
	var meta struct {
		EndSession string `json:"end_session_endpoint"`
	}
	if err := p.Claims(&meta); err != nil || meta.EndSession == "" {
		return "", errors.New("the provider has no end_session_endpoint")
	}
	q := url.Values{"client_id": {c.clientID}, "post_logout_redirect_uri": {postLogout}}
	return meta.EndSession + "?" + q.Encode(), nil
}

func random() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// loginHeadless runs the portal's own relying-party code through the real
// login page with devidp's headless browser and returns the access token.
func loginHeadless(ctx context.Context, h devidp.HeadlessLogin) (string, error) {
	c := &oidcClient{issuer: h.Issuer, clientID: h.ClientID, clientSecret: h.ClientSecret, redirectURL: h.RedirectURL, http: h.HTTPClient}
	authURL, pl, err := c.start(ctx)
	if err != nil {
		return "", err
	}
	code, err := h.Code(ctx, authURL, pl.state)
	if err != nil {
		return "", err
	}
	tok, _, err := c.finish(ctx, code, pl)
	return tok, err
}
