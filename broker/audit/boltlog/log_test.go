package boltlog_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/audit/auditlog"
	"github.com/relais-broker/relais/broker/audit/boltlog"
	"github.com/relais-broker/relais/broker/audit/seal"
)

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func key(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func record(i int) audit.Record {
	return audit.Record{
		Time: t0.Add(time.Duration(i) * time.Minute), RequestID: fmt.Sprintf("req-%d", i), Consumer: "21990000100005",
		Method: "/relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient", Purpose: "tarification_sociale",
		Subject: fmt.Sprintf("%064x", i%3), FieldsReturned: []string{"family_quotient.value"}, Code: "OK",
	}
}

// writeLog writes n records with a checkpoint every 10 and closes the log.
func writeLog(t *testing.T, n int, k ed25519.PrivateKey) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.db")
	l, err := boltlog.Open(path, boltlog.Options{SigningKey: k, CheckpointEvery: 10, Clock: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		if err := l.Append(context.Background(), record(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func verify(t *testing.T, path string, pub ed25519.PublicKey) *boltlog.Report {
	t.Helper()
	rep, err := boltlog.Verify(path, pub)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func copyFile(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy.db")
	in, _ := os.Open(src)
	defer in.Close()
	out, _ := os.Create(dst)
	defer out.Close()
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	return dst
}

// tamper opens a copy of the log with bbolt and lets f change it, as an
// attacker with the file would.
func tamper(t *testing.T, path string, f func(tx *bolt.Tx) error) string {
	t.Helper()
	cp := copyFile(t, path)
	db, err := bolt.Open(cp, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(f); err != nil {
		t.Fatal(err)
	}
	db.Close()
	return cp
}

func seq(n uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, n)
	return k
}

func TestVerifyDetectsEveryTampering(t *testing.T) {
	k := key(t)
	pub := k.Public().(ed25519.PublicKey)
	path := writeLog(t, 35, k)
	if rep := verify(t, path, pub); !rep.OK() || rep.Records != 35 || rep.Checkpoints != 4 {
		t.Fatalf("untouched log: %+v", rep)
	}
	recs := []byte("records")
	_, foreign, _ := ed25519.GenerateKey(rand.Reader)
	cases := []struct {
		name    string
		f       func(tx *bolt.Tx) error
		pub     ed25519.PublicKey
		wantSeq uint64
	}{
		{"one byte flipped inside a record", func(tx *bolt.Tx) error {
			b := tx.Bucket(recs)
			v := append([]byte(nil), b.Get(seq(17))...)
			i := strings.Index(string(v), "tarification")
			v[i] = 'T'
			return b.Put(seq(17), v)
		}, pub, 17},
		{"a record deleted", func(tx *bolt.Tx) error { return tx.Bucket(recs).Delete(seq(12)) }, pub, 12},
		{"two records swapped", func(tx *bolt.Tx) error {
			b := tx.Bucket(recs)
			a, c := append([]byte(nil), b.Get(seq(20))...), append([]byte(nil), b.Get(seq(21))...)
			if err := b.Put(seq(20), c); err != nil {
				return err
			}
			return b.Put(seq(21), a)
		}, pub, 20},
		{"a record inserted", func(tx *bolt.Tx) error {
			b := tx.Bucket(recs)
			last := b.Get(seq(35))
			return b.Put(seq(36), last)
		}, pub, 36},
		{"tail truncated after a checkpoint", func(tx *bolt.Tx) error {
			b := tx.Bucket(recs)
			for s := uint64(31); s <= 35; s++ {
				if err := b.Delete(seq(s)); err != nil {
					return err
				}
			}
			return nil
		}, pub, 31},
		{"verified with a foreign key", func(*bolt.Tx) error { return nil }, foreign.Public().(ed25519.PublicKey), 10},
		{"checkpoints re-signed with a foreign key", func(tx *bolt.Tx) error {
			// The attacker rewrites record 5 and re-chains everything after
			// it, then re-signs the checkpoints with a key of its own.
			return rechain(tx, 5, foreign)
		}, pub, 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rep := verify(t, tamper(t, path, tc.f), tc.pub)
			if rep.OK() || rep.BadSeq != tc.wantSeq {
				t.Fatalf("report %+v, want a failure at seq %d", rep, tc.wantSeq)
			}
			t.Logf("seq %d: %s", rep.BadSeq, rep.Problem)
		})
	}
	if rep := verify(t, path, pub); !rep.OK() {
		t.Fatalf("original after tampering with copies: %+v", rep)
	}
}

func TestForeignFileIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	db, _ := bolt.Open(path, 0o600, nil)
	_ = db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("users")); return err })
	db.Close()
	if _, err := boltlog.Open(path, boltlog.Options{SigningKey: key(t)}); err == nil || !strings.Contains(err.Error(), "not a Relais audit log") {
		t.Fatalf("foreign file: %v", err)
	}
}

// BenchmarkDurableAppend compares group commit with one fsync per record
// through auditlog.Log on a bbolt file, 32 concurrent callers, in one run:
//
//	go test -run XXX -bench DurableAppend -benchtime 2000x ./broker/audit/boltlog/
func BenchmarkDurableAppend(b *testing.B) {
	for _, mode := range []struct {
		name string
		one  bool
	}{{"group-commit", false}, {"fsync-per-record", true}} {
		b.Run(mode.name, func(b *testing.B) {
			st, err := boltlog.OpenStore(filepath.Join(b.TempDir(), "audit.db"))
			if err != nil {
				b.Fatal(err)
			}
			l, err := auditlog.Open(st, auditlog.Options{Signer: seal.Ed25519Signer(key(b)), OneCommitPerRecord: mode.one})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			var mu sync.Mutex
			var lat []time.Duration
			b.SetParallelism(32 / max(1, runtime.GOMAXPROCS(0))) // 32 callers
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var mine []time.Duration
				i := 0
				for pb.Next() {
					i++
					start := time.Now()
					if err := l.Append(context.Background(), record(i)); err != nil {
						b.Error(err)
						return
					}
					mine = append(mine, time.Since(start))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			}
		})
	}
}

// rechain rewrites record from and every record after it with a valid
// chain, and re-signs every checkpoint with k.
func rechain(tx *bolt.Tx, from uint64, k ed25519.PrivateKey) error {
	return boltlog.RechainForTest(tx, from, seal.Ed25519Signer(k))
}

// TestExportedCheckpointsCatchATruncatedLog: records and checkpoints
// deleted together pass Verify alone, but not against the checkpoints
// exported before.
func TestExportedCheckpointsCatchATruncatedLog(t *testing.T) {
	k := key(t)
	pub := k.Public().(ed25519.PublicKey)
	path := filepath.Join(t.TempDir(), "audit.db")
	l, err := boltlog.Open(path, boltlog.Options{SigningKey: k, CheckpointEvery: 10})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 30; i++ {
		if err := l.Append(context.Background(), record(i)); err != nil {
			t.Fatal(err)
		}
	}
	var exported strings.Builder
	if n, err := l.ExportCheckpoints(&exported); err != nil || n != 3 {
		t.Fatalf("export: %d, %v", n, err)
	}
	l.Close()
	cut := tamper(t, path, func(tx *bolt.Tx) error {
		for s := uint64(21); s <= 30; s++ {
			if err := tx.Bucket([]byte("records")).Delete(seq(s)); err != nil {
				return err
			}
			_ = tx.Bucket([]byte("checkpoints")).Delete(seq(s))
		}
		return nil
	})
	if rep := verify(t, cut, pub); !rep.OK() {
		t.Fatalf("the truncation is invisible without the export, as documented: %+v", rep)
	}
	rep, err := boltlog.VerifyWith(cut, pub, strings.NewReader(exported.String()))
	if err != nil || rep.OK() || rep.BadSeq != 21 {
		t.Fatalf("with the exported checkpoints: %+v, %v", rep, err)
	}
	if rep, _ := boltlog.VerifyWith(path, pub, strings.NewReader(exported.String())); !rep.OK() {
		t.Fatalf("untouched log against its export: %+v", rep)
	}
}

// TestPurgeToTheHeadThenCheckpointVerifies: retention that purges every
// record leaves a boundary checkpoint at the head; the checkpoint written
// next (at Close) must not replace it, or the file no longer verifies.
func TestPurgeToTheHeadThenCheckpointVerifies(t *testing.T) {
	k := key(t)
	path := filepath.Join(t.TempDir(), "audit.db")
	now := t0
	clock := func() time.Time { return now }
	l, err := boltlog.Open(path, boltlog.Options{SigningKey: k, Retention: 24 * time.Hour, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		if err := l.Append(context.Background(), record(i)); err != nil {
			t.Fatal(err)
		}
	}
	now = t0.Add(30 * 24 * time.Hour)
	n, err := l.Purge(context.Background())
	if err != nil || n != 5 {
		t.Fatalf("purge: %d records, %v; want 5", n, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := boltlog.Verify(path, k.Public().(ed25519.PublicKey))
	if err != nil || !rep.OK() {
		t.Fatalf("verify after a purge to the head: %+v, %v", rep, err)
	}
}
