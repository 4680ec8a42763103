package seglog

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/audit/audittest"
	"github.com/relais-broker/relais/broker/audit/seal"
)

// TestTornTailIsCleared cuts the last frame at every byte offset, both
// ways a crash leaves it: the file ending there (an append that grew the
// file) and the rest of the preallocated segment reading as zeros (the
// sectors never written; every header byte, then every 7th). Open must clear the tail, keep the records
// before, save what it cleared, and continue the chain.
func TestTornTailIsCleared(t *testing.T) {
	signer := audittest.NewSigner(t)
	pub := signer.Public()
	dir := filepath.Join(t.TempDir(), "audit")
	st, err := OpenStore(dir, StoreOptions{SegmentSize: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	audittest.Seed(t, st, signer, "", audittest.Records(1, 6), 0)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	segs := readSegments(t, dir)
	last := segs[len(segs)-1]
	name := filepath.Join(dir, last.name)
	full, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	start := 0
	for _, f := range last.frames[:len(last.frames)-1] {
		start += frameSize(len(f.payload))
	}
	end := start + frameSize(len(last.frames[len(last.frames)-1].payload))
	if seq, _ := rawSeq(last.frames[len(last.frames)-1].payload); seq != 6 {
		t.Fatalf("the last frame is record %d", seq)
	}
	// Eight groups in parallel: the opens wait on fsync, not on the CPU.
	for g := range 8 {
		t.Run(fmt.Sprintf("group-%d", g), func(t *testing.T) {
			t.Parallel()
			for cut := start + g; cut < end; cut += 8 {
				tornCut(t, dir, last.name, full, start, end, cut, pub, signer)
			}
		})
	}
}

func tornCut(t *testing.T, dir, lastName string, full []byte, start, end, cut int, pub []byte, signer seal.Ed25519Signer) {
	t.Helper()
	for _, zeros := range []bool{false, true} {
		if zeros && cut-start > frameHeaderSize && (cut-start)%7 != 0 {
			continue // zeros over the payload: every 7th byte is enough
		}
		cp := copyDir(t, dir)
		b := append([]byte(nil), full[:cut]...)
		if zeros {
			b = append(b, make([]byte, len(full)-cut)...)
		}
		if err := os.WriteFile(filepath.Join(cp, lastName), b, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := OpenStore(cp, StoreOptions{SegmentSize: 16 << 10})
		if err != nil {
			t.Fatalf("cut at %d (zeros %v): %v", cut, zeros, err)
		}
		h, _ := st.Head(context.Background())
		if h.Seq != 5 {
			t.Fatalf("cut at %d (zeros %v): head %d, want 5", cut, zeros, h.Seq)
		}
		if reps := st.Repairs(); cut > start && (len(reps) != 1 || reps[0].Offset != int64(start)) {
			t.Fatalf("cut at %d (zeros %v): repairs %+v", cut, zeros, reps)
		}
		// Every 64th cut: the chain continues and verifies, and the
		// index (which had record 6) was rebuilt.
		if (cut-start)%64 == 0 || cut == end-1 {
			r6 := audittest.Record(6)
			r6.RequestID = "req-6-again"
			audittest.Seed(t, st, signer, "", []audit.Record{r6}, 0)
			got, err := st.Query(context.Background(), audit.Filter{})
			if err != nil || len(got) != 6 || got[5].RequestID != "req-6-again" {
				t.Fatalf("cut at %d: query %d records, %v", cut, len(got), err)
			}
			st.Close()
			if rep, err := Verify(cp, ed25519.PublicKey(pub)); err != nil || !rep.OK() || rep.LastSeq != 6 {
				t.Fatalf("cut at %d: verify %+v, %v", cut, rep, err)
			}
			continue
		}
		st.Close()
	}
}

// TestIndexIsRebuilt: a missing, damaged or foreign index is rebuilt
// from the segments; queries and subjects answer the same.
func TestIndexIsRebuilt(t *testing.T) {
	signer := audittest.NewSigner(t)
	dir := filepath.Join(t.TempDir(), "audit")
	open := func() *Store {
		t.Helper()
		st, err := OpenStore(dir, StoreOptions{SegmentSize: 8 << 10})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := open()
	audittest.Seed(t, st, signer, "", audittest.Records(1, 60), 10)
	want, _ := st.Query(context.Background(), audit.Filter{From: audittest.T0.Add(20 * time.Minute)})
	wantSubj, _ := st.Subject(context.Background(), audittest.Record(4).Subject)
	st.Close()
	for _, damage := range []struct {
		name string
		f    func(path string) error
	}{
		{"missing", os.Remove},
		{"garbage", func(p string) error { return os.WriteFile(p, []byte("not a bbolt file at all, surely"), 0o600) }},
		{"dirty across a reboot", func(p string) error { return markDirty(p, "another-boot") }},
	} {
		if err := damage.f(filepath.Join(dir, indexName)); err != nil {
			t.Fatal(err)
		}
		st := open()
		got, err := st.Query(context.Background(), audit.Filter{From: audittest.T0.Add(20 * time.Minute)})
		gotSubj, serr := st.Subject(context.Background(), audittest.Record(4).Subject)
		st.Close()
		if err != nil || serr != nil || len(got) != len(want) || len(got) != 41 || len(gotSubj) != len(wantSubj) || len(gotSubj) == 0 {
			t.Fatalf("index %s: %d records (%v), %d of the subject (%v); want %d, %d", damage.name, len(got), err, len(gotSubj), serr, len(want), len(wantSubj))
		}
	}
}

// markDirty leaves the index as a process of another boot would.
func markDirty(path, boot string) error {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bktMeta).Put(keyState, []byte("dirty\n"+boot)) })
}
