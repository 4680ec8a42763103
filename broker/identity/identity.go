// Package identity turns a verified X.509 certificate into the identity of
// a caller. Relais binds identities in a URI subject alternative name:
//
//	urn:relais:consumer:<SIRET>   a consuming public body (data API)
//	urn:relais:operator:<id>      an operator (admin API)
//
// The broker derives who is calling only from a verified chain, never from
// request fields.
package identity

import (
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"regexp"
	"strings"
)

// Kind is the role a certificate is issued for.
type Kind string

// The roles Relais issues certificates for.
const (
	KindConsumer Kind = "consumer"
	KindOperator Kind = "operator"
)

const uriPrefix = "urn:relais:"

// Identity is who a verified certificate says the caller is.
type Identity struct {
	// Kind is consumer or operator.
	Kind Kind
	// ID is the consumer's SIRET or the operator's identifier.
	ID string
	// Serial is the certificate serial number in colon-less lower-case hex.
	Serial string
}

// ErrNoIdentity is returned for a certificate without exactly one Relais URI SAN.
var ErrNoIdentity = errors.New("certificate carries no relais identity")

var idPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// URI returns the URI SAN that binds kind and id, for example
// urn:relais:consumer:21750001600019.
func URI(kind Kind, id string) *url.URL {
	return &url.URL{Scheme: "urn", Opaque: "relais:" + string(kind) + ":" + id}
}

// FromCertificate reads the identity from a certificate that the TLS stack
// has already verified against the trust bundle.
func FromCertificate(cert *x509.Certificate) (Identity, error) {
	var found []Identity
	for _, u := range cert.URIs {
		s := u.String()
		if !strings.HasPrefix(s, uriPrefix) {
			continue
		}
		kind, id, ok := strings.Cut(strings.TrimPrefix(s, uriPrefix), ":")
		if !ok || !idPattern.MatchString(id) {
			return Identity{}, fmt.Errorf("%w: malformed uri san", ErrNoIdentity)
		}
		switch Kind(kind) {
		case KindConsumer, KindOperator:
		default:
			return Identity{}, fmt.Errorf("%w: unknown role %q", ErrNoIdentity, kind)
		}
		found = append(found, Identity{Kind: Kind(kind), ID: id, Serial: SerialHex(cert)})
	}
	if len(found) != 1 {
		return Identity{}, ErrNoIdentity
	}
	return found[0], nil
}

// SerialHex renders a certificate serial as lower-case hex without
// separators, the form the registry and audit log use.
func SerialHex(cert *x509.Certificate) string {
	return cert.SerialNumber.Text(16)
}

// NormaliseSerial turns a serial written in hex, with or without colons
// (Vault writes "1a:2b:…"), into the SerialHex form. It returns "" when s
// is not a hexadecimal serial.
func NormaliseSerial(s string) string {
	n, ok := new(big.Int).SetString(strings.ReplaceAll(s, ":", ""), 16)
	if !ok || n.Sign() < 0 {
		return ""
	}
	return n.Text(16)
}
