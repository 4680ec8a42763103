package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/audit/audittest"
	"github.com/relais-broker/relais/broker/audit/seglog"
	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/internal/devenv"
)

// siretFor returns a valid SIRET made from i.
func siretFor(t *testing.T, i int) string {
	t.Helper()
	for c := 0; c < 10; c++ {
		s := fmt.Sprintf("2175%09d%d", i, c)
		if identity.ValidSIRET(s) == nil {
			return s
		}
	}
	t.Fatalf("no SIRET for %d", i)
	return ""
}

// TestBackupOfARunningBrokerRestoresAndServes takes an online backup
// while writers add audit records and consumers (a bounded load), checks
// that the snapshot verifies, restores it into a fresh directory, and
// serves the restored stores: registry read, audit log verified online,
// new records appended.
func TestBackupOfARunningBrokerRestoresAndServes(t *testing.T) {
	t.Setenv(envConfig, filepath.Join(t.TempDir(), "none.yaml"))
	keys := newKeys(t)
	caDir := t.TempDir()
	b := startBroker(t, t.TempDir(), keys, caDir)
	b.seed(t, "21750000500012", 50)

	const writers, perWriter, consumers = 4, 400, 100
	var appended, added atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, writers+1)
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				if ctx.Err() != nil {
					return
				}
				if err := b.log.Append(ctx, audittest.Record(1000+w*perWriter+i)); err != nil {
					errs <- err
					return
				}
				appended.Add(1)
			}
		})
	}
	wg.Go(func() {
		for i := range consumers {
			if _, err := b.reg.AddConsumer(ctx, registry.Consumer{SIRET: siretFor(t, 1000+i), Name: fmt.Sprintf("Commune %d", i), Status: registry.StatusActive}); err != nil {
				errs <- err
				return
			}
			added.Add(1)
		}
	})
	// The backup starts once the load runs, with records enough that the
	// audit export spans several messages of the stream (~740 bytes a
	// record, 256 KiB a message).
	deadline := time.Now().Add(10 * time.Second)
	for appended.Load() < 800 || added.Load() < 5 {
		if time.Now().After(deadline) {
			t.Fatal("the load did not start")
		}
		time.Sleep(time.Millisecond)
	}
	atStart := appended.Load()
	out := filepath.Join(t.TempDir(), "backup")
	code, stdout, errOut := b.ctl(t, "backup", "--out", out, "--public-key", b.pub)
	atEnd := appended.Load()
	if code != 0 || !strings.HasPrefix(stdout, "OK: backup in "+out) || !strings.Contains(stdout, "signed checkpoints verified") {
		t.Fatalf("backup: %d %s %s", code, stdout, errOut)
	}
	t.Logf("backup under load: %d records appended while it ran (%d before); %s", atEnd-atStart, atStart, strings.TrimSpace(stdout))
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, f := range []string{devenv.RegistryFile, devenv.AuditBackupFile, manifestFile} {
		st, err := os.Stat(filepath.Join(out, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, st, err)
		}
	}
	// The audit snapshot spans several messages of the stream.
	if st, _ := os.Stat(filepath.Join(out, devenv.AuditBackupFile)); st.Size() <= 256<<10 {
		t.Fatalf("audit snapshot of %d bytes: one chunk only, the test proves less than it says", st.Size())
	}
	// The snapshot verifies offline too, with the tools a third party has.
	if code, vout, _ := ctl(t, "audit", "verify", "--file", filepath.Join(out, devenv.AuditBackupFile), "--public-key", b.pub); code != 0 || !strings.HasPrefix(vout, "OK:") {
		t.Fatalf("verify the snapshot: %d %s", code, vout)
	}

	// Refusals change nothing.
	if code, _, errOut := b.ctl(t, "backup", "--out", out, "--public-key", b.pub); code != 1 || !strings.Contains(errOut, "not empty") {
		t.Fatalf("backup into a used directory: %d %s", code, errOut)
	}
	if code, _, errOut := relaisctl(t, "restore", "--from", out, "--data-dir", b.dataDir, "--public-key", b.pub); code != 1 || !strings.Contains(errOut, "already holds") {
		t.Fatalf("restore over a live directory: %d %s", code, errOut)
	}
	damaged := filepath.Join(t.TempDir(), "damaged")
	if err := os.MkdirAll(damaged, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{devenv.RegistryFile, devenv.AuditBackupFile, manifestFile} {
		raw, _ := os.ReadFile(filepath.Join(out, f))
		if f == devenv.AuditBackupFile {
			raw[len(raw)/2] ^= 0xff
		}
		_ = os.WriteFile(filepath.Join(damaged, f), raw, 0o600)
	}
	fresh := filepath.Join(t.TempDir(), "restored")
	if code, _, errOut := relaisctl(t, "restore", "--from", damaged, "--data-dir", fresh, "--public-key", b.pub); code != 1 || !strings.Contains(errOut, "damaged") {
		t.Fatalf("restore of a damaged backup: %d %s", code, errOut)
	}
	if _, err := os.Stat(fresh); !os.IsNotExist(err) {
		t.Fatal("a refused restore created the data directory")
	}

	// Restore into a fresh directory, and serve from it.
	code, stdout, errOut = relaisctl(t, "restore", "--from", out, "--data-dir", fresh, "--public-key", b.pub)
	if code != 0 || !strings.HasPrefix(stdout, "OK: restored") {
		t.Fatalf("restore: %d %s %s", code, stdout, errOut)
	}
	// The restored directory verifies offline, and is the backup's export.
	if code, vout, _ := ctl(t, "audit", "verify", "--dir", filepath.Join(fresh, devenv.AuditDir), "--public-key", b.pub); code != 0 || !strings.HasPrefix(vout, "OK:") {
		t.Fatalf("verify the restored directory: %d %s", code, vout)
	}
	var restored bytes.Buffer
	if _, err := seglog.ExportDir(context.Background(), filepath.Join(fresh, devenv.AuditDir), &restored); err != nil {
		t.Fatal(err)
	}
	if backedUp, _ := os.ReadFile(filepath.Join(out, devenv.AuditBackupFile)); !bytes.Equal(restored.Bytes(), backedUp) {
		t.Fatalf("the restored directory exports %d bytes, the backup holds %d, or they differ", restored.Len(), len(backedUp))
	}
	b.stop(t)
	r := startBroker(t, fresh, keys, caDir)
	code, list, _ := r.ctl(t, "consumers", "list", "-o", "jsonl")
	n := strings.Count(list, "\n")
	if code != 0 || n < 6 || n > consumers+1 || !strings.Contains(list, "21750000500012") {
		t.Fatalf("restored registry: %d consumers\n%s", n, list)
	}
	if err := r.log.Append(context.Background(), audittest.Record(99999)); err != nil {
		t.Fatalf("the restored log takes new records: %v", err)
	}
	code, vout, errOut := r.ctl(t, "audit", "verify", "--online", "--public-key", r.pub)
	if code != 0 || !strings.HasPrefix(vout, "OK:") {
		t.Fatalf("verify the restored broker online: %d %s %s", code, vout, errOut)
	}
	t.Logf("restored broker: %d consumers, %s", n, strings.TrimSpace(vout))
}
