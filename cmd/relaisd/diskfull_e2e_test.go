package main_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/audit/seglog"
	"github.com/relais-broker/relais/internal/devenv"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	healthcoverv1 "github.com/relais-broker/relais/proto/relais/healthcover/v1"
)

// TestDiskFullFailsClosedAndRecovers runs the broker on a small tmpfs,
// fills it, and checks that calls then fail with Unavailable
// (audit_unavailable) — no data without a record — and that the broker
// serves again once space returns, without restart. It needs to mount a
// tmpfs (root); where that is impossible it is skipped, saying why.
func TestDiskFullFailsClosedAndRecovers(t *testing.T) {
	t.Parallel()
	mnt := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", mnt).CombinedOutput(); err != nil {
		if os.Getenv("RELAIS_REQUIRE_DISKFULL") == "1" {
			t.Fatalf("cannot mount a tmpfs (%v: %s) although RELAIS_REQUIRE_DISKFULL=1", err, strings.TrimSpace(string(out)))
		}
		t.Skipf("cannot mount a tmpfs here (%v: %s): the disk-full test needs root", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })
	d := startDevIn(t, mnt)

	conn := grpcConn(t, d, "ccas-limite")
	client := healthcoverv1.NewSolidarityHealthCoverServiceClient(conn)
	req := &healthcoverv1.GetSolidarityHealthCoverRequest{
		AccessContext: &commonv1.AccessContext{Recipient: "21990000200003", Purpose: "aide_sociale_facultative", CaseReference: "DISK-FULL"},
		Subject:       zoeIdentity(),
	}
	var served []string
	call := func() (codes.Code, string) {
		var header, trailer metadata.MD
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := client.GetSolidarityHealthCover(ctx, req, grpc.Header(&header), grpc.Trailer(&trailer))
		time.Sleep(60 * time.Millisecond) // under the demo quota
		if err == nil {
			served = append(served, append(header.Get("x-request-id"), "")[0])
			return codes.OK, ""
		}
		st := status.Convert(err)
		for _, det := range st.Details() {
			if info, ok := det.(*errdetails.ErrorInfo); ok {
				return st.Code(), info.GetReason()
			}
		}
		return st.Code(), ""
	}
	if code, reason := call(); code != codes.OK {
		t.Fatalf("call before the disk is full: %s %s", code, reason)
	}

	// Fill the file system.
	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling: %v", err)
			}
			break
		}
	}
	f.Close()
	refused := 0
	for i := 0; i < 300 && refused < 3; i++ {
		code, reason := call()
		switch {
		case code == codes.OK:
		case code == codes.Unavailable && reason == "audit_unavailable":
			refused++
		default:
			t.Fatalf("disk full: got %s %q, want OK or Unavailable/audit_unavailable", code, reason)
		}
	}
	if refused == 0 {
		t.Fatal("300 calls on a full disk were all served")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	recovered := false
	for i := 0; i < 20 && !recovered; i++ {
		code, _ := call()
		recovered = code == codes.OK
	}
	if !recovered {
		t.Fatal("the broker did not serve again once space returned")
	}
	t.Logf("disk full: %d calls refused with audit_unavailable; served again once space returned; %d calls served in all", refused, len(served))

	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = d.cmd.Wait()
	keys, err := devenv.LoadKeys(mnt)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := seglog.Verify(filepath.Join(mnt, "audit"), keys.Signing.Public().(ed25519.PublicKey))
	if err != nil || !rep.OK() {
		t.Fatalf("verify after the disk-full episode: %+v, %v", rep, err)
	}
	st, err := seglog.OpenStoreReadOnly(filepath.Join(mnt, "audit"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	recs, err := st.Query(context.Background(), audit.Filter{Limit: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, r := range recs {
		have[r.RequestID] = true
	}
	for _, id := range served {
		if !have[id] {
			t.Fatalf("call %s returned data without a record", id)
		}
	}
}
