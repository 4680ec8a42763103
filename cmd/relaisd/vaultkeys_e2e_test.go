package main_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/hashicorp/vault/api"

	"github.com/relais-broker/relais/broker/audit/seglog"
	"github.com/relais-broker/relais/broker/subject"
	"github.com/relais-broker/relais/internal/vaultdev"
	"github.com/relais-broker/relais/internal/vaultkeys"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
)

// TestServeWithAuditKeysInVault: the secrets every replica must share are
// kept in Vault (`relaisctl vault init --audit-keys`): `relaisd serve`
// signs its checkpoints with a transit key whose private half never
// leaves Vault and reads the pseudonym key from KV v2, with its AppRole.
// The log verifies offline with the public key vault init wrote, no key
// file exists on the broker's side, and two broker runs give the same
// pseudonym — the one the KV key computes.
func TestServeWithAuditKeysInVault(t *testing.T) {
	v := vaultdev.Start(t)
	relaisd, _ := binaries(t)
	dir := t.TempDir()
	secret, pub := filepath.Join(dir, "secret-id"), filepath.Join(dir, "audit-signing.pub")
	out, err := vaultShell(t, v, v.Addr, "relaisctl vault init --server-names localhost --audit-keys --audit-public-key-out "+pub+" --secret-id-out "+secret)
	if err != nil || !strings.Contains(out, "created the audit signing key") || !strings.Contains(out, "created the pseudonym key") {
		t.Fatalf("vault init --audit-keys: %v\n%s", err, out)
	}
	// A second run changes nothing: the keys are never replaced.
	if again, err := vaultShell(t, v, v.Addr, "relaisctl vault init --server-names localhost --audit-keys"); err != nil || strings.Contains(again, "created the") {
		t.Fatalf("second vault init: %v\n%s", err, again)
	}
	roleID := regexp.MustCompile(`role id: (\S+)`).FindStringSubmatch(out)[1]
	// The registry with the demo consumer and its grant; the key files
	// prepareServe also writes are removed: this broker must not need them.
	data, keys := prepareServe(t, dir)
	if err := os.RemoveAll(keys); err != nil {
		t.Fatal(err)
	}
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
  vault: {addr: %s, role_id: %s, secret_id_file: %s}
audit:
  signing_key_vault: {mount: relais-transit, key: relais-audit}
  pseudonym_key_vault: {mount: relais-kv, path: audit/pseudonym}
sources_file: %s
`, data, v.Addr, roleID, secret, sources)), 0o600)
	if out, err := shell(t, "relaisd check-config --config "+config); err != nil {
		t.Fatalf("check-config: %v\n%s", err, out)
	}
	for run := 1; run <= 2; run++ {
		cmd, banner, stderr := startServe(t, relaisd, config, []string{"VAULT_TOKEN=", "VAULT_ADDR="})
		addr := regexp.MustCompile(`data API on (\S+),`).FindStringSubmatch(banner)[1]
		if out, err := shell(t, fqCall(cred, addr, fmt.Sprintf("VAULT-KEYS-%d", run))); err != nil || !strings.Contains(out, `"value": 755`) {
			logs, _ := os.ReadFile(stderr)
			t.Fatalf("run %d call: %v\n%s\nrelaisd:\n%s", run, err, out, logs)
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("run %d: relaisd serve did not exit cleanly: %v", run, err)
		}
		if logs, _ := os.ReadFile(stderr); strings.Contains(string(logs), "permission denied") {
			t.Fatalf("the broker's AppRole lacks a permission:\n%s", logs)
		}
	}
	// Offline verification with the public key from Vault: the final
	// checkpoints of both runs were signed through transit.
	audit := filepath.Join(data, "audit")
	if out, err := shell(t, "relaisctl audit verify --dir "+audit+" --public-key "+pub); err != nil || !strings.Contains(out, "OK: 2 records") || strings.Contains(out, " 0 signed checkpoints") {
		t.Fatalf("verify with the transit public key: %v\n%s", err, out)
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "*", "*.key"))
	if len(matches) > 0 {
		t.Fatalf("key files on the broker's side: %v", matches)
	}
	// Both records carry the pseudonym the KV key gives.
	client, err := api.NewClient(&api.Config{Address: v.Addr})
	if err != nil {
		t.Fatal(err)
	}
	client.SetToken(v.Token)
	key, err := vaultkeys.PseudonymKey(context.Background(), client, "relais-kv", "audit/pseudonym")
	if err != nil {
		t.Fatal(err)
	}
	p, err := subject.New(key)
	if err != nil {
		t.Fatal(err)
	}
	want := p.Of(&familyquotientv1.GetFamilyQuotientRequest{Subject: &commonv1.SubjectIdentity{BirthName: "DUPONT", GivenNames: []string{"Zoé"},
		Sex: commonv1.Sex_SEX_FEMALE, BirthDate: "1984-03-12", BirthPlaceCog: "75056", BirthCountryCog: "99100"}})
	var export strings.Builder
	if _, err := seglog.ExportDir(context.Background(), audit, &export); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(export.String(), want); want == "" || n != 2 {
		t.Fatalf("records with the KV key's pseudonym %q: %d, want 2\n%s", want, n, export.String())
	}
}
