package devenv

import (
	"crypto/ed25519"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/relais-broker/relais/internal/keyfile"
)

// Key files of dev mode, in DIR/keys (0700). In production the signing
// key and the pseudonymisation key are operator secrets named in the
// configuration file; dev mode creates them once and never replaces them.
const (
	AuditSigningKeyFile = "audit-signing.key" // Ed25519, PKCS #8 PEM, 0600
	AuditPublicKeyFile  = "audit-signing.pub" // for third-party verification
	PseudonymKeyFile    = "pseudonym.key"     // 32 random bytes, hex, 0600
)

// Keys are dev mode's audit secrets.
type Keys struct {
	Signing   ed25519.PrivateKey
	Pseudonym []byte
	// Dir holds the files.
	Dir string
}

// LoadKeys loads DIR/keys, creating the keys on first start.
func LoadKeys(dataDir string) (*Keys, error) {
	dir := filepath.Join(dataDir, "keys")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	signing, pseudonym := filepath.Join(dir, AuditSigningKeyFile), filepath.Join(dir, PseudonymKeyFile)
	if err := keyfile.CreateSigningKey(signing, filepath.Join(dir, AuditPublicKeyFile)); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	if err := keyfile.CreatePseudonymKey(pseudonym); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	k := &Keys{Dir: dir}
	var err error
	if k.Signing, err = keyfile.ReadSigningKey(signing); err != nil {
		return nil, err
	}
	if k.Pseudonym, err = keyfile.ReadPseudonymKey(pseudonym); err != nil {
		return nil, err
	}
	return k, nil
}
