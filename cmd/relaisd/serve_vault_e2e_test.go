package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/relais-broker/relais/internal/vaultdev"
)

// TestServeWithVaultAppRole runs the production path: `relaisctl vault
// init` with an operator token, then `relaisd serve` logging in to Vault
// with the broker's AppRole (least-privilege policy) for its own
// certificate, the trust bundle and the CRLs; a consumer credential issued
// through Vault calls it.
func TestServeWithVaultAppRole(t *testing.T) {
	v := vaultdev.Start(t)
	relaisd, _ := binaries(t)
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret-id")
	out, err := vaultShell(t, v, v.Addr, "relaisctl vault init --server-names localhost --secret-id-out "+secret)
	if err != nil {
		t.Fatalf("vault init: %v\n%s", err, out)
	}
	roleID := regexp.MustCompile(`role id: (\S+)`).FindStringSubmatch(out)
	if roleID == nil {
		t.Fatalf("no role id in:\n%s", out)
	}
	data, keys := prepareServe(t, dir)
	// The operator issues the consumer's credential through Vault.
	cred := filepath.Join(dir, "mairie")
	if out, err := vaultShell(t, v, v.Addr, "relaisctl credentials issue --record=false --force --consumer 21990000100005 --name Mairie --out "+cred); err != nil {
		t.Fatalf("issue: %v\n%s", err, out)
	}
	sources := filepath.Join(dir, "sources.yaml")
	_ = os.WriteFile(sources, []byte("sources:\n  - {service: relais.familyquotient.v1.FamilyQuotientService, id: sandbox, kind: sandbox}\n"), 0o600)
	config := filepath.Join(dir, "relaisd.yaml")
	_ = os.WriteFile(config, []byte(fmt.Sprintf(`data_dir: %s
listen: {data: "127.0.0.1:0", admin: "127.0.0.1:0", ops: "127.0.0.1:0", http: "127.0.0.1:0"}
tls:
  server_names: [localhost]
  server_ips: [127.0.0.1]
  crl_refresh: 1s
  vault: {addr: %s, role_id: %s, secret_id_file: %s}
audit: {signing_key_file: %s, pseudonym_key_file: %s}
sources_file: %s
`, data, v.Addr, roleID[1], secret, filepath.Join(keys, "audit.key"), filepath.Join(keys, "pseudonym.key"), sources)), 0o600)
	// The broker must not use the operator's token.
	cmd, banner, stderr := startServe(t, relaisd, config, []string{"VAULT_TOKEN=", "VAULT_ADDR="})
	addr := regexp.MustCompile(`data API on (\S+),`).FindStringSubmatch(banner)[1]
	call := fqCall(cred, addr, "VAULT-1")
	if out, err := shell(t, call); err != nil || !strings.Contains(out, `"value": 755`) {
		logs, _ := os.ReadFile(stderr)
		t.Fatalf("call: %v\n%s\nrelaisd:\n%s", err, out, logs)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("relaisd serve did not exit cleanly: %v", err)
	}
	if logs, _ := os.ReadFile(stderr); strings.Contains(string(logs), "crl refresh failed") || strings.Contains(string(logs), "permission denied") {
		t.Fatalf("the broker's AppRole lacks a permission:\n%s", logs)
	}
}
