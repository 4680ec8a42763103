package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/relais-broker/relais/broker/citizen"
)

// CitizenLoginConfig turns on citizen-initiated calls: the OpenID
// Connect providers (FranceConnect in production) whose access tokens a
// consumer may pass as citizen_access_token. Omitted: such calls are
// refused (citizen_login_not_configured), whatever the grants say.
type CitizenLoginConfig struct {
	Providers []IdentityProviderConfig `yaml:"providers"`
}

// IdentityProviderConfig is one OpenID Connect provider.
type IdentityProviderConfig struct {
	// Issuer is the provider's issuer URL, exactly as in its tokens; its
	// discovery document is at Issuer + /.well-known/openid-configuration.
	Issuer string `yaml:"issuer"`
	// ClientID is the audience Relais requires in the userinfo JWT.
	ClientID string `yaml:"client_id"`
	// ClientSecretFile holds the client secret, needed only for a
	// provider that signs userinfo with HS256 (FranceConnect v1); v2
	// signs with ES256/RS256, verified through the provider's JWKS.
	ClientSecretFile string `yaml:"client_secret_file"`
	// AcceptedACR lists the acr levels accepted (e.g. [eidas1]); empty
	// accepts any level the provider asserts.
	AcceptedACR []string `yaml:"accepted_acr"`
	// ClockSkew tolerated on exp and iat (30 s when zero); Timeout of
	// each request to the provider (2 s when zero).
	ClockSkew time.Duration `yaml:"clock_skew"`
	Timeout   time.Duration `yaml:"timeout"`
	// CAFile, when set, is the only trust for the provider's TLS
	// certificate (a provider on a private PKI); the system roots otherwise.
	CAFile string `yaml:"ca_file"`
}

// validate checks the providers without reaching them.
func (c CitizenLoginConfig) validate() error {
	var errs []error
	seen := map[string]bool{}
	for i, p := range c.Providers {
		at := fmt.Sprintf("citizen_login.providers[%d]", i)
		u, err := url.Parse(p.Issuer)
		switch {
		case p.Issuer == "":
			errs = append(errs, fmt.Errorf("%s.issuer is required", at))
		case err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && loopbackHost(u.Hostname()))):
			errs = append(errs, fmt.Errorf("%s.issuer %q: an https URL (http only on loopback)", at, p.Issuer))
		case seen[p.Issuer]:
			errs = append(errs, fmt.Errorf("%s.issuer %q is listed twice", at, p.Issuer))
		}
		seen[p.Issuer] = true
		if p.ClientID == "" {
			errs = append(errs, fmt.Errorf("%s.client_id is required (the audience Relais requires)", at))
		}
		if p.ClockSkew < 0 || p.ClockSkew > 5*time.Minute {
			errs = append(errs, fmt.Errorf("%s.clock_skew %s: between 0 and 5m", at, p.ClockSkew))
		}
		if p.Timeout < 0 || p.Timeout > 30*time.Second {
			errs = append(errs, fmt.Errorf("%s.timeout %s: between 0 and 30s", at, p.Timeout))
		}
		for _, f := range []struct{ key, path string }{{"client_secret_file", p.ClientSecretFile}, {"ca_file", p.CAFile}} {
			if f.path == "" {
				continue
			}
			if _, err := os.Stat(f.path); err != nil {
				errs = append(errs, fmt.Errorf("%s.%s: %w", at, f.key, err))
			}
		}
	}
	return errors.Join(errs...)
}

// resolver builds the citizen resolver of the configured providers; nil
// when none is configured. It does no I/O besides reading the CA files:
// discovery happens at the first call, so a provider down at start does
// not stop the broker.
func (c CitizenLoginConfig) resolver() (*citizen.Resolver, error) {
	if len(c.Providers) == 0 {
		return nil, nil
	}
	var pcs []citizen.ProviderConfig
	var roots *x509.CertPool
	for _, p := range c.Providers {
		pcs = append(pcs, citizen.ProviderConfig{Issuer: p.Issuer, ClientID: p.ClientID, ClientSecretFile: p.ClientSecretFile,
			AcceptedACR: p.AcceptedACR, ClockSkew: p.ClockSkew, Timeout: p.Timeout})
		if p.CAFile == "" {
			continue
		}
		pem, err := os.ReadFile(p.CAFile)
		if err != nil {
			return nil, fmt.Errorf("citizen_login: %w", err)
		}
		if roots == nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("citizen_login: %s holds no PEM certificate", p.CAFile)
		}
	}
	cfg := citizen.Config{Providers: pcs}
	if roots != nil {
		cfg.HTTPClient = providerClient(roots)
	}
	return citizen.New(cfg)
}

// providerClient is the HTTP client of the calls to identity providers
// trusting roots only (TLS 1.2 minimum); redirects are not followed.
func providerClient(roots *x509.CertPool) *http.Client {
	return &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true,
			MaxIdleConnsPerHost: 16, IdleConnTimeout: 90 * time.Second},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// loopbackHost reports whether host is a loopback name or address.
func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
