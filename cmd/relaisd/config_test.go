package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// TestExampleConfigurationIsCurrent decodes deploy/relaisd.example.yaml
// strictly: every documented key exists, and every option is documented.
func TestExampleConfigurationIsCurrent(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/relaisd.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("the example holds a key relaisd does not know: %v", err)
	}
	if c.TLS.Vault == nil || c.TLS.Vault.RoleID == "" || c.Audit.Retention == 0 || c.Listen.Ops == "" || c.SourcesFile == "" || c.Log.Format == "" || c.TLS.CRLRefresh == 0 ||
		len(c.CitizenLogin.Providers) == 0 || c.CitizenLogin.Providers[0].ClientID == "" || c.Listen.Portal == "" || c.Portal.ClientSecretFile == "" {
		t.Fatalf("the example leaves options out: %+v", c)
	}
}

// TestCitizenLoginAndPortalValidation: each bad provider or portal setting
// is refused with the key it is about, without reaching any provider.
func TestCitizenLoginAndPortalValidation(t *testing.T) {
	secret := t.TempDir() + "/secret"
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := IdentityProviderConfig{Issuer: "https://idp.example.gouv.fr/api/v2", ClientID: "relais"}
	for _, tc := range []struct {
		name string
		cfg  CitizenLoginConfig
		want string
	}{
		{"no issuer", CitizenLoginConfig{Providers: []IdentityProviderConfig{{ClientID: "relais"}}}, "providers[0].issuer is required"},
		{"plain http", CitizenLoginConfig{Providers: []IdentityProviderConfig{{Issuer: "http://idp.example.gouv.fr", ClientID: "relais"}}}, "an https URL"},
		{"twice", CitizenLoginConfig{Providers: []IdentityProviderConfig{good, good}}, "listed twice"},
		{"no client id", CitizenLoginConfig{Providers: []IdentityProviderConfig{{Issuer: good.Issuer}}}, "client_id is required"},
		{"skew", CitizenLoginConfig{Providers: []IdentityProviderConfig{{Issuer: good.Issuer, ClientID: "relais", ClockSkew: time.Hour}}}, "clock_skew"},
		{"secret file", CitizenLoginConfig{Providers: []IdentityProviderConfig{{Issuer: good.Issuer, ClientID: "relais", ClientSecretFile: "/nonexistent/secret"}}}, "client_secret_file"},
	} {
		err := tc.cfg.validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %q", tc.name, err, tc.want)
		}
	}
	if err := (CitizenLoginConfig{Providers: []IdentityProviderConfig{good, {Issuer: "http://127.0.0.1:8445", ClientID: "relais"}}}).validate(); err != nil {
		t.Errorf("https, and http on loopback, refused: %v", err)
	}
	portal := PortalConfig{PublicURL: "https://transparence.example.gouv.fr", Issuer: good.Issuer, ClientID: "portal", ClientSecretFile: secret}
	if err := portal.validate("0.0.0.0:8444"); err != nil {
		t.Errorf("a good portal refused: %v", err)
	}
	if err := (PortalConfig{}).validate(""); err != nil {
		t.Errorf("no listen.portal, yet the portal block is checked: %v", err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*PortalConfig)
		want   string
	}{
		{"public url with a path", func(p *PortalConfig) { p.PublicURL += "/portail" }, "portal.public_url"},
		{"http issuer", func(p *PortalConfig) { p.Issuer = "http://idp.example.gouv.fr" }, "portal.issuer"},
		{"no client id", func(p *PortalConfig) { p.ClientID = "" }, "portal.client_id"},
		{"no secret", func(p *PortalConfig) { p.ClientSecretFile = "" }, "portal.client_secret_file is required"},
	} {
		p := portal
		tc.mutate(&p)
		if err := p.validate("0.0.0.0:8444"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %q", tc.name, err, tc.want)
		}
	}
}
