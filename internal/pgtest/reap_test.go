package pgtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestStaleClusterOfADeadTestProcessIsReaped(t *testing.T) {
	bin := binDir(t)
	c, err := start(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.close() }) // if the reaper failed
	// The test process that owned it is gone (killed by -timeout, say).
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.root, "owner"), []byte(strconv.Itoa(dead.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(c.data, "postmaster.pid")
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("running cluster without postmaster.pid: %v", err)
	}
	pid, _ := strconv.Atoi(strings.SplitN(string(raw), "\n", 2)[0])

	// A live owner's cluster (ours) is left alone.
	live := Shared(t)

	reapStale(filepath.Dir(c.root), bin)
	if _, err := os.Stat(c.root); !os.IsNotExist(err) {
		t.Fatalf("stale cluster directory kept: %v", err)
	}
	if alive(pid) {
		t.Fatalf("stale postmaster %d still running", pid)
	}
	if _, err := os.Stat(filepath.Join(live.data, "postmaster.pid")); err != nil {
		t.Fatalf("the reaper stopped a live test's cluster: %v", err)
	}
}
