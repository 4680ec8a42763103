//go:build !linux

package main

import (
	"errors"
	"time"
)

// fsyncProbe needs fdatasync; the benchmark runs on Linux only (it reads
// /proc too).
func fsyncProbe(string, int) ([]time.Duration, error) {
	return nil, errors.New("the fsync probe needs linux")
}
