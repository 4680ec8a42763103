package citizen_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relais-broker/relais/internal/localserver"

	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/relais-broker/relais/broker/citizen"
	"github.com/relais-broker/relais/broker/citizen/citizentest"
	"github.com/relais-broker/relais/broker/errcat"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
)

var testNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// clock is an injected clock the tests move.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type fixture struct {
	idp   *citizentest.Provider
	r     *citizen.Resolver
	clock *clock
	logs  *localserver.Buffer
}

func setup(t *testing.T, mutate func(*citizen.ProviderConfig)) *fixture {
	t.Helper()
	idp := citizentest.Start()
	t.Cleanup(idp.Close)
	f := &fixture{idp: idp, clock: &clock{now: testNow}, logs: &localserver.Buffer{}}
	pc := citizen.ProviderConfig{Issuer: idp.Issuer(), ClientID: citizentest.Audience, AcceptedACR: []string{"eidas1"}, Timeout: 500 * time.Millisecond}
	if mutate != nil {
		mutate(&pc)
	}
	r, err := citizen.New(citizen.Config{
		Providers:  []citizen.ProviderConfig{pc},
		HTTPClient: idp.Client(),
		Clock:      f.clock.Now,
		Logger:     slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	f.r = r
	return f
}

func zoe() *commonv1.SubjectIdentity {
	return &commonv1.SubjectIdentity{BirthName: "DUPONT", UsageName: "MARTIN", GivenNames: []string{"Zoé", "Marie"},
		Sex: commonv1.Sex_SEX_FEMALE, BirthDate: "1984-03-12", BirthPlaceCog: "75056", BirthCountryCog: "99100"}
}

func with(claims map[string]any, kv ...any) map[string]any {
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(claims, kv[i].(string))
		} else {
			claims[kv[i].(string)] = kv[i+1]
		}
	}
	return claims
}

// secrets are the values that must never leave the resolver: the
// token, and the identity's claim values.
func secrets(token string) [][]byte {
	return [][]byte{[]byte(token), []byte("DUPONT"), []byte("MARTIN"), []byte("Zoé"), []byte("1984-03-12"), []byte("c0ffee-dupont")}
}

func assertNoSecret(t *testing.T, what string, b []byte, token string) {
	t.Helper()
	for _, s := range secrets(token) {
		if bytes.Contains(b, s) {
			t.Errorf("%s holds %q", what, s)
		}
	}
}

func TestResolve(t *testing.T) {
	f := setup(t, nil)
	token := f.idp.Issue(citizentest.Answer{Claims: f.idp.Claims(testNow)})
	id, err := f.r.Resolve(context.Background(), token)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(id, zoe()) {
		t.Fatalf("identity = %v, want %v", id, zoe())
	}
	// A second call reuses discovery and the cached key set.
	if _, err := f.r.Resolve(context.Background(), token); err != nil {
		t.Fatal(err)
	}
	if d, j := f.idp.Hits("discovery"), f.idp.Hits("jwks"); d != 1 || j != 1 {
		t.Fatalf("discovery fetched %d times, jwks %d times; want 1 and 1", d, j)
	}
	assertNoSecret(t, "logs", []byte(f.logs.String()), token)
}

func TestResolveBornAbroadWithoutUsageName(t *testing.T) {
	f := setup(t, nil)
	token := f.idp.Issue(citizentest.Answer{Claims: with(f.idp.Claims(testNow), "birthplace", "", "birthcountry", "99134", "preferred_username", nil, "gender", "male", "given_name", "Jean")})
	id, err := f.r.Resolve(context.Background(), token)
	if err != nil {
		t.Fatal(err)
	}
	want := &commonv1.SubjectIdentity{BirthName: "DUPONT", GivenNames: []string{"Jean"}, Sex: commonv1.Sex_SEX_MALE, BirthDate: "1984-03-12", BirthCountryCog: "99134"}
	if !proto.Equal(id, want) {
		t.Fatalf("identity = %v, want %v", id, want)
	}
}

func TestRefusals(t *testing.T) {
	f := setup(t, nil)
	claims := func(kv ...any) map[string]any { return with(f.idp.Claims(testNow), kv...) }
	for _, tc := range []struct {
		name   string
		answer citizentest.Answer
		reason errcat.Reason
		code   codes.Code
		claim  string
	}{
		{"expired exp", citizentest.Answer{Claims: claims("exp", testNow.Add(-time.Minute).Unix())}, errcat.CitizenTokenExpired, codes.InvalidArgument, ""},
		{"expired by the provider", citizentest.Answer{Status: 401, Challenge: `Bearer error="invalid_token", error_description="access token expired"`}, errcat.CitizenTokenExpired, codes.InvalidArgument, ""},
		{"revoked", citizentest.Answer{Status: 401, Challenge: `Bearer error="invalid_token", error_description="token revoked"`}, errcat.CitizenTokenInvalid, codes.InvalidArgument, ""},
		{"insufficient scope", citizentest.Answer{Status: 403, Challenge: `Bearer error="insufficient_scope"`}, errcat.CitizenTokenInvalid, codes.InvalidArgument, ""},
		{"tampered signature", citizentest.Answer{Claims: claims(), Tamper: true}, errcat.IdentityProviderInvalidResponse, codes.Internal, ""},
		{"unsigned userinfo", citizentest.Answer{Claims: claims(), ContentType: "application/json"}, errcat.IdentityProviderInvalidResponse, codes.Internal, ""},
		{"wrong audience", citizentest.Answer{Claims: claims("aud", []string{"other-town"})}, errcat.CitizenTokenWrongAudience, codes.InvalidArgument, ""},
		{"audience as a string", citizentest.Answer{Claims: claims("aud", "other-town")}, errcat.CitizenTokenWrongAudience, codes.InvalidArgument, ""},
		{"other issuer", citizentest.Answer{Claims: claims("iss", "https://other-idp.example")}, errcat.CitizenTokenWrongIssuer, codes.InvalidArgument, ""},
		{"acr too low", citizentest.Answer{Claims: claims("acr", "eidas0")}, errcat.CitizenLoginTooWeak, codes.InvalidArgument, ""},
		{"no acr", citizentest.Answer{Claims: claims("acr", nil)}, errcat.CitizenLoginTooWeak, codes.InvalidArgument, ""},
		{"issued in the future", citizentest.Answer{Claims: claims("iat", testNow.Add(time.Hour).Unix())}, errcat.CitizenTokenInvalid, codes.InvalidArgument, ""},
		{"no exp", citizentest.Answer{Claims: claims("exp", nil)}, errcat.CitizenClaimsInvalid, codes.InvalidArgument, "exp"},
		{"no given name", citizentest.Answer{Claims: claims("given_name", nil)}, errcat.CitizenClaimsInvalid, codes.InvalidArgument, "given_name"},
		{"blank given name", citizentest.Answer{Claims: claims("given_name", "  ")}, errcat.CitizenClaimsInvalid, codes.InvalidArgument, "given_name"},
		{"no family name", citizentest.Answer{Claims: claims("family_name", nil)}, errcat.CitizenClaimsInvalid, codes.InvalidArgument, "family_name"},
		{"no birthdate", citizentest.Answer{Claims: claims("birthdate", nil)}, errcat.CitizenClaimsInvalid, codes.InvalidArgument, "birthdate"},
		{"bad birthdate", citizentest.Answer{Claims: claims("birthdate", "12/03/1984")}, errcat.CitizenClaimsInvalid, codes.InvalidArgument, "birthdate"},
		{"bad gender", citizentest.Answer{Claims: claims("gender", "unknown")}, errcat.CitizenClaimsInvalid, codes.InvalidArgument, "gender"},
		{"no birth country", citizentest.Answer{Claims: claims("birthcountry", nil)}, errcat.CitizenClaimsInvalid, codes.InvalidArgument, "birthcountry"},
		{"born in france without birthplace", citizentest.Answer{Claims: claims("birthplace", nil)}, errcat.CitizenClaimsInvalid, codes.InvalidArgument, "birthplace"},
		{"bad birthplace", citizentest.Answer{Claims: claims("birthplace", "7505")}, errcat.CitizenClaimsInvalid, codes.InvalidArgument, "birthplace"},
		{"name with digits", citizentest.Answer{Claims: claims("family_name", "DUPONT2")}, errcat.CitizenClaimsInvalid, codes.InvalidArgument, "family_name"},
		{"provider error", citizentest.Answer{Status: 500}, errcat.IdentityProviderUnavailable, codes.Unavailable, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			token := f.idp.Issue(tc.answer)
			id, err := f.r.Resolve(context.Background(), token)
			checkRefusal(t, id, err, tc.reason, tc.code, token)
			if tc.claim != "" {
				if got := errcat.From(err).Metadata["claim"]; got != tc.claim {
					t.Errorf("claim = %q, want %q", got, tc.claim)
				}
			}
		})
	}
	t.Run("unknown token", func(t *testing.T) {
		id, err := f.r.Resolve(context.Background(), "never-issued-token")
		checkRefusal(t, id, err, errcat.CitizenTokenInvalid, codes.InvalidArgument, "never-issued-token")
	})
	t.Run("empty token", func(t *testing.T) {
		_, err := f.r.Resolve(context.Background(), "")
		checkRefusal(t, nil, err, errcat.CitizenTokenInvalid, codes.InvalidArgument, "\x00")
	})
	assertNoSecret(t, "logs", []byte(f.logs.String()), "never-issued-token")
}

// checkRefusal checks a refused resolution: its reason and code, the
// BadRequest or RetryInfo detail its kind calls for, and that neither the
// error text nor the status the caller receives holds the token or a
// claim value.
func checkRefusal(t *testing.T, id *commonv1.SubjectIdentity, err error, reason errcat.Reason, code codes.Code, token string) {
	t.Helper()
	if id != nil {
		t.Fatalf("an identity was returned with the refusal")
	}
	var e *errcat.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is not catalogued", err)
	}
	if e.Reason != reason || e.Code() != code {
		t.Fatalf("got %s (%s), want %s (%s); cause: %v", e.Reason, e.Code(), reason, code, e.Cause)
	}
	st := e.Status()
	raw, _ := proto.Marshal(st.Proto())
	assertNoSecret(t, "error text", []byte(err.Error()), token)
	assertNoSecret(t, "status", raw, token)
	var violation, retry bool
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.BadRequest:
			violation = len(d.GetFieldViolations()) == 1 && d.GetFieldViolations()[0].GetField() == citizen.TokenField
		case *errdetails.RetryInfo:
			retry = d.GetRetryDelay().AsDuration() > 0
		}
	}
	if code == codes.InvalidArgument && !violation {
		t.Errorf("no field violation on %s", citizen.TokenField)
	}
	if code == codes.Unavailable && !retry {
		t.Errorf("no RetryInfo")
	}
}

func TestClockSkew(t *testing.T) {
	f := setup(t, func(pc *citizen.ProviderConfig) { pc.ClockSkew = time.Minute })
	within := f.idp.Issue(citizentest.Answer{Claims: with(f.idp.Claims(testNow), "exp", testNow.Add(-50*time.Second).Unix(), "iat", testNow.Add(50*time.Second).Unix())})
	if _, err := f.r.Resolve(context.Background(), within); err != nil {
		t.Fatalf("within the skew: %v", err)
	}
	beyond := f.idp.Issue(citizentest.Answer{Claims: with(f.idp.Claims(testNow), "exp", testNow.Add(-70*time.Second).Unix())})
	_, err := f.r.Resolve(context.Background(), beyond)
	checkRefusal(t, nil, err, errcat.CitizenTokenExpired, codes.InvalidArgument, beyond)
}

func TestSlowProviderTimesOut(t *testing.T) {
	f := setup(t, func(pc *citizen.ProviderConfig) { pc.Timeout = 200 * time.Millisecond })
	token := f.idp.Issue(citizentest.Answer{Claims: f.idp.Claims(testNow)})
	f.idp.Slow(true)
	start := time.Now()
	_, err := f.r.Resolve(context.Background(), token)
	checkRefusal(t, nil, err, errcat.IdentityProviderUnavailable, codes.Unavailable, token)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("resolution took %s with a 200ms timeout", d)
	}
	f.idp.Slow(false)
	if _, err := f.r.Resolve(context.Background(), token); err != nil {
		t.Fatalf("after the provider sped up: %v", err)
	}
}

func TestCallerCancellation(t *testing.T) {
	f := setup(t, nil)
	token := f.idp.Issue(citizentest.Answer{Claims: f.idp.Claims(testNow)})
	f.idp.Slow(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := f.r.Resolve(ctx, token)
		done <- err
	}()
	// Cancel once the provider holds the request.
	deadline := time.Now().Add(5 * time.Second)
	for f.idp.Hits("userinfo") == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; errcat.From(err).Reason != errcat.Cancelled {
		t.Fatalf("got %v, want cancelled", err)
	}
}

// A provider down when the broker starts does not stop it, and is used
// once it answers, without a restart.
func TestProviderDownThenBack(t *testing.T) {
	f := setup(t, nil)
	token := f.idp.Issue(citizentest.Answer{Claims: f.idp.Claims(testNow)})
	f.idp.FailWith(http.StatusServiceUnavailable)
	_, err := f.r.Resolve(context.Background(), token)
	checkRefusal(t, nil, err, errcat.IdentityProviderUnavailable, codes.Unavailable, token)
	// Within the retry delay, the failure is answered without asking again.
	hits := f.idp.Hits("discovery")
	_, err = f.r.Resolve(context.Background(), token)
	checkRefusal(t, nil, err, errcat.IdentityProviderUnavailable, codes.Unavailable, token)
	if f.idp.Hits("discovery") != hits {
		t.Fatalf("discovery asked again within the retry delay")
	}
	f.idp.FailWith(0)
	f.clock.Advance(citizen.DiscoveryRetryDelay)
	if _, err := f.r.Resolve(context.Background(), token); err != nil {
		t.Fatalf("provider back: %v", err)
	}
	assertNoSecret(t, "logs", []byte(f.logs.String()), token)
}

func TestProviderUnreachable(t *testing.T) {
	f := setup(t, nil)
	token := f.idp.Issue(citizentest.Answer{Claims: f.idp.Claims(testNow)})
	f.idp.Close()
	_, err := f.r.Resolve(context.Background(), token)
	checkRefusal(t, nil, err, errcat.IdentityProviderUnavailable, codes.Unavailable, token)
	assertNoSecret(t, "logs", []byte(f.logs.String()), token)
}

func TestKeyRotation(t *testing.T) {
	f := setup(t, nil)
	first := f.idp.Issue(citizentest.Answer{Claims: f.idp.Claims(testNow)})
	if _, err := f.r.Resolve(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	f.idp.Rotate()
	second := f.idp.Issue(citizentest.Answer{Claims: f.idp.Claims(testNow)})
	if _, err := f.r.Resolve(context.Background(), second); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if j := f.idp.Hits("jwks"); j != 2 {
		t.Fatalf("key set fetched %d times, want 2 (once more for the new key)", j)
	}
}

func TestKeySetDown(t *testing.T) {
	f := setup(t, nil)
	token := f.idp.Issue(citizentest.Answer{Claims: f.idp.Claims(testNow)})
	if _, err := f.r.Resolve(context.Background(), token); err != nil {
		t.Fatal(err)
	}
	// A new key while the key set cannot be read: unavailable, not a bad signature.
	f.idp.Rotate()
	again := f.idp.Issue(citizentest.Answer{Claims: f.idp.Claims(testNow)})
	f.idp.FailJWKS(true)
	_, err := f.r.Resolve(context.Background(), again)
	f.idp.FailJWKS(false)
	checkRefusal(t, nil, err, errcat.IdentityProviderUnavailable, codes.Unavailable, again)
}

func TestJWTAccessTokenOfAnotherIssuer(t *testing.T) {
	f := setup(t, nil)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	token, err := citizentest.Sign(jose.JSONWebKey{Key: k, KeyID: "x", Algorithm: "ES256"}, map[string]any{"iss": "https://other-idp.example", "exp": testNow.Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.r.Resolve(context.Background(), token)
	checkRefusal(t, nil, err, errcat.CitizenTokenWrongIssuer, codes.InvalidArgument, token)
	if n := f.idp.Hits("userinfo") + f.idp.Hits("discovery"); n != 0 {
		t.Fatalf("a token of another issuer was sent to the provider (%d requests)", n)
	}
}

func TestJWTAccessTokenOfTheIssuerIsRouted(t *testing.T) {
	f := setup(t, nil)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	token, _ := citizentest.Sign(jose.JSONWebKey{Key: k, KeyID: "x", Algorithm: "ES256"}, map[string]any{"iss": f.idp.Issuer()})
	f.idp.Register(token, citizentest.Answer{Claims: f.idp.Claims(testNow)})
	if _, err := f.r.Resolve(context.Background(), token); err != nil {
		t.Fatal(err)
	}
}

func TestHS256WithClientSecret(t *testing.T) {
	secret := bytes.Repeat([]byte("s"), 40)
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, append(secret, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	f := setup(t, func(pc *citizen.ProviderConfig) { pc.ClientSecretFile = path })
	f.idp.SignWith(jose.JSONWebKey{Key: secret, Algorithm: string(jose.HS256), KeyID: "hmac"})
	token := f.idp.Issue(citizentest.Answer{Claims: f.idp.Claims(testNow)})
	if _, err := f.r.Resolve(context.Background(), token); err != nil {
		t.Fatalf("hs256 with the secret: %v", err)
	}
	f.idp.SignWith(jose.JSONWebKey{Key: bytes.Repeat([]byte("x"), 40), Algorithm: string(jose.HS256), KeyID: "hmac"})
	forged := f.idp.Issue(citizentest.Answer{Claims: f.idp.Claims(testNow)})
	_, err := f.r.Resolve(context.Background(), forged)
	checkRefusal(t, nil, err, errcat.IdentityProviderInvalidResponse, codes.Internal, forged)
}

func TestHS256RefusedWithoutSecret(t *testing.T) {
	f := setup(t, nil)
	f.idp.SignWith(jose.JSONWebKey{Key: bytes.Repeat([]byte("s"), 40), Algorithm: string(jose.HS256), KeyID: "hmac"})
	token := f.idp.Issue(citizentest.Answer{Claims: f.idp.Claims(testNow)})
	_, err := f.r.Resolve(context.Background(), token)
	checkRefusal(t, nil, err, errcat.IdentityProviderInvalidResponse, codes.Internal, token)
}

func TestOversizedAnswer(t *testing.T) {
	f := setup(t, nil)
	token := f.idp.Issue(citizentest.Answer{Claims: with(f.idp.Claims(testNow), "padding", strings.Repeat("x", citizen.MaxResponseBytes))})
	_, err := f.r.Resolve(context.Background(), token)
	checkRefusal(t, nil, err, errcat.IdentityProviderUnavailable, codes.Unavailable, token)
}

func TestNewRefusesBadConfig(t *testing.T) {
	good := citizen.ProviderConfig{Issuer: "https://idp.example", ClientID: "relais", AcceptedACR: []string{"eidas1"}}
	for name, mutate := range map[string]func(*citizen.ProviderConfig){
		"no issuer":         func(p *citizen.ProviderConfig) { p.Issuer = "" },
		"relative issuer":   func(p *citizen.ProviderConfig) { p.Issuer = "/idp" },
		"http not loopback": func(p *citizen.ProviderConfig) { p.Issuer = "http://idp.example" },
		"no client id":      func(p *citizen.ProviderConfig) { p.ClientID = "" },
		"no acr":            func(p *citizen.ProviderConfig) { p.AcceptedACR = nil },
		"empty acr":         func(p *citizen.ProviderConfig) { p.AcceptedACR = []string{""} },
		"negative skew":     func(p *citizen.ProviderConfig) { p.ClockSkew = -time.Second },
		"missing secret":    func(p *citizen.ProviderConfig) { p.ClientSecretFile = "/nonexistent/secret" },
	} {
		pc := good
		mutate(&pc)
		if _, err := citizen.New(citizen.Config{Providers: []citizen.ProviderConfig{pc}}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := citizen.New(citizen.Config{}); err == nil {
		t.Error("no provider: accepted")
	}
	if _, err := citizen.New(citizen.Config{Providers: []citizen.ProviderConfig{good, good}}); err == nil {
		t.Error("issuer twice: accepted")
	}
	loop := good
	loop.Issuer = "http://127.0.0.1:9999"
	if _, err := citizen.New(citizen.Config{Providers: []citizen.ProviderConfig{good, loop}}); err != nil {
		t.Errorf("two providers, http on loopback: %v", err)
	}
}
