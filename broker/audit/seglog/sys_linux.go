//go:build linux

package seglog

import (
	"errors"
	"os"
	"syscall"
)

// datasync makes the file's data durable without its timestamps: the
// one fdatasync per commit.
func datasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// preallocate reserves size bytes for the file (its size becomes size),
// so that appends do not allocate blocks on the fsync path and a full
// disk is met when a segment is created, not in the middle of one.
// File systems that cannot preallocate get a plain file.
func preallocate(f *os.File, size int64) error {
	err := syscall.Fallocate(int(f.Fd()), 0, 0, size)
	if errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOSYS) {
		return nil
	}
	return err
}

// lockFile takes an advisory lock on f: exclusive for the writer, shared
// for offline readers. It fails at once when the lock is held.
func lockFile(f *os.File, exclusive bool) error {
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	return syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
}

// bootID identifies the running kernel: an index left dirty by a process
// that crashed under the same boot is intact (the page cache kept its
// writes); one left dirty across a reboot may not be.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return string(b)
}

// noSpace reports whether err is a full disk.
func noSpace(err error) bool { return errors.Is(err, syscall.ENOSPC) }
