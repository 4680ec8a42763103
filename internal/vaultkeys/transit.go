package vaultkeys

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/vault/api"

	"github.com/relais-broker/relais/broker/audit/seal"
)

// TransitSigner signs audit checkpoints with an Ed25519 key held by Vault's
// transit engine: replicas send the checkpoint message and get the 64-byte
// signature back, so the private key never leaves Vault and every replica
// signs with the same key.
//
// Key versions. The signer pins the key's latest version when it is made
// and signs with that version only, so Public always matches what Sign
// produces. After `vault write -f MOUNT/keys/NAME/rotate`, running replicas
// go on signing with their pinned version (Vault still signs with it) until
// they restart and pin the new one; for a while different replicas may
// sign with different versions. Checkpoints already written stay signed by
// the version of their time: verifiers need every version's public key
// (TransitPublicKeys), so publish each new public key next to the old
// ones, never trim a transit signing key (min_available_version) while
// checkpoints it signed are within retention, and keep the old public keys
// as long as exported logs may be checked.
//
// A TransitSigner is immutable and safe for concurrent use; each Sign is
// one Vault request bounded by ctx and the client's timeout.
type TransitSigner struct {
	c       *api.Client
	mount   string
	name    string
	version int
	pub     ed25519.PublicKey
}

var _ seal.Signer = (*TransitSigner)(nil)

// NewTransitSigner reads the transit key mount/keys/name, checks that it
// is a non-derived Ed25519 signing key and pins its latest version.
func NewTransitSigner(ctx context.Context, c *api.Client, mount, name string) (*TransitSigner, error) {
	k, err := readTransitKey(ctx, c, mount, name)
	if err != nil {
		return nil, err
	}
	pub, ok := k.pubs[k.latest]
	if !ok {
		return nil, fmt.Errorf("%w: %s has no public key for its latest version %d", ErrMalformed, transitWhere(mount, name), k.latest)
	}
	return &TransitSigner{c: c, mount: strings.Trim(mount, "/"), name: name, version: k.latest, pub: pub}, nil
}

// Public implements seal.Signer: the public key of the pinned version.
func (s *TransitSigner) Public() ed25519.PublicKey { return s.pub }

// Version is the pinned key version, for logs and the published key list.
func (s *TransitSigner) Version() int { return s.version }

// Sign implements seal.Signer: transit/sign with the pinned version,
// returning the raw Ed25519 signature of msg (checked against Public
// before it is returned, so a mismatch never reaches the audit log).
func (s *TransitSigner) Sign(ctx context.Context, msg []byte) ([]byte, error) {
	where := transitWhere(s.mount, s.name)
	resp, err := s.c.Logical().WriteWithContext(ctx, s.mount+"/sign/"+s.name, map[string]any{
		"input":       base64.StdEncoding.EncodeToString(msg),
		"key_version": s.version,
	})
	if err != nil {
		return nil, mapErr(s.c, "sign with "+where, err)
	}
	if resp == nil || resp.Data == nil {
		return nil, fmt.Errorf("%w: sign with %s: empty answer", ErrMalformed, where)
	}
	text, _ := resp.Data["signature"].(string)
	version, sig, err := parseSignature(text)
	if err != nil {
		return nil, fmt.Errorf("%w: sign with %s: %v", ErrMalformed, where, err)
	}
	if version != s.version {
		return nil, fmt.Errorf("%w: sign with %s: signed with version %d, asked %d", ErrMalformed, where, version, s.version)
	}
	if !ed25519.Verify(s.pub, msg, sig) {
		return nil, fmt.Errorf("%w: sign with %s: the signature does not verify with version %d's public key", ErrMalformed, where, s.version)
	}
	return sig, nil
}

// parseSignature splits Vault's "vault:vN:BASE64" into N and the raw
// signature.
func parseSignature(text string) (int, []byte, error) {
	rest, ok := strings.CutPrefix(text, "vault:v")
	if !ok {
		return 0, nil, fmt.Errorf("signature is not in vault:vN: form")
	}
	num, b64, ok := strings.Cut(rest, ":")
	if !ok {
		return 0, nil, fmt.Errorf("signature is not in vault:vN: form")
	}
	version, err := strconv.Atoi(num)
	if err != nil || version < 1 {
		return 0, nil, fmt.Errorf("signature key version %q is not a positive number", num)
	}
	sig, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return 0, nil, fmt.Errorf("signature is not base64")
	}
	if len(sig) != ed25519.SignatureSize {
		return 0, nil, fmt.Errorf("signature is %d bytes, not an Ed25519 signature", len(sig))
	}
	return version, sig, nil
}

// TransitPublicKeys returns the public key of every version Vault still
// holds for mount/keys/name: what a verifier needs for checkpoints signed
// before and after rotations.
func TransitPublicKeys(ctx context.Context, c *api.Client, mount, name string) (map[int]ed25519.PublicKey, error) {
	k, err := readTransitKey(ctx, c, mount, name)
	if err != nil {
		return nil, err
	}
	return k.pubs, nil
}

// CreateTransitKey creates mount/keys/name as a non-exportable Ed25519 key
// unless a key of that name exists (ErrExists, left unchanged): what
// `relaisctl` runs once per installation.
func CreateTransitKey(ctx context.Context, c *api.Client, mount, name string) error {
	if err := checkKeyName(name); err != nil {
		return err
	}
	where := transitWhere(mount, name)
	mount = strings.Trim(mount, "/")
	existing, err := c.Logical().ReadWithContext(ctx, mount+"/keys/"+name)
	if err != nil {
		return mapErr(c, "read "+where, err)
	}
	if existing != nil {
		return fmt.Errorf("%w: %s, left unchanged", ErrExists, where)
	}
	if _, err := c.Logical().WriteWithContext(ctx, mount+"/keys/"+name, map[string]any{"type": "ed25519", "exportable": false}); err != nil {
		return mapErr(c, "create "+where, err)
	}
	_, err = readTransitKey(ctx, c, mount, name)
	return err
}

type transitKey struct {
	latest int
	pubs   map[int]ed25519.PublicKey
}

func readTransitKey(ctx context.Context, c *api.Client, mount, name string) (transitKey, error) {
	if err := checkKeyName(name); err != nil {
		return transitKey{}, err
	}
	where := transitWhere(mount, name)
	resp, err := c.Logical().ReadWithContext(ctx, strings.Trim(mount, "/")+"/keys/"+name)
	if err != nil {
		return transitKey{}, mapErr(c, "read "+where, err)
	}
	if resp == nil || resp.Data == nil {
		return transitKey{}, fmt.Errorf("%w: %s: no such key (wrong mount or name?)", ErrNotFound, where)
	}
	d := resp.Data
	if typ, _ := d["type"].(string); typ != "ed25519" {
		return transitKey{}, fmt.Errorf("%w: %s is a %q key, want ed25519", ErrMalformed, where, typ)
	}
	if derived, _ := d["derived"].(bool); derived {
		return transitKey{}, fmt.Errorf("%w: %s is a derived key (signing would need a context), want a plain ed25519 key", ErrMalformed, where)
	}
	latest, err := jsonInt(d["latest_version"])
	if err != nil || latest < 1 {
		return transitKey{}, fmt.Errorf("%w: %s: latest_version is not a positive number", ErrMalformed, where)
	}
	keys, _ := d["keys"].(map[string]any)
	k := transitKey{latest: latest, pubs: map[int]ed25519.PublicKey{}}
	versions := make([]string, 0, len(keys))
	for v := range keys {
		versions = append(versions, v)
	}
	sort.Strings(versions)
	for _, v := range versions {
		n, err := strconv.Atoi(v)
		info, ok := keys[v].(map[string]any)
		if err != nil || !ok {
			return transitKey{}, fmt.Errorf("%w: %s: version %q is unreadable", ErrMalformed, where, v)
		}
		b64, _ := info["public_key"].(string)
		pub, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			return transitKey{}, fmt.Errorf("%w: %s: version %d has no Ed25519 public key", ErrMalformed, where, n)
		}
		k.pubs[n] = ed25519.PublicKey(pub)
	}
	return k, nil
}

// checkKeyName keeps the name a single path segment: "a/../b" must not
// reach another endpoint of the mount.
func checkKeyName(name string) error {
	if name == "" || strings.ContainsAny(name, "/?#%") || name == "." || name == ".." {
		return fmt.Errorf("vaultkeys: transit key name %q is not a single path segment", name)
	}
	return nil
}

func transitWhere(mount, name string) string {
	return "transit " + strings.Trim(mount, "/") + "/keys/" + name
}

func jsonInt(v any) (int, error) {
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		return int(i), err
	case float64:
		return int(n), nil
	case int:
		return n, nil
	}
	return 0, fmt.Errorf("not a number: %T", v)
}
