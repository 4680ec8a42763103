package seglog

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/audit/seal"
)

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func testKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testRecord(i int) audit.Record {
	return audit.Record{
		Time: t0.Add(time.Duration(i) * time.Minute), RequestID: fmt.Sprintf("req-%d", i), Consumer: "21990000100005",
		Method: "/relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient", Purpose: "tarification_sociale",
		Subject: fmt.Sprintf("%064x", i%3), FieldsReturned: []string{"family_quotient.value"}, Code: "OK",
	}
}

// writeTestLog writes n records through the Log with a checkpoint every
// 10, in small segments (a few records each), and closes it.
func writeTestLog(t *testing.T, n int, k ed25519.PrivateKey) string {
	t.Helper()
	return writeTestLogSize(t, n, k, 4<<10)
}

func writeTestLogSize(t *testing.T, n int, k ed25519.PrivateKey, size int64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "audit")
	l, err := Open(dir, Options{SigningKey: k, CheckpointEvery: 10, Clock: func() time.Time { return t0 }, Store: StoreOptions{SegmentSize: size}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		if err := l.Append(context.Background(), testRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// tframe is one frame as an attacker with the directory sees it.
type tframe struct {
	typ     byte
	payload []byte
	keepCRC uint32 // when set, written instead of the right checksum
}

type tsegment struct {
	name   string
	frames []tframe
}

// readSegments reads every segment's frames.
func readSegments(t *testing.T, dir string) []tsegment {
	t.Helper()
	segs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []tsegment
	for _, sg := range segs {
		raw, err := os.ReadFile(filepath.Join(dir, sg.name))
		if err != nil {
			t.Fatal(err)
		}
		ts := tsegment{name: sg.name}
		for off := 0; off+frameHeaderSize <= len(raw) && raw[off] != 0; {
			n := int(binary.LittleEndian.Uint32(raw[off+1:]))
			ts.frames = append(ts.frames, tframe{typ: raw[off], payload: append([]byte(nil), raw[off+frameHeaderSize:off+frameHeaderSize+n]...)})
			off += frameHeaderSize + n
		}
		out = append(out, ts)
	}
	return out
}

// writeSegments writes the frames back, with correct checksums unless
// a frame keeps a stale one.
func writeSegments(t *testing.T, dir string, segs []tsegment) {
	t.Helper()
	for _, ts := range segs {
		var buf []byte
		for _, f := range ts.frames {
			at := len(buf)
			buf = appendFrame(buf, f.typ, f.payload)
			if f.keepCRC != 0 {
				binary.LittleEndian.PutUint32(buf[at+5:], f.keepCRC)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, ts.name), buf, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy")
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		raw, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// tamperDir lets f change the frames of a copy of the log.
func tamperDir(t *testing.T, dir string, f func(segs []tsegment) []tsegment) string {
	t.Helper()
	cp := copyDir(t, dir)
	writeSegments(t, cp, f(readSegments(t, cp)))
	return cp
}

// findRecord returns the segment and frame index of record seq.
func findRecord(t *testing.T, segs []tsegment, seq uint64) (int, int) {
	t.Helper()
	for i, s := range segs {
		for j, f := range s.frames {
			if got, ok := rawSeq(f.payload); ok && f.typ == frameRecord && got == seq {
				return i, j
			}
		}
	}
	t.Fatalf("record %d not found", seq)
	return 0, 0
}

func mustVerify(t *testing.T, dir string, pub ed25519.PublicKey) *seal.Report {
	t.Helper()
	rep, err := Verify(dir, pub)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestVerifyDetectsEveryTampering(t *testing.T) {
	k := testKey(t)
	pub := k.Public().(ed25519.PublicKey)
	dir := writeTestLog(t, 35, k)
	if n := len(readSegments(t, dir)); n < 4 {
		t.Fatalf("%d segments: the test wants records spread over several", n)
	}
	if rep := mustVerify(t, dir, pub); !rep.OK() || rep.Records != 35 || rep.Checkpoints != 4 {
		t.Fatalf("untouched log: %+v", rep)
	}
	_, foreign, _ := ed25519.GenerateKey(rand.Reader)
	flip := func(p []byte) []byte {
		p = append([]byte(nil), p...)
		p[strings.Index(string(p), "tarification")] = 'T'
		return p
	}
	cases := []struct {
		name    string
		f       func(segs []tsegment) []tsegment
		pub     ed25519.PublicKey
		wantSeq uint64
		want    string
	}{
		{"one byte flipped inside a record, checksum fixed", func(segs []tsegment) []tsegment {
			i, j := findRecord(t, segs, 17)
			segs[i].frames[j].payload = flip(segs[i].frames[j].payload)
			return segs
		}, pub, 17, "modified"},
		{"one byte flipped inside a record", func(segs []tsegment) []tsegment {
			i, j := findRecord(t, segs, 17)
			f := &segs[i].frames[j]
			f.keepCRC = crcOf(f.payload)
			f.payload = flip(f.payload)
			return segs
		}, pub, 17, "checksum"},
		{"a record deleted", func(segs []tsegment) []tsegment {
			i, j := findRecord(t, segs, 12)
			segs[i].frames = append(segs[i].frames[:j], segs[i].frames[j+1:]...)
			return segs
		}, pub, 12, "missing"},
		{"two records swapped", func(segs []tsegment) []tsegment {
			i, j := findRecord(t, segs, 20)
			k, l := findRecord(t, segs, 21)
			segs[i].frames[j], segs[k].frames[l] = segs[k].frames[l], segs[i].frames[j]
			return segs
		}, pub, 20, ""},
		{"a record inserted", func(segs []tsegment) []tsegment {
			i, j := findRecord(t, segs, 35)
			segs[i].frames = append(segs[i].frames[:j+1], append([]tframe{segs[i].frames[j]}, segs[i].frames[j+1:]...)...)
			return segs
		}, pub, 36, ""},
		{"tail truncated after a checkpoint", func(segs []tsegment) []tsegment {
			for s := uint64(31); s <= 35; s++ {
				i, j := findRecord(t, segs, s)
				segs[i].frames = append(segs[i].frames[:j], segs[i].frames[j+1:]...)
			}
			return segs
		}, pub, 31, "missing"},
		{"verified with a foreign key", func(segs []tsegment) []tsegment { return segs }, foreign.Public().(ed25519.PublicKey), 10, "signature"},
		{"checkpoints re-signed with a foreign key", func(segs []tsegment) []tsegment {
			return rechain(t, segs, 5, foreign)
		}, pub, 10, "signature"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rep := mustVerify(t, tamperDir(t, dir, tc.f), tc.pub)
			if rep.OK() || rep.BadSeq != tc.wantSeq || !strings.Contains(rep.Problem, tc.want) {
				t.Fatalf("report %+v, want a failure at seq %d (%q)", rep, tc.wantSeq, tc.want)
			}
			t.Logf("seq %d: %s", rep.BadSeq, rep.Problem)
		})
	}
	if rep := mustVerify(t, dir, pub); !rep.OK() {
		t.Fatalf("original after tampering with copies: %+v", rep)
	}
}

func crcOf(p []byte) uint32 {
	b := appendFrame(nil, frameRecord, p)
	return binary.LittleEndian.Uint32(b[5:])
}

// rechain forges the log as a careful attacker would: record from
// altered, every record after it re-chained with valid hashes, segment
// headers fixed, every checkpoint re-signed with k.
func rechain(t *testing.T, segs []tsegment, from uint64, k ed25519.PrivateKey) []tsegment {
	t.Helper()
	var prev [32]byte
	heads := map[uint64]string{}
	for i := range segs {
		for j := range segs[i].frames {
			f := &segs[i].frames[j]
			switch f.typ {
			case frameHeader:
				var h segHeader
				_ = json.Unmarshal(f.payload, &h)
				if h.First > from {
					h.Prev = seal.Hex(prev)
					f.payload, _ = json.Marshal(h)
				}
			case frameRecord:
				s, err := seal.Unseal(f.payload)
				if err != nil {
					t.Fatal(err)
				}
				if s.Seq < from {
					prev, _ = seal.ParseHash(s.Hash)
					continue
				}
				if s.Seq == from {
					s.Record.Purpose = "forged"
				}
				_, out, hash, err := seal.Seal(s.Chain, s.Seq, prev, s.Record)
				if err != nil {
					t.Fatal(err)
				}
				f.payload, prev = out, hash
				heads[s.Seq] = seal.Hex(hash)
			case frameCheckpoint:
				var c seal.Checkpoint
				_ = json.Unmarshal(f.payload, &c)
				if h, ok := heads[c.Seq]; ok {
					c.Head = h
				}
				c, err := seal.Sign(context.Background(), seal.Ed25519Signer(k), c)
				if err != nil {
					t.Fatal(err)
				}
				f.payload, _ = json.Marshal(c)
			}
		}
	}
	return segs
}

// TestExportedCheckpointsCatchATruncatedLog: records and checkpoints
// deleted together pass Verify alone, but not against the checkpoints
// exported before.
func TestExportedCheckpointsCatchATruncatedLog(t *testing.T) {
	k := testKey(t)
	pub := k.Public().(ed25519.PublicKey)
	dir := filepath.Join(t.TempDir(), "audit")
	l, err := Open(dir, Options{SigningKey: k, CheckpointEvery: 10, Store: StoreOptions{SegmentSize: 4 << 10}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 30; i++ {
		if err := l.Append(context.Background(), testRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	var exported strings.Builder
	if n, err := l.ExportCheckpoints(&exported); err != nil || n != 3 {
		t.Fatalf("export: %d, %v", n, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	cut := tamperDir(t, dir, func(segs []tsegment) []tsegment {
		for i := range segs {
			var keep []tframe
			for _, f := range segs[i].frames {
				seq, _ := rawSeq(f.payload)
				if (f.typ == frameRecord || f.typ == frameCheckpoint) && seq >= 21 {
					continue
				}
				keep = append(keep, f)
			}
			segs[i].frames = keep
		}
		return segs
	})
	if rep := mustVerify(t, cut, pub); !rep.OK() {
		t.Fatalf("the truncation is invisible without the export, as documented: %+v", rep)
	}
	rep, err := VerifyWith(cut, pub, strings.NewReader(exported.String()))
	if err != nil || rep.OK() || rep.BadSeq != 21 {
		t.Fatalf("with the exported checkpoints: %+v, %v", rep, err)
	}
	if rep, _ := VerifyWith(dir, pub, strings.NewReader(exported.String())); !rep.OK() {
		t.Fatalf("untouched log against its export: %+v", rep)
	}
	cps, err := os.CreateTemp(t.TempDir(), "cps")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := ExportCheckpointsDir(dir, cps); err != nil || n != 3 { // Close adds none: 30 has one
		t.Fatalf("checkpoints of the stopped log: %d, %v", n, err)
	}
	cps.Close()
}

// TestDamageIsNotRepaired: a flipped byte in the last record (all of its
// sectors written: not a torn write) makes Open refuse, naming where,
// and leaves the directory as it was; Verify names the record.
func TestDamageIsNotRepaired(t *testing.T) {
	k := testKey(t)
	pub := k.Public().(ed25519.PublicKey)
	dir := writeTestLogSize(t, 12, k, 64<<10)
	bad := tamperDir(t, dir, func(segs []tsegment) []tsegment {
		i, j := findRecord(t, segs, 12)
		f := &segs[i].frames[j]
		f.keepCRC = crcOf(f.payload)
		f.payload = append([]byte(nil), f.payload...)
		f.payload[40] ^= 0x20
		return segs
	})
	before := readSegments(t, bad)
	_, err := OpenStore(bad, StoreOptions{SegmentSize: 64 << 10})
	if err == nil || !strings.Contains(err.Error(), "offset") || !strings.Contains(err.Error(), "next record 12") || !strings.Contains(err.Error(), ".seg") {
		t.Fatalf("open of a damaged log: %v", err)
	}
	t.Log(err)
	if after := readSegments(t, bad); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatal("the refused open changed the segments")
	}
	if rep := mustVerify(t, bad, pub); rep.OK() || rep.BadSeq != 12 || !strings.Contains(rep.Problem, "checksum") {
		t.Fatalf("verify: %+v", rep)
	}
	// A record that does not follow the chain (valid checksum) is refused too.
	moved := tamperDir(t, dir, func(segs []tsegment) []tsegment {
		i, j := findRecord(t, segs, 12)
		k, l := findRecord(t, segs, 11)
		if i != k {
			t.Fatal("records 11 and 12 are not in one segment")
		}
		segs[i].frames[j], segs[k].frames[l] = segs[k].frames[l], segs[i].frames[j]
		return segs
	})
	if _, err := OpenStore(moved, StoreOptions{SegmentSize: 64 << 10}); err == nil || !strings.Contains(err.Error(), "does not follow") {
		t.Fatalf("open of a reordered log: %v", err)
	}
}
