// Package renewer keeps a consumer's Relais client certificate fresh. A
// consumer's software embeds it: the Renewer asks the broker's
// CredentialService for a new certificate over a fresh key before the
// current one expires (at two thirds of its life, with jitter so that a
// fleet does not renew in step), swaps it into the live tls.Config through
// a certs.CertSource (GetClientCertificate), and optionally writes it to
// disk. Open connections are not dropped: new handshakes use the new
// certificate, and the broker keeps accepting the old one until it expires
// or is revoked.
package renewer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/url"
	"time"

	"google.golang.org/grpc"

	"github.com/relais-broker/relais/certs"
	credentialsv1 "github.com/relais-broker/relais/proto/relais/credentials/v1"
)

// Config configures a Renewer.
type Config struct {
	// Source holds the current certificate; the client's tls.Config must
	// read it (certs.ClientConfig does).
	Source *certs.CertSource
	// Conn is a connection to the broker's data API made with that
	// tls.Config.
	Conn grpc.ClientConnInterface
	// Dir, when set, receives cert.pem and key.pem after each renewal.
	Dir string
	// RenewAt is the fraction of the certificate's life after which it is
	// renewed; 2/3 when zero. Jitter spreads it by up to ±Jitter of the
	// life (0.05 when zero; negative disables).
	RenewAt, Jitter float64
	// MinRetry and MaxRetry bound the back-off after a failed renewal
	// (5 s and 5 min when zero).
	MinRetry, MaxRetry time.Duration
	Clock              func() time.Time
	Logger             *slog.Logger
	// OnRenew is called after each successful renewal, with the new leaf.
	OnRenew func(*x509.Certificate)
}

// Renewer renews a client certificate; see the package comment.
type Renewer struct {
	cfg    Config
	client credentialsv1.CredentialServiceClient
}

// New checks cfg and returns a Renewer.
func New(cfg Config) (*Renewer, error) {
	if cfg.Source == nil || cfg.Source.Certificate() == nil {
		return nil, errors.New("renewer: a source holding the current certificate is required")
	}
	if cfg.Conn == nil {
		return nil, errors.New("renewer: a connection to the broker is required")
	}
	if cfg.RenewAt == 0 {
		cfg.RenewAt = 2.0 / 3
	}
	if cfg.RenewAt <= 0 || cfg.RenewAt >= 1 {
		return nil, fmt.Errorf("renewer: RenewAt %v must be in (0, 1)", cfg.RenewAt)
	}
	switch {
	case cfg.Jitter == 0:
		cfg.Jitter = 0.05
	case cfg.Jitter < 0:
		cfg.Jitter = 0
	}
	if cfg.MinRetry <= 0 {
		cfg.MinRetry = 5 * time.Second
	}
	if cfg.MaxRetry < cfg.MinRetry {
		cfg.MaxRetry = max(5*time.Minute, cfg.MinRetry)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Renewer{cfg: cfg, client: credentialsv1.NewCredentialServiceClient(cfg.Conn)}, nil
}

// NextRenewal is when the current certificate is due for renewal.
func (r *Renewer) NextRenewal() time.Time {
	leaf := r.cfg.Source.Certificate().Leaf
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	at := time.Duration(float64(life) * r.cfg.RenewAt)
	if r.cfg.Jitter > 0 {
		span := int64(float64(life) * r.cfg.Jitter * 2)
		if span > 0 {
			n, _ := rand.Int(rand.Reader, big.NewInt(span))
			at += time.Duration(n.Int64() - span/2)
		}
	}
	return leaf.NotBefore.Add(at)
}

// Run renews whenever due until ctx ends; failures are retried with
// exponential back-off until the certificate expires, and logged. It
// returns ctx's error.
func (r *Renewer) Run(ctx context.Context) error {
	wait := r.cfg.MinRetry
	next := r.NextRenewal()
	for {
		timer := time.NewTimer(max(0, next.Sub(r.cfg.Clock())))
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
		if err := r.RenewNow(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.cfg.Logger.Warn("certificate renewal failed; retrying", "error", err.Error(), "retry_in", wait.String(),
				"expires", r.cfg.Source.Certificate().Leaf.NotAfter)
			next = r.cfg.Clock().Add(wait)
			wait = min(wait*2, r.cfg.MaxRetry)
			continue
		}
		wait = r.cfg.MinRetry
		next = r.NextRenewal()
	}
}

// RenewNow renews at once: a fresh P-256 key, a CSR for the current
// certificate's identity, the broker's answer checked (same identity,
// key match) before the swap.
func (r *Renewer) RenewNow(ctx context.Context) error {
	current := r.cfg.Source.Certificate().Leaf
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("renewer: generate key: %w", err)
	}
	csrPEM, err := csrFor(current, key)
	if err != nil {
		return err
	}
	resp, err := r.client.Renew(ctx, &credentialsv1.RenewRequest{CsrPem: string(csrPEM)})
	if err != nil {
		return fmt.Errorf("renewer: renew: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("renewer: encode key: %w", err)
	}
	cred := &certs.Credential{
		CertPEM: []byte(resp.GetCertificatePem()), ChainPEM: []byte(resp.GetChainPem()),
		KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
	if err := sameIdentity(current, cred.CertPEM); err != nil {
		return err
	}
	full := cred.FullChainPEM()
	if err := r.cfg.Source.Set(full, cred.KeyPEM); err != nil {
		return fmt.Errorf("renewer: the broker answered a certificate that does not fit the key: %w", err)
	}
	if r.cfg.Dir != "" {
		if err := certs.WriteCredential(r.cfg.Dir, cred, nil); err != nil {
			return fmt.Errorf("renewer: certificate renewed and in use, but not written to disk: %w", err)
		}
	}
	leaf := r.cfg.Source.Certificate().Leaf
	r.cfg.Logger.Info("certificate renewed", "serial", fmt.Sprintf("%x", leaf.SerialNumber), "not_after", leaf.NotAfter)
	if r.cfg.OnRenew != nil {
		r.cfg.OnRenew(leaf)
	}
	return nil
}

// csrFor builds a CSR carrying current's URI SANs and subject name.
func csrFor(current *x509.Certificate, key crypto.Signer) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: current.Subject.CommonName, Organization: current.Subject.Organization},
		URIs:    append([]*url.URL(nil), current.URIs...),
	}, key)
	if err != nil {
		return nil, fmt.Errorf("renewer: create csr: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// sameIdentity refuses a renewed certificate for another identity.
func sameIdentity(current *x509.Certificate, certPEM []byte) error {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return errors.New("renewer: the broker answered no certificate")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fmt.Errorf("renewer: the broker answered an unparsable certificate: %w", err)
	}
	if len(leaf.URIs) != len(current.URIs) {
		return errors.New("renewer: the renewed certificate names another identity")
	}
	for i := range leaf.URIs {
		if leaf.URIs[i].String() != current.URIs[i].String() {
			return errors.New("renewer: the renewed certificate names another identity")
		}
	}
	return nil
}
