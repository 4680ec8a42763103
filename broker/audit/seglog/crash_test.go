package seglog

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/audit"
)

// TestCrashChild is the child of TestAcknowledgedRecordsSurviveSIGKILL:
// it appends under load through auditlog.Log and prints each
// acknowledged request id, until it is killed.
func TestCrashChild(t *testing.T) {
	dir, seed := os.Getenv("SEGLOG_CRASH_DIR"), os.Getenv("SEGLOG_CRASH_SEED")
	if dir == "" {
		t.Skip("run by TestAcknowledgedRecordsSurviveSIGKILL")
	}
	s, err := hex.DecodeString(seed)
	if err != nil {
		t.Fatal(err)
	}
	l, err := Open(dir, Options{SigningKey: ed25519.NewKeyFromSeed(s), CheckpointEvery: 50, Store: StoreOptions{SegmentSize: 64 << 10}})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				r := testRecord(i)
				r.RequestID = fmt.Sprintf("r%s-w%d-%d", os.Getenv("SEGLOG_CRASH_ROUND"), w, i)
				if err := l.Append(context.Background(), r); err != nil {
					fmt.Fprintln(os.Stderr, "append:", err)
					return
				}
				mu.Lock()
				fmt.Fprintf(out, "ack %s\n", r.RequestID)
				out.Flush() // the line leaves only after the record is durable
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// TestAcknowledgedRecordsSurviveSIGKILL kills a process appending under
// load: after reopening, every record it acknowledged is there, the
// chain verifies and the index (replayed or rebuilt) finds them.
func TestAcknowledgedRecordsSurviveSIGKILL(t *testing.T) {
	if os.Getenv("SEGLOG_CRASH_DIR") != "" {
		t.Skip("in the child")
	}
	k := testKey(t)
	dir := filepath.Join(t.TempDir(), "audit")
	for round := range 2 { // the second kill lands on a log that already had one
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v")
		cmd.Env = append(os.Environ(), "SEGLOG_CRASH_DIR="+dir, "SEGLOG_CRASH_SEED="+hex.EncodeToString(k.Seed()), fmt.Sprintf("SEGLOG_CRASH_ROUND=%d", round))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acked := map[string]bool{}
		sc := bufio.NewScanner(stdout)
		for sc.Scan() && len(acked) < 1500 {
			if id, ok := strings.CutPrefix(sc.Text(), "ack "); ok {
				acked[id] = true
			}
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		for sc.Scan() { // acknowledged before the kill landed
			if id, ok := strings.CutPrefix(sc.Text(), "ack "); ok {
				acked[id] = true
			}
		}
		_ = cmd.Wait()
		if len(acked) < 1500 {
			t.Fatalf("round %d: the child acknowledged only %d records", round, len(acked))
		}
		rep, err := Verify(dir, k.Public().(ed25519.PublicKey))
		if err != nil || !rep.OK() {
			t.Fatalf("round %d: verify after SIGKILL: %+v, %v", round, rep, err)
		}
		for _, rebuild := range []bool{false, true} {
			if rebuild {
				if err := os.Remove(filepath.Join(dir, indexName)); err != nil {
					t.Fatal(err)
				}
			}
			l, err := Open(dir, Options{SigningKey: k, Store: StoreOptions{SegmentSize: 64 << 10}})
			if err != nil {
				t.Fatalf("round %d: reopen: %v", round, err)
			}
			recs, err := l.Query(context.Background(), audit.Filter{Limit: 1 << 30})
			if err != nil {
				t.Fatal(err)
			}
			have := map[string]bool{}
			for _, r := range recs {
				have[r.RequestID] = true
			}
			missing := 0
			for id := range acked {
				if !have[id] {
					missing++
				}
			}
			subj, err := l.Subject(context.Background(), testRecord(1).Subject)
			if err != nil || len(subj) == 0 {
				t.Fatalf("subject after the crash: %d, %v", len(subj), err)
			}
			start := time.Now()
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if missing > 0 {
				t.Fatalf("round %d (index rebuilt %v): %d acknowledged records are missing of %d", round, rebuild, missing, len(acked))
			}
			t.Logf("round %d (index rebuilt %v): %d acknowledged, %d records in the log, %d segments, close %v", round, rebuild, len(acked), len(recs), len(readSegments(t, dir)), time.Since(start))
		}
	}
}
