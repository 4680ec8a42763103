package main

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// readPublicKeys reads the Ed25519 public keys of the files, in order:
// each file may hold several PEM blocks (a keyring written by keys
// rotate: the current key first, then the earlier ones). A key of the
// wrong kind gets a plain message, not an ASN.1 parser's.
func readPublicKeys(paths []string) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for _, path := range paths {
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		n := 0
		for {
			var block *pem.Block
			block, raw = pem.Decode(raw)
			if block == nil {
				break
			}
			n++
			k, err := publicKeyOf(block)
			if err != nil {
				return nil, fmt.Errorf("%s, key %d: %w", path, n, err)
			}
			keys = append(keys, k)
		}
		if n == 0 {
			return nil, fmt.Errorf("%s holds no PEM key: want the Ed25519 public key (audit-signing.pub)", path)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("no public key given (--public-key)")
	}
	return keys, nil
}

func publicKeyOf(b *pem.Block) (ed25519.PublicKey, error) {
	switch b.Type {
	case "PUBLIC KEY":
		pub, err := x509.ParsePKIXPublicKey(b.Bytes)
		if err != nil {
			return nil, errors.New("not a readable public key (PKIX PEM)")
		}
		switch k := pub.(type) {
		case ed25519.PublicKey:
			return k, nil
		case *rsa.PublicKey:
			return nil, errors.New("an RSA public key, not the Ed25519 key that signs audit checkpoints (audit-signing.pub)")
		case *ecdsa.PublicKey:
			return nil, errors.New("an ECDSA public key, not the Ed25519 key that signs audit checkpoints (audit-signing.pub)")
		default:
			return nil, fmt.Errorf("a %T public key, not Ed25519", pub)
		}
	case "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY", "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("a private key: give the public key (audit-signing.pub), and keep the private key on the broker")
	case "CERTIFICATE":
		return nil, errors.New("a certificate: give the audit signing public key (audit-signing.pub), not a TLS certificate")
	default:
		return nil, fmt.Errorf("a PEM %q block, not a public key: want audit-signing.pub", b.Type)
	}
}
