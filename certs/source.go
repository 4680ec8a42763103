package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"
)

// CertSource holds the current certificate of a TLS endpoint. Set swaps it
// atomically, and configurations built by ServerConfig and ClientConfig read
// it at every handshake, so renewal needs no restart. The zero value holds
// no certificate. Safe for concurrent use.
type CertSource struct {
	cert atomic.Pointer[tls.Certificate]
}

// NewCertSource returns an empty CertSource; call Set before serving.
func NewCertSource() *CertSource {
	return &CertSource{}
}

// Set replaces the certificate with certPEM (leaf first, then any
// intermediates) and its private key keyPEM; on error the current one stays.
func (s *CertSource) Set(certPEM, keyPEM []byte) error {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// crypto/tls errors describe the failure, never the key.
		return fmt.Errorf("certs: load key pair: %w", err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return fmt.Errorf("certs: load key pair: %w", err)
		}
	}
	s.cert.Store(&pair)
	return nil
}

// Certificate returns the current certificate, with Leaf parsed, or nil;
// callers must not modify it.
func (s *CertSource) Certificate() *tls.Certificate {
	return s.cert.Load()
}

// GetCertificate serves the current certificate as tls.Config.GetCertificate.
func (s *CertSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := s.cert.Load()
	if c == nil {
		return nil, errors.New("certs: no server certificate loaded")
	}
	return c, nil
}

// GetClientCertificate serves the current certificate as
// tls.Config.GetClientCertificate; with none loaded the client sends none.
func (s *CertSource) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if c := s.cert.Load(); c != nil {
		return c, nil
	}
	return &tls.Certificate{}, nil
}

// TrustPool holds the CA bundle a TLS endpoint verifies peers against. Set
// swaps it atomically and ServerConfig reads it at every handshake, so a
// trust-bundle rotation needs no restart. The zero value trusts nothing.
// Safe for concurrent use.
type TrustPool struct {
	pool atomic.Pointer[x509.CertPool]
}

// NewTrustPool returns an empty TrustPool, which trusts nothing until Set.
func NewTrustPool() *TrustPool {
	return &TrustPool{}
}

// Set replaces the trusted CAs with pemBundle, which must hold only CA
// certificates; on error the current pool stays.
func (p *TrustPool) Set(pemBundle []byte) error {
	certs, err := parseCertificates(pemBundle)
	if err != nil {
		return fmt.Errorf("certs: trust bundle: %w", err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		if !c.BasicConstraintsValid || !c.IsCA {
			return fmt.Errorf("certs: trust bundle: %q is not a ca certificate", c.Subject.String())
		}
		pool.AddCert(c)
	}
	p.pool.Store(pool)
	return nil
}

// Pool returns the current pool, or nil before the first Set; callers must
// not modify it.
func (p *TrustPool) Pool() *x509.CertPool {
	return p.pool.Load()
}
