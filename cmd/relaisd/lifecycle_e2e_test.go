package main_test

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestRevokeThroughRelaisctlStopsTheNextCall revokes the full demo
// consumer's credentials with relaisctl while the broker runs: the next
// call with them is refused. The time from the revoke command to the
// refusal is logged.
func TestRevokeThroughRelaisctlStopsTheNextCall(t *testing.T) {
	t.Parallel()
	d := startDev(t)
	if out, err := shell(t, d.firstCall); err != nil {
		t.Fatalf("call before revocation: %v\n%s", err, out)
	}
	operator := filepath.Join(d.dataDir, "dev", "operators", "admin")
	start := time.Now()
	out, err := shell(t, fmt.Sprintf("relaisctl credentials revoke --consumer 21990000100005 --admin-addr %s --operator-dir %s --reason 'test e2e'", d.adminAddr, operator))
	if err != nil || !regexp.MustCompile(`revoked [0-9a-f]+`).MatchString(out) {
		t.Fatalf("relaisctl revoke: %v\n%s", err, out)
	}
	out, err = shell(t, d.firstCall)
	refused := time.Since(start)
	if err == nil {
		t.Fatalf("the revoked credential still works:\n%s", out)
	}
	// A new connection is refused during the handshake (an open one would
	// get credential_revoked on its next call).
	if !strings.Contains(out, "bad certificate") {
		t.Errorf("expected a handshake refusal, got:\n%s", out)
	}
	t.Logf("revocation: %s from the relaisctl command to the refused call (two process starts included)", refused.Round(time.Millisecond))
	// The limited consumer is unaffected.
	limited := strings.ReplaceAll(d.firstCall, "mairie-exemple", "ccas-limite")
	limited = strings.Replace(limited, "tarification_sociale", "aide_sociale_facultative", 1)
	if out, err := shell(t, limited); err != nil {
		t.Fatalf("another consumer's call after the revocation: %v\n%s", err, out)
	}
	// A consumer certificate cannot use the admin API.
	consumer := filepath.Join(d.dataDir, "dev", "consumers", "ccas-limite")
	out, err = shell(t, fmt.Sprintf("relaisctl credentials revoke --consumer 21990000100005 --admin-addr %s --operator-dir %s 2>&1", d.adminAddr, consumer))
	if err == nil || !strings.Contains(out, "credential_invalid") {
		t.Fatalf("a consumer certificate on the admin API: %v\n%s", err, out)
	}
}

// TestRenewThroughTheBroker renews the limited consumer's credential with
// relaisctl (the CredentialService over its own mTLS connection); the new
// certificate replaces the files and works.
func TestRenewThroughTheBroker(t *testing.T) {
	t.Parallel()
	d := startDev(t)
	dir := filepath.Join(d.dataDir, "dev", "consumers", "ccas-limite")
	before, err := shell(t, "openssl x509 -noout -serial -in "+filepath.Join(dir, "cert.pem")+" 2>/dev/null || true")
	if err != nil {
		t.Fatal(err)
	}
	out, err := shell(t, fmt.Sprintf("relaisctl credentials renew --dir %s --broker %s", dir, d.addr))
	if err != nil || !strings.Contains(out, "renewed") {
		t.Fatalf("relaisctl renew: %v\n%s", err, out)
	}
	after, _ := shell(t, "openssl x509 -noout -serial -in "+filepath.Join(dir, "cert.pem")+" 2>/dev/null || true")
	if before != "" && before == after {
		t.Fatalf("cert.pem was not replaced (%s)", after)
	}
	limited := strings.ReplaceAll(d.firstCall, "mairie-exemple", "ccas-limite")
	limited = strings.Replace(limited, "tarification_sociale", "aide_sociale_facultative", 1)
	if out, err := shell(t, limited); err != nil {
		t.Fatalf("call with the renewed credential: %v\n%s", err, out)
	}
}
