package certs

import (
	"crypto/x509"
	"net"
	"time"
)

// The checks every Issuer applies before it signs anything, exported for
// issuers outside this package (vaultca) so that the dev CA and Vault
// refuse exactly the same requests.

// CheckClientRequest validates req and returns the lifetime to issue and
// the subject common name.
func CheckClientRequest(req ClientRequest) (ttl time.Duration, commonName string, err error) {
	return validateClient(req)
}

// CheckServerRequest validates a server certificate request and returns
// its lifetime.
func CheckServerRequest(dnsNames []string, ips []net.IP, ttl time.Duration) (time.Duration, error) {
	return validateServer(dnsNames, ips, ttl)
}

// CheckClientCSR parses csrPEM and refuses it (wrapping ErrInvalidCSR)
// when its signature does not verify, it names another identity than req,
// or its key is weak.
func CheckClientCSR(req ClientRequest, csrPEM []byte) (*x509.CertificateRequest, error) {
	return checkClientCSR(req, csrPEM)
}
