package main

import (
	"context"
	"errors"

	"github.com/relais-broker/relais/internal/devenv"
)

// devVault connects dev mode to a Vault PKI: bootstrap (idempotent), then
// an issuer. Filled in with certs/vaultpki.
func devVault(ctx context.Context, addr, tokenFile string, serverNames []string) (*devenv.Vault, func(), error) {
	return nil, nil, errors.New("vault: not wired yet")
}
