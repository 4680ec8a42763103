package main_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/certs"
)

// TestRemoteSourceThroughTheBroker runs the example remote source as its
// own process, points relaisd at it with --sources, and calls the broker:
// the answer comes from the remote source, minimised per consumer.
func TestRemoteSourceThroughTheBroker(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "remote-source")
	if out, err := exec.Command("go", "build", "-o", bin, "../../examples/remote-source").CombinedOutput(); err != nil {
		t.Fatalf("build the example: %v\n%s", err, out)
	}
	// The source administration's PKI: its server certificate, and the
	// client certificate it issued to the broker.
	ca, err := certs.OpenDevCA(filepath.Join(dir, "source-ca"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	srvCred, _ := ca.IssueServer(ctx, []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour)
	brokerCred, _ := ca.IssueClient(ctx, certs.ClientRequest{Kind: identity.KindOperator, ID: "relais-broker", TTL: time.Hour})
	if err := certs.WriteCredential(filepath.Join(dir, "source"), srvCred, nil); err != nil {
		t.Fatal(err)
	}
	if err := certs.WriteCredential(filepath.Join(dir, "broker"), brokerCred, nil); err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "--listen", addr, "--cert", filepath.Join(dir, "source", "cert.pem"), "--key", filepath.Join(dir, "source", "key.pem"),
		"--client-ca", filepath.Join(dir, "source-ca", "ca.pem"))
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if !bufio.NewScanner(stdout).Scan() {
		t.Fatal("the remote source did not start")
	}
	conf := filepath.Join(dir, "sources.yaml")
	_ = os.WriteFile(conf, []byte(fmt.Sprintf(`sources:
  - service: relais.familyquotient.v1.FamilyQuotientService
    id: caf-remote
    kind: remote
    addr: %s
    server_name: localhost
    ca_file: %s
    cert_file: %s
    key_file: %s
    timeout: 2s
`, addr, filepath.Join(dir, "source-ca", "ca.pem"), filepath.Join(dir, "broker", "cert.pem"), filepath.Join(dir, "broker", "key.pem"))), 0o600)

	d := startDevIn(t, t.TempDir(), "--sources", conf)
	call := strings.Replace(d.firstCall, `"birth_name":"DUPONT","given_names":["Zoé"],"sex":"SEX_FEMALE","birth_date":"1984-03-12","birth_place_cog":"75056"`,
		`"birth_name":"LEBLANC","given_names":["Camille"],"sex":"SEX_FEMALE","birth_date":"1985-06-01","birth_place_cog":"33063"`, 1)
	out, err := shell(t, call)
	if err != nil || !strings.Contains(out, `"value": 820`) || !strings.Contains(out, `"sourceId": "exemple-caf"`) || !strings.Contains(out, "BORDEAUX") {
		t.Fatalf("full consumer through the remote source: %v\n%s", err, out)
	}
	limited := strings.ReplaceAll(call, "mairie-exemple", "ccas-limite")
	limited = strings.Replace(limited, "tarification_sociale", "aide_sociale_facultative", 1)
	out, err = shell(t, limited)
	if err != nil || !strings.Contains(out, `"value": 820`) || strings.Contains(out, "BORDEAUX") || strings.Contains(out, "children") {
		t.Fatalf("limited consumer through the remote source: %v\n%s", err, out)
	}
	admin := fmt.Sprintf("--admin-addr %s --operator-dir %s", d.adminAddr, filepath.Join(d.dataDir, "dev", "operators", "admin"))
	if out, err := shell(t, "relaisctl sources list "+admin); err != nil || !strings.Contains(out, "caf-remote") {
		t.Fatalf("sources list: %v\n%s", err, out)
	}
}
