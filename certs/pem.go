package certs

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// File names used by WriteCredential.
const (
	// CertFile holds the leaf certificate.
	CertFile = "cert.pem"
	// KeyFile holds the private key, mode 0600.
	KeyFile = "key.pem"
	// CAFile holds the trust bundle.
	CAFile = "ca.pem"
)

// WriteCredential writes c into dir (created 0700 when missing) as
// cert.pem (the leaf followed by c.ChainPEM, so that a TLS client presents
// the issuing intermediate and peers only need the root), key.pem (0600, only when c.KeyPEM is set) and ca.pem holding
// chain, or c.ChainPEM when chain is empty. Each file is replaced atomically;
// the key is written before the certificate, so a reader that sees a key and
// certificate that do not match should retry.
func WriteCredential(dir string, c *Credential, chain []byte) error {
	if c == nil || len(c.CertPEM) == 0 {
		return errors.New("certs: write credential: no certificate")
	}
	if len(chain) == 0 {
		chain = c.ChainPEM
	}
	if len(c.KeyPEM) != 0 {
		// Refuse to leave a pair on disk that TLS stacks would reject.
		if _, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM); err != nil {
			return errors.New("certs: write credential: certificate and key are not a valid pair")
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("certs: write credential: %w", err)
	}
	if len(c.KeyPEM) != 0 {
		if err := writeFileAtomic(filepath.Join(dir, KeyFile), c.KeyPEM, 0o600); err != nil {
			return err
		}
	}
	if err := writeFileAtomic(filepath.Join(dir, CertFile), c.FullChainPEM(), 0o644); err != nil {
		return err
	}
	if len(chain) != 0 {
		if err := writeFileAtomic(filepath.Join(dir, CAFile), chain, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writeFileAtomic replaces path with data: a synced temporary file in the
// same directory renamed over it, so readers see the old or the new content.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("certs: write %s: %w", filepath.Base(path), err)
	}
	syncDir(filepath.Dir(path))
	return nil
}

// writeFileExclusive creates path with data like writeFileAtomic but fails
// with fs.ErrExist instead of replacing an existing file.
func writeFileExclusive(path string, data []byte, perm fs.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	// A hard link never replaces its target, unlike rename.
	if err := os.Link(tmp, path); err != nil {
		return fmt.Errorf("certs: create %s: %w", filepath.Base(path), err)
	}
	syncDir(filepath.Dir(path))
	return nil
}

func writeTemp(path string, data []byte, perm fs.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("certs: write %s: %w", filepath.Base(path), err)
	}
	tmp := f.Name()
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("certs: write %s: %w", filepath.Base(path), err)
	}
	return tmp, nil
}

// syncDir makes a rename durable where the platform allows syncing a
// directory; it is best effort.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("certs: marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// decodeSingle returns the DER of the only PEM block in data, which must be
// of type typ; anything else in data is an error.
func decodeSingle(data []byte, typ string) ([]byte, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no pem block")
	}
	if block.Type != typ {
		return nil, fmt.Errorf("pem block is %q, want %q", block.Type, typ)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("trailing data after the pem block")
	}
	return block.Bytes, nil
}

// parseCertificates parses a PEM bundle made only of CERTIFICATE blocks.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := bytes.TrimSpace(data)
	for len(rest) != 0 {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("data that is not pem")
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("pem block is %q, want CERTIFICATE", block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, cert)
		rest = bytes.TrimSpace(rest)
	}
	if len(certs) == 0 {
		return nil, errors.New("no certificate")
	}
	return certs, nil
}

// WriteTrustBundle writes bundle as dir/ca.pem, atomically.
func WriteTrustBundle(dir string, bundle []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("certs: write trust bundle: %w", err)
	}
	return writeFileAtomic(filepath.Join(dir, CAFile), bundle, 0o644)
}
