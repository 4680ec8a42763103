package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/metrics"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/reminders"
)

func TestRemindersConfigIsChecked(t *testing.T) {
	t.Parallel()
	ok := RemindersConfig{Enabled: true, From: "relais@operateur.example", CaptureDir: t.TempDir()}
	if err := ok.validate(); err != nil {
		t.Fatal(err)
	}
	if err := (RemindersConfig{}).validate(); err != nil {
		t.Fatalf("disabled: %v", err)
	}
	for name, tt := range map[string]struct {
		mutate func(*RemindersConfig)
		want   string
	}{
		"no sender":     {func(c *RemindersConfig) { c.From = "" }, "reminders.from"},
		"bad schedule":  {func(c *RemindersConfig) { c.ScheduleDays = []int{7, 7} }, "reminders.schedule_days"},
		"no mail route": {func(c *RemindersConfig) { c.CaptureDir = "" }, "set smtp.addr"},
		"both routes":   {func(c *RemindersConfig) { c.SMTP.Addr = "mail.example:587" }, "exclusive"},
		"secret missing": {func(c *RemindersConfig) {
			c.CaptureDir, c.SMTP = "", ReminderSMTPConfig{Addr: "mail.example:587", Username: "u", PasswordFile: "/nonexistent/x"}
		}, "password_file"},
		"ca file missing": {func(c *RemindersConfig) {
			c.CaptureDir, c.SMTP = "", ReminderSMTPConfig{Addr: "mail.example:587", CAFile: "/nonexistent/ca.pem"}
		}, "ca_file"},
	} {
		c := ok
		tt.mutate(&c)
		if err := c.validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error naming %q", name, err, tt.want)
		}
	}
}

// TestStartRemindersMailsUnderTheLease wires the job the way runStack
// does, on real bbolt stores with the dev mode's capture, and waits for
// the first pass's mail.
func TestStartRemindersMailsUnderTheLease(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st, err := openBoltStores(dir, catalog.Default(), time.Now, boltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const siret = "21990000100005"
	if _, err := st.Registry.AddConsumer(ctx, registry.Consumer{SIRET: siret, Name: "Mairie d'Exemple", Status: registry.StatusActive,
		Contacts: []registry.Contact{{Name: "DSI (fictive)", Email: "dsi@mairie-exemple.example"}}}); err != nil {
		t.Fatal(err)
	}
	// A 29-day certificate: only dev mode's any-lifetime setting sends its
	// 30-day step now.
	if err := st.Registry.PutCredential(ctx, registry.CredentialRecord{Serial: "a01", Kind: "consumer", Subject: siret, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(29 * 24 * time.Hour), Status: registry.CredentialActive, IssuedBy: "dev"}); err != nil {
		t.Fatal(err)
	}
	cfg := devReminders(dir)
	log := &audit.Memory{}
	g, gctx := errgroup.WithContext(ctx)
	job, closeStore, err := startReminders(gctx, g, cfg, st, dir, log, metrics.New(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// The record is written after the mail: wait for it, then read the mail.
	deadline := time.Now().Add(10 * time.Second)
	var ov reminders.Overview
	for {
		ov, err = job.Overview(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ov.Records) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(ov.Records) != 1 || ov.Records[0].State != reminders.StateSent || ov.Records[0].Step != 30 {
		t.Fatalf("overview: %+v", ov)
	}
	files, _ := filepath.Glob(filepath.Join(cfg.CaptureDir, "*.eml"))
	if len(files) != 1 {
		t.Fatalf("captured mails: %v", files)
	}
	raw, _ := os.ReadFile(files[0])
	if !strings.Contains(string(raw), "dsi@mairie-exemple.example") || !strings.Contains(string(raw), "30-day reminder") {
		t.Fatalf("captured mail:\n%s", raw)
	}
	cancel()
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := closeStore(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, ReminderFile)); err != nil {
		t.Fatal(err)
	}
}
