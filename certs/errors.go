package certs

import "github.com/relais-broker/relais/broker/identity"

// ErrIssuerUnavailable is wrapped by errors of an issuer that cannot be
// reached (Vault down, sealed or answering 5xx): retry later; existing
// certificates keep working. It is identity.ErrIssuerUnavailable.
var ErrIssuerUnavailable = identity.ErrIssuerUnavailable
