package seal_test

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/audit/seal"
)

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

// build returns the export of a chain of n records with a checkpoint
// every `every` and one at the end, signed by s, starting after
// boundary (0: from the genesis).
func build(t *testing.T, s seal.Signer, chain string, from, n, every int, prev [32]byte) []seal.Entry {
	t.Helper()
	ctx := context.Background()
	var out []seal.Entry
	for i := from; i <= n; i++ {
		_, raw, sum, err := seal.Seal(chain, uint64(i), prev, record(i))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, seal.RecordEntry(raw))
		prev = sum
		if i%every == 0 || i == n {
			c, err := seal.Sign(ctx, s, seal.Checkpoint{Chain: chain, Seq: uint64(i), Head: seal.Hex(sum), Time: t0})
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, seal.CheckpointEntry(c))
		}
	}
	return out
}

func verify(s seal.Signer, entries []seal.Entry, expected ...seal.Checkpoint) *seal.Report {
	v := seal.NewVerifier(s.Public())
	for _, c := range expected {
		v.Expect(c)
	}
	for _, e := range entries {
		if !v.Add(e) {
			break
		}
	}
	return v.Report()
}

// at finds the index of record seq (or of the checkpoint at seq).
func at(t *testing.T, entries []seal.Entry, seq uint64, checkpoint bool) int {
	t.Helper()
	for i, e := range entries {
		if checkpoint && e.Checkpoint != nil && e.Checkpoint.Seq == seq {
			return i
		}
		if !checkpoint && e.Record != nil {
			s, err := seal.Unseal(e.Record)
			if err == nil && s.Seq == seq {
				return i
			}
		}
	}
	t.Fatalf("no entry for seq %d", seq)
	return -1
}

func without(entries []seal.Entry, i ...int) []seal.Entry {
	var out []seal.Entry
	for j, e := range entries {
		drop := false
		for _, k := range i {
			drop = drop || j == k
		}
		if !drop {
			out = append(out, e)
		}
	}
	return out
}

// rechain rewrites record from and every record after it with a valid
// chain, and re-signs every checkpoint with k: a careful forger.
func rechain(t *testing.T, entries []seal.Entry, from uint64, k seal.Signer) []seal.Entry {
	t.Helper()
	var out []seal.Entry
	var prev [32]byte
	heads := map[uint64]string{}
	for _, e := range entries {
		if e.Checkpoint != nil {
			c := *e.Checkpoint
			if h, ok := heads[c.Seq]; ok {
				c.Head = h
			}
			c, _ = seal.Sign(context.Background(), k, c)
			out = append(out, seal.CheckpointEntry(c))
			continue
		}
		s, _ := seal.Unseal(e.Record)
		if s.Seq < from {
			prev, _ = seal.ParseHash(s.Hash)
			out = append(out, e)
			continue
		}
		if s.Seq == from {
			s.Record.Purpose = "forged"
		}
		_, raw, sum, _ := seal.Seal(s.Chain, s.Seq, prev, s.Record)
		prev = sum
		heads[s.Seq] = seal.Hex(sum)
		out = append(out, seal.RecordEntry(raw))
	}
	return out
}

func TestVerifierNamesTheFirstBadSeq(t *testing.T) {
	k, foreign := newSigner(t), newSigner(t)
	log := build(t, k, "", 1, 35, 10, seal.ZeroHash)
	if rep := verify(k, log); !rep.OK() || rep.Records != 35 || rep.Checkpoints != 4 || rep.FirstSeq != 1 || rep.LastSeq != 35 {
		t.Fatalf("untouched: %+v", rep)
	}
	clone := func() []seal.Entry {
		out := make([]seal.Entry, len(log))
		for i, e := range log {
			out[i] = seal.Entry{Record: bytes.Clone(e.Record), Checkpoint: e.Checkpoint}
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		tamper  func([]seal.Entry) []seal.Entry
		pub     seal.Signer
		wantSeq uint64
	}{
		{"one byte flipped inside a record", func(e []seal.Entry) []seal.Entry {
			r := e[at(t, e, 17, false)].Record
			r[bytes.Index(r, []byte("tarification"))] = 'T'
			return e
		}, k, 17},
		{"a record deleted", func(e []seal.Entry) []seal.Entry { return without(e, at(t, e, 12, false)) }, k, 12},
		{"two records swapped", func(e []seal.Entry) []seal.Entry {
			i, j := at(t, e, 20, false), at(t, e, 21, false)
			e[i], e[j] = e[j], e[i]
			return e
		}, k, 20},
		{"a record inserted (a copy of the last)", func(e []seal.Entry) []seal.Entry {
			return append(e, e[at(t, e, 35, false)])
		}, k, 36},
		{"tail truncated after a checkpoint", func(e []seal.Entry) []seal.Entry {
			return append(e[:at(t, e, 31, false)], e[len(e)-1])
		}, k, 31},
		{"verified with a foreign key", func(e []seal.Entry) []seal.Entry { return e }, foreign, 10},
		{"checkpoints re-signed with a foreign key", func(e []seal.Entry) []seal.Entry { return rechain(t, e, 5, foreign) }, k, 10},
		{"a checkpoint moved ahead of records it does not match", func(e []seal.Entry) []seal.Entry {
			i := at(t, e, 20, true)
			c := *e[i].Checkpoint
			c.Seq = 19
			c, _ = seal.Sign(context.Background(), k, c) // the key holder's own mistake
			e[i] = seal.CheckpointEntry(c)
			return e
		}, k, 19},
		{"an unreadable record", func(e []seal.Entry) []seal.Entry {
			e[at(t, e, 8, false)].Record = []byte(`{"seq":`)
			return e
		}, k, 8},
		{"the first records missing without a boundary", func(e []seal.Entry) []seal.Entry {
			return e[at(t, e, 4, false):]
		}, k, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := verify(tc.pub, tc.tamper(clone()))
			if rep.OK() || rep.BadSeq != tc.wantSeq {
				t.Fatalf("report %+v, want a failure at seq %d", rep, tc.wantSeq)
			}
			t.Logf("seq %d: %s", rep.BadSeq, rep.Problem)
		})
	}
	if rep := verify(k, log); !rep.OK() {
		t.Fatalf("original after tampering with copies: %+v", rep)
	}
}

func TestVerifierBoundary(t *testing.T) {
	k := newSigner(t)
	full := build(t, k, "", 1, 30, 10, seal.ZeroHash)
	r12, _ := seal.Unseal(full[at(t, full, 12, false)].Record)
	b, _ := seal.Sign(context.Background(), k, seal.Checkpoint{Seq: 12, Head: r12.Hash, Time: t0, Boundary: true})
	purged := append([]seal.Entry{seal.CheckpointEntry(b)}, full[at(t, full, 13, false):]...)
	rep := verify(k, purged)
	if !rep.OK() || rep.FirstSeq != 13 || rep.Records != 18 || rep.Chains[0].Boundary != 12 {
		t.Fatalf("after a boundary: %+v", rep)
	}
	// Records left before the boundary are ignored.
	if rep := verify(k, slices.Concat(full[:at(t, full, 5, false)], purged)); !rep.OK() || rep.FirstSeq != 13 {
		t.Fatalf("records before the boundary: %+v", rep)
	}
	// An exported checkpoint purged since is not a truncation.
	early := *full[at(t, full, 10, true)].Checkpoint
	if rep := verify(k, purged, early); !rep.OK() {
		t.Fatalf("exported checkpoint before the boundary: %+v", rep)
	}
	// A record deleted just after the boundary.
	if rep := verify(k, without(purged, 1)); rep.OK() || rep.BadSeq != 13 {
		t.Fatalf("record after the boundary deleted: %+v", rep)
	}
	// A forged boundary (foreign key) is refused.
	fb, _ := seal.Sign(context.Background(), newSigner(t), b)
	if rep := verify(k, slices.Concat([]seal.Entry{seal.CheckpointEntry(fb)}, purged[1:])); rep.OK() || rep.BadSeq != 12 {
		t.Fatalf("forged boundary: %+v", rep)
	}
}

func TestVerifierExportedCheckpointsCatchATruncation(t *testing.T) {
	k := newSigner(t)
	full := build(t, k, "", 1, 30, 10, seal.ZeroHash)
	archive := []seal.Checkpoint{*full[at(t, full, 10, true)].Checkpoint, *full[at(t, full, 20, true)].Checkpoint, *full[at(t, full, 30, true)].Checkpoint}
	cut := full[:at(t, full, 21, false)] // records and checkpoints after 20 gone together
	if rep := verify(k, cut); !rep.OK() {
		t.Fatalf("the truncation is invisible without the archive: %+v", rep)
	}
	rep := verify(k, cut, archive...)
	if rep.OK() || rep.BadSeq != 21 || !strings.Contains(rep.Problem, "exported") {
		t.Fatalf("with the archive: %+v", rep)
	}
	if rep := verify(k, full, archive...); !rep.OK() {
		t.Fatalf("untouched log against its archive: %+v", rep)
	}
	forged := archive[1]
	forged.Head = strings.Repeat("0", 64)
	if rep := verify(k, full, forged); rep.OK() || rep.BadSeq != 20 {
		t.Fatalf("an archived checkpoint with a bad signature: %+v", rep)
	}
}

func TestVerifierChains(t *testing.T) {
	k := newSigner(t)
	a, b := build(t, k, "a", 1, 12, 5, seal.ZeroHash), build(t, k, "b", 1, 7, 5, seal.ZeroHash)
	var mixed []seal.Entry
	for i := range max(len(a), len(b)) {
		if i < len(a) {
			mixed = append(mixed, a[i])
		}
		if i < len(b) {
			mixed = append(mixed, b[i])
		}
	}
	rep := verify(k, mixed)
	if !rep.OK() || rep.Records != 19 || len(rep.Chains) != 2 || rep.Chains[0].LastSeq != 12 || rep.Chains[1].LastSeq != 7 {
		t.Fatalf("two chains: %+v", rep)
	}
	// A record of chain b moved into chain a's place: each chain is its own.
	bad := append([]seal.Entry(nil), mixed...)
	bad = without(bad, at(t, bad, 3, false)) // the first seq 3 is chain a's
	if rep := verify(k, bad); rep.OK() || rep.Chain != "a" || rep.BadSeq != 3 {
		t.Fatalf("chain a's record 3 deleted: %+v", rep)
	}
}

func TestExportRoundTripKeepsTheBytes(t *testing.T) {
	k := newSigner(t)
	log := build(t, k, "", 1, 12, 5, seal.ZeroHash)
	var buf bytes.Buffer
	w := seal.NewWriter(&buf)
	for _, e := range log {
		if err := w.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	if w.N != len(log) || strings.Count(buf.String(), "\n") != len(log) {
		t.Fatalf("%d entries written, %d lines", w.N, strings.Count(buf.String(), "\n"))
	}
	i := 0
	err := seal.ReadExport(bytes.NewReader(buf.Bytes()), func(e seal.Entry) error {
		if !bytes.Equal(e.Record, log[i].Record) {
			t.Errorf("entry %d: record bytes changed:\n%s\n%s", i, e.Record, log[i].Record)
		}
		i++
		return nil
	})
	if err != nil || i != len(log) {
		t.Fatalf("read back %d entries: %v", i, err)
	}
	rep, err := seal.VerifyExport(bytes.NewReader(buf.Bytes()), k.Public())
	if err != nil || !rep.OK() || rep.Records != 12 {
		t.Fatalf("verify export: %+v, %v", rep, err)
	}
	for _, bad := range []string{"not json\n", `{"record":{"seq":1},"checkpoint":{"seq":1}}` + "\n", "{}\n"} {
		if _, err := seal.VerifyExport(strings.NewReader(bad), k.Public()); err == nil {
			t.Errorf("export %q accepted", bad)
		}
	}
}
