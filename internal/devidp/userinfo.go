package devidp

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/zitadel/oidc/v3/pkg/op"
)

const (
	pathDiscovery = "/.well-known/openid-configuration"
	pathLogin     = "/login"
	pathLoggedOut = "/logged-out"
	pathStyle     = "/login.css"
)

// discovery is op's discovery document plus what FranceConnect announces:
// the acr values and the userinfo signing algorithm.
func (p *Provider) discovery(w http.ResponseWriter, r *http.Request) {
	cfg := op.CreateDiscoveryConfig(r.Context(), p.op, p.store)
	cfg.ACRValuesSupported = []string{ACR}
	cfg.UserinfoSigningAlgValuesSupported = []string{string(p.keyAlg)}
	cfg.ClaimsSupported = supportedClaims
	// Only what the provider really does: code flow, no device flow.
	cfg.ResponseTypesSupported = []string{"code"}
	cfg.DeviceAuthorizationEndpoint = ""
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(cfg)
}

// identityClaims are the FranceConnect pivot identity claims of u.
func identityClaims(u *user) map[string]any {
	c := map[string]any{
		"given_name":   strings.Join(u.GivenNames, " "),
		"family_name":  u.BirthName,
		"birthdate":    u.BirthDate,
		"gender":       string(u.Gender),
		"birthplace":   u.BirthPlaceCOG,
		"birthcountry": u.BirthCountryCOG,
	}
	if u.UsageName != "" {
		c["preferred_username"] = u.UsageName
	}
	return c
}

// userinfo answers like FranceConnect v2: a JWS signed with a key of the
// JWKS, whose aud is the client plus its resource audiences and whose exp is
// the access token's. The token is checked against op's storage, so
// revocation (end session) and expiry are the storage's own.
func (p *Provider) userinfo(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	raw, ok := bearer(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="devidp"`)
		http.Error(w, "access token missing", http.StatusUnauthorized)
		return
	}
	plain, err := p.op.Crypto().Decrypt(raw)
	if err != nil {
		unauthorized(w, errTokenUnknown)
		return
	}
	tokenID, subject, ok := strings.Cut(plain, ":")
	if !ok {
		unauthorized(w, errTokenUnknown)
		return
	}
	t, err := p.store.token(tokenID, subject)
	if err != nil {
		unauthorized(w, err)
		return
	}
	u := p.store.bySub[t.subject]
	if u == nil {
		unauthorized(w, errTokenUnknown)
		return
	}
	claims := identityClaims(u)
	claims["iss"] = p.issuer
	claims["sub"] = u.sub
	claims["aud"] = t.audience
	claims["iat"] = p.now().Unix()
	claims["exp"] = t.expires.Unix()
	claims["acr"] = ACR
	payload, err := json.Marshal(claims)
	if err != nil {
		http.Error(w, "userinfo encoding failed", http.StatusInternalServerError)
		return
	}
	jws, err := p.signer.Sign(payload)
	if err != nil {
		http.Error(w, "userinfo signing failed", http.StatusInternalServerError)
		return
	}
	compact, err := jws.CompactSerialize()
	if err != nil {
		http.Error(w, "userinfo signing failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/jwt")
	_, _ = w.Write([]byte(compact))
}

// bearer reads the access token from the Authorization header only: a
// token in a query string ends up in access logs.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

func unauthorized(w http.ResponseWriter, err error) {
	desc := errTokenUnknown.Error()
	if errors.Is(err, errTokenExpired) {
		desc = errTokenExpired.Error()
	}
	w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="`+desc+`"`)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_token", "error_description": desc})
}

func constantTimeEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
