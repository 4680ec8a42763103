// Package authn derives who is calling from the verified client
// certificate of the gRPC connection, and only from it: never from request
// fields or metadata. The data API, the credential renewal service and the
// admin API all authenticate through Peer.
package authn

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/relais-broker/relais/broker/errcat"
	"github.com/relais-broker/relais/broker/identity"
)

// RevocationChecker tells whether a certificate serial (identity.SerialHex
// form) is revoked; certs.Revocations implements it.
type RevocationChecker interface {
	IsRevoked(serial string) bool
}

// Credential is the verified caller of a call.
type Credential struct {
	Identity    identity.Identity
	Certificate *x509.Certificate
	// Serial is the leaf serial in identity.SerialHex form.
	Serial string
}

// Peer returns the caller of ctx's call when it presented a verified
// client certificate of kind want that is neither revoked (revoked may be
// nil) nor expired at now. Long-lived connections are checked on every
// call, so a revocation or an expiry takes effect on open streams too.
// Errors are catalogue errors: credential_missing, credential_invalid,
// credential_revoked, credential_expired.
func Peer(ctx context.Context, want identity.Kind, revoked RevocationChecker, now time.Time) (*Credential, *errcat.Error) {
	leaf := Leaf(ctx)
	if leaf == nil {
		return nil, errcat.New(errcat.CredentialMissing)
	}
	id, err := identity.FromCertificate(leaf)
	if err != nil {
		return nil, errcat.Wrap(errcat.CredentialInvalid, err)
	}
	if id.Kind != want {
		return nil, errcat.Wrap(errcat.CredentialInvalid, fmt.Errorf("a %s certificate cannot call this service", id.Kind))
	}
	serial := identity.SerialHex(leaf)
	if revoked != nil && revoked.IsRevoked(serial) {
		return nil, errcat.Wrap(errcat.CredentialRevoked, fmt.Errorf("serial %s", serial))
	}
	if now.After(leaf.NotAfter) {
		return nil, errcat.Wrap(errcat.CredentialExpired, fmt.Errorf("serial %s expired at %s", serial, leaf.NotAfter.UTC().Format(time.RFC3339)))
	}
	return &Credential{Identity: id, Certificate: leaf, Serial: serial}, nil
}

// Leaf returns the verified client certificate of ctx's call, or nil
// when there is none. Peer decides whether it is accepted; Leaf lets the
// audit record of a refused call still name the certificate presented.
func Leaf(ctx context.Context) *x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	tlsInfo, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(tlsInfo.State.VerifiedChains) == 0 || len(tlsInfo.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return tlsInfo.State.VerifiedChains[0][0]
}
