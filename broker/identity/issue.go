package identity

import (
	"errors"
	"time"
)

// The issuance contract between the broker's credential services (admin,
// renewal) and the certificate authorities that implement it (certs: the
// dev CA, Vault PKI). It lives here, below both, so that the broker needs
// no import of certs; certs re-exports these names.

// ClientRequest names the identity a client certificate is issued for.
type ClientRequest struct {
	// Kind is KindConsumer or KindOperator.
	Kind Kind
	// ID is the consumer's SIRET or the operator's identifier.
	ID string
	// CommonName is a human-readable subject name, e.g. the consumer's name; ID when empty.
	CommonName string
	// TTL is the certificate lifetime; DefaultTTL when zero, at most MaxTTL.
	TTL time.Duration
}

// Credential is an issued certificate with its key (when the issuer made it)
// and the chain that verifies it.
type Credential struct {
	// CertPEM is the leaf certificate.
	CertPEM []byte
	// KeyPEM is the PKCS #8 private key; empty when the caller supplied a CSR.
	KeyPEM []byte
	// ChainPEM is the issuing CA chain, leaf excluded.
	ChainPEM []byte
	// Serial is the leaf serial in lower-case hex, as SerialHex renders it.
	Serial string
	// NotBefore is the start of the leaf's validity.
	NotBefore time.Time
	// NotAfter is the end of the leaf's validity.
	NotAfter time.Time
}

// FullChainPEM is the leaf followed by its issuing chain, what a TLS
// endpoint presents.
func (c *Credential) FullChainPEM() []byte {
	out := make([]byte, 0, len(c.CertPEM)+len(c.ChainPEM)+1)
	out = append(out, c.CertPEM...)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	return append(out, c.ChainPEM...)
}

const (
	// DefaultTTL is the lifetime of a certificate requested with a zero TTL.
	DefaultTTL = 7 * 24 * time.Hour
	// MaxTTL is the longest lifetime an issuer grants; longer requests are refused.
	MaxTTL = 90 * 24 * time.Hour
)

// Errors every issuer wraps, so that the broker maps them onto its error
// catalogue without knowing the issuer.
var (
	// ErrInvalidRequest is wrapped by errors about a malformed issuance request.
	ErrInvalidRequest = errors.New("invalid certificate request")
	// ErrInvalidCSR is wrapped by errors about a CSR an issuer refuses to sign.
	ErrInvalidCSR = errors.New("invalid csr")
	// ErrIssuerUnavailable is wrapped by errors of an issuer that cannot be
	// reached (Vault down, sealed or answering 5xx): retry later; existing
	// certificates keep working.
	ErrIssuerUnavailable = errors.New("certificate issuer unavailable")
)
