package main_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/registry/boltreg"
	"github.com/relais-broker/relais/broker/scope"
	"github.com/relais-broker/relais/internal/keyfile"
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
	data, keys := filepath.Join(dir, "data"), filepath.Join(dir, "keys")
	_ = os.MkdirAll(data, 0o700)
	_ = os.MkdirAll(keys, 0o700)
	_ = keyfile.CreateSigningKey(filepath.Join(keys, "audit.key"), filepath.Join(keys, "audit.pub"))
	_ = keyfile.CreatePseudonymKey(filepath.Join(keys, "pseudonym.key"))
	reg, err := boltreg.Open(filepath.Join(data, "registry.db"), boltreg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, _ = reg.AddConsumer(ctx, registry.Consumer{SIRET: "21990000100005", Name: "Mairie"})
	_, err = reg.AddGrant(ctx, registry.Grant{Consumer: "21990000100005", Service: "relais.familyquotient.v1.FamilyQuotientService",
		Scopes: scope.Of("family_quotient.value"), Purposes: []registry.Purpose{{Code: "tarification_sociale", Label: "Cantine", LegalBasis: "CRPA art. L114-8"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), Quota: registry.Quota{RatePerSecond: 20, Burst: 40}})
	reg.Close()
	if err != nil {
		t.Fatal(err)
	}
	// The operator issues the consumer's credential through Vault.
	cred := filepath.Join(dir, "mairie")
	if out, err := vaultShell(t, v, v.Addr, "relaisctl credentials issue --record=false --consumer 21990000100005 --name Mairie --out "+cred); err != nil {
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
	cmd := exec.Command(relaisd, "serve", "--config", config)
	cmd.Env = append(os.Environ(), "VAULT_TOKEN=", "VAULT_ADDR=") // the broker must not use the operator's token
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := os.Create(filepath.Join(dir, "stderr.log"))
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() {
		logs, _ := os.ReadFile(stderr.Name())
		t.Fatalf("relaisd serve with Vault did not start:\n%s", logs)
	}
	addr := regexp.MustCompile(`data API on (\S+),`).FindStringSubmatch(sc.Text())[1]
	call := fmt.Sprintf(`grpcurl -cacert %s -cert %s -key %s -d '{"access_context":{"recipient":"21990000100005","purpose":"tarification_sociale","case_reference":"VAULT-1"},"subject":{"birth_name":"DUPONT","given_names":["Zoé"],"sex":"SEX_FEMALE","birth_date":"1984-03-12","birth_place_cog":"75056","birth_country_cog":"99100"}}' %s relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient`,
		filepath.Join(cred, "ca.pem"), filepath.Join(cred, "cert.pem"), filepath.Join(cred, "key.pem"), addr)
	if out, err := shell(t, call); err != nil || !strings.Contains(out, `"value": 755`) {
		logs, _ := os.ReadFile(stderr.Name())
		t.Fatalf("call: %v\n%s\nrelaisd:\n%s", err, out, logs)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("relaisd serve did not exit cleanly: %v", err)
	}
	if logs, _ := os.ReadFile(stderr.Name()); strings.Contains(string(logs), "crl refresh failed") || strings.Contains(string(logs), "permission denied") {
		t.Fatalf("the broker's AppRole lacks a permission:\n%s", logs)
	}
}
