package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/audit/seglog"
	"github.com/relais-broker/relais/internal/pgtest"
)

// These tests run relaisd as a real process, the way a new user does, and
// call it with the real grpcurl binary using the command it prints.

// buildBinaries builds relaisd, and grpcurl unless it is on PATH, once per
// test binary.
var (
	buildOnce                         sync.Once
	relaisdBin, grpcBin, relaisctlBin string
	buildErr                          error
)

// binDir holds the binaries built for this test run; TestMain removes it.
var binDir string

func TestMain(m *testing.M) {
	code := pgtest.Run(m)
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func binaries(t *testing.T) (string, string) {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "relaisd-e2e")
		if err != nil {
			buildErr = err
			return
		}
		binDir = dir
		relaisdBin = filepath.Join(dir, "relaisd")
		if out, err := exec.Command("go", "build", "-o", relaisdBin, ".").CombinedOutput(); err != nil {
			buildErr = &buildFailure{"relaisd", string(out), err}
			return
		}
		relaisctlBin = filepath.Join(dir, "relaisctl")
		if out, err := exec.Command("go", "build", "-o", relaisctlBin, "../relaisctl").CombinedOutput(); err != nil {
			buildErr = &buildFailure{"relaisctl", string(out), err}
			return
		}
		if p, err := exec.LookPath("grpcurl"); err == nil {
			grpcBin = p
			return
		}
		// Not installed: build the version pinned in tools/go.mod.
		grpcBin = filepath.Join(dir, "grpcurl")
		cmd := exec.Command("go", "build", "-o", grpcBin, "github.com/fullstorydev/grpcurl/cmd/grpcurl")
		cmd.Dir = "../../tools"
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = &buildFailure{"grpcurl", string(out), err}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return relaisdBin, grpcBin
}

type buildFailure struct {
	what, out string
	err       error
}

func (b *buildFailure) Error() string { return "build " + b.what + ": " + b.err.Error() + "\n" + b.out }

type devBroker struct {
	cmd       *exec.Cmd
	addr      string
	adminAddr string
	opsAddr   string
	webAddr   string
	// issuer is the dev identity provider's; portalURL the portal's.
	issuer, portalURL string
	firstCall         string
	dataDir           string
	stderr            *os.File
}

// startDev runs `relaisd dev` on a free loopback port and waits for its
// welcome text. Its data directory does not exist yet, as on a new user's
// first `go run ./cmd/relaisd dev`.
func startDev(t *testing.T) *devBroker {
	t.Helper()
	return startDevIn(t, filepath.Join(t.TempDir(), "relais-dev"))
}

// startDevIn runs `relaisd dev` with dataDir and extra flags.
func startDevIn(t *testing.T, dataDir string, extra ...string) *devBroker {
	t.Helper()
	relaisd, _ := binaries(t)
	d := &devBroker{dataDir: dataDir}
	var err error
	d.stderr, err = os.Create(filepath.Join(t.TempDir(), "stderr.log"))
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(relaisd, append([]string{"dev", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--idp-listen", "127.0.0.1:0", "--portal-listen", "127.0.0.1:0", "--data-dir", d.dataDir}, extra...)...)
	d.cmd.Stderr = d.stderr
	stdout, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = d.cmd.Process.Kill()
		_ = d.cmd.Wait()
		if t.Failed() {
			logs, _ := os.ReadFile(d.stderr.Name())
			t.Logf("relaisd stderr:\n%s", logs)
		}
	})
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	listening := regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`)
	adminAPI := regexp.MustCompile(`admin API: +(127\.0\.0\.1:\d+)`)
	opsAPI := regexp.MustCompile(`operations: +http://(127\.0\.0\.1:\d+)/`)
	webAPI := regexp.MustCompile(`HTTPS/JSON: +https://(127\.0\.0\.1:\d+)/`)
	issuer := regexp.MustCompile(`citizen login: +(https://127\.0\.0\.1:\d+) `)
	portalAt := regexp.MustCompile(`portal: +(https://127\.0\.0\.1:\d+) `)
	timeout := time.After(60 * time.Second)
	for d.firstCall == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatal("relaisd exited before printing its first call")
			}
			if m := listening.FindStringSubmatch(line); m != nil {
				d.addr = m[1]
			}
			if m := adminAPI.FindStringSubmatch(line); m != nil {
				d.adminAddr = m[1]
			}
			if m := opsAPI.FindStringSubmatch(line); m != nil {
				d.opsAddr = m[1]
			}
			if m := webAPI.FindStringSubmatch(line); m != nil {
				d.webAddr = m[1]
			}
			if m := issuer.FindStringSubmatch(line); m != nil {
				d.issuer = m[1]
			}
			if m := portalAt.FindStringSubmatch(line); m != nil {
				d.portalURL = m[1]
			}
			if strings.HasPrefix(line, "  grpcurl ") {
				d.firstCall = strings.TrimSpace(line)
			}
		case <-timeout:
			t.Fatal("relaisd did not start within 60s")
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pipeRest(lines)) }()
	return d
}

// pipeRest drains the remaining stdout lines.
func pipeRest(lines <-chan string) io.Reader {
	r, w := io.Pipe()
	go func() {
		for l := range lines {
			_, _ = w.Write([]byte(l + "\n"))
		}
		_ = w.Close()
	}()
	return r
}

// shell runs a command line as a user would paste it, with grpcurl on PATH.
func shell(t *testing.T, line string) (string, error) {
	t.Helper()
	_, grpcurl := binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", line)
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(grpcurl)+string(os.PathListSeparator)+filepath.Dir(relaisctlBin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestPrintedFirstCallWorks(t *testing.T) {
	t.Parallel()
	d := startDev(t)
	out, err := shell(t, d.firstCall)
	if err != nil {
		t.Fatalf("first call failed: %v\n%s", err, out)
	}
	var resp map[string]any
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	for _, key := range []string{"source", "value", "referenceYear", "referenceMonth", "regime", "beneficiaries", "children", "address"} {
		if _, ok := resp[key]; !ok {
			t.Errorf("full consumer: %q missing in %s", key, out)
		}
	}
}

func TestLimitedConsumerGetsGrantedFieldsOnly(t *testing.T) {
	t.Parallel()
	d := startDev(t)
	line := strings.ReplaceAll(d.firstCall, "mairie-exemple", "ccas-limite")
	line = strings.Replace(line, "tarification_sociale", "aide_sociale_facultative", 1)
	out, err := shell(t, line)
	if err != nil {
		t.Fatalf("limited call failed: %v\n%s", err, out)
	}
	var resp map[string]any
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if _, ok := resp["value"]; !ok {
		t.Errorf("value missing: %s", out)
	}
	for _, key := range []string{"beneficiaries", "children", "address"} {
		if _, ok := resp[key]; ok {
			t.Errorf("limited consumer received %q: %s", key, out)
		}
	}
}

func TestNoClientCertificateFailsAtHandshake(t *testing.T) {
	t.Parallel()
	d := startDev(t)
	line := "grpcurl -cacert " + filepath.Join(d.dataDir, "dev", "ca.pem") + " " + d.addr + " list"
	out, err := shell(t, line)
	if err == nil {
		t.Fatalf("a call without client certificate succeeded:\n%s", out)
	}
	if !strings.Contains(out, "certificate") {
		t.Errorf("expected a TLS certificate error, got:\n%s", out)
	}
}

func TestInvalidRecipient(t *testing.T) {
	t.Parallel()
	d := startDev(t)
	line := strings.Replace(d.firstCall, `"recipient":"21990000100005"`, `"recipient":"21990000100006"`, 1)
	out, err := shell(t, line+" 2>&1; true")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Code: InvalidArgument", "invalid_recipient", "access_context.recipient"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}

func TestListShowsServicesHealthAndReflection(t *testing.T) {
	t.Parallel()
	d := startDev(t)
	line := strings.Split(d.firstCall, " -d ")[0] + " " + d.addr + " list"
	out, err := shell(t, line)
	if err != nil {
		t.Fatalf("list failed: %v\n%s", err, out)
	}
	for _, svc := range []string{
		"relais.familyquotient.v1.FamilyQuotientService",
		"relais.studentstatus.v1.StudentStatusService",
		"relais.studentscholarship.v1.StudentScholarshipService",
		"relais.jobseeker.v1.JobSeekerStatusService",
		"relais.healthcover.v1.SolidarityHealthCoverService",
		"grpc.health.v1.Health",
	} {
		if !strings.Contains(out, svc) {
			t.Errorf("%s missing from list:\n%s", svc, out)
		}
	}
}

func TestRestartKeepsTheCAAndCredentials(t *testing.T) {
	t.Parallel()
	d := startDev(t)
	ca1, _ := os.ReadFile(filepath.Join(d.dataDir, "dev", "ca.pem"))
	cert1, _ := os.ReadFile(filepath.Join(d.dataDir, "dev", "consumers", "mairie-exemple", "cert.pem"))
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Wait(); err != nil {
		t.Fatalf("relaisd did not exit cleanly on SIGTERM: %v", err)
	}
	relaisd, _ := binaries(t)
	out, err := exec.Command(relaisd, "dev", "--listen", "127.0.0.1:99999", "--data-dir", d.dataDir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "99999") {
		t.Fatalf("a bad --listen should fail clearly, got %v:\n%s", err, out)
	}
	d2 := startDevIn(t, d.dataDir)
	ca2, _ := os.ReadFile(filepath.Join(d.dataDir, "dev", "ca.pem"))
	cert2, _ := os.ReadFile(filepath.Join(d.dataDir, "dev", "consumers", "mairie-exemple", "cert.pem"))
	if string(ca1) != string(ca2) || string(cert1) != string(cert2) {
		t.Fatal("restart replaced the dev CA or still-valid demo credentials")
	}
	if out, err := shell(t, d2.firstCall); err != nil {
		t.Fatalf("first call after restart: %v\n%s", err, out)
	}
}

// callRecords reads the audit log directory of a stopped broker and
// returns the records of data-API calls: admin events (operators', the
// reminder and anomaly jobs') are left out, as their number depends on
// timing.
func callRecords(t *testing.T, dir string) []audit.Record {
	t.Helper()
	st, err := seglog.OpenStoreReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	all, err := st.Query(context.Background(), audit.Filter{Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	var calls []audit.Record
	for _, r := range all {
		if r.Operator == "" {
			calls = append(calls, r)
		}
	}
	return calls
}
