package main

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/relais-broker/relais/adapters/sandbox"
	"github.com/relais-broker/relais/broker/citizen"
	"github.com/relais-broker/relais/broker/transparency"
	"github.com/relais-broker/relais/internal/devenv"
	"github.com/relais-broker/relais/internal/devidp"
	"github.com/relais-broker/relais/portal"
)

// devCitizenLogin is what dev mode adds for citizens: a local OpenID
// provider whose users are the sandbox's fictitious citizens, the
// resolver of the tokens it issues (audience "relais"), and the
// transparency portal logging citizens in through it.
type devCitizenLogin struct {
	pages    []page
	resolver *citizen.Resolver
	// issuer and portalURL are for the banner ("" when off).
	issuer, portalURL string
}

// devPages opens the dev provider's and the portal's listeners (so that
// their URLs are known before anything is built) and describes them.
// An empty --portal-listen turns the portal off; the provider is always
// on: citizen-initiated calls are part of the dev broker.
func devPages(o devOptions, env *devenv.Env, logger *slog.Logger) (*devCitizenLogin, error) {
	pem, err := os.ReadFile(filepath.Join(env.Dir, "ca.pem"))
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no certificate", filepath.Join(env.Dir, "ca.pem"))
	}
	client := providerClient(roots)
	idpLn, err := net.Listen("tcp", o.idpListen)
	if err != nil {
		return nil, fmt.Errorf("--idp-listen: %w", err)
	}
	d := &devCitizenLogin{issuer: "https://" + pageHost(idpLn, o.host)}
	if o.idpIssuer != "" {
		d.issuer = strings.TrimSuffix(o.idpIssuer, "/")
	}
	var portalLn net.Listener
	var portalSecret string
	if o.portalListen != "" {
		if portalLn, err = net.Listen("tcp", o.portalListen); err != nil {
			idpLn.Close()
			return nil, fmt.Errorf("--portal-listen: %w", err)
		}
		d.portalURL = "https://" + pageHost(portalLn, o.host)
		portalSecret = randomSecret()
	}
	redirect := ""
	if portalLn != nil {
		redirect = d.portalURL + "/callback"
	}
	users, err := devenv.IdPUsers(sandbox.Default())
	var idp *devidp.Provider
	if err == nil {
		idp, err = devidp.New(devidp.Config{Issuer: d.issuer, Users: users,
			Clients: devidp.DefaultClients(redirect, portalSecret), AccessTokenLifetime: o.idpTokenLifetime, Logger: logger.With("server", "identity provider")})
	}
	if err == nil {
		d.resolver, err = citizen.New(citizen.Config{HTTPClient: client, Logger: logger,
			Providers: []citizen.ProviderConfig{{Issuer: d.issuer, ClientID: devidp.RelaisAudience, AcceptedACR: []string{"eidas1"}}}})
	}
	if err != nil {
		idpLn.Close()
		if portalLn != nil {
			portalLn.Close()
		}
		return nil, err
	}
	d.pages = append(d.pages, page{Name: "identity provider", Listener: idpLn, Build: func(pageDeps) (http.Handler, error) { return idp, nil }})
	if portalLn == nil {
		return d, nil
	}
	d.pages = append(d.pages, page{Name: "portal", Listener: portalLn, Build: func(deps pageDeps) (http.Handler, error) {
		// The portal reads the identity with its own audience.
		identities, err := citizen.New(citizen.Config{HTTPClient: client, Logger: logger,
			Providers: []citizen.ProviderConfig{{Issuer: d.issuer, ClientID: devidp.ClientTransparencyPortal, AcceptedACR: []string{"eidas1"}}}})
		if err != nil {
			return nil, err
		}
		accesses, err := transparency.New(transparency.Config{Audit: deps.Audit, Registry: deps.Registry})
		if err != nil {
			return nil, err
		}
		return portal.New(portal.Config{BaseURL: d.portalURL, Issuer: d.issuer, ClientID: devidp.ClientTransparencyPortal, ClientSecret: portalSecret,
			ACRValues: []string{"eidas1"}, ProviderName: "FranceConnect (démo)", HTTPClient: client,
			Identities: identities, Pseudonyms: deps.Pseudonyms, Accesses: accesses, Registerer: deps.Metrics.Registerer(), Logger: deps.Logger.With("server", "portal")})
	}})
	return d, nil
}

// pageHost is the host:port a page's URL names: the bound port, on the
// host the dev server certificate covers when the listener is on every
// interface.
func pageHost(ln net.Listener, certHost string) string {
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = certHost
	}
	return net.JoinHostPort(host, port)
}

// randomSecret is a fresh client secret for the portal at the dev
// provider: both live in this process and forget it when it stops.
func randomSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// portalLine is the banner's line for the portal.
func portalLine(url string) string {
	if url == "" {
		return "portal:         off (--portal-listen)"
	}
	return fmt.Sprintf("portal:         %s (who accessed my data: log in as a sandbox citizen)", url)
}
