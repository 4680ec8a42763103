package admin_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/relais-broker/relais/broker/admin"
	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/registry/boltreg"
	"github.com/relais-broker/relais/broker/reminders"
	"github.com/relais-broker/relais/broker/reminders/boltrem"
	"github.com/relais-broker/relais/certs"
	"github.com/relais-broker/relais/internal/tlstest"
	adminv1 "github.com/relais-broker/relais/proto/relais/admin/v1"
)

// TestListReminders serves a real reminder job (real registry and store
// files, the capture mailer) over the admin API on real TLS.
func TestListReminders(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	reg, err := boltreg.Open(filepath.Join(dir, "registry.db"), boltreg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	now := time.Now().UTC().Truncate(time.Second)
	const other = "21990000200003"
	for _, c := range []registry.Consumer{
		{SIRET: siretA, Name: "Mairie", Status: registry.StatusActive, Contacts: []registry.Contact{{Name: "DSI", Email: "dsi@mairie.example"}}},
		{SIRET: other, Name: "CCAS", Status: registry.StatusActive, Contacts: []registry.Contact{{Name: "Accueil", Email: "accueil@ccas.example"}}},
	} {
		if _, err := reg.AddConsumer(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range []struct {
		siret string
		left  time.Duration
	}{{siretA, 6 * 24 * time.Hour}, {other, 40 * 24 * time.Hour}} {
		if err := reg.PutCredential(ctx, registry.CredentialRecord{Serial: []string{"a01", "b01"}[i], Kind: "consumer", Subject: c.siret,
			NotBefore: now.Add(-60 * 24 * time.Hour), NotAfter: now.Add(c.left), Status: registry.CredentialActive, IssuedBy: "alice"}); err != nil {
			t.Fatal(err)
		}
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
	if rep, err := job.Pass(ctx); err != nil || rep.Sent != 1 {
		t.Fatalf("pass: %+v %v", rep, err)
	}

	pki := tlstest.New(t)
	revoked := certs.NewRevocations()
	auditLog := &audit.Memory{}
	s, err := admin.New(admin.Config{Issuer: pki.CA, Revocations: revoked, Audit: auditLog, Registry: reg, Reminders: job})
	if err != nil {
		t.Fatal(err)
	}
	addr := tlstest.Serve(t, s.NewGRPCServer(pki.ServerCreds(certs.RejectRevoked(revoked))))
	client := adminv1.NewReminderAdminServiceClient(pki.Dial(t, addr, pki.Issue(t, identity.KindOperator, "alice")))
	resp, err := client.ListReminders(ctx, &adminv1.ListRemindersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetSent()) != 1 || len(resp.GetUpcoming()) != 2 {
		t.Fatalf("listing: %v", resp)
	}
	a := resp.GetSent()[0]
	if a.GetConsumerSiret() != siretA || a.GetKind() != "certificate" || a.GetRef() != "a01" || a.GetStepDays() != 7 || a.GetState() != "sent" ||
		a.GetRecipients() != 1 || a.GetSentAt() == nil || !a.GetNotAfter().AsTime().Equal(now.Add(6*24*time.Hour)) {
		t.Errorf("attempt %v", a)
	}
	for _, u := range resp.GetUpcoming() {
		switch u.GetConsumerSiret() {
		case siretA:
			if u.GetDueStepDays() != 0 || u.GetNextStepDays() != 1 {
				t.Errorf("upcoming %v", u)
			}
		case other:
			if u.GetDueStepDays() != 0 || u.GetNextStepDays() != 30 || !u.GetNextAt().AsTime().Equal(now.Add(10*24*time.Hour)) {
				t.Errorf("upcoming %v", u)
			}
		}
	}
	if strings.Contains(resp.String(), "@") {
		t.Errorf("the listing names a contact: %v", resp)
	}
	only, err := client.ListReminders(ctx, &adminv1.ListRemindersRequest{ConsumerSiret: other})
	if err != nil || len(only.GetSent()) != 0 || len(only.GetUpcoming()) != 1 {
		t.Fatalf("filtered: %v %v", only, err)
	}
	if _, err := client.ListReminders(ctx, &adminv1.ListRemindersRequest{ConsumerSiret: "123"}); err == nil {
		t.Fatal("a bad SIRET filter was accepted")
	} else if code, reason, fv := reasonOf(err); code != codes.InvalidArgument || reason != "invalid_request" || len(fv) != 1 || fv[0].GetField() != "consumer_siret" {
		t.Fatalf("bad filter: %v %s %v", code, reason, fv)
	}
	consumer := adminv1.NewReminderAdminServiceClient(pki.Dial(t, addr, pki.Issue(t, identity.KindConsumer, siretA)))
	if _, err := consumer.ListReminders(ctx, &adminv1.ListRemindersRequest{}); err == nil {
		t.Fatal("a consumer listed the reminders")
	}
	n := 0
	for _, r := range auditLog.Records() {
		if r.Method == "/relais.admin.v1.ReminderAdminService/ListReminders" && r.Operator == "alice" {
			n++
		}
	}
	if n != 3 {
		t.Errorf("%d traced listings by alice, want 3", n)
	}
}
