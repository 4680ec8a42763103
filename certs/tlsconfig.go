package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/relais-broker/relais/broker/identity"
)

// cipherSuites are the TLS 1.2 suites allowed: ECDHE for forward secrecy and
// AEAD only. TLS 1.3 suites are not configurable in Go and are all AEAD.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// curves are the key-exchange groups allowed, in preference order: the
// hybrid post-quantum group first (TLS 1.3 only), then classic ECDHE.
var curves = []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256}

// policy returns a config carrying the protocol policy shared by both ends:
// TLS 1.2 minimum (1.3 negotiated whenever the peer offers it).
func policy() *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS12,
		CipherSuites:     append([]uint16(nil), cipherSuites...),
		CurvePreferences: append([]tls.CurveID(nil), curves...),
	}
}

// PublicServerConfig returns the configuration of the pages a person
// opens in a browser (the transparency portal, the dev identity provider):
// the same protocol policy and server certificate as the APIs, but no
// client certificate asked for — people log in through OpenID Connect.
func PublicServerConfig(src *CertSource) *tls.Config {
	base := policy()
	base.GetCertificate = src.GetCertificate
	base.NextProtos = []string{"h2", "http/1.1"}
	return base
}

// ServerConfig returns the data API's mTLS configuration: every client must
// present a certificate that chains to trust, read afresh at each handshake,
// and the server presents src's current certificate. Until trust holds a
// bundle every handshake fails. With RejectRevoked, a client certificate
// whose serial is revoked fails the handshake too.
func ServerConfig(src *CertSource, trust *TrustPool, opts ...ServerOption) *tls.Config {
	var o serverOptions
	for _, opt := range opts {
		opt(&o)
	}
	base := policy()
	base.ClientAuth = tls.RequireAndVerifyClientCert
	base.GetCertificate = src.GetCertificate
	// Never nil: a nil ClientCAs would mean the system roots.
	base.ClientCAs = x509.NewCertPool()
	// A resumed session skips chain verification. Go 1.26 already refuses to
	// resume when the client CAs changed (CVE-2025-68121); checking again
	// against the current bundle keeps a retired CA from riding on an old
	// ticket whatever the toolchain.
	base.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) > 0 && o.revoked != nil && o.revoked.IsRevoked(identity.SerialHex(cs.PeerCertificates[0])) {
			return errors.New("certs: client certificate is revoked")
		}
		if !cs.DidResume {
			return nil
		}
		return verifyClientChain(trust.Pool(), cs.PeerCertificates)
	}
	if o.noALPN != nil {
		verify := base.VerifyConnection
		base.VerifyConnection = func(cs tls.ConnectionState) error {
			if err := verify(cs); err != nil {
				return err
			}
			if cs.NegotiatedProtocol == "" {
				o.noALPN(cs)
			}
			return nil
		}
	}
	cfg := base.Clone()
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		pool := trust.Pool()
		if pool == nil {
			return nil, errors.New("certs: no client trust bundle loaded")
		}
		c := base.Clone()
		c.ClientCAs = pool
		return c, nil
	}
	return cfg
}

// ServerOption adjusts ServerConfig.
type ServerOption func(*serverOptions)

type serverOptions struct {
	revoked RevocationChecker
	noALPN  func(tls.ConnectionState)
}

// OnNoALPN calls f for each otherwise valid handshake in which the client
// negotiated no ALPN protocol: gRPC then closes the connection without a
// word to the client, so the server must say why (log and count it). For
// gRPC listeners only: an HTTP/1.1 client rightly offers no ALPN.
func OnNoALPN(f func(tls.ConnectionState)) ServerOption {
	return func(o *serverOptions) { o.noALPN = f }
}

// RevocationChecker says whether a certificate serial (identity.SerialHex)
// is revoked: the CRL set, the registry's, or both.
type RevocationChecker interface {
	IsRevoked(serial string) bool
}

// RejectRevoked makes the handshake fail for client certificates in r.
func RejectRevoked(r RevocationChecker) ServerOption {
	return func(o *serverOptions) { o.revoked = r }
}

// ClientConfig returns the configuration of a client of the broker: it
// presents src's current certificate (none when src is nil or empty) and
// verifies the server against roots for serverName. A nil roots trusts
// nothing rather than the system roots.
func ClientConfig(src *CertSource, roots *x509.CertPool, serverName string) *tls.Config {
	cfg := policy()
	cfg.ServerName = serverName
	if roots == nil {
		roots = x509.NewCertPool()
	}
	cfg.RootCAs = roots
	if src != nil {
		cfg.GetClientCertificate = src.GetClientCertificate
	}
	return cfg
}

func verifyClientChain(pool *x509.CertPool, chain []*x509.Certificate) error {
	if pool == nil {
		return errors.New("certs: no client trust bundle loaded")
	}
	if len(chain) == 0 {
		return errors.New("certs: resumed session without a client certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         pool,
		Intermediates: inter,
		CurrentTime:   time.Now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return fmt.Errorf("certs: resumed session: client certificate no longer trusted: %w", err)
	}
	return nil
}
