package certs

import "github.com/relais-broker/relais/broker/identity"

// ErrInvalidSIRET is wrapped by every error ValidSIRET returns; it is
// identity.ErrInvalidSIRET, where the rule now lives.
var ErrInvalidSIRET = identity.ErrInvalidSIRET

// ValidSIRET is identity.ValidSIRET, kept for the callers of certs.
func ValidSIRET(s string) error { return identity.ValidSIRET(s) }
