package main

import (
	"context"
	"errors"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/relais-broker/relais/certs"
	"github.com/relais-broker/relais/certs/vaultca"
)

// caFlags choose the certificate authority a command works on: a Vault
// PKI (production) or the embedded dev CA of `relaisd dev`.
type caFlags struct {
	vaultAddr, tokenFile, roleID, secretIDFile, mount string
	devCA                                             string
}

func addCAFlags(fs *pflag.FlagSet) *caFlags {
	f := &caFlags{}
	fs.StringVar(&f.vaultAddr, "vault-addr", os.Getenv("VAULT_ADDR"), "Vault address (default $VAULT_ADDR)")
	fs.StringVar(&f.tokenFile, "vault-token-file", "", "file holding a Vault token (default: $VAULT_TOKEN)")
	fs.StringVar(&f.roleID, "vault-role-id", "", "AppRole role id, with --vault-secret-id-file, instead of a token")
	fs.StringVar(&f.secretIDFile, "vault-secret-id-file", "", "file holding the AppRole secret id")
	fs.StringVar(&f.mount, "vault-mount", "relais-pki", "mount of the issuing PKI")
	fs.StringVar(&f.devCA, "dev-ca", "", "use the embedded dev CA in this directory (e.g. relais-dev/dev) instead of Vault")
	return f
}

// token returns the Vault token from --vault-token-file or $VAULT_TOKEN;
// never from a flag value, which would show in process listings.
func (f *caFlags) token() (string, error) { return vaultca.TokenFrom(f.tokenFile) }

func (f *caFlags) secretID() (string, error) {
	raw, err := os.ReadFile(f.secretIDFile)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(raw)), nil
}

// open returns the authority; for a consumer credential from Vault it
// first makes sure the consumer's PKI role exists (onboarding).
func (f *caFlags) open(ctx context.Context, req certs.ClientRequest) (certs.Authority, func(), error) {
	switch {
	case f.devCA != "" && f.vaultAddr != "":
		return nil, nil, errors.New("give --dev-ca or --vault-addr, not both")
	case f.devCA != "":
		ca, err := certs.OpenDevCA(f.devCA, nil)
		return ca, func() {}, err
	case f.vaultAddr != "":
		return f.openVault(ctx, &req)
	default:
		return nil, nil, errors.New("no CA: give --vault-addr (or $VAULT_ADDR) or --dev-ca DIR")
	}
}
