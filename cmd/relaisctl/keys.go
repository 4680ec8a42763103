package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/relais-broker/relais/internal/devenv"
	"github.com/relais-broker/relais/internal/keyfile"
)

func keysCmd() *cobra.Command {
	return group("keys", "The audit keys of relaisd serve: generate them, rotate the signing key", keysGenerateCmd(), keysRotateCmd())
}

// keysGenerateCmd writes the two audit keys relaisd serve needs, with
// their modes; it never replaces a key (a new pseudonym key would cut
// every citizen from the accesses recorded before it).
func keysGenerateCmd() *cobra.Command {
	return leaf("generate --dir DIR", "Create the audit signing key (and its public key) and the pseudonym key for relaisd serve",
		`  relaisctl keys generate --dir /etc/relais/keys
  # relaisd.yaml: audit: {signing_key_file: /etc/relais/keys/audit-signing.key, pseudonym_key_file: /etc/relais/keys/pseudonym.key}`,
		func(fs *pflag.FlagSet) body {
			dir := fs.String("dir", "", "directory for audit-signing.key (0600), audit-signing.pub (0644) and pseudonym.key (0600); created 0700")
			return func(_ context.Context, stdout, stderr io.Writer) int {
				if *dir == "" || fs.NArg() > 0 {
					fmt.Fprintln(stderr, "relaisctl keys generate: --dir is required, and nothing else")
					return 2
				}
				signing, pub, pseudo := keyPaths(*dir)
				for _, p := range []string{signing, pub, pseudo} {
					if _, err := os.Lstat(p); err == nil {
						fmt.Fprintf(stderr, "relaisctl keys generate: %s exists: keys are never replaced (relaisctl keys rotate changes the signing key); nothing written\n", p)
						return 1
					}
				}
				if err := os.MkdirAll(*dir, 0o700); err != nil {
					fmt.Fprintf(stderr, "relaisctl keys generate: %v\n", err)
					return 1
				}
				err := keyfile.CreateSigningKey(signing, pub)
				if err == nil {
					err = keyfile.CreatePseudonymKey(pseudo)
				}
				if err == nil {
					err = chmodAll(map[string]os.FileMode{signing: 0o600, pub: 0o644, pseudo: 0o600})
				}
				if err != nil {
					fmt.Fprintf(stderr, "relaisctl keys generate: %v\n", err)
					return 1
				}
				fmt.Fprintf(stdout, "wrote %s (0600), %s (0644) and %s (0600)\n", signing, pub, pseudo)
				fmt.Fprintln(stdout, "give the public key to whoever verifies the audit log; back up pseudonym.key: without it no citizen's accesses can be found")
				return 0
			}
		})
}

// keysRotateCmd replaces the signing key and keeps every earlier public
// key in the keyring audit-signing.pub (current key first), so that
// checkpoints signed before the rotation still verify.
func keysRotateCmd() *cobra.Command {
	return leaf("rotate --dir DIR", "Replace the audit signing key, keeping the earlier public keys so that older checkpoints still verify",
		`  relaisctl keys rotate --dir /etc/relais/keys && systemctl restart relaisd
  relaisctl audit verify --dir /var/lib/relais/audit --public-key /etc/relais/keys/audit-signing.pub   # all keys of the keyring`,
		func(fs *pflag.FlagSet) body {
			dir := fs.String("dir", "", "the directory of audit-signing.key and audit-signing.pub")
			return func(_ context.Context, stdout, stderr io.Writer) int {
				if *dir == "" || fs.NArg() > 0 {
					fmt.Fprintln(stderr, "relaisctl keys rotate: --dir is required, and nothing else")
					return 2
				}
				n, err := rotateSigningKey(*dir)
				if err != nil {
					fmt.Fprintf(stderr, "relaisctl keys rotate: %v\n", err)
					return 1
				}
				signing, pub, _ := keyPaths(*dir)
				fmt.Fprintf(stdout, "new signing key in %s; %s now holds %d public keys (the new one first)\n", signing, pub, n)
				fmt.Fprintln(stdout, "restart relaisd to sign with the new key, and give the new audit-signing.pub to whoever verifies the log")
				return 0
			}
		})
}

func keyPaths(dir string) (signing, pub, pseudo string) {
	return filepath.Join(dir, devenv.AuditSigningKeyFile), filepath.Join(dir, devenv.AuditPublicKeyFile), filepath.Join(dir, devenv.PseudonymKeyFile)
}

// rotateSigningKey writes a new signing key in place of the current one
// and the keyring: new public key, then the current one and every
// earlier one of the old keyring. It returns the keyring's size. The
// keyring is written first: a failure in between leaves the old key in
// use and a keyring that verifies with it.
func rotateSigningKey(dir string) (int, error) {
	signing, pubPath, _ := keyPaths(dir)
	old, err := keyfile.ReadSigningKey(signing)
	if err != nil {
		return 0, err
	}
	oldPub := old.Public().(ed25519.PublicKey)
	ring := []ed25519.PublicKey{oldPub}
	if _, err := os.Stat(pubPath); err == nil {
		earlier, err := readPublicKeys([]string{pubPath})
		if err != nil {
			return 0, err
		}
		for _, k := range earlier {
			if !k.Equal(oldPub) {
				ring = append(ring, k)
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return 0, err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return 0, err
	}
	ring = append([]ed25519.PublicKey{pub}, ring...)
	var keyring bytes.Buffer
	for _, k := range ring {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return 0, err
		}
		_ = pem.Encode(&keyring, &pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return 0, err
	}
	if err := writeReplace(pubPath, keyring.Bytes(), 0o644); err != nil {
		return 0, err
	}
	if err := writeReplace(signing, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return 0, err
	}
	return len(ring), nil
}

// writeReplace writes data to path through a temporary file and a
// rename, with exactly perm.
func writeReplace(path string, data []byte, perm fs.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

func chmodAll(modes map[string]fs.FileMode) error {
	for p, m := range modes {
		if err := os.Chmod(p, m); err != nil {
			return err
		}
	}
	return nil
}
