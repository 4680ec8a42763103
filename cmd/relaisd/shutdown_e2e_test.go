package main_test

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestGracefulShutdownDrainsInFlightCalls sends SIGTERM while a slow call
// (the sandbox citizen whose source never answers: it ends at the 2 s
// source timeout) is in flight: the call still gets its answer, the
// process exits cleanly, and the call's audit record is in the log.
func TestGracefulShutdownDrainsInFlightCalls(t *testing.T) {
	t.Parallel()
	d := startDev(t)
	slow := strings.Replace(d.firstCall, `"birth_name":"DUPONT","given_names":["Zoé"],"sex":"SEX_FEMALE","birth_date":"1984-03-12","birth_place_cog":"75056"`,
		`"birth_name":"BLANC","given_names":["Emma"],"sex":"SEX_FEMALE","birth_date":"1972-02-14","birth_place_cog":"69123"`, 1)
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() { out, err := shell(t, slow+" 2>&1"); done <- result{out, err} }()
	time.Sleep(500 * time.Millisecond) // the call is waiting on the source
	start := time.Now()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if !strings.Contains(r.out, "source_timeout") {
		t.Fatalf("the in-flight call was cut instead of drained: %v\n%s", r.err, r.out)
	}
	if err := d.cmd.Wait(); err != nil {
		t.Fatalf("relaisd did not exit cleanly: %v", err)
	}
	t.Logf("SIGTERM → in-flight call answered and process exited in %s", time.Since(start).Round(time.Millisecond))
	out, err := shell(t, "relaisctl audit verify --dir "+filepath.Join(d.dataDir, "audit")+" --public-key "+filepath.Join(d.dataDir, "keys", "audit-signing.pub"))
	if err != nil || !strings.HasPrefix(out, "OK: ") {
		t.Fatalf("the log after the drain: %v\n%s", err, out)
	}
	if calls := callRecords(t, filepath.Join(d.dataDir, "audit")); len(calls) != 1 || calls[0].Reason != "source_timeout" {
		t.Fatalf("the drained call's record: %+v", calls)
	}
}
