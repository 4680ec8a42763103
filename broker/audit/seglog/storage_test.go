package seglog_test

import (
	"context"
	"path/filepath"
	"strings"
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

// TestOneWriterAndNoReaderWhileItWrites: a second writer is refused, and
// so is an offline reader while the broker runs (verify online or a
// copy); once it stops, the reader opens. A directory that is not a log
// is refused read-only.
func TestOneWriterAndNoReaderWhileItWrites(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit")
	st, err := seglog.OpenStore(dir, seglog.StoreOptions{SegmentSize: 8 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := seglog.OpenStore(dir, seglog.StoreOptions{}); err == nil || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("second writer: %v", err)
	}
	if _, err := seglog.OpenStoreReadOnly(dir); err == nil || !strings.Contains(err.Error(), "in use by a running broker") {
		t.Fatalf("reader while the writer runs: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := seglog.OpenStoreReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := ro.Commit(context.Background(), nil, nil); err == nil {
		t.Fatal("a read-only store committed")
	}
	ro.Close()
	if _, err := seglog.OpenStoreReadOnly(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a Relais audit log") {
		t.Fatalf("an empty directory read-only: %v", err)
	}
}
