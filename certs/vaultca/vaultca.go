// Package vaultca is the production certificate authority of Relais: a
// HashiCorp Vault PKI secrets engine, used through github.com/hashicorp/vault/api.
//
// Layout (set up by Bootstrap, idempotently): a root CA mount
// (relais-pki-root) that only signs intermediates, and an issuing mount
// (relais-pki) holding the current intermediate and the roles:
// consumer-<SIRET> (the CA makes the key) and consumer-<SIRET>-csr (the
// consumer sends a CSR), each allowing exactly one URI SAN,
// urn:relais:consumer:<SIRET>, so a certificate can only carry its own
// consumer's identity; operator (urn:relais:operator:*); broker-server
// (the broker's own certificate). Consumers and the broker trust the root
// only, and present leaf + intermediate, so rotating the intermediate
// (RotateIssuer) changes no trust anywhere.
//
// The broker authenticates with AppRole and a policy limited to issuing,
// signing, revoking and reading CRLs; tokens never appear in errors or
// logs.
package vaultca

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/relais-broker/relais/certs"
)

// Defaults of the Vault layout.
const (
	DefaultMount     = "relais-pki"
	DefaultRootMount = "relais-pki-root"
	// ServerRole issues the broker's own certificate; OperatorRole the
	// operators' client certificates.
	ServerRole   = "broker-server"
	OperatorRole = "operator"
	// BrokerPolicy and BrokerAppRole are what the broker logs in with.
	BrokerPolicy  = "relais-broker"
	BrokerAppRole = "relais-broker"
)

// Config says how to reach and authenticate to Vault.
type Config struct {
	// Addr is Vault's address, e.g. https://vault.example.gouv.fr:8200.
	Addr string
	// Token authenticates directly (dev, operators). Otherwise AppRoleID
	// and AppRoleSecretID log in with AppRole (the broker in production).
	Token                      string
	AppRoleID, AppRoleSecretID string
	// CAFile verifies Vault's own TLS certificate (optional).
	CAFile string
	// Mount and RootMount default to DefaultMount and DefaultRootMount.
	Mount, RootMount string
	// Timeout bounds each Vault request; 10 s when zero.
	Timeout time.Duration
}

// CA is the Vault-backed certs.Authority. Safe for concurrent use.
type CA struct {
	client *api.Client
	cfg    Config
	stop   context.CancelFunc
	wg     sync.WaitGroup
}

var _ certs.Authority = (*CA)(nil)

// NewClient returns a Vault API client for cfg, without a token.
func NewClient(cfg Config) (*api.Client, error) {
	if cfg.Addr == "" {
		return nil, errors.New("vault: no address")
	}
	vc := api.DefaultConfig()
	vc.Address = cfg.Addr
	vc.Timeout = cfg.Timeout
	if vc.Timeout == 0 {
		vc.Timeout = 10 * time.Second
	}
	vc.MaxRetries = 1
	if cfg.CAFile != "" {
		if err := vc.ConfigureTLS(&api.TLSConfig{CACert: cfg.CAFile}); err != nil {
			return nil, fmt.Errorf("vault: tls: %w", err)
		}
	}
	c, err := api.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	// Never pick up a token from the environment or ~/.vault-token by accident.
	c.ClearToken()
	return c, nil
}

// New connects to Vault and authenticates. With AppRole, the token is
// renewed (or the login redone) in the background until Close.
func New(ctx context.Context, cfg Config) (*CA, error) {
	if cfg.Mount == "" {
		cfg.Mount = DefaultMount
	}
	if cfg.RootMount == "" {
		cfg.RootMount = DefaultRootMount
	}
	c, err := NewClient(cfg)
	if err != nil {
		return nil, err
	}
	ca := &CA{client: c, cfg: cfg, stop: func() {}}
	switch {
	case cfg.Token != "" && cfg.AppRoleID != "":
		return nil, errors.New("vault: give a token or an AppRole, not both")
	case cfg.Token != "":
		c.SetToken(cfg.Token)
	case cfg.AppRoleID != "" && cfg.AppRoleSecretID != "":
		secret, err := ca.login(ctx)
		if err != nil {
			return nil, err
		}
		wctx, cancel := context.WithCancel(context.Background())
		ca.stop = cancel
		ca.wg.Add(1)
		go ca.keepLoggedIn(wctx, secret)
	default:
		return nil, errors.New("vault: no credentials: give a token or an AppRole role id and secret id")
	}
	return ca, nil
}

// Client is the authenticated Vault client.
func (ca *CA) Client() *api.Client { return ca.client }

// Close stops the background token renewal.
func (ca *CA) Close() {
	ca.stop()
	ca.wg.Wait()
}

func (ca *CA) login(ctx context.Context) (*api.Secret, error) {
	s, err := ca.client.Logical().WriteWithContext(ctx, "auth/approle/login", map[string]any{
		"role_id": ca.cfg.AppRoleID, "secret_id": ca.cfg.AppRoleSecretID,
	})
	if err != nil {
		return nil, ca.mapErr("approle login", err)
	}
	if s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
		return nil, fmt.Errorf("vault at %s: approle login answered no token", ca.cfg.Addr)
	}
	ca.client.SetToken(s.Auth.ClientToken)
	return s, nil
}

// keepLoggedIn renews the AppRole token while it can, then logs in again.
func (ca *CA) keepLoggedIn(ctx context.Context, secret *api.Secret) {
	defer ca.wg.Done()
	for ctx.Err() == nil {
		w, err := ca.client.NewLifetimeWatcher(&api.LifetimeWatcherInput{Secret: secret})
		if err == nil {
			go w.Start()
			select {
			case <-ctx.Done():
				w.Stop()
				return
			case <-w.DoneCh():
			}
			w.Stop()
		}
		// Renewal ended (max TTL or Vault away): log in again, retrying.
		for ctx.Err() == nil {
			if s, err := ca.login(ctx); err == nil {
				secret = s
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(5 * time.Second):
			}
		}
	}
}

// mapErr turns a Vault client error into one the callers can act on:
// unreachable or failing Vault → certs.ErrIssuerUnavailable; refused input
// → certs.ErrInvalidRequest; missing permission → a message naming op.
// Tokens never appear: the api package does not put them in errors.
func (ca *CA) mapErr(op string, err error) error { return mapErr(ca.cfg.Addr, op, err) }

func mapErr(addr, op string, err error) error {
	var re *api.ResponseError
	if errors.As(err, &re) {
		msg := strings.Join(re.Errors, "; ")
		switch {
		case re.StatusCode == http.StatusBadRequest:
			return fmt.Errorf("%w: vault refused %s: %s", certs.ErrInvalidRequest, op, msg)
		case re.StatusCode == http.StatusForbidden:
			return fmt.Errorf("vault at %s: permission denied for %s (the token's policy does not allow it; the broker's is %q, operators need a policy that can write %s roles)", addr, op, BrokerPolicy, DefaultMount)
		case re.StatusCode == http.StatusNotFound:
			return fmt.Errorf("%w: vault has no %s (%s); is the PKI bootstrapped (relaisctl vault init)?", certs.ErrInvalidRequest, op, msg)
		case re.StatusCode >= 500:
			return fmt.Errorf("%w: vault at %s answered %d to %s: %s", certs.ErrIssuerUnavailable, addr, re.StatusCode, op, msg)
		default:
			return fmt.Errorf("vault at %s: %s: %d %s", addr, op, re.StatusCode, msg)
		}
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	return fmt.Errorf("%w: vault at %s unreachable during %s: %v", certs.ErrIssuerUnavailable, addr, op, redact(err))
}

// redact keeps only the error's last part: transport errors can quote the
// request URL (never the token, which travels in a header), which is fine,
// but nothing else is needed.
func redact(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && i+2 < len(s) {
		return s[i+2:]
	}
	return s
}
