package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/relais-broker/relais/broker/citizen"
	"github.com/relais-broker/relais/broker/transparency"
	"github.com/relais-broker/relais/portal"
)

// PortalConfig is the citizens' transparency portal (who accessed my
// data), served on listen.portal; off when listen.portal is empty.
// Citizens log in with the OpenID provider named here, as a confidential
// client of it.
type PortalConfig struct {
	// PublicURL is the portal's https origin as citizens reach it (behind
	// a reverse proxy, the proxy's): the redirect URI registered at the
	// provider is PublicURL/callback.
	PublicURL string `yaml:"public_url"`
	// Issuer, ClientID and ClientSecretFile: the provider and the
	// portal's client there (the secret is read from the file, never
	// written in this one).
	Issuer           string `yaml:"issuer"`
	ClientID         string `yaml:"client_id"`
	ClientSecretFile string `yaml:"client_secret_file"`
	// AcceptedACR are asked for (acr_values) and required in userinfo.
	AcceptedACR []string `yaml:"accepted_acr"`
	// CAFile, when set, is the only trust for the provider's certificate.
	CAFile string `yaml:"ca_file"`
	// ProviderName is shown on the login button (FranceConnect).
	ProviderName string `yaml:"provider_name"`
}

// validate checks the portal block when the portal is on.
func (p PortalConfig) validate(listen string) error {
	if listen == "" {
		return nil
	}
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if _, _, err := net.SplitHostPort(listen); err != nil {
		add("listen.portal %q: %v", listen, err)
	}
	if u, err := url.Parse(p.PublicURL); err != nil || u.Scheme != "https" || u.Host == "" || strings.Trim(u.Path, "/") != "" {
		add("portal.public_url %q: the https origin citizens reach (https://host[:port])", p.PublicURL)
	}
	if u, err := url.Parse(p.Issuer); err != nil || u.Scheme != "https" || u.Host == "" {
		add("portal.issuer %q: an https URL", p.Issuer)
	}
	if p.ClientID == "" {
		add("portal.client_id is required")
	}
	if p.ClientSecretFile == "" {
		add("portal.client_secret_file is required (the portal is a confidential client)")
	} else if _, err := os.Stat(p.ClientSecretFile); err != nil {
		add("portal.client_secret_file: %v", err)
	}
	if p.CAFile != "" {
		if _, err := os.Stat(p.CAFile); err != nil {
			add("portal.ca_file: %v", err)
		}
	}
	return errors.Join(errs...)
}

// page builds the portal's page on its listener.
func (p PortalConfig) page(ln net.Listener) (page, error) {
	secret, err := os.ReadFile(p.ClientSecretFile)
	if err != nil {
		return page{}, fmt.Errorf("portal.client_secret_file: %w", err)
	}
	var client *http.Client
	if p.CAFile != "" {
		pem, err := os.ReadFile(p.CAFile)
		if err != nil {
			return page{}, fmt.Errorf("portal.ca_file: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return page{}, fmt.Errorf("portal.ca_file %s holds no PEM certificate", p.CAFile)
		}
		client = providerClient(roots)
	}
	identities, err := citizen.New(citizen.Config{HTTPClient: client,
		Providers: []citizen.ProviderConfig{{Issuer: p.Issuer, ClientID: p.ClientID, AcceptedACR: p.AcceptedACR}}})
	if err != nil {
		return page{}, err
	}
	base := strings.TrimSuffix(p.PublicURL, "/")
	return page{Name: "portal", Listener: ln, Build: func(deps pageDeps) (http.Handler, error) {
		accesses, err := transparency.New(transparency.Config{Audit: deps.Audit, Registry: deps.Registry})
		if err != nil {
			return nil, err
		}
		return portal.New(portal.Config{BaseURL: base, Issuer: p.Issuer, ClientID: p.ClientID, ClientSecret: strings.TrimSpace(string(secret)),
			ACRValues: p.AcceptedACR, ProviderName: p.ProviderName, HTTPClient: client,
			Identities: identities, Pseudonyms: deps.Pseudonyms, Accesses: accesses, Registerer: deps.Metrics.Registerer(), Logger: deps.Logger.With("server", "portal")})
	}}, nil
}
