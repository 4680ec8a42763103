package certs

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/relais-broker/relais/broker/identity"
)

// Files of a DevCA directory.
const (
	// DevCACertFile holds the dev CA certificate, which is also the trust bundle.
	DevCACertFile = "ca.pem"
	// DevCAKeyFile holds the dev CA private key, mode 0600.
	DevCAKeyFile = "ca-key.pem"
)

const (
	devCAName     = "Relais development CA — not for production"
	devOrg        = "Relais dev"
	devCAValidity = 10 // years
	// backdate absorbs clock skew between the issuer and the verifiers.
	backdate = time.Minute
)

// DevCA is an embedded ECDSA P-256 development CA kept in a directory. It is
// for `relaisd dev` and tests, never production. Safe for concurrent use.
type DevCA struct {
	dir     string
	ledger  sync.Mutex // serialises issued.txt and revoked.txt
	clock   func() time.Time
	cert    *x509.Certificate
	certPEM []byte
	key     *ecdsa.PrivateKey
}

var _ Authority = (*DevCA)(nil)

// OpenDevCA loads the dev CA from dir, creating dir (0700), ca.pem and
// ca-key.pem (0600) the first time. It never replaces existing files: a
// corrupt, mismatched, half-present or expired CA is an error to resolve by
// hand. clock is time.Now when nil.
func OpenDevCA(dir string, clock func() time.Time) (*DevCA, error) {
	if clock == nil {
		clock = time.Now
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("certs: dev ca: %w", err)
	}
	certPath, keyPath := filepath.Join(dir, DevCACertFile), filepath.Join(dir, DevCAKeyFile)
	_, certErr := os.Stat(certPath)
	_, keyErr := os.Stat(keyPath)
	certMissing, keyMissing := errors.Is(certErr, fs.ErrNotExist), errors.Is(keyErr, fs.ErrNotExist)
	switch {
	case certErr == nil && keyErr == nil:
		return withDir(loadDevCA(certPath, keyPath, clock))(dir)
	case certMissing && keyMissing:
		return withDir(createDevCA(certPath, keyPath, clock))(dir)
	case certMissing && keyErr == nil:
		return nil, fmt.Errorf("certs: dev ca: %s exists without %s in %s; restore it or remove the directory", DevCAKeyFile, DevCACertFile, dir)
	case keyMissing && certErr == nil:
		return nil, fmt.Errorf("certs: dev ca: %s exists without %s in %s; restore it or remove the directory", DevCACertFile, DevCAKeyFile, dir)
	case certErr != nil:
		return nil, fmt.Errorf("certs: dev ca: %w", certErr)
	default:
		return nil, fmt.Errorf("certs: dev ca: %w", keyErr)
	}
}

func loadDevCA(certPath, keyPath string, clock func() time.Time) (*DevCA, error) {
	if runtime.GOOS != "windows" {
		info, err := os.Stat(keyPath)
		if err != nil {
			return nil, fmt.Errorf("certs: dev ca: %w", err)
		}
		if info.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("certs: dev ca: %s is accessible to other users (mode %04o), want 0600", keyPath, info.Mode().Perm())
		}
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("certs: dev ca: %w", err)
	}
	der, err := decodeSingle(certPEM, "CERTIFICATE")
	if err != nil {
		return nil, fmt.Errorf("certs: dev ca: %s: %w", certPath, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: dev ca: %s: %w", certPath, err)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("certs: dev ca: %s is not a ca certificate", certPath)
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		return nil, fmt.Errorf("certs: dev ca: %s is not self-signed: %w", certPath, err)
	}
	if now := clock(); now.After(cert.NotAfter) {
		return nil, fmt.Errorf("certs: dev ca: %s expired on %s; remove the directory to create a new ca", certPath, cert.NotAfter.UTC().Format(time.RFC3339))
	}

	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("certs: dev ca: %w", err)
	}
	// Parse errors from encoding/pem and crypto/x509 never echo key bytes.
	keyDER, err := decodeSingle(keyPEM, "PRIVATE KEY")
	if err != nil {
		return nil, fmt.Errorf("certs: dev ca: %s: %w", keyPath, err)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(keyDER)
	if err != nil {
		return nil, fmt.Errorf("certs: dev ca: %s: %w", keyPath, err)
	}
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		return nil, fmt.Errorf("certs: dev ca: %s is not an ecdsa p-256 key", keyPath)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("certs: dev ca: %s does not match %s", keyPath, certPath)
	}
	return &DevCA{clock: clock, cert: cert, certPEM: certPEM, key: key}, nil
}

func createDevCA(certPath, keyPath string, clock func() time.Time) (*DevCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: dev ca: generate key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := clock()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: devCAName, Organization: []string{devOrg}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.AddDate(devCAValidity, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // leaves only, no intermediates
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("certs: dev ca: create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: dev ca: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	certPEM := encodeCert(der)
	// Key first: a crash in between leaves a lone key, which OpenDevCA
	// reports rather than pairing it with a new certificate.
	if err := writeFileExclusive(keyPath, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("certs: dev ca: %w", err)
	}
	if err := writeFileExclusive(certPath, certPEM, 0o644); err != nil {
		_ = os.Remove(keyPath) // ours: the exclusive create above succeeded
		return nil, fmt.Errorf("certs: dev ca: %w", err)
	}
	return &DevCA{clock: clock, cert: cert, certPEM: certPEM, key: key}, nil
}

// IssueClient issues an ECDSA P-256 client certificate for req's identity.
func (ca *DevCA) IssueClient(ctx context.Context, req ClientRequest) (*Credential, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ttl, cn, err := validateClient(req)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: generate key: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	cred, err := ca.issue(clientTemplate(req, cn), key.Public(), ttl)
	if err != nil {
		return nil, err
	}
	cred.KeyPEM = keyPEM
	return cred, nil
}

// SignClientCSR signs csrPEM for req's identity; see Issuer for what is refused.
func (ca *DevCA) SignClientCSR(ctx context.Context, req ClientRequest, csrPEM []byte) (*Credential, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ttl, cn, err := validateClient(req)
	if err != nil {
		return nil, err
	}
	csr, err := checkClientCSR(req, csrPEM)
	if err != nil {
		return nil, err
	}
	return ca.issue(clientTemplate(req, cn), csr.PublicKey, ttl)
}

// IssueServer issues an ECDSA P-256 server certificate; ttl is DefaultTTL when zero.
func (ca *DevCA) IssueServer(ctx context.Context, dnsNames []string, ips []net.IP, ttl time.Duration) (*Credential, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ttl, err := validateServer(dnsNames, ips, ttl)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: generate key: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	var cn string
	if len(dnsNames) > 0 {
		cn = dnsNames[0]
	} else {
		cn = ips[0].String()
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		DNSNames:    append([]string(nil), dnsNames...),
		IPAddresses: append([]net.IP(nil), ips...),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	cred, err := ca.issue(tmpl, key.Public(), ttl)
	if err != nil {
		return nil, err
	}
	cred.KeyPEM = keyPEM
	return cred, nil
}

// TrustBundle returns the dev CA certificate in PEM.
func (ca *DevCA) TrustBundle(ctx context.Context) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return bytes.Clone(ca.certPEM), nil
}

func clientTemplate(req ClientRequest, cn string) *x509.Certificate {
	return &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		URIs:        []*url.URL{identity.URI(req.Kind, req.ID)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
}

// issue completes tmpl with the fields every leaf shares and signs it.
func (ca *DevCA) issue(tmpl *x509.Certificate, pub crypto.PublicKey, ttl time.Duration) (*Credential, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := ca.clock()
	tmpl.SerialNumber = serial
	tmpl.Subject.Organization = []string{devOrg}
	tmpl.NotBefore = now.Add(-backdate)
	tmpl.NotAfter = now.Add(ttl)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid = true
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		return nil, fmt.Errorf("%w: certificate would outlive the dev ca (until %s)", ErrInvalidRequest, ca.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("certs: sign certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: sign certificate: %w", err)
	}
	if err := ca.recordIssued(leaf); err != nil {
		return nil, err
	}
	return &Credential{
		CertPEM:   encodeCert(der),
		ChainPEM:  bytes.Clone(ca.certPEM),
		Serial:    identity.SerialHex(leaf),
		NotBefore: leaf.NotBefore,
		NotAfter:  leaf.NotAfter,
	}, nil
}

// serialLimit is 2^128: serials carry 128 random bits (CA/B BR ask for 64).
var serialLimit = new(big.Int).Lsh(big.NewInt(1), 128)

func randomSerial() (*big.Int, error) {
	for {
		n, err := rand.Int(rand.Reader, serialLimit)
		if err != nil {
			return nil, fmt.Errorf("certs: random serial: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}
