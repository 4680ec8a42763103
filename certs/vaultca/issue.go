package vaultca

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/certs"
)

// ConsumerRole is the issuing role of a consumer, and ConsumerCSRRole the
// one that signs its CSRs (Vault only lets "any key type" roles sign).
func ConsumerRole(siret string) string    { return "consumer-" + siret }
func ConsumerCSRRole(siret string) string { return "consumer-" + siret + "-csr" }

func (ca *CA) roleFor(req certs.ClientRequest, csr bool) string {
	if req.Kind == identity.KindOperator {
		return OperatorRole
	}
	if csr {
		return ConsumerCSRRole(req.ID)
	}
	return ConsumerRole(req.ID)
}

// IssueClient implements certs.Issuer: Vault generates the key.
func (ca *CA) IssueClient(ctx context.Context, req certs.ClientRequest) (*certs.Credential, error) {
	ttl, cn, err := certs.CheckClientRequest(req)
	if err != nil {
		return nil, err
	}
	s, err := ca.client.Logical().WriteWithContext(ctx, ca.cfg.Mount+"/issue/"+ca.roleFor(req, false), map[string]any{
		"common_name":          cn,
		"uri_sans":             identity.URI(req.Kind, req.ID).String(),
		"exclude_cn_from_sans": true,
		"ttl":                  ttl.String(),
		"private_key_format":   "pkcs8",
	})
	if err != nil {
		return nil, ca.mapErr("issue "+string(req.Kind)+" certificate", err)
	}
	return credentialFrom(s, &req, true)
}

// SignClientCSR implements certs.Issuer: the holder keeps its key. The
// CSR passes the same local checks as with the dev CA before Vault sees
// it; Vault's role then only allows the holder's own identity.
func (ca *CA) SignClientCSR(ctx context.Context, req certs.ClientRequest, csrPEM []byte) (*certs.Credential, error) {
	ttl, cn, err := certs.CheckClientRequest(req)
	if err != nil {
		return nil, err
	}
	if _, err := certs.CheckClientCSR(req, csrPEM); err != nil {
		return nil, err
	}
	s, err := ca.client.Logical().WriteWithContext(ctx, ca.cfg.Mount+"/sign/"+ca.roleFor(req, true), map[string]any{
		"csr":                  string(csrPEM),
		"common_name":          cn,
		"uri_sans":             identity.URI(req.Kind, req.ID).String(),
		"exclude_cn_from_sans": true,
		"ttl":                  ttl.String(),
	})
	if err != nil {
		err = ca.mapErr("sign csr", err)
		if errors.Is(err, certs.ErrInvalidRequest) {
			return nil, fmt.Errorf("%w: %w", certs.ErrInvalidCSR, err)
		}
		return nil, err
	}
	return credentialFrom(s, &req, false)
}

// IssueServer implements certs.Issuer.
func (ca *CA) IssueServer(ctx context.Context, dnsNames []string, ips []net.IP, ttl time.Duration) (*certs.Credential, error) {
	ttl, err := certs.CheckServerRequest(dnsNames, ips, ttl)
	if err != nil {
		return nil, err
	}
	ipStrings := make([]string, len(ips))
	for i, ip := range ips {
		ipStrings[i] = ip.String()
	}
	cn := "relais-broker"
	if len(dnsNames) > 0 {
		cn = dnsNames[0]
	}
	s, err := ca.client.Logical().WriteWithContext(ctx, ca.cfg.Mount+"/issue/"+ServerRole, map[string]any{
		"common_name":        cn,
		"alt_names":          strings.Join(dnsNames, ","),
		"ip_sans":            strings.Join(ipStrings, ","),
		"ttl":                ttl.String(),
		"private_key_format": "pkcs8",
	})
	if err != nil {
		return nil, ca.mapErr("issue server certificate", err)
	}
	cred, err := credentialFrom(s, nil, true)
	if err != nil {
		return nil, err
	}
	leaf, err := parseOneCert(string(cred.CertPEM))
	if err != nil {
		return nil, err
	}
	for _, n := range dnsNames {
		if leaf.VerifyHostname(n) != nil {
			return nil, fmt.Errorf("vault issued a server certificate without the name %s", n)
		}
	}
	for _, ip := range ipStrings {
		if leaf.VerifyHostname(ip) != nil {
			return nil, fmt.Errorf("vault issued a server certificate without the address %s", ip)
		}
	}
	return cred, nil
}

// TrustBundle implements certs.Issuer: every issuer certificate of the
// root mount (usually one root), the only anchors peers need.
func (ca *CA) TrustBundle(ctx context.Context) ([]byte, error) {
	certsPEM, err := ca.issuerCerts(ctx, ca.cfg.RootMount)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	for _, c := range certsPEM {
		out.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
	}
	if out.Len() == 0 {
		return nil, fmt.Errorf("vault at %s: root mount %s holds no CA; run relaisctl vault init", ca.cfg.Addr, ca.cfg.RootMount)
	}
	return out.Bytes(), nil
}

// issuerCerts lists the CA certificates of mount, keyed by issuer id order.
func (ca *CA) issuerCerts(ctx context.Context, mount string) ([]*x509.Certificate, error) {
	ids, err := ca.issuerIDs(ctx, mount)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for _, id := range ids {
		c, err := ca.issuerCert(ctx, mount, id)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func (ca *CA) issuerIDs(ctx context.Context, mount string) ([]string, error) {
	return listIssuers(ctx, ca.client, mount, ca.mapErr)
}

func listIssuers(ctx context.Context, c *api.Client, mount string, mapErr func(string, error) error) ([]string, error) {
	s, err := c.Logical().ListWithContext(ctx, mount+"/issuers")
	if err != nil {
		return nil, mapErr("list issuers of "+mount, err)
	}
	return stringList(s, "keys"), nil
}

func (ca *CA) issuerCert(ctx context.Context, mount, id string) (*x509.Certificate, error) {
	s, err := ca.client.Logical().ReadWithContext(ctx, mount+"/issuer/"+id)
	if err != nil {
		return nil, ca.mapErr("read issuer "+id, err)
	}
	raw, _ := field(s, "certificate")
	c, err := parseOneCert(raw)
	if err != nil {
		return nil, fmt.Errorf("vault at %s: issuer %s of %s: %w", ca.cfg.Addr, id, mount, err)
	}
	return c, nil
}

// credentialFrom checks Vault's answer to an issue or sign call and
// builds the credential; a missing or inconsistent part is an error, never
// a half credential. want, when set, is the identity the leaf must carry.
func credentialFrom(s *api.Secret, want *certs.ClientRequest, withKey bool) (*certs.Credential, error) {
	certPEM, ok := field(s, "certificate")
	if !ok {
		return nil, errors.New("vault answered no certificate")
	}
	leaf, err := parseOneCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("vault answered an unusable certificate: %w", err)
	}
	var chain bytes.Buffer
	for _, c := range stringList(s, "ca_chain") {
		if _, err := parseOneCert(c); err != nil {
			return nil, fmt.Errorf("vault answered an unusable chain: %w", err)
		}
		chain.WriteString(strings.TrimSpace(c) + "\n")
	}
	cred := &certs.Credential{
		CertPEM:   []byte(strings.TrimSpace(certPEM) + "\n"),
		ChainPEM:  chain.Bytes(),
		Serial:    identity.SerialHex(leaf),
		NotBefore: leaf.NotBefore,
		NotAfter:  leaf.NotAfter,
	}
	if withKey {
		keyPEM, ok := field(s, "private_key")
		if !ok {
			return nil, errors.New("vault answered no private key")
		}
		if _, err := tls.X509KeyPair(cred.CertPEM, []byte(keyPEM)); err != nil {
			return nil, errors.New("vault answered a key that does not match the certificate")
		}
		cred.KeyPEM = []byte(strings.TrimSpace(keyPEM) + "\n")
	}
	if want != nil {
		id, err := identity.FromCertificate(leaf)
		if err != nil || id.Kind != want.Kind || id.ID != want.ID {
			return nil, fmt.Errorf("vault issued a certificate for another identity than %s", identity.URI(want.Kind, want.ID))
		}
	}
	return cred, nil
}

func field(s *api.Secret, name string) (string, bool) {
	if s == nil || s.Data == nil {
		return "", false
	}
	v, ok := s.Data[name].(string)
	return v, ok && v != ""
}

func stringList(s *api.Secret, name string) []string {
	if s == nil || s.Data == nil {
		return nil
	}
	raw, _ := s.Data[name].([]any)
	out := make([]string, 0, len(raw))
	for _, v := range raw {
		if str, ok := v.(string); ok {
			out = append(out, str)
		}
	}
	return out
}

func parseOneCert(p string) (*x509.Certificate, error) {
	block, _ := pem.Decode([]byte(p))
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}
