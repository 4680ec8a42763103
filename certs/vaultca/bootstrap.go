package vaultca

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/relais-broker/relais/certs"
	"github.com/relais-broker/relais/internal/vaultkeys"
)

// BootstrapOptions configure Bootstrap.
type BootstrapOptions struct {
	// Mount and RootMount default to DefaultMount and DefaultRootMount.
	Mount, RootMount string
	// BaseURL is how CRL and issuing-certificate URLs reach Vault; the
	// client's address when empty.
	BaseURL string
	// ServerNames are the DNS names the broker's certificate may carry
	// (localhost is always allowed); loopback and other IPs are allowed.
	ServerNames []string
	// MaxTTL caps every leaf; certs.MaxTTL when zero.
	MaxTTL time.Duration
	// NewSecretID asks for a fresh AppRole secret id for the broker.
	NewSecretID bool
	// AuditKeys, when set, also keeps the audit secrets every replica
	// must share in Vault: the pseudonym key in KV v2 and an Ed25519
	// transit key that signs checkpoints (its private half never leaves
	// Vault), and lets the broker's policy read and use them.
	AuditKeys *AuditKeys
}

// BootstrapResult reports what Bootstrap found and did.
// AuditKeys name where the audit secrets live in Vault.
type AuditKeys struct {
	// KVMount (a KV v2 mount) and KVPath hold the pseudonym key.
	KVMount, KVPath string
	// TransitMount and TransitKey name the checkpoint signing key.
	TransitMount, TransitKey string
}

// Defaults of AuditKeys.
const (
	DefaultKVMount      = "relais-kv"
	DefaultKVPath       = "audit/pseudonym"
	DefaultTransitMount = "relais-transit"
	DefaultTransitKey   = "relais-audit"
)

type BootstrapResult struct {
	// Changes lists what was created or corrected, empty when the PKI
	// was already as wanted.
	Changes []string
	// RoleID of the broker's AppRole, and SecretID when asked for.
	RoleID, SecretID string
	// RootPEM is the trust bundle (the root CA certificates).
	RootPEM []byte
	// AuditPublicKey is the transit key's public key (PKIX PEM), what a
	// third party verifies checkpoints with, when AuditKeys was set.
	AuditPublicKey []byte
}

// Bootstrap sets up (or checks) the Vault PKI of Relais, the production
// way: a root mount that only signs intermediates, an issuing mount with
// an intermediate, CRL and issuing URLs, the operator and broker-server
// roles, the broker's policy and AppRole. It needs a privileged token
// (an operator's, never the broker's). Running it again changes nothing.
func Bootstrap(ctx context.Context, c *api.Client, o BootstrapOptions) (*BootstrapResult, error) {
	if o.Mount == "" {
		o.Mount = DefaultMount
	}
	if o.RootMount == "" {
		o.RootMount = DefaultRootMount
	}
	if o.BaseURL == "" {
		o.BaseURL = c.Address()
	}
	if o.MaxTTL == 0 {
		o.MaxTTL = certs.MaxTTL
	}
	if k := o.AuditKeys; k != nil {
		k.KVMount = cmp.Or(k.KVMount, DefaultKVMount)
		k.KVPath = cmp.Or(k.KVPath, DefaultKVPath)
		k.TransitMount = cmp.Or(k.TransitMount, DefaultTransitMount)
		k.TransitKey = cmp.Or(k.TransitKey, DefaultTransitKey)
	}
	b := &bootstrap{c: c, o: o, res: &BootstrapResult{}, mapErr: func(op string, err error) error { return mapErr(c.Address(), op, err) }}
	steps := []func(context.Context) error{
		func(ctx context.Context) error {
			return b.mount(ctx, o.RootMount, "Relais root CA: signs intermediates only", "87600h")
		},
		func(ctx context.Context) error { return b.mount(ctx, o.Mount, "Relais issuing CA", "8760h") },
		b.root,
		b.intermediate,
		func(ctx context.Context) error { return b.urls(ctx, o.RootMount) },
		func(ctx context.Context) error { return b.urls(ctx, o.Mount) },
		b.roles,
		b.auditKeys,
		b.policy,
		b.appRole,
	}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return nil, err
		}
	}
	ca := &CA{client: c, cfg: Config{Addr: c.Address(), Mount: o.Mount, RootMount: o.RootMount}}
	root, err := ca.TrustBundle(ctx)
	if err != nil {
		return nil, err
	}
	b.res.RootPEM = root
	return b.res, nil
}

// auditKeys mounts KV v2 and transit when missing and creates the
// pseudonym key and the signing key once; existing keys are never
// replaced (the citizen report and older checkpoints depend on them).
func (b *bootstrap) auditKeys(ctx context.Context) error {
	k := b.o.AuditKeys
	if k == nil {
		return nil
	}
	mounts, err := b.c.Sys().ListMountsWithContext(ctx)
	if err != nil {
		return b.mapErr("list mounts", err)
	}
	for _, m := range []struct {
		path, typ string
		opts      map[string]string
	}{{k.KVMount, "kv", map[string]string{"version": "2"}}, {k.TransitMount, "transit", nil}} {
		if have, ok := mounts[m.path+"/"]; ok {
			if have.Type != m.typ && !(m.typ == "kv" && have.Type == "kv-v2") {
				return fmt.Errorf("vault: %s is mounted as %s, not %s; refusing to touch it", m.path, have.Type, m.typ)
			}
			continue
		}
		if err := b.c.Sys().MountWithContext(ctx, m.path, &api.MountInput{Type: m.typ, Options: m.opts, Description: "Relais audit keys"}); err != nil {
			return b.mapErr("mount "+m.path, err)
		}
		b.changed("mounted %s at %s", m.typ, m.path)
	}
	switch err := vaultkeys.CreatePseudonymKey(ctx, b.c, k.KVMount, k.KVPath); {
	case err == nil:
		b.changed("created the pseudonym key in %s/%s", k.KVMount, k.KVPath)
	case !errors.Is(err, vaultkeys.ErrExists):
		return err
	}
	switch err := vaultkeys.CreateTransitKey(ctx, b.c, k.TransitMount, k.TransitKey); {
	case err == nil:
		b.changed("created the audit signing key %s/keys/%s (Ed25519, not exportable)", k.TransitMount, k.TransitKey)
	case !errors.Is(err, vaultkeys.ErrExists):
		return err
	}
	signer, err := vaultkeys.NewTransitSigner(ctx, b.c, k.TransitMount, k.TransitKey)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return err
	}
	b.res.AuditPublicKey = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	return nil
}

type bootstrap struct {
	c      *api.Client
	o      BootstrapOptions
	res    *BootstrapResult
	mapErr func(string, error) error
}

func (b *bootstrap) changed(format string, args ...any) {
	b.res.Changes = append(b.res.Changes, fmt.Sprintf(format, args...))
}

func (b *bootstrap) mount(ctx context.Context, path, desc, maxTTL string) error {
	mounts, err := b.c.Sys().ListMountsWithContext(ctx)
	if err != nil {
		return b.mapErr("list mounts", err)
	}
	if m, ok := mounts[path+"/"]; ok {
		if m.Type != "pki" {
			return fmt.Errorf("vault: %s is mounted as %s, not pki; refusing to touch it", path, m.Type)
		}
		return nil
	}
	if err := b.c.Sys().MountWithContext(ctx, path, &api.MountInput{Type: "pki", Description: desc, Config: api.MountConfigInput{MaxLeaseTTL: maxTTL}}); err != nil {
		return b.mapErr("mount "+path, err)
	}
	b.changed("mounted pki at %s", path)
	return nil
}

func (b *bootstrap) root(ctx context.Context) error {
	ids, err := listIssuers(ctx, b.c, b.o.RootMount, b.mapErr)
	if err != nil || len(ids) > 0 {
		return err
	}
	if _, err := b.c.Logical().WriteWithContext(ctx, b.o.RootMount+"/root/generate/internal", map[string]any{
		"common_name": "Relais Root CA", "organization": "Relais", "key_type": "ec", "key_bits": 384, "ttl": "87600h", "issuer_name": "relais-root",
	}); err != nil {
		return b.mapErr("generate root", err)
	}
	b.changed("generated the root CA in %s", b.o.RootMount)
	return nil
}

func (b *bootstrap) intermediate(ctx context.Context) error {
	ids, err := listIssuers(ctx, b.c, b.o.Mount, b.mapErr)
	if err != nil || len(ids) > 0 {
		return err
	}
	id, err := rotateIssuer(ctx, b.c, b.o.Mount, b.o.RootMount, b.mapErr)
	if err != nil {
		return err
	}
	b.changed("created the issuing intermediate %s in %s", id, b.o.Mount)
	return nil
}

// rotateIssuer creates an intermediate in mount signed by rootMount's
// root and makes it the default issuer of mount.
func rotateIssuer(ctx context.Context, c *api.Client, mount, rootMount string, mapErr func(string, error) error) (string, error) {
	var suffix [3]byte
	_, _ = rand.Read(suffix[:])
	name := "relais-issuing-" + time.Now().UTC().Format("20060102-150405") + "-" + hex.EncodeToString(suffix[:])
	s, err := c.Logical().WriteWithContext(ctx, mount+"/intermediate/generate/internal", map[string]any{
		"common_name": "Relais Issuing CA " + time.Now().UTC().Format("2006-01-02"), "organization": "Relais", "key_type": "ec", "key_bits": 256,
		"key_name": name,
	})
	if err != nil {
		return "", mapErr("generate intermediate", err)
	}
	csr, ok := field(s, "csr")
	if !ok {
		return "", fmt.Errorf("vault answered no intermediate csr")
	}
	s, err = c.Logical().WriteWithContext(ctx, rootMount+"/root/sign-intermediate", map[string]any{
		"csr": csr, "format": "pem", "ttl": "43800h", "use_csr_values": true,
	})
	if err != nil {
		return "", mapErr("sign intermediate", err)
	}
	cert, ok := field(s, "certificate")
	if !ok {
		return "", fmt.Errorf("vault answered no intermediate certificate")
	}
	s, err = c.Logical().WriteWithContext(ctx, mount+"/intermediate/set-signed", map[string]any{"certificate": cert})
	if err != nil {
		return "", mapErr("import intermediate", err)
	}
	imported := stringList(s, "imported_issuers")
	if len(imported) != 1 {
		return "", fmt.Errorf("%w (imported %d issuers)", errNoIssuer, len(imported))
	}
	if _, err := c.Logical().WriteWithContext(ctx, mount+"/config/issuers", map[string]any{"default": imported[0]}); err != nil {
		return "", mapErr("set default issuer", err)
	}
	if _, err := c.Logical().WriteWithContext(ctx, mount+"/issuer/"+imported[0], map[string]any{"issuer_name": name}); err != nil {
		return "", mapErr("name issuer", err)
	}
	return imported[0], nil
}

func (b *bootstrap) urls(ctx context.Context, mount string) error {
	base := strings.TrimRight(b.o.BaseURL, "/") + "/v1/" + mount
	want := map[string]any{"issuing_certificates": []any{base + "/ca"}, "crl_distribution_points": []any{base + "/crl"}}
	return b.ensure(ctx, mount+"/config/urls", want, "CRL and issuing URLs of "+mount)
}

// consumerRoleData is the configuration of a consumer's roles: client
// authentication only, exactly its URI SAN, no DNS, IP or other SAN, a
// free-text CN (the body's name) kept out of the SANs.
func consumerRoleData(siret string, keyType string, maxTTL time.Duration) map[string]any {
	d := map[string]any{
		"allowed_uri_sans": []any{"urn:relais:consumer:" + siret}, "allow_any_name": false, "allowed_domains": []any{},
		"allow_bare_domains": false, "allow_subdomains": false, "allow_glob_domains": false, "allow_localhost": false,
		"allow_ip_sans": false, "enforce_hostnames": false, "cn_validations": []any{"disabled"},
		"server_flag": false, "client_flag": true, "code_signing_flag": false, "email_protection_flag": false,
		"use_csr_common_name": false, "use_csr_sans": false, "key_type": keyType,
		"max_ttl": int64(maxTTL / time.Second), "ttl": int64(certs.DefaultTTL / time.Second), "organization": []any{"Relais"},
	}
	if keyType == "ec" {
		d["key_bits"] = 256
	}
	return d
}

func (b *bootstrap) roles(ctx context.Context) error {
	operator := consumerRoleData("", "ec", b.o.MaxTTL)
	operator["allowed_uri_sans"] = []any{"urn:relais:operator:*"}
	if err := b.ensure(ctx, b.o.Mount+"/roles/"+OperatorRole, operator, "role "+OperatorRole); err != nil {
		return err
	}
	// Names are only ever added: a second init (or a dev broker starting
	// with fewer names) never takes a name away from the server role.
	names := append([]string{"localhost"}, b.o.ServerNames...)
	if s, err := b.c.Logical().ReadWithContext(ctx, b.o.Mount+"/roles/"+ServerRole); err != nil {
		return b.mapErr("read role "+ServerRole, err)
	} else {
		names = append(names, stringList(s, "allowed_domains")...)
	}
	sort.Strings(names)
	server := map[string]any{
		"allowed_domains": toAny(dedupe(names)), "allow_bare_domains": true, "allow_subdomains": false, "allow_glob_domains": false,
		"allow_localhost": true, "allow_ip_sans": true, "allow_any_name": false, "enforce_hostnames": true,
		"server_flag": true, "client_flag": false, "key_type": "ec", "key_bits": 256,
		"max_ttl": int64(b.o.MaxTTL / time.Second), "ttl": int64(30 * 24 * time.Hour / time.Second), "organization": []any{"Relais"},
	}
	return b.ensure(ctx, b.o.Mount+"/roles/"+ServerRole, server, "role "+ServerRole)
}

// brokerPolicyText lets the broker issue, sign, revoke and read CRLs and
// CA certificates; it cannot create roles or touch the root.
func brokerPolicyText(mount, rootMount string) string {
	return fmt.Sprintf(`# Relais broker: issue, renew and revoke; never create roles.
path "%[1]s/issue/%[3]s" { capabilities = ["update"] }
path "%[1]s/sign/consumer-*" { capabilities = ["update"] }
path "%[1]s/issue/operator" { capabilities = ["update"] }
path "%[1]s/revoke" { capabilities = ["update"] }
path "%[1]s/issuers" { capabilities = ["list"] }
path "%[1]s/issuer/*" { capabilities = ["read"] }
path "%[1]s/certs" { capabilities = ["list"] }
path "%[1]s/cert/*" { capabilities = ["read"] }
path "%[2]s/issuers" { capabilities = ["list"] }
path "%[2]s/issuer/*" { capabilities = ["read"] }
`, mount, rootMount, ServerRole)
}

func (b *bootstrap) policy(ctx context.Context) error {
	want := brokerPolicyText(b.o.Mount, b.o.RootMount)
	if k := b.o.AuditKeys; k != nil {
		want += "# Audit secrets shared by every replica.\n" + vaultkeys.Policy(k.KVMount, k.KVPath, k.TransitMount, k.TransitKey)
	}
	have, err := b.c.Sys().GetPolicyWithContext(ctx, BrokerPolicy)
	if err != nil {
		return b.mapErr("read policy", err)
	}
	if have == want {
		return nil
	}
	if err := b.c.Sys().PutPolicyWithContext(ctx, BrokerPolicy, want); err != nil {
		return b.mapErr("write policy", err)
	}
	b.changed("wrote policy %s", BrokerPolicy)
	return nil
}

func (b *bootstrap) appRole(ctx context.Context) error {
	auths, err := b.c.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return b.mapErr("list auth methods", err)
	}
	if _, ok := auths["approle/"]; !ok {
		if err := b.c.Sys().EnableAuthWithOptionsWithContext(ctx, "approle", &api.EnableAuthOptions{Type: "approle"}); err != nil {
			return b.mapErr("enable approle", err)
		}
		b.changed("enabled approle auth")
	}
	role := "auth/approle/role/" + BrokerAppRole
	if err := b.ensure(ctx, role, map[string]any{
		"token_policies": []any{BrokerPolicy}, "token_ttl": int64(3600), "token_max_ttl": int64(4 * 3600), "secret_id_ttl": int64(0),
	}, "approle "+BrokerAppRole); err != nil {
		return err
	}
	s, err := b.c.Logical().ReadWithContext(ctx, role+"/role-id")
	if err != nil {
		return b.mapErr("read role id", err)
	}
	b.res.RoleID, _ = field(s, "role_id")
	if b.o.NewSecretID {
		s, err := b.c.Logical().WriteWithContext(ctx, role+"/secret-id", nil)
		if err != nil {
			return b.mapErr("create secret id", err)
		}
		b.res.SecretID, _ = field(s, "secret_id")
		b.changed("created a new secret id for approle %s", BrokerAppRole)
	}
	return nil
}

// ensure writes want at path unless what Vault reads back already holds
// those values.
func (b *bootstrap) ensure(ctx context.Context, path string, want map[string]any, what string) error {
	ok, err := holds(ctx, b.c, path, want, b.mapErr)
	if err != nil || ok {
		return err
	}
	if _, err := b.c.Logical().WriteWithContext(ctx, path, want); err != nil {
		return b.mapErr("write "+what, err)
	}
	b.changed("configured %s", what)
	return nil
}

func holds(ctx context.Context, c *api.Client, path string, want map[string]any, mapErr func(string, error) error) (bool, error) {
	s, err := c.Logical().ReadWithContext(ctx, path)
	if err != nil {
		return false, mapErr("read "+path, err)
	}
	if s == nil || s.Data == nil {
		return false, nil
	}
	for k, v := range want {
		if !sameValue(s.Data[k], v) {
			return false, nil
		}
	}
	return true, nil
}

// sameValue compares a value Vault read back (JSON-decoded) with the one
// written; numbers come back as json.Number.
func sameValue(have, want any) bool {
	switch w := want.(type) {
	case int:
		return fmt.Sprint(have) == fmt.Sprint(w)
	case int64:
		return fmt.Sprint(have) == fmt.Sprint(w)
	case []any:
		h, ok := have.([]any)
		if !ok {
			return len(w) == 0 && have == nil
		}
		return reflect.DeepEqual(fmt.Sprint(h), fmt.Sprint(w))
	default:
		return reflect.DeepEqual(have, want)
	}
}

// EnsureConsumer creates or corrects the two PKI roles of a consumer
// (issue, and sign a CSR), so that a certificate can only carry its own
// SIRET. Onboarding runs it with an operator's token. It reports whether
// anything changed.
func EnsureConsumer(ctx context.Context, c *api.Client, mount, siret string, maxTTL time.Duration) (bool, error) {
	if err := certs.ValidSIRET(siret); err != nil {
		return false, fmt.Errorf("%w: %w", certs.ErrInvalidRequest, err)
	}
	if mount == "" {
		mount = DefaultMount
	}
	if maxTTL == 0 {
		maxTTL = certs.MaxTTL
	}
	b := &bootstrap{c: c, res: &BootstrapResult{}, mapErr: func(op string, err error) error { return mapErr(c.Address(), op, err) }}
	if err := b.ensure(ctx, mount+"/roles/"+ConsumerRole(siret), consumerRoleData(siret, "ec", maxTTL), "role "+ConsumerRole(siret)); err != nil {
		return false, err
	}
	if err := b.ensure(ctx, mount+"/roles/"+ConsumerCSRRole(siret), consumerRoleData(siret, "any", maxTTL), "role "+ConsumerCSRRole(siret)); err != nil {
		return false, err
	}
	return len(b.res.Changes) > 0, nil
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func dedupe(sorted []string) []string {
	var out []string
	for i, s := range sorted {
		if s != "" && (i == 0 || s != sorted[i-1]) {
			out = append(out, s)
		}
	}
	return out
}
