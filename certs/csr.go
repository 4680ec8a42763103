package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"

	"github.com/relais-broker/relais/broker/identity"
)

// maxCSRSize bounds the PEM input so a hostile CSR cannot make the issuer
// parse megabytes.
const maxCSRSize = 64 << 10

// minRSABits is the smallest RSA modulus accepted in a CSR.
const minRSABits = 2048

// checkClientCSR parses csrPEM and checks it may be signed for req's
// identity: one PEM block, a valid self-signature, an accepted key, and
// exactly the identity URI SAN with no other SAN. Only the public key is
// used afterwards; subject and extensions come from the request.
func checkClientCSR(req ClientRequest, csrPEM []byte) (*x509.CertificateRequest, error) {
	if len(csrPEM) > maxCSRSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrInvalidCSR, maxCSRSize)
	}
	block, rest := pem.Decode(csrPEM)
	if block == nil {
		return nil, fmt.Errorf("%w: no pem block", ErrInvalidCSR)
	}
	if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("%w: pem block is %q, want CERTIFICATE REQUEST", ErrInvalidCSR, block.Type)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: trailing data after the pem block", ErrInvalidCSR)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature: %w", ErrInvalidCSR, err)
	}
	if err := acceptedKey(csr.PublicKey); err != nil {
		return nil, err
	}
	want := identity.URI(req.Kind, req.ID).String()
	if len(csr.URIs) != 1 || csr.URIs[0].String() != want {
		got := make([]string, len(csr.URIs))
		for i, u := range csr.URIs {
			got[i] = u.String()
		}
		return nil, fmt.Errorf("%w: csr requests uri sans %q, want exactly [%s]", ErrInvalidCSR, got, want)
	}
	if len(csr.DNSNames) != 0 || len(csr.IPAddresses) != 0 || len(csr.EmailAddresses) != 0 {
		return nil, fmt.Errorf("%w: client csr must not request dns, ip or email sans", ErrInvalidCSR)
	}
	return csr, nil
}

// acceptedKey allows RSA of at least 2048 bits, ECDSA on P-256 or P-384, and
// Ed25519.
func acceptedKey(pub any) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return fmt.Errorf("%w: rsa key of %d bits, want at least %d", ErrInvalidCSR, k.N.BitLen(), minRSABits)
		}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return fmt.Errorf("%w: ecdsa curve %s not accepted, want P-256 or P-384", ErrInvalidCSR, k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("%w: unsupported key type %T", ErrInvalidCSR, pub)
	}
	return nil
}
