package seglog_test

import (
	"path/filepath"
	"testing"

	"github.com/relais-broker/relais/broker/audit/auditlog"
	"github.com/relais-broker/relais/broker/audit/audittest"
	"github.com/relais-broker/relais/broker/audit/seglog"
)

func TestStorageConformance(t *testing.T) {
	for _, size := range []int64{seglog.DefaultSegmentSize, 4 << 10} { // one segment; a segment every few records
		t.Run(map[int64]string{seglog.DefaultSegmentSize: "64MiB", 4 << 10: "4KiB"}[size], func(t *testing.T) {
			open := func(t *testing.T, dir string) auditlog.Storage {
				st, err := seglog.OpenStore(dir, seglog.StoreOptions{SegmentSize: size})
				if err != nil {
					t.Fatal(err)
				}
				return st
			}
			audittest.Run(t, func(t *testing.T) auditlog.Storage { return open(t, filepath.Join(t.TempDir(), "audit")) },
				audittest.WithReopen(func(t *testing.T, closed auditlog.Storage) auditlog.Storage {
					return open(t, closed.(*seglog.Store).Dir())
				}))
		})
	}
}
