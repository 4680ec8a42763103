package devenv

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Key files of dev mode, in DIR/keys (0700). In production the signing
// key and the pseudonymisation key are operator secrets (Vault transit
// and KV); dev mode keeps them in files, created once and never replaced.
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
	k := &Keys{Dir: dir}
	signing, err := loadOrCreate(filepath.Join(dir, AuditSigningKeyFile), func() ([]byte, error) {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return nil, err
		}
		pubDER, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, AuditPublicKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
			return nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
	})
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(signing)
	if block == nil {
		return nil, fmt.Errorf("dev: %s holds no PEM key", AuditSigningKeyFile)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	priv, ok := parsed.(ed25519.PrivateKey)
	if err != nil || !ok {
		return nil, fmt.Errorf("dev: %s is not an Ed25519 key", AuditSigningKeyFile)
	}
	k.Signing = priv
	raw, err := loadOrCreate(filepath.Join(dir, PseudonymKeyFile), func() ([]byte, error) {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		return []byte(hex.EncodeToString(b) + "\n"), nil
	})
	if err != nil {
		return nil, err
	}
	if k.Pseudonym, err = hex.DecodeString(strings.TrimSpace(string(raw))); err != nil || len(k.Pseudonym) < 32 {
		return nil, fmt.Errorf("dev: %s must hold at least 32 bytes in hex", PseudonymKeyFile)
	}
	return k, nil
}

// LoadPublicKey reads an Ed25519 public key written by LoadKeys.
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, fmt.Errorf("%s holds no PEM public key", path)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	k, ok := pub.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s is not an Ed25519 public key", path)
	}
	return k, nil
}

func loadOrCreate(path string, create func() ([]byte, error)) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err == nil {
		return raw, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	raw, err = create()
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(raw); err != nil {
		f.Close()
		return nil, err
	}
	return raw, f.Close()
}
