//go:build !linux

package seglog

import (
	"errors"
	"os"
	"syscall"
)

func datasync(f *os.File) error { return f.Sync() }

func preallocate(*os.File, int64) error { return nil }

func lockFile(*os.File, bool) error { return nil }

func bootID() string { return "" }

func noSpace(err error) bool { return errors.Is(err, syscall.ENOSPC) }
