// Package certs issues and serves the X.509 credentials Relais runs on: the
// Issuer contract (implemented by the embedded development CA here and,
// later, by Vault PKI), PEM helpers for writing credentials to disk, and the
// TLS configuration builders whose certificates and trust bundle can be
// rotated without restarting the broker.
//
// A client certificate binds exactly one identity in a URI subject
// alternative name (see package broker/identity); issuers take that identity
// from the request, never from a CSR, and refuse a CSR that asks for another.
package certs
