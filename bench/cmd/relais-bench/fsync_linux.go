package main

import (
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// fsyncProbe measures the disk's floor for a durable append: n times a
// 4 KiB write at the end of a file followed by fdatasync, in dir (the
// audit log's directory, so the same filesystem). The file is removed.
func fsyncProbe(dir string, n int) ([]time.Duration, error) {
	path := filepath.Join(dir, "fsync-probe")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer os.Remove(path)
	defer f.Close()
	buf := make([]byte, 4096)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	out := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		s := time.Now()
		if _, err := f.Write(buf); err != nil {
			return nil, err
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return nil, err
		}
		out = append(out, time.Since(s))
	}
	return out, f.Close()
}
