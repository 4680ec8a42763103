package seglog

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/relais-broker/relais/broker/audit/auditlog"
	"github.com/relais-broker/relais/broker/audit/audittest"
	"github.com/relais-broker/relais/broker/audit/boltlog"
	"github.com/relais-broker/relais/broker/audit/seal"
)

// BenchmarkDurableAppend compares, in one run and interleaved (three
// rounds of every target), the disk's floor (a 4 KiB append and one
// fdatasync), boltlog and seglog through auditlog.Log with 1 and 32
// writers:
//
//	go test -run XXX -bench DurableAppend -benchtime 2000x ./broker/audit/seglog/
func BenchmarkDurableAppend(b *testing.B) {
	stores := []struct {
		name string
		open func(b *testing.B) auditlog.Storage
	}{
		{"boltlog", func(b *testing.B) auditlog.Storage {
			st, err := boltlog.OpenStore(filepath.Join(b.TempDir(), "audit.db"))
			if err != nil {
				b.Fatal(err)
			}
			return st
		}},
		{"seglog", func(b *testing.B) auditlog.Storage {
			st, err := OpenStore(filepath.Join(b.TempDir(), "audit"), StoreOptions{})
			if err != nil {
				b.Fatal(err)
			}
			return st
		}},
	}
	for round := 1; round <= 3; round++ {
		b.Run(fmt.Sprintf("round%d/floor-4KiB-fdatasync", round), benchFloor)
		for _, w := range []int{1, 32} {
			for _, s := range stores {
				b.Run(fmt.Sprintf("round%d/%s/writers-%d", round, s.name, w), func(b *testing.B) { benchAppend(b, s.open(b), w) })
			}
		}
	}
}

func report(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
}

// benchFloor is what the disk gives: append 4 KiB, fdatasync.
func benchFloor(b *testing.B) {
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "floor"), os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4<<10)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	report(b, lat)
}

func benchAppend(b *testing.B, st auditlog.Storage, writers int) {
	l, err := auditlog.Open(st, auditlog.Options{Signer: audittest.NewSigner(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	var mu sync.Mutex
	lat := make([]time.Duration, 0, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range writers {
		wg.Go(func() {
			var mine []time.Duration
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				r := audittest.Record(int(i))
				start := time.Now()
				if err := l.Append(context.Background(), r); err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, time.Since(start))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	b.StopTimer()
	report(b, lat)
}

// BenchmarkFootprint writes 100k records (audittest.Record, 1000 per
// commit) to boltlog and seglog and reports the file bytes per record
// (seglog: segments, and the index apart):
//
//	go test -run XXX -bench Footprint -benchtime 1x ./broker/audit/seglog/
func BenchmarkFootprint(b *testing.B) {
	const n = 100_000
	seed := func(b *testing.B, st auditlog.Storage) {
		ctx := context.Background()
		var h seal.Head
		for i := 1; i <= n; {
			var batch []seal.Sealed
			for ; i <= n && len(batch) < 1000; i++ {
				s, _, hash, err := seal.Seal("", h.Seq+1, h.Hash, audittest.Record(i))
				if err != nil {
					b.Fatal(err)
				}
				batch = append(batch, s)
				h.Seq, h.Hash = s.Seq, hash
			}
			if err := st.Commit(ctx, batch, nil); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("boltlog", func(b *testing.B) {
		for range b.N {
			path := filepath.Join(b.TempDir(), "audit.db")
			st, err := boltlog.OpenStore(path)
			if err != nil {
				b.Fatal(err)
			}
			seed(b, st)
			st.Close()
			fi, _ := os.Stat(path)
			b.ReportMetric(float64(fi.Size())/n, "file-B/record")
		}
	})
	b.Run("seglog", func(b *testing.B) {
		for range b.N {
			dir := filepath.Join(b.TempDir(), "audit")
			st, err := OpenStore(dir, StoreOptions{})
			if err != nil {
				b.Fatal(err)
			}
			seed(b, st)
			var used int64
			for _, sg := range st.segs {
				used += sg.end
			}
			st.Close()
			fi, _ := os.Stat(filepath.Join(dir, indexName))
			db, err := bolt.Open(filepath.Join(dir, indexName), 0o600, &bolt.Options{ReadOnly: true})
			if err != nil {
				b.Fatal(err)
			}
			_ = db.View(func(tx *bolt.Tx) error {
				b.ReportMetric(float64(tx.Size())/n, "index-data-B/record")
				return nil
			})
			db.Close()
			b.ReportMetric(float64(used)/n, "segment-B/record")
			b.ReportMetric(float64(fi.Size())/n, "index-B/record")
			b.ReportMetric(float64(len(st.segs)), "segments")
		}
	})
}
