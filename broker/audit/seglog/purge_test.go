package seglog

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/audit"
)

// TestPurgeRemovesWholeSegments: retention hides the old prefix at once,
// deletes the segments wholly inside it (and the torn tails saved from
// them), keeps the one that straddles the boundary, and a crash between
// the boundary and the deletion is finished at the next open.
func TestPurgeRemovesWholeSegments(t *testing.T) {
	k := testKey(t)
	dir := filepath.Join(t.TempDir(), "audit")
	now := t0.Add(400 * 24 * time.Hour)
	opts := Options{SigningKey: k, CheckpointEvery: 5, Clock: func() time.Time { return now }, Store: StoreOptions{SegmentSize: 4 << 10}}
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 1; i <= 40; i++ {
		r := testRecord(i)
		if i > 22 {
			r.Time = now
		}
		if err := l.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	before := len(l.Store().segs)
	saved := map[uint64][2]string{} // segment number → name, bytes
	for _, sg := range l.Store().segs {
		b, err := os.ReadFile(filepath.Join(dir, sg.name))
		if err != nil {
			t.Fatal(err)
		}
		saved[sg.num] = [2]string{sg.name, string(b)}
	}
	first := l.Store().segs[0].name
	if err := os.WriteFile(filepath.Join(dir, first+".torn-100"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := l.Purge(ctx)
	if err != nil || n != 22 {
		t.Fatalf("purge: %d, %v; want 22", n, err)
	}
	after := l.Store().segs
	if len(after) >= before || after[0].first > 23 {
		t.Fatalf("segments %d → %d, first now from seq %d", before, len(after), after[0].first)
	}
	if _, err := os.Stat(filepath.Join(dir, first+".torn-100")); !os.IsNotExist(err) {
		t.Fatalf("the torn tail of a purged segment is still there: %v", err)
	}
	got, err := l.Query(ctx, audit.Filter{Limit: 100})
	if err != nil || len(got) != 18 || got[0].RequestID != "req-23" {
		t.Fatalf("after the purge: %d records, %v", len(got), err)
	}
	if subj, _ := l.Subject(ctx, testRecord(3).Subject); len(subj) == 0 || subj[0].Time != now {
		t.Fatalf("subject after the purge: %+v", subj)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep, err := Verify(dir, k.Public().(ed25519.PublicKey)); err != nil || !rep.OK() || rep.FirstSeq != 23 || rep.LastSeq != 40 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
	// A crash after the boundary, before the last deletions (they go in
	// order): put the last purged segment back; the next open finishes.
	back := saved[after[0].num-1]
	stale := filepath.Join(dir, back[0])
	if err := os.WriteFile(stale, []byte(back[1]), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err = Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("the segment below the boundary survived the open: %v", err)
	}
}
