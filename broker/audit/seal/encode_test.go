package seal_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/audit/seal"
)

// TestSealGolden: Seal of the record behind oldRecord gives oldRecord's
// bytes exactly — the bytes boltlog wrote before this package existed.
func TestSealGolden(t *testing.T) {
	r := audit.Record{
		Time: time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.FixedZone("CET", 3600)), RequestID: "req-1", Consumer: "21990000100005",
		Method: "/m", Purpose: "tarification_sociale", Subject: "ab", FieldsRequested: []string{}, FieldsReturned: []string{"x"},
		Code: "OK", Reason: "<&> é", Latency: 1500 * time.Microsecond,
	}
	var prev [32]byte
	prev[0] = 1
	s, raw, sum, err := seal.Seal("", 7, prev, r)
	if err != nil {
		t.Fatal(err)
	}
	if string(raw) != oldRecord || s.Hash != seal.Hex(sum) || s.Hash != "d27418c64bb39e59edba3d6ad584c529c63c2331927d9d35425968c2c124bd76" || !bytes.Equal(s.Raw, raw) {
		t.Fatalf("sealed bytes\n%s\nwant\n%s", raw, oldRecord)
	}
}

// tricky are records whose JSON has every corner encoding/json has.
func tricky() []audit.Record {
	base := record(1)
	out := []audit.Record{base, {}}
	for _, s := range []string{"<script>&amp;</script>", "tab\there\nnew\rline\bback\fform", "\x00\x01\x1f\x7f", "quote\" back\\slash",
		"bad utf-8 \xff\xfe end", "sep \u2028 and \u2029", "é à ü 日本 🙂", "\xe2\x80", ""} {
		r := base
		r.RequestID, r.Reason, r.Note, r.CaseReference = s, s, s, s
		out = append(out, r)
	}
	r := base
	r.Time = time.Date(1999, 12, 31, 23, 59, 59, 1, time.FixedZone("", -(9*3600+30*60)))
	r.DiscloseAfter = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	r.DisclosureReference, r.SubjectOrigin = "L.114-8 CRPA", audit.OriginCitizenLogin
	r.FieldsRequested, r.FieldsReturned = []string{}, nil
	r.Latency = -5
	out = append(out, r)
	return out
}

func TestEncoderIsJSONMarshal(t *testing.T) {
	if n := reflect.TypeOf(audit.Record{}).NumField(); n != 23 {
		t.Fatalf("audit.Record has %d fields: teach seal's encoder (encode.go) the new ones, then change this count", n)
	}
	for _, chain := range []string{"", "replica-<1>"} {
		for i, r := range tricky() {
			s, raw, _, err := seal.Seal(chain, uint64(i+1), seal.ZeroHash, r)
			if err != nil {
				t.Fatal(err)
			}
			want, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(raw, want) {
				t.Fatalf("record %d:\n got %s\nwant %s", i, raw, want)
			}
		}
	}
	r := record(1)
	r.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, _, _, err := seal.Seal("", 1, seal.ZeroHash, r); err == nil {
		t.Fatal("a time json.Marshal refuses was sealed")
	}
}

func FuzzSealIsJSONMarshal(f *testing.F) {
	for _, r := range tricky() {
		f.Add(r.Reason, r.Subject, int64(r.Latency), r.Time.Unix())
	}
	f.Fuzz(func(t *testing.T, s, subject string, latency, unix int64) {
		r := record(2)
		r.Reason, r.Subject, r.Note, r.Latency = s, subject, s, time.Duration(latency)
		r.FieldsRequested = []string{s, subject}
		r.Time = time.Unix(unix%253402300799, 0).In(time.FixedZone("", int(latency%(14*3600))))
		sl, raw, _, err := seal.Seal(s, 1, seal.ZeroHash, r)
		_, jerr := json.Marshal(seal.Sealed{Chain: s, Seq: 1, Prev: seal.Hex(seal.ZeroHash), Record: r})
		if (err != nil) != (jerr != nil) {
			t.Fatalf("seal: %v; json.Marshal: %v", err, jerr)
		}
		if err != nil {
			return
		}
		if want, _ := json.Marshal(sl); !bytes.Equal(raw, want) {
			t.Fatalf("\n got %s\nwant %s", raw, want)
		}
	})
}

// BenchmarkSeal is the hot path's cost of one record:
//
//	go test -run XXX -bench Seal -benchmem ./broker/audit/seal/
func BenchmarkSeal(b *testing.B) {
	r := record(1)
	b.Run("seal", func(b *testing.B) {
		var prev [32]byte
		b.ReportAllocs()
		for range b.N {
			s, _, sum, err := seal.Seal("", 1, prev, r)
			if err != nil || len(s.Raw) == 0 {
				b.Fatal(err)
			}
			prev = sum
		}
	})
	// What Seal did before encode.go, for the comparison in one run.
	b.Run("json.Marshal-reference", func(b *testing.B) {
		var prev [32]byte
		b.ReportAllocs()
		for range b.N {
			s := seal.Sealed{Seq: 1, Prev: seal.Hex(prev), Record: r}
			body, err := json.Marshal(s)
			if err != nil {
				b.Fatal(err)
			}
			sum := sha256.Sum256(body)
			s.Hash = seal.Hex(sum)
			raw := make([]byte, 0, len(body)+75)
			raw = append(raw, body[:len(body)-1]...)
			raw = append(raw, `,"hash":"`...)
			raw = append(raw, s.Hash...)
			s.Raw = append(raw, `"}`...)
			prev = sum
		}
	})
}
