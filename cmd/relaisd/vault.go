package main

import (
	"context"
	"fmt"

	"github.com/relais-broker/relais/certs/vaultca"
	"github.com/relais-broker/relais/internal/devenv"
)

// devVault connects dev mode to a Vault PKI with a token able to set it
// up (a dev server's root token, say): it bootstraps the PKI
// (idempotent) and onboards the demo consumers. Production brokers log in
// with AppRole and never bootstrap.
func devVault(ctx context.Context, addr, tokenFile string, serverNames []string) (*devenv.Vault, func(), error) {
	token, err := vaultca.TokenFrom(tokenFile)
	if err != nil {
		return nil, nil, fmt.Errorf("--vault-token-file: %w", err)
	}
	if token == "" {
		return nil, nil, fmt.Errorf("--vault-addr needs a token: set VAULT_TOKEN or --vault-token-file")
	}
	ca, err := vaultca.New(ctx, vaultca.Config{Addr: addr, Token: token})
	if err != nil {
		return nil, nil, err
	}
	if _, err := vaultca.Bootstrap(ctx, ca.Client(), vaultca.BootstrapOptions{ServerNames: serverNames}); err != nil {
		ca.Close()
		return nil, nil, fmt.Errorf("bootstrap the Vault PKI: %w", err)
	}
	onboard := func(ctx context.Context, siret string) error {
		_, err := vaultca.EnsureConsumer(ctx, ca.Client(), "", siret, 0)
		return err
	}
	return &devenv.Vault{Authority: ca, Onboard: onboard}, ca.Close, nil
}
