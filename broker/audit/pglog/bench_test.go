package pglog_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/audit/auditlog"
	"github.com/relais-broker/relais/broker/audit/audittest"
	"github.com/relais-broker/relais/broker/audit/boltlog"
	"github.com/relais-broker/relais/internal/pgtest"
)

// BenchmarkAuditAppend compares, in one run, durable appends through
// auditlog.Log (group commit) on a bbolt file and on PostgreSQL, with 1
// and 32 concurrent writers; it reports records/s, the p50/p99 latency of
// one Append, and the mean batch and duration of a commit:
//
//	go test -run XXX -bench AuditAppend -benchtime 20000x ./broker/audit/pglog/
func BenchmarkAuditAppend(b *testing.B) {
	stores := []struct {
		name string
		open func(b *testing.B) auditlog.Storage
	}{
		{"bbolt", func(b *testing.B) auditlog.Storage {
			st, err := boltlog.OpenStore(filepath.Join(b.TempDir(), "audit.db"))
			if err != nil {
				b.Fatal(err)
			}
			return st
		}},
		{"postgres", func(b *testing.B) auditlog.Storage {
			return open(b, connect(b, migrated(b, pgtest.Shared(b))), "")
		}},
	}
	for _, s := range stores {
		for _, writers := range []int{1, 32} {
			b.Run(fmt.Sprintf("store=%s/writers=%d", s.name, writers), func(b *testing.B) {
				var commits, committed, commitNanos atomic.Int64
				l, err := auditlog.Open(s.open(b), auditlog.Options{Signer: audittest.NewSigner(b), OnCommit: func(d time.Duration, n int) {
					commits.Add(1)
					committed.Add(int64(n))
					commitNanos.Add(int64(d))
				}})
				if err != nil {
					b.Fatal(err)
				}
				defer l.Close()
				lat := make([]time.Duration, b.N)
				var next atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				start := time.Now()
				for range writers {
					wg.Go(func() {
						for {
							i := int(next.Add(1)) - 1
							if i >= b.N {
								return
							}
							r := audittest.Record(i)
							r.Time = time.Now()
							t := time.Now()
							if err := l.Append(context.Background(), r); err != nil {
								b.Error(err)
								return
							}
							lat[i] = time.Since(t)
						}
					})
				}
				wg.Wait()
				elapsed := time.Since(start)
				b.StopTimer()
				slices.Sort(lat)
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
				b.ReportMetric(float64(committed.Load())/float64(max(1, commits.Load())), "records/commit")
				b.ReportMetric(float64(commitNanos.Load())/float64(max(1, commits.Load()))/1e3, "µs/commit")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}
