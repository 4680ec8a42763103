package main_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/registry/boltreg"
	"github.com/relais-broker/relais/broker/scope"
	"github.com/relais-broker/relais/certs"
	"github.com/relais-broker/relais/internal/keyfile"
)

// TestServeFromAConfigurationFile runs `relaisd serve` as an operator
// would (dev CA instead of Vault), after check-config; reloads the source
// adapters on SIGHUP; and checks check-config names an unknown key.
func TestServeFromAConfigurationFile(t *testing.T) {
	t.Parallel()
	relaisd, _ := binaries(t)
	dir := t.TempDir()
	data, keys := prepareServe(t, dir)
	caDir := filepath.Join(dir, "ca")
	ca, err := certs.OpenDevCA(caDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cred, _ := ca.IssueClient(ctx, certs.ClientRequest{Kind: identity.KindConsumer, ID: "21990000100005", TTL: time.Hour})
	bundle, _ := ca.TrustBundle(ctx)
	if err := certs.WriteCredential(filepath.Join(dir, "mairie"), cred, bundle); err != nil {
		t.Fatal(err)
	}
	sourcesFile := filepath.Join(dir, "sources.yaml")
	writeSources := func(service string) {
		_ = os.WriteFile(sourcesFile, []byte("sources:\n  - {service: "+service+", id: sandbox, kind: sandbox}\n"), 0o600)
	}
	writeSources("relais.familyquotient.v1.FamilyQuotientService")
	config := filepath.Join(dir, "relaisd.yaml")
	_ = os.WriteFile(config, []byte(fmt.Sprintf(`data_dir: %s
listen: {data: "127.0.0.1:0", admin: "127.0.0.1:0", ops: "127.0.0.1:0", http: "127.0.0.1:0"}
tls:
  server_names: [localhost]
  server_ips: [127.0.0.1]
  dev_ca_dir: %s
audit:
  signing_key_file: %s
  pseudonym_key_file: %s
  retention: 8760h
sources_file: %s
`, data, caDir, filepath.Join(keys, "audit.key"), filepath.Join(keys, "pseudonym.key"), sourcesFile)), 0o600)

	if out, err := exec.Command(relaisd, "check-config", "--config", config).CombinedOutput(); err != nil || !strings.Contains(string(out), "configuration OK") {
		t.Fatalf("check-config: %v\n%s", err, out)
	}
	bad := filepath.Join(dir, "bad.yaml")
	raw, _ := os.ReadFile(config)
	_ = os.WriteFile(bad, append(raw, []byte("listne: {data: x}\n")...), 0o600)
	if out, err := exec.Command(relaisd, "check-config", "--config", bad).CombinedOutput(); err == nil || !strings.Contains(string(out), "listne") || !strings.Contains(string(out), "line 12") {
		t.Fatalf("check-config with an unknown key: %v\n%s", err, out)
	}

	cmd, banner, _ := startServe(t, relaisd, config, nil)
	m := regexp.MustCompile(`data API on (\S+), admin API on (\S+), operations on http://(\S+), HTTPS/JSON on (\S+)`).FindStringSubmatch(banner)
	if m == nil {
		t.Fatalf("banner: %s", banner)
	}
	call := fqCall(filepath.Join(dir, "mairie"), m[1], "SERVE-1")
	if out, err := shell(t, call); err != nil || !strings.Contains(out, `"value": 755`) || strings.Contains(out, "children") {
		t.Fatalf("call: %v\n%s", err, out)
	}
	if r, err := http.Get("http://" + m[3] + "/readyz"); err != nil || r.StatusCode != http.StatusOK {
		t.Fatalf("/readyz: %v %v", r, err)
	}
	// The family quotient moves out of the sources file: after SIGHUP the
	// broker answers that no source serves it, without a restart.
	writeSources("relais.healthcover.v1.SolidarityHealthCoverService")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, _ := shell(t, call+" 2>&1")
		if strings.Contains(out, "service_not_configured") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sources not reloaded on SIGHUP:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("relaisd serve did not exit cleanly: %v", err)
	}
}

// prepareServe makes what an operator prepares before `relaisd serve`:
// the data directory with a registry onboarding the Mairie (family
// quotient value, purpose tarification_sociale) and the audit key files.
func prepareServe(t *testing.T, dir string) (data, keys string) {
	t.Helper()
	data, keys = filepath.Join(dir, "data"), filepath.Join(dir, "keys")
	for _, d := range []string{data, keys} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := keyfile.CreateSigningKey(filepath.Join(keys, "audit.key"), filepath.Join(keys, "audit.pub")); err != nil {
		t.Fatal(err)
	}
	if err := keyfile.CreatePseudonymKey(filepath.Join(keys, "pseudonym.key")); err != nil {
		t.Fatal(err)
	}
	reg, err := boltreg.Open(filepath.Join(data, "registry.db"), boltreg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	ctx := context.Background()
	if _, err := reg.AddConsumer(ctx, registry.Consumer{SIRET: "21990000100005", Name: "Mairie"}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.AddGrant(ctx, registry.Grant{Consumer: "21990000100005", Service: "relais.familyquotient.v1.FamilyQuotientService",
		Scopes:    scope.Of("family_quotient.value"),
		Purposes:  []registry.Purpose{{Code: "tarification_sociale", Label: "Cantine", LegalBasis: "CRPA art. L114-8"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), Quota: registry.Quota{RatePerSecond: 20, Burst: 40}}); err != nil {
		t.Fatal(err)
	}
	return data, keys
}

// startServe runs `relaisd serve --config config` (with extra environment
// entries) until the test ends and returns its banner line and its stderr
// file.
func startServe(t *testing.T, relaisd, config string, env []string) (*exec.Cmd, string, string) {
	t.Helper()
	cmd := exec.Command(relaisd, "serve", "--config", config)
	cmd.Env = append(os.Environ(), env...)
	stdout, _ := cmd.StdoutPipe()
	stderr, err := os.Create(filepath.Join(t.TempDir(), "stderr.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() {
		logs, _ := os.ReadFile(stderr.Name())
		t.Fatalf("relaisd serve did not start:\n%s", logs)
	}
	banner := sc.Text()
	go func() {
		for sc.Scan() {
		}
	}()
	return cmd, banner, stderr.Name()
}

// fqCall is the grpcurl family-quotient call for Zoé Dupont as the Mairie,
// with the credential in dir, against addr.
func fqCall(dir, addr, caseRef string) string {
	return fmt.Sprintf(`grpcurl -cacert %s -cert %s -key %s -d '{"access_context":{"recipient":"21990000100005","purpose":"tarification_sociale","case_reference":"%s"},"subject":{"birth_name":"DUPONT","given_names":["Zoé"],"sex":"SEX_FEMALE","birth_date":"1984-03-12","birth_place_cog":"75056","birth_country_cog":"99100"}}' %s relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient`,
		filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), caseRef, addr)
}
