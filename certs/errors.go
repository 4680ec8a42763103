package certs

import "errors"

// ErrIssuerUnavailable is wrapped by errors of an issuer that cannot be
// reached (Vault down, sealed or answering 5xx): retry later; existing
// certificates keep working.
var ErrIssuerUnavailable = errors.New("certificate issuer unavailable")
