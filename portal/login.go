package portal

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// loginCookieAge bounds the pre-login cookie like the store bounds the record.
const loginCookieAge = int(DefaultLoginTimeout / 1e9)

// login starts the authorization-code flow: a fresh state, nonce and PKCE
// verifier in a pending login bound to this browser by its own cookie.
func (p *Portal) login(w http.ResponseWriter, r *http.Request) {
	p.lang(w, r)
	st, err := p.provider(r.Context())
	if err != nil {
		p.m.logins.WithLabelValues("provider_unavailable").Inc()
		p.log.Warn("portal identity provider unavailable", "error", err)
		p.fail(w, r, http.StatusServiceUnavailable, "err_provider")
		return
	}
	state, err1 := newID()
	nonce, err2 := newID()
	if err := errors.Join(err1, err2); err != nil {
		p.fail(w, r, http.StatusInternalServerError, "err_internal")
		return
	}
	verifier := oauth2.GenerateVerifier()
	id, err := p.sessions.NewLogin(r.Context(), PendingLogin{State: state, Nonce: nonce, Verifier: verifier})
	if err != nil {
		p.m.refusals.WithLabelValues("store_full").Inc()
		p.fail(w, r, http.StatusServiceUnavailable, "err_busy")
		return
	}
	setCookie(w, cookieLogin, id, loginCookieAge)
	opts := []oauth2.AuthCodeOption{oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)}
	if len(p.cfg.ACRValues) > 0 {
		opts = append(opts, oauth2.SetAuthURLParam("acr_values", strings.Join(p.cfg.ACRValues, " ")))
	}
	p.m.logins.WithLabelValues("started").Inc()
	http.Redirect(w, r, st.oauth.AuthCodeURL(state, opts...), http.StatusFound)
}

// callback ends the flow. The pending login is taken (used once) whatever
// happens; only a callback whose state matches it goes on. The session is
// created under a new id: the pre-login cookie's value never becomes one.
func (p *Portal) callback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	p.lang(w, r)
	c, err := r.Cookie(cookieLogin)
	setCookie(w, cookieLogin, "", -1)
	if err != nil {
		p.loginFailed(w, r, "login_state", http.StatusBadRequest, "err_login_state")
		return
	}
	pending, err := p.sessions.TakeLogin(ctx, c.Value)
	q := r.URL.Query()
	if err != nil || subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(pending.State)) != 1 {
		p.loginFailed(w, r, "login_state", http.StatusBadRequest, "err_login_state")
		return
	}
	if e := q.Get("error"); e != "" {
		if e == "access_denied" || e == "login_required" || e == "consent_required" {
			p.m.logins.WithLabelValues("cancelled").Inc()
			p.fail(w, r, http.StatusBadRequest, "err_login_cancelled")
			return
		}
		p.loginFailed(w, r, "provider_error", http.StatusBadGateway, "err_login_failed")
		return
	}
	st, err := p.provider(ctx)
	if err != nil {
		p.loginFailed(w, r, "provider_unavailable", http.StatusServiceUnavailable, "err_provider")
		return
	}
	octx := oidc.ClientContext(ctx, p.cfg.HTTPClient)
	tok, err := st.oauth.Exchange(octx, q.Get("code"), oauth2.VerifierOption(pending.Verifier))
	if err != nil {
		p.loginFailed(w, r, "code_exchange", http.StatusBadGateway, "err_login_failed")
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := st.verifier.Verify(octx, raw)
	if err != nil {
		p.loginFailed(w, r, "id_token", http.StatusBadGateway, "err_login_failed")
		return
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(pending.Nonce)) != 1 {
		p.loginFailed(w, r, "nonce", http.StatusBadRequest, "err_login_state")
		return
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			p.loginFailed(w, r, "at_hash", http.StatusBadGateway, "err_login_failed")
			return
		}
	}
	id, err := p.cfg.Identities.Resolve(ctx, tok.AccessToken)
	if err != nil {
		p.loginFailed(w, r, "identity", http.StatusBadGateway, "err_login_failed")
		return
	}
	// The tokens and the identity go no further than this function.
	pseudonym := p.cfg.Pseudonyms.OfIdentity(id)
	if pseudonym == "" {
		p.loginFailed(w, r, "identity", http.StatusBadGateway, "err_login_failed")
		return
	}
	if old, err := r.Cookie(cookieSession); err == nil {
		_ = p.sessions.DeleteSession(ctx, old.Value)
	}
	csrf, err := newID()
	if err != nil {
		p.fail(w, r, http.StatusInternalServerError, "err_internal")
		return
	}
	sid, err := p.sessions.NewSession(ctx, Session{Pseudonym: pseudonym, CSRF: csrf})
	if err != nil {
		p.m.refusals.WithLabelValues("store_full").Inc()
		p.fail(w, r, http.StatusServiceUnavailable, "err_busy")
		return
	}
	setCookie(w, cookieSession, sid, int(DefaultAbsoluteTimeout/1e9))
	p.m.logins.WithLabelValues("succeeded").Inc()
	p.log.Info("portal login", "result", "succeeded")
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// loginFailed counts and logs a failed callback by its step only: the
// causes may quote what the provider said, and that stays out of logs.
func (p *Portal) loginFailed(w http.ResponseWriter, r *http.Request, step string, status int, msg string) {
	if step == "login_state" {
		p.m.refusals.WithLabelValues("login_state").Inc()
	}
	p.m.logins.WithLabelValues("failed").Inc()
	p.log.Info("portal login", "result", "failed", "step", step)
	p.fail(w, r, status, msg)
}

// maxFormBytes bounds a POST body: the logout form is one token.
const maxFormBytes = 4 << 10

// logout ends the session here and at the provider. The form must carry
// the session's CSRF token; a request from another origin is refused.
func (p *Portal) logout(w http.ResponseWriter, r *http.Request) {
	lang := p.lang(w, r)
	s, sid, ok := p.currentSession(w, r)
	if !ok {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if o := r.Header.Get("Origin"); (o != "" && o != p.origin) || r.ParseForm() != nil ||
		subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(s.CSRF)) != 1 {
		p.m.refusals.WithLabelValues("csrf").Inc()
		p.fail(w, r, http.StatusForbidden, "err_forbidden")
		return
	}
	_ = p.sessions.DeleteSession(r.Context(), sid)
	setCookie(w, cookieSession, "", -1)
	p.m.logouts.Inc()
	p.log.Info("portal logout")
	target := "/"
	if st, err := p.provider(r.Context()); err == nil && st.endSession != "" {
		u, err := url.Parse(st.endSession)
		if err == nil {
			v := u.Query()
			v.Set("client_id", p.cfg.ClientID)
			v.Set("post_logout_redirect_uri", p.cfg.BaseURL+"/")
			v.Set("ui_locales", lang)
			u.RawQuery = v.Encode()
			target = u.String()
		}
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}
