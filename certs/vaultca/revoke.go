package vaultca

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
	"time"

	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/certs"
)

// vaultSerial writes a serial the way Vault keys certificates: lower-case
// hex byte pairs separated by colons, the byte form of the certificate.
func vaultSerial(serial string) (string, error) {
	n := identity.NormaliseSerial(serial)
	if n == "" {
		return "", fmt.Errorf("%w: serial %q is not hexadecimal", certs.ErrInvalidRequest, serial)
	}
	v, _ := new(big.Int).SetString(n, 16)
	b := v.Bytes()
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = fmt.Sprintf("%02x", x)
	}
	return strings.Join(parts, ":"), nil
}

// Revoke implements certs.Authority. Vault rebuilds the CRL at once.
func (ca *CA) Revoke(ctx context.Context, serial string) error {
	vs, err := vaultSerial(serial)
	if err != nil {
		return err
	}
	if _, err := ca.client.Logical().WriteWithContext(ctx, ca.cfg.Mount+"/revoke", map[string]any{"serial_number": vs}); err != nil {
		// Vault answers 400 for an unknown serial, and nothing special
		// for an already revoked one.
		return ca.mapErr("revoke "+identity.NormaliseSerial(serial), err)
	}
	return nil
}

// RevokedSerials implements certs.CRLSource: the serials of the CRLs of
// every issuer of the issuing mount (current and rotated-out ones), each
// CRL's signature checked against its issuer.
func (ca *CA) RevokedSerials(ctx context.Context) ([]string, error) {
	ids, err := ca.issuerIDs(ctx, ca.cfg.Mount)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, id := range ids {
		issuer, err := ca.issuerCert(ctx, ca.cfg.Mount, id)
		if err != nil {
			return nil, err
		}
		resp, err := ca.client.Logical().ReadRawWithContext(ctx, ca.cfg.Mount+"/issuer/"+id+"/crl/der")
		if err != nil {
			return nil, ca.mapErr("read crl of issuer "+id, err)
		}
		der, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("%w: vault at %s: read crl: %v", certs.ErrIssuerUnavailable, ca.cfg.Addr, err)
		}
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			return nil, fmt.Errorf("vault at %s: crl of issuer %s is unparsable: %w", ca.cfg.Addr, id, err)
		}
		if err := crl.CheckSignatureFrom(issuer); err != nil {
			return nil, fmt.Errorf("vault at %s: crl of issuer %s is not signed by it: %w", ca.cfg.Addr, id, err)
		}
		for _, e := range crl.RevokedCertificateEntries {
			out = append(out, fmt.Sprintf("%x", e.SerialNumber))
		}
	}
	return out, nil
}

// SerialsFor implements certs.Authority by reading the certificates Vault
// stored. Linear in the number of stored certificates: the registry's
// credential records are the fast path.
func (ca *CA) SerialsFor(ctx context.Context, siret string) ([]string, error) {
	s, err := ca.client.Logical().ListWithContext(ctx, ca.cfg.Mount+"/certs")
	if err != nil {
		return nil, ca.mapErr("list certificates", err)
	}
	want := identity.URI(identity.KindConsumer, siret).String()
	now := time.Now()
	var out []string
	for _, key := range stringList(s, "keys") {
		cs, err := ca.client.Logical().ReadWithContext(ctx, ca.cfg.Mount+"/cert/"+key)
		if err != nil {
			return nil, ca.mapErr("read certificate "+key, err)
		}
		raw, _ := field(cs, "certificate")
		c, err := parseOneCert(raw)
		if err != nil || c.IsCA || now.After(c.NotAfter) {
			continue
		}
		if len(c.URIs) == 1 && c.URIs[0].String() == want {
			out = append(out, identity.SerialHex(c))
		}
	}
	return out, nil
}

// RotateIssuer starts a new intermediate: generated in the issuing mount,
// signed by the root, imported and made the default issuer. The previous
// intermediate stays (its certificates verify and its CRL is still read),
// and nothing changes for peers, who trust the root. It returns the new
// issuer id.
func (ca *CA) RotateIssuer(ctx context.Context) (string, error) {
	return rotateIssuer(ctx, ca.client, ca.cfg.Mount, ca.cfg.RootMount, ca.mapErr)
}

var errNoIssuer = errors.New("vault did not report the imported issuer")
