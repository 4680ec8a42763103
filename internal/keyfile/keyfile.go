// Package keyfile reads and creates the broker's key files: the Ed25519
// key that signs audit checkpoints (PKCS #8 PEM, with its public key next
// to it for third parties) and the pseudonymisation key (32 random bytes
// in hex). Files are 0600 and never replaced once they exist.
package keyfile

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
	"strings"
)

// ReadSigningKey reads an Ed25519 private key (PKCS #8 PEM).
func ReadSigningKey(path string) (ed25519.PrivateKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, fmt.Errorf("%s holds no PEM key", path)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	priv, ok := parsed.(ed25519.PrivateKey)
	if err != nil || !ok {
		return nil, fmt.Errorf("%s is not an Ed25519 private key", path)
	}
	return priv, nil
}

// ReadPublicKey reads an Ed25519 public key (PKIX PEM).
func ReadPublicKey(path string) (ed25519.PublicKey, error) {
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

// ParsePseudonymKey decodes a pseudonymisation key written in hex.
func ParsePseudonymKey(text string) ([]byte, error) {
	k, err := hex.DecodeString(strings.TrimSpace(text))
	if err != nil || len(k) < 32 {
		return nil, errors.New("a pseudonymisation key is at least 32 bytes written in hex")
	}
	return k, nil
}

// ReadPseudonymKey reads a pseudonymisation key file.
func ReadPseudonymKey(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParsePseudonymKey(string(raw))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// CreateSigningKey writes a new Ed25519 key to path (0600) and its public
// key to pubPath, unless path exists.
func CreateSigningKey(path, pubPath string) error {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	if err := writeNew(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644)
}

// CreatePseudonymKey writes 32 random bytes in hex to path (0600) unless
// it exists.
func CreatePseudonymKey(path string) error {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	return writeNew(path, []byte(hex.EncodeToString(b)+"\n"), 0o600)
}

func writeNew(path string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
