package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/certs"
	"github.com/relais-broker/relais/certs/vaultca"
)

// openVault logs in to Vault (token, or AppRole) and, for a consumer
// credential, makes sure the consumer's PKI roles exist (onboarding needs
// an operator's token; the broker's AppRole cannot do it).
func (f *caFlags) openVault(ctx context.Context, req *certs.ClientRequest) (certs.Authority, func(), error) {
	ca, err := f.vaultCA(ctx)
	if err != nil {
		return nil, nil, err
	}
	if req != nil && req.Kind == identity.KindConsumer {
		if _, err := vaultca.EnsureConsumer(ctx, ca.Client(), f.mount, req.ID, 0); err != nil {
			ca.Close()
			return nil, nil, fmt.Errorf("onboard %s in the PKI: %w", req.ID, err)
		}
	}
	return ca, ca.Close, nil
}

func (f *caFlags) vaultCA(ctx context.Context) (*vaultca.CA, error) {
	if f.vaultAddr == "" {
		return nil, errors.New("--vault-addr (or $VAULT_ADDR) is required")
	}
	cfg := vaultca.Config{Addr: f.vaultAddr, Mount: f.mount}
	if f.roleID != "" {
		secret, err := f.secretID()
		if err != nil {
			return nil, fmt.Errorf("--vault-secret-id-file: %w", err)
		}
		cfg.AppRoleID, cfg.AppRoleSecretID = f.roleID, secret
	} else {
		token, err := f.token()
		if err != nil {
			return nil, fmt.Errorf("--vault-token-file: %w", err)
		}
		if token == "" {
			return nil, errors.New("no Vault credentials: set VAULT_TOKEN, --vault-token-file, or --vault-role-id with --vault-secret-id-file")
		}
		cfg.Token = token
	}
	return vaultca.New(ctx, cfg)
}

func vaultCmd() *cobra.Command {
	return group("vault", "Set up the Vault PKI (and the shared audit keys) for Relais", vaultInitCmd())
}

func vaultInitCmd() *cobra.Command {
	return leaf("init [--server-names N,…] [--secret-id-out FILE] [--audit-keys]", "Set up the Vault PKI for Relais (idempotent)",
		`  export VAULT_ADDR=https://vault.example.fr:8200 VAULT_TOKEN=…   # an operator's token
  relaisctl vault init --server-names relais.example.fr --secret-id-out broker-secret-id`, func(fs *pflag.FlagSet) body {
			ca := addCAFlags(fs)
			_ = fs.MarkHidden("dev-ca")
			names := fs.String("server-names", "", "comma-separated DNS names the broker's certificate may carry (localhost is always allowed)")
			secretOut := fs.String("secret-id-out", "", "write a new AppRole secret id for the broker to this file (0600)")
			auditKeys := fs.Bool("audit-keys", false, "also keep the audit keys every replica shares in Vault: the pseudonym key in KV v2 ("+vaultca.DefaultKVMount+"/"+vaultca.DefaultKVPath+") and the Ed25519 checkpoint signing key in transit ("+vaultca.DefaultTransitMount+"/keys/"+vaultca.DefaultTransitKey+")")
			pubOut := fs.String("audit-public-key-out", "", "with --audit-keys: write the checkpoint signing key's public key (PEM) to this file, for relaisctl audit verify")
			return func(ctx context.Context, stdout, stderr io.Writer) int {
				return vaultInit(ctx, fs, ca, *names, *secretOut, *auditKeys, *pubOut, stdout, stderr)
			}
		})
}

func vaultInit(ctx context.Context, fs *pflag.FlagSet, ca *caFlags, names, secretOutV string, auditKeysV bool, pubOutV string, stdout, stderr io.Writer) int {
	secretOut, auditKeys, pubOut := &secretOutV, &auditKeysV, &pubOutV
	namesP := &names
	if fs.NArg() > 0 || ca.devCA != "" {
		fmt.Fprintln(stderr, "relaisctl vault init: unexpected arguments (the dev CA needs no init)")
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	v, err := ca.vaultCA(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "relaisctl vault init: %v\n", err)
		return 1
	}
	defer v.Close()
	var serverNames []string
	for _, n := range strings.Split(*namesP, ",") {
		if n = strings.TrimSpace(n); n != "" {
			serverNames = append(serverNames, n)
		}
	}
	if *pubOut != "" && !*auditKeys {
		fmt.Fprintln(stderr, "relaisctl vault init: --audit-public-key-out needs --audit-keys")
		return 2
	}
	opts := vaultca.BootstrapOptions{Mount: ca.mount, ServerNames: serverNames, NewSecretID: *secretOut != ""}
	if *auditKeys {
		opts.AuditKeys = &vaultca.AuditKeys{}
	}
	res, err := vaultca.Bootstrap(ctx, v.Client(), opts)
	if err != nil {
		fmt.Fprintf(stderr, "relaisctl vault init: %v\n", err)
		return 1
	}
	if *secretOut != "" {
		if err := os.WriteFile(*secretOut, []byte(res.SecretID+"\n"), 0o600); err != nil {
			fmt.Fprintf(stderr, "relaisctl vault init: %v\n", err)
			return 1
		}
	}
	if *pubOut != "" {
		if err := os.WriteFile(*pubOut, res.AuditPublicKey, 0o644); err != nil {
			fmt.Fprintf(stderr, "relaisctl vault init: %v\n", err)
			return 1
		}
	}
	if len(res.Changes) == 0 {
		fmt.Fprintln(stdout, "Vault PKI already set up: nothing changed")
	}
	for _, c := range res.Changes {
		fmt.Fprintln(stdout, c)
	}
	fmt.Fprintf(stdout, "broker AppRole role id: %s\n", res.RoleID)
	if *secretOut != "" {
		fmt.Fprintf(stdout, "broker AppRole secret id written to %s\n", *secretOut)
	}
	if *pubOut != "" {
		fmt.Fprintf(stdout, "audit checkpoint public key written to %s\n", *pubOut)
	}
	return 0
}

func issuerCmd() *cobra.Command {
	rotate := leaf("rotate", "Start a new intermediate issuing CA (Vault); certificates of the previous one stay valid", "  relaisctl issuer rotate", func(fs *pflag.FlagSet) body {
		ca := addCAFlags(fs)
		_ = fs.MarkHidden("dev-ca")
		return func(ctx context.Context, stdout, stderr io.Writer) int {
			if fs.NArg() > 0 || ca.devCA != "" {
				fmt.Fprintln(stderr, "relaisctl issuer rotate: Vault only (the dev CA has no intermediate)")
				return 2
			}
			return issuerRotate(ctx, ca, stdout, stderr)
		}
	})
	return group("issuer", "The issuing intermediate CA (Vault)", rotate)
}

func issuerRotate(ctx context.Context, ca *caFlags, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	v, err := ca.vaultCA(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "relaisctl issuer rotate: %v\n", err)
		return 1
	}
	defer v.Close()
	id, err := v.RotateIssuer(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "relaisctl issuer rotate: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "new issuing intermediate %s is now the default; certificates of the previous one stay valid\n", id)
	return 0
}
