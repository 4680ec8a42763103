// Package vaultkeys reads from Vault the secrets every relaisd replica must
// share: the pseudonymisation key (KV v2), without which the same citizen
// gets a different pseudonym on each replica and the citizen report breaks,
// and the audit checkpoint signing key (transit), so that the private key
// never sits on a replica's disk and every replica's checkpoints verify
// with one public key.
//
// The Vault client is the caller's (address, TLS, token or AppRole login,
// timeout and retries): this package only reads and writes paths. Errors
// name the mount and path, never a key byte; an unreachable, sealed or
// failing Vault gives an error wrapping ErrUnavailable, so the caller can
// retry or refuse to start.
//
// Setting up, once per installation, with an operator's token: mount a KV
// v2 engine and a transit engine, CreatePseudonymKey and CreateTransitKey
// (both refuse to replace what exists), and give the replicas' token the
// Policy for exactly those paths.
package vaultkeys

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/hashicorp/vault/api"
)

var (
	// ErrUnavailable is wrapped when Vault cannot answer (unreachable,
	// sealed, 5xx, timeout): a transient condition worth retrying.
	ErrUnavailable = errors.New("vault unavailable")
	// ErrNotFound is wrapped when the mount, secret or key does not exist
	// (or its latest version was deleted): a configuration mistake.
	ErrNotFound = errors.New("not found in vault")
	// ErrDenied is wrapped when the token's policy does not allow the
	// operation (see Policy).
	ErrDenied = errors.New("vault permission denied")
	// ErrMalformed is wrapped when the secret or key exists but is not what
	// relaisd needs (not hex, wrong field, wrong key type).
	ErrMalformed = errors.New("malformed vault secret")
	// ErrTooShort is wrapped when a pseudonymisation key is shorter than
	// MinPseudonymKeyBytes.
	ErrTooShort = errors.New("vault key too short")
	// ErrExists is wrapped when a create helper finds the secret or key
	// already there: a shared key is never replaced by accident.
	ErrExists = errors.New("already exists in vault")
)

const (
	// PseudonymKeyField is the KV field holding the pseudonymisation key in
	// hex, as in a pseudonym key file.
	PseudonymKeyField = "key"
	// MinPseudonymKeyBytes is the shortest pseudonymisation key accepted
	// (HMAC-SHA-256: 32 bytes of key).
	MinPseudonymKeyBytes = 32
)

// PseudonymKey reads the pseudonymisation key from the KV v2 secret at
// mount/path (field "key", hex, at least 32 bytes). Every replica reading
// the same secret pseudonymises identically.
func PseudonymKey(ctx context.Context, c *api.Client, mount, path string) ([]byte, error) {
	where := kvWhere(mount, path)
	secret, err := c.KVv2(mount).Get(ctx, path)
	if err != nil {
		return nil, mapErr(c, "read "+where, err)
	}
	if secret == nil || secret.Data == nil {
		return nil, fmt.Errorf("%w: %s has no current version (deleted?)", ErrNotFound, where)
	}
	raw, ok := secret.Data[PseudonymKeyField]
	if !ok {
		return nil, fmt.Errorf("%w: %s has no %q field", ErrMalformed, where, PseudonymKeyField)
	}
	text, ok := raw.(string)
	if !ok {
		return nil, fmt.Errorf("%w: %s field %q is not a string, want a hex string", ErrMalformed, where, PseudonymKeyField)
	}
	key, err := hex.DecodeString(strings.TrimSpace(text))
	if err != nil {
		// hex's error quotes the offending byte: keep it out.
		return nil, fmt.Errorf("%w: %s field %q is not hex", ErrMalformed, where, PseudonymKeyField)
	}
	if len(key) < MinPseudonymKeyBytes {
		return nil, fmt.Errorf("%w: %s field %q holds %d bytes, want at least %d", ErrTooShort, where, PseudonymKeyField, len(key), MinPseudonymKeyBytes)
	}
	return key, nil
}

// PutPseudonymKey writes key (hex) to mount/path only if no version exists
// there (KV check-and-set 0): replacing a pseudonymisation key in use would
// split every citizen's history in two, so an existing secret gives
// ErrExists and is left unchanged.
func PutPseudonymKey(ctx context.Context, c *api.Client, mount, path string, key []byte) error {
	where := kvWhere(mount, path)
	if len(key) < MinPseudonymKeyBytes {
		return fmt.Errorf("%w: refusing to write a %d-byte key to %s, want at least %d", ErrTooShort, len(key), where, MinPseudonymKeyBytes)
	}
	_, err := c.KVv2(mount).Put(ctx, path, map[string]any{PseudonymKeyField: hex.EncodeToString(key)}, api.WithCheckAndSet(0))
	if err != nil {
		var re *api.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusBadRequest && strings.Contains(strings.Join(re.Errors, " "), "check-and-set") {
			return fmt.Errorf("%w: %s already holds a pseudonymisation key, left unchanged", ErrExists, where)
		}
		return mapErr(c, "write "+where, err)
	}
	return nil
}

// CreatePseudonymKey writes a new random 32-byte key to mount/path unless
// one exists there (ErrExists): what `relaisctl` runs once per
// installation, before the first replica starts.
func CreatePseudonymKey(ctx context.Context, c *api.Client, mount, path string) error {
	key := make([]byte, MinPseudonymKeyBytes)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	return PutPseudonymKey(ctx, c, mount, path, key)
}

// Policy is the Vault policy (HCL) a replica's token needs for these
// secrets and nothing more: read the one KV secret, read the transit key's
// public versions, sign with it. Creating, rotating or exporting keys is
// left to an operator's token.
func Policy(kvMount, kvPath, transitMount, keyName string) string {
	kv := strings.Trim(kvMount, "/") + "/data/" + strings.Trim(kvPath, "/")
	tr := strings.Trim(transitMount, "/")
	return fmt.Sprintf(`path %q {
  capabilities = ["read"]
}
path %q {
  capabilities = ["read"]
}
path %q {
  capabilities = ["update"]
}
`, kv, tr+"/keys/"+keyName, tr+"/sign/"+keyName)
}

func kvWhere(mount, path string) string {
	return "kv " + strings.Trim(mount, "/") + "/" + strings.Trim(path, "/")
}

// mapErr sorts a Vault client error by what the caller can do about it.
// Vault's own messages name paths and reasons, never request data; the
// token travels in a header and never appears.
func mapErr(c *api.Client, op string, err error) error {
	if errors.Is(err, api.ErrSecretNotFound) {
		return fmt.Errorf("%w: %s: nothing at this path (wrong mount or path?)", ErrNotFound, op)
	}
	var re *api.ResponseError
	if errors.As(err, &re) {
		msg := strings.Join(re.Errors, "; ")
		switch {
		case re.StatusCode == http.StatusNotFound:
			return fmt.Errorf("%w: %s: %s", ErrNotFound, op, msg)
		case re.StatusCode == http.StatusForbidden:
			return fmt.Errorf("%w: %s (the token's policy does not allow it)", ErrDenied, op)
		case re.StatusCode == http.StatusTooManyRequests || re.StatusCode >= 500:
			return fmt.Errorf("%w: vault at %s answered %d to %s: %s", ErrUnavailable, c.Address(), re.StatusCode, op, msg)
		default:
			return fmt.Errorf("vault at %s refused %s: %d %s", c.Address(), op, re.StatusCode, msg)
		}
	}
	// Transport errors, timeouts and cancellations: the context error stays
	// in the chain for errors.Is.
	return fmt.Errorf("%w: vault at %s unreachable during %s: %w", ErrUnavailable, c.Address(), op, err)
}
