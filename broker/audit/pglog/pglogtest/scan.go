// Package pglogtest helps tests prove what a PostgreSQL server keeps on
// disk: ScanDir greps a cluster's data directory (heap files, indexes,
// WAL) for given byte strings, so an end-to-end test can show that no
// citizen identity or returned value reached the database.
//
// Run CHECKPOINT first so that the heap pages are on disk, not only in the
// WAL (both are scanned). Values that PostgreSQL compresses (TOAST, over
// about 2 kB) are not found by a byte scan: keep the needles to values
// that would be stored uncompressed, or disable compression on the
// column under test. The audit rows are far below that size.
package pglogtest

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// Hit is one needle found in one file.
type Hit struct {
	Needle string
	File   string // relative to the scanned directory
	Offset int
}

// ScanDir returns, for every regular file under dir, the first offset of
// each needle it contains.
func ScanDir(dir string, needles ...string) ([]Hit, error) {
	var hits []Hit
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil // removed while scanning (a WAL segment recycled)
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		for _, n := range needles {
			if n == "" {
				continue
			}
			if i := bytes.Index(data, []byte(n)); i >= 0 {
				hits = append(hits, Hit{Needle: n, File: rel, Offset: i})
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pglogtest: scan %s: %w", dir, err)
	}
	return hits, nil
}

// AssertAbsent fails the test when any needle is found under dir; the
// failure names the file, not the needle's value (it may be personal).
func AssertAbsent(t testing.TB, dir string, needles ...string) {
	t.Helper()
	hits, err := ScanDir(dir, needles...)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hits {
		for i, n := range needles {
			if n == h.Needle {
				t.Errorf("needle #%d (%d bytes) found in %s at offset %d", i, len(n), h.File, h.Offset)
			}
		}
	}
}
