package boltlog_test

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/audit/auditlog"
	"github.com/relais-broker/relais/broker/audit/audittest"
	"github.com/relais-broker/relais/broker/audit/boltlog"
	"github.com/relais-broker/relais/broker/audit/seal"
	"github.com/relais-broker/relais/internal/keyfile"
)

func TestStorageConformance(t *testing.T) {
	open := func(t *testing.T, path string) auditlog.Storage {
		st, err := boltlog.OpenStore(path)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	audittest.Run(t, func(t *testing.T) auditlog.Storage { return open(t, filepath.Join(t.TempDir(), "audit.db")) },
		audittest.WithReopen(func(t *testing.T, closed auditlog.Storage) auditlog.Storage {
			return open(t, closed.(*boltlog.Store).Path())
		}))
}

// TestFileWrittenBeforeSealVerifies: testdata/v1-audit.db was written by
// boltlog before sealing moved to broker/audit/seal (45 records, a purge
// of the first 12, 8 more records, a checkpoint every 10, closed).
func TestFileWrittenBeforeSealVerifies(t *testing.T) {
	pub, err := keyfile.ReadPublicKey("testdata/v1-audit.pub.pem")
	if err != nil {
		t.Fatal(err)
	}
	path := copyFile(t, "testdata/v1-audit.db")
	rep := verify(t, path, pub)
	if !rep.OK() || rep.FirstSeq != 13 || rep.LastSeq != 53 || rep.Records != 41 || rep.Checkpoints != 6 {
		t.Fatalf("v1 file: %+v", rep)
	}
	cps, err := os.Open("testdata/v1-checkpoints.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer cps.Close()
	if rep, err := boltlog.VerifyWith(path, pub, cps); err != nil || !rep.OK() {
		t.Fatalf("v1 file against its exported checkpoints: %+v, %v", rep, err)
	}
	// The new writer continues the old chain (the test key: seed bytes 7, 8, … 38).
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i + 7)
	}
	l, err := boltlog.Open(path, boltlog.Options{SigningKey: ed25519.NewKeyFromSeed(seed)})
	if err != nil {
		t.Fatal(err)
	}
	for i := 54; i <= 55; i++ {
		if err := l.Append(context.Background(), record(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := verify(t, path, pub); !rep.OK() || rep.FirstSeq != 13 || rep.LastSeq != 55 || rep.Checkpoints != 7 {
		t.Fatalf("v1 file continued: %+v", rep)
	}
}

// TestExportReadsInChunks: an export longer than one read sees none of
// the records appended while it runs (and does not hold them up), and a
// purge between two reads is reported rather than exported half.
func TestExportReadsInChunks(t *testing.T) {
	k := key(t)
	clock := t0.Add(400 * 24 * time.Hour)
	path := filepath.Join(t.TempDir(), "audit.db")
	l, err := boltlog.Open(path, boltlog.Options{SigningKey: k, CheckpointEvery: 500, Clock: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	// 100 records older than the retention, then 2400 recent ones, by 32
	// writers (group commit keeps it quick).
	for _, phase := range []struct {
		from, to int
		at       time.Time
	}{{1, 100, t0}, {101, 2500, clock}} {
		var wg sync.WaitGroup
		for w := range 32 {
			wg.Go(func() {
				for i := phase.from + w; i <= phase.to; i += 32 {
					r := record(i)
					r.Time = phase.at
					if err := l.Append(ctx, r); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
	}
	v := seal.NewVerifier(k.Public().(ed25519.PublicKey))
	n := 0
	err = l.Store().Export(ctx, func(e seal.Entry) error {
		if n++; n == 1 {
			for i := 2501; i <= 2510; i++ { // commits while the export runs
				if err := l.Append(ctx, record(i)); err != nil {
					return err
				}
			}
		}
		v.Add(e)
		return nil
	})
	if rep := v.Report(); err != nil || !rep.OK() || rep.LastSeq != 2500 || rep.Checkpoints != 5 {
		t.Fatalf("export during appends: %+v, %v", rep, err)
	}
	n = 0
	err = l.Store().Export(ctx, func(seal.Entry) error {
		if n++; n == 1 {
			if got, err := l.Purge(ctx); err != nil || got != 100 {
				t.Errorf("purge: %d, %v", got, err)
			}
		}
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "purged during the export") {
		t.Fatalf("export across a purge: %v after %d entries", err, n)
	}
	if rep, err := l.VerifyLive(); err != nil || !rep.OK() || rep.FirstSeq != 101 || rep.LastSeq != 2510 {
		t.Fatalf("after the purge: %+v, %v", rep, err)
	}
}
