package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/admin"
	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/registry/boltreg"
	"github.com/relais-broker/relais/broker/reminders"
	"github.com/relais-broker/relais/broker/reminders/boltrem"
	"github.com/relais-broker/relais/certs"
	"github.com/relais-broker/relais/internal/tlstest"
)

// TestRemindersList runs `relaisctl reminders list` against a real admin
// API serving a real reminder job, after one pass.
func TestRemindersList(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	reg, err := boltreg.Open(filepath.Join(dir, "registry.db"), boltreg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	const siret = "21990000100005"
	if _, err := reg.AddConsumer(ctx, registry.Consumer{SIRET: siret, Name: "Mairie", Status: registry.StatusActive,
		Contacts: []registry.Contact{{Name: "DSI", Email: "dsi@mairie.example"}}}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if err := reg.PutCredential(ctx, registry.CredentialRecord{Serial: "a01", Kind: "consumer", Subject: siret, NotBefore: now.Add(-60 * 24 * time.Hour),
		NotAfter: now.Add(6 * 24 * time.Hour), Status: registry.CredentialActive, IssuedBy: "alice"}); err != nil {
		t.Fatal(err)
	}
	store, err := boltrem.Open(filepath.Join(dir, "reminders.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	capture, err := reminders.NewCapture(filepath.Join(dir, "outbox"))
	if err != nil {
		t.Fatal(err)
	}
	job, err := reminders.New(reminders.Config{Registry: reg, Store: store, Mailer: capture, Audit: &audit.Memory{}, Text: reminders.Text{From: "relais@operateur.example"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := job.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	pki := tlstest.New(t)
	revoked := certs.NewRevocations()
	srv, err := admin.New(admin.Config{Issuer: pki.CA, Revocations: revoked, Audit: &audit.Memory{}, Registry: reg, Reminders: job})
	if err != nil {
		t.Fatal(err)
	}
	addr := tlstest.Serve(t, srv.NewGRPCServer(pki.ServerCreds(certs.RejectRevoked(revoked))))
	opDir := filepath.Join(dir, "operator")
	bundle, _ := pki.CA.TrustBundle(ctx)
	if err := certs.WriteCredential(opDir, pki.Issue(t, identity.KindOperator, "alice"), bundle); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run(ctx, []string{"reminders", "list", "--admin-addr", addr, "--operator-dir", opDir}, &out, &errOut); code != 0 {
		t.Fatalf("reminders list: %d %s", code, errOut.String())
	}
	for _, want := range []string{"SENT", siret, "certificate", "a01", "7d", "sent", "UPCOMING", "1d step on"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("missing %q in:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "@") {
		t.Errorf("the listing names a contact:\n%s", out.String())
	}
	out.Reset()
	if code := run(ctx, []string{"reminders", "list", "-o", "json", "--admin-addr", addr, "--operator-dir", opDir}, &out, &errOut); code != 0 {
		t.Fatalf("reminders list -o json: %d %s", code, errOut.String())
	}
	var listed struct {
		Sent []struct {
			StepDays int    `json:"step_days"`
			State    string `json:"state"`
		} `json:"sent"`
	}
	if err := json.Unmarshal(out.Bytes(), &listed); err != nil || len(listed.Sent) != 1 || listed.Sent[0].StepDays != 7 || listed.Sent[0].State != "sent" {
		t.Fatalf("reminders list -o json: %v\n%s", err, out.String())
	}
	if code := run(ctx, []string{"reminders", "send"}, &out, &errOut); code != 2 {
		t.Fatalf("unknown verb: %d", code)
	}
}
