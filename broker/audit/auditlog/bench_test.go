package auditlog_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/audit/auditlog"
	"github.com/relais-broker/relais/broker/audit/audittest"
	"github.com/relais-broker/relais/broker/audit/seal"
)

// discard is a storage that keeps only the head: what the writer itself
// costs per record (sealing, batching, waking the caller).
type discard struct {
	mu   sync.Mutex
	head seal.Head
}

func (d *discard) Head(context.Context) (seal.Head, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.head, nil
}

func (d *discard) Commit(_ context.Context, recs []seal.Sealed, cps []seal.Checkpoint) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	h, err := auditlog.Follow(d.head, recs, cps)
	if err == nil {
		d.head = h
	}
	return err
}

func (d *discard) Query(context.Context, audit.Filter) ([]audit.Record, error) { return nil, nil }
func (d *discard) Subject(context.Context, string) ([]audit.Record, error)     { return nil, nil }
func (d *discard) Export(context.Context, func(seal.Entry) error) error        { return nil }
func (d *discard) Purge(context.Context, time.Time, func(string, uint64, string) (seal.Checkpoint, error)) (int, error) {
	return 0, nil
}
func (d *discard) Close() error { return nil }

// BenchmarkAppend is the writer's own cost per record, storage aside:
//
//	go test -run XXX -bench Append -benchmem ./broker/audit/auditlog/
func BenchmarkAppend(b *testing.B) {
	for _, writers := range []int{1, 32} {
		b.Run(map[int]string{1: "writers-1", 32: "writers-32"}[writers], func(b *testing.B) {
			l, err := auditlog.Open(&discard{}, auditlog.Options{Signer: audittest.NewSigner(b), CheckpointEvery: 1 << 30})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			r := audittest.Record(1)
			b.ReportAllocs()
			b.ResetTimer()
			if writers == 1 {
				for range b.N {
					if err := l.Append(context.Background(), r); err != nil {
						b.Fatal(err)
					}
				}
				return
			}
			b.SetParallelism(writers / 2) // GOMAXPROCS is 2 here
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := l.Append(context.Background(), r); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
