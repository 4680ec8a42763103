package seglog

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/relais-broker/relais/broker/audit"
)

// TestDiskFullFailsClosedAndRecovers runs the log on a small tmpfs and
// fills it: appends go on into the preallocated segment, then fail once
// it is full and the next one cannot be written — nothing half-written,
// nothing refused is ever read back — and succeed again, without
// reopening, once space returns. It needs to mount a tmpfs (root); where that is
// impossible it is skipped, unless RELAIS_REQUIRE_DISKFULL=1 (CI).
func TestDiskFullFailsClosedAndRecovers(t *testing.T) {
	// 64 KiB segments are preallocated; 64 MiB ones do not fit on the
	// 1 MiB disk and grow with their appends instead.
	for _, size := range []int64{64 << 10, DefaultSegmentSize} {
		t.Run(fmt.Sprintf("segments-of-%d-KiB", size>>10), func(t *testing.T) { diskFull(t, size) })
	}
}

func diskFull(t *testing.T, size int64) {
	mnt := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt).CombinedOutput(); err != nil {
		if os.Getenv("RELAIS_REQUIRE_DISKFULL") == "1" {
			t.Fatalf("cannot mount a tmpfs (%v: %s) although RELAIS_REQUIRE_DISKFULL=1", err, strings.TrimSpace(string(out)))
		}
		t.Skipf("cannot mount a tmpfs here (%v: %s): the disk-full test needs root", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })
	k := testKey(t)
	dir := filepath.Join(mnt, "audit")
	opts := Options{SigningKey: k, CheckpointEvery: 20, Store: StoreOptions{SegmentSize: size}}
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var acked, refused []string
	n := 0
	appendOne := func() error {
		n++
		r := testRecord(n)
		err := l.Append(ctx, r)
		if err == nil {
			acked = append(acked, r.RequestID)
		} else {
			refused = append(refused, r.RequestID)
		}
		return err
	}
	for range 50 {
		if err := appendOne(); err != nil {
			t.Fatal(err)
		}
	}
	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for _, chunk := range []int{64 << 10, 4 << 10, 512} {
		for {
			if _, err := f.Write(make([]byte, chunk)); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("filling: %v", err)
				}
				break
			}
		}
	}
	f.Close()
	var full error
	for i := 0; i < 2000 && full == nil; i++ {
		full = appendOne()
	}
	if full == nil || !errors.Is(full, syscall.ENOSPC) {
		t.Fatalf("2000 appends on a full disk: %v", full)
	}
	if l.Healthy() == nil {
		t.Fatal("Healthy on a full disk")
	}
	for range 3 {
		if err := appendOne(); err == nil {
			t.Fatal("an append succeeded on a full disk")
		}
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := appendOne(); err != nil {
		t.Fatalf("append once space returned: %v", err)
	}
	for range 30 {
		if err := appendOne(); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(dir, k.Public().(ed25519.PublicKey))
	if err != nil || !rep.OK() || rep.Records != uint64(len(acked)) {
		t.Fatalf("verify after the disk-full episode: %+v, %v; want %d records", rep, err, len(acked))
	}
	l, err = Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	recs, err := l.Query(ctx, audit.Filter{Limit: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, r := range recs {
		have[r.RequestID] = true
	}
	for _, id := range acked {
		if !have[id] {
			t.Fatalf("acknowledged record %s is missing", id)
		}
	}
	for _, id := range refused {
		if have[id] {
			t.Fatalf("refused record %s is in the log", id)
		}
	}
	t.Logf("%d acknowledged, %d refused on the full disk (first: %v)", len(acked), len(refused), full)
}
