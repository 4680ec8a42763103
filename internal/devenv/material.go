package devenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/relais-broker/relais/certs"
)

// MaterialStore keeps dev mode's secrets — the dev CA and the audit keys —
// in the shared database, so that a broker started on the same database
// with a fresh data directory, or a second dev replica, uses the same CA
// and the same keys (the citizen report needs one pseudonym key, the
// verification one signing key). Dev mode only: in production the CA is
// Vault and the keys are operator secrets.
type MaterialStore interface {
	// Get returns the content stored under name, and whether there is one.
	Get(ctx context.Context, name string) ([]byte, bool, error)
	// PutIfAbsent stores content under name unless something is stored
	// already, and returns what is stored now.
	PutIfAbsent(ctx context.Context, name string, content []byte) ([]byte, error)
}

// materialFiles are the shared files, relative to the data directory.
// The dev CA's ledger (issued.txt, revoked.txt) stays local: revocations
// are enforced from the registry's credential records.
func materialFiles(vault bool) []string {
	files := []string{
		filepath.Join("keys", AuditSigningKeyFile),
		filepath.Join("keys", AuditPublicKeyFile),
		filepath.Join("keys", PseudonymKeyFile),
	}
	if !vault {
		files = append(files, filepath.Join("dev", certs.DevCACertFile), filepath.Join("dev", certs.DevCAKeyFile))
	}
	return files
}

// PullMaterial writes into dataDir the material the store holds (the
// store wins over a local copy that differs) and reports whether the
// store held any: then this broker joins an existing installation.
func PullMaterial(ctx context.Context, m MaterialStore, dataDir string, vault bool) (joined bool, err error) {
	for _, name := range materialFiles(vault) {
		content, ok, err := m.Get(ctx, name)
		if err != nil {
			return false, fmt.Errorf("dev: shared material %s: %w", name, err)
		}
		if !ok {
			continue
		}
		joined = true
		if err := writeIfDifferent(filepath.Join(dataDir, name), content); err != nil {
			return false, err
		}
	}
	return joined, nil
}

// PushMaterial stores the local material the store does not hold yet.
// When another broker stored different material first (both started at
// once), its copy is written locally and changed is true: prepare again.
func PushMaterial(ctx context.Context, m MaterialStore, dataDir string, vault bool) (changed bool, err error) {
	for _, name := range materialFiles(vault) {
		path := filepath.Join(dataDir, name)
		local, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return false, err
		}
		stored, err := m.PutIfAbsent(ctx, name, local)
		if err != nil {
			return false, fmt.Errorf("dev: shared material %s: %w", name, err)
		}
		if !bytes.Equal(stored, local) {
			if err := writeIfDifferent(path, stored); err != nil {
				return false, err
			}
			changed = true
		}
	}
	return changed, nil
}

func writeIfDifferent(path string, content []byte) error {
	if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, content) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, content, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
