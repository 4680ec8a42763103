package vaultca

import (
	"os"
	"strings"
)

// TokenFrom returns the Vault token held in file, or $VAULT_TOKEN when
// file is empty: tokens are never taken from a flag value, which would
// show in process listings.
func TokenFrom(file string) (string, error) {
	if file == "" {
		return os.Getenv("VAULT_TOKEN"), nil
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(raw)), nil
}
