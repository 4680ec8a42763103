package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDevRemindersAreCapturedAndListed: `relaisd dev` mails the demo
// consumers' contacts before their certificates end, into DIR/dev/outbox
// (dev mode's capture), each mail to its own consumer's contact only, and
// `relaisctl reminders list` shows them sent.
func TestDevRemindersAreCapturedAndListed(t *testing.T) {
	d := startDev(t)
	outbox := filepath.Join(d.dataDir, "dev", "outbox")
	var mails []string
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		mails, _ = filepath.Glob(filepath.Join(outbox, "*.eml"))
		if len(mails) >= 2 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(mails) != 2 {
		t.Fatalf("outbox holds %d mails after 30 s, want one per demo consumer: %v", len(mails), mails)
	}
	contacts := map[string]string{"21990000100005": "dsi@mairie-exemple.example", "21990000200003": "direction@ccas-demoville.example"}
	for _, m := range mails {
		raw, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		text := string(raw)
		for siret, contact := range contacts {
			mine := strings.Contains(filepath.Base(m), siret)
			if got := strings.Contains(text, "To: <"+contact+">"); got != mine {
				t.Fatalf("%s: addressed to %s: %v, want %v\n%s", filepath.Base(m), contact, got, mine, text)
			}
		}
		if !strings.Contains(text, "relaisctl credentials renew") {
			t.Fatalf("%s says nothing of what to do:\n%s", filepath.Base(m), text)
		}
	}
	admin := "--admin-addr " + d.adminAddr + " --operator-dir " + filepath.Join(d.dataDir, "dev", "operators", "admin")
	out, err := shell(t, "relaisctl reminders list "+admin)
	if err != nil || strings.Count(out, " sent ") != 2 {
		t.Fatalf("reminders list: %v\n%s", err, out)
	}
}
