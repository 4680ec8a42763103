package main_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/internal/haproxytest"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
)

// The helpers of the HA acceptance tests (ha_e2e_test.go): replicas of
// `relaisd dev --postgres` as real processes on fixed loopback ports (so a
// restarted replica comes back where HAProxy expects it), relaisctl as the
// operator runs it, a Go gRPC client with mTLS, and the audit records read
// from PostgreSQL as its admin.

const (
	haService = "relais.familyquotient.v1.FamilyQuotientService"
	haPurpose = "tarification_sociale"
	// haRecipient is the access context's recipient of every call: the
	// full demo consumer's SIRET, a valid one.
	haRecipient = "21990000100005"
)

// haReplica is one relaisd dev process of an installation on one database.
type haReplica struct {
	id, dataDir, dsn       string
	data, admin, ops, http string // fixed 127.0.0.1 addresses
	drain                  time.Duration
	operatorDir, stores    string
	cmd                    *exec.Cmd
	exited                 chan struct{}
	exitErr                error
	stderrPath             string
	starts                 int
	mu                     sync.Mutex
}

// haFreeAddr returns a 127.0.0.1 address free at the time of the call.
func haFreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// haNewReplica describes replica id on dsn with four fresh ports; start
// runs it.
func haNewReplica(t *testing.T, dsn, id string, drain time.Duration) *haReplica {
	t.Helper()
	return &haReplica{id: id, dsn: dsn, dataDir: t.TempDir(), drain: drain,
		data: haFreeAddr(t), admin: haFreeAddr(t), ops: haFreeAddr(t), http: haFreeAddr(t)}
}

var (
	haStoresLine  = regexp.MustCompile(`^stores: +(.*)$`)
	haOperatorDir = regexp.MustCompile(`operator credential: (.*)\)$`)
)

// start runs the replica (again, after a kill or a stop) and waits for
// its banner's first call; it fails t when the banner's stores line does
// not name the replica.
func (r *haReplica) start(t *testing.T) {
	t.Helper()
	relaisd, _ := binaries(t)
	r.mu.Lock()
	r.starts++
	n := r.starts
	r.mu.Unlock()
	r.stderrPath = filepath.Join(r.dataDir, fmt.Sprintf("stderr-%d.log", n))
	stderr, err := os.Create(r.stderrPath)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"dev", "--postgres", r.dsn, "--replica-id", r.id, "--data-dir", r.dataDir,
		"--listen", r.data, "--admin-listen", r.admin, "--ops-listen", r.ops, "--http-listen", r.http, "--idp-listen", "127.0.0.1:0", "--portal-listen", "127.0.0.1:0"}
	if r.drain > 0 {
		args = append(args, "--drain-period", r.drain.String())
	}
	cmd := exec.Command(relaisd, args...)
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	r.mu.Lock()
	r.cmd, r.exited = cmd, exited
	r.mu.Unlock()
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		err := cmd.Wait()
		_ = stderr.Close()
		r.mu.Lock()
		r.exitErr = err
		r.mu.Unlock()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("replica %s (start %d) stderr, tail:\n%s", r.id, n, haTail(r.stderrPath, 3000))
		}
	})
	var banner strings.Builder
	timeout := time.After(90 * time.Second)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("replica %s exited before its banner:\n%s\n%s", r.id, banner.String(), haTail(r.stderrPath, 3000))
			}
			banner.WriteString(line + "\n")
			if m := haStoresLine.FindStringSubmatch(line); m != nil {
				r.stores = m[1]
			}
			if m := haOperatorDir.FindStringSubmatch(line); m != nil {
				r.operatorDir = m[1]
			}
			if strings.HasPrefix(line, "  grpcurl ") {
				go func() {
					for range lines {
					}
				}()
				if !strings.Contains(r.stores, "replica "+r.id+" ") {
					t.Fatalf("replica %s: banner's stores line %q does not name it", r.id, r.stores)
				}
				return
			}
		case <-timeout:
			t.Fatalf("replica %s did not print its banner within 90 s", r.id)
		}
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (r *haReplica) kill(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.mu.Unlock()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited
}

// terminate sends SIGTERM; wait for exited.
func (r *haReplica) terminate(t *testing.T) <-chan struct{} {
	t.Helper()
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.mu.Unlock()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	return exited
}

// runningSinceFirstStart reports whether the replica was started once
// and its process is still running.
func (r *haReplica) runningSinceFirstStart() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.exited:
		return false
	default:
		return r.starts == 1
	}
}

// exitError is the last process's exit status (nil: exit 0).
func (r *haReplica) exitError() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.exitErr
}

// backend is the replica as HAProxy sees it.
func (r *haReplica) backend() haproxytest.Backend {
	return haproxytest.Backend{Name: r.id, Addr: r.data, HealthAddr: r.ops}
}

// caFile and consumerDir are the dev credentials every replica trusts
// (pulled from the database).
func (r *haReplica) caFile() string { return filepath.Join(r.dataDir, "dev", "ca.pem") }
func (r *haReplica) consumerDir(name string) string {
	return filepath.Join(r.dataDir, "dev", "consumers", name)
}

func haTail(path string, n int) string {
	raw, _ := os.ReadFile(path)
	if len(raw) > n {
		raw = raw[len(raw)-n:]
	}
	return string(raw)
}

// haStartReplicas starts n replicas dev-1 … dev-n on dsn, one after the
// other (the first creates the installation, the others join it). setup,
// when not nil, runs once the first is up and before the others start,
// so that what it writes (consumers, grants) is in every replica's first
// snapshot whatever the change feed does.
func haStartReplicas(t *testing.T, dsn string, n int, drain time.Duration, setup func(first *haReplica)) []*haReplica {
	t.Helper()
	var rs []*haReplica
	for i := 1; i <= n; i++ {
		r := haNewReplica(t, dsn, fmt.Sprintf("dev-%d", i), drain)
		r.start(t)
		if i > 1 && !strings.Contains(r.stores, "joined") {
			t.Fatalf("replica %s did not join the installation: %q", r.id, r.stores)
		}
		if i == 1 && setup != nil {
			setup(r)
		}
		rs = append(rs, r)
	}
	return rs
}

// haCtl runs relaisctl with args against replica r's admin API as the dev
// operator and returns its output.
func haCtl(t *testing.T, r *haReplica, args ...string) (string, error) {
	t.Helper()
	binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append(append([]string(nil), args...), "--admin-addr", r.admin, "--operator-dir", r.operatorDir)
	out, err := exec.CommandContext(ctx, relaisctlBin, full...).CombinedOutput()
	return string(out), err
}

// haMustCtl is haCtl that fails t on a non-zero exit.
func haMustCtl(t *testing.T, r *haReplica, args ...string) string {
	t.Helper()
	out, err := haCtl(t, r, args...)
	if err != nil {
		t.Fatalf("relaisctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// haSIRET completes a 13-digit prefix into a valid SIRET.
func haSIRET(t *testing.T, prefix string) string {
	t.Helper()
	for d := 0; d <= 9; d++ {
		s := prefix + strconv.Itoa(d)
		if identity.ValidSIRET(s) == nil {
			return s
		}
	}
	t.Fatalf("no valid SIRET starts with %s", prefix)
	return ""
}

// haConsumer is a consumer made for one test through the admin API of a
// replica: its credential directory and its grant id.
type haConsumer struct {
	siret, dir, grant string
}

// haAddConsumer creates a consumer, a grant on the family quotient (rate 0:
// no per-second limit, so the load measures the broker, not the bucket;
// dailyCap 0: none) and a credential signed by the dev CA.
func haAddConsumer(t *testing.T, r *haReplica, siret string, dailyCap int) haConsumer {
	t.Helper()
	haMustCtl(t, r, "consumers", "add", siret, "--name", "Commune de test HA "+siret[9:13])
	c := haConsumer{siret: siret}
	c.grant = haAddGrant(t, r, siret, dailyCap)
	c.dir = haIssueCredential(t, r, siret)
	return c
}

// haAddGrant grants the family quotient to siret and returns the grant id.
func haAddGrant(t *testing.T, r *haReplica, siret string, dailyCap int) string {
	t.Helper()
	out := haMustCtl(t, r, "grants", "add", "--consumer", siret, "--service", haService, "--scopes", "family_quotient.value",
		"--purpose", haPurpose+":Tarification sociale:CRPA art. L114-8", "--until", time.Now().AddDate(1, 0, 0).Format(time.DateOnly),
		"--rate", "0", "--daily-cap", strconv.Itoa(dailyCap), "-o", "json")
	var resp struct {
		Grants []struct {
			ID string `json:"id"`
		} `json:"grants"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || len(resp.Grants) != 1 || resp.Grants[0].ID == "" {
		t.Fatalf("grants add: no grant id in %q (%v)", out, err)
	}
	return resp.Grants[0].ID
}

var haIssuedSerial = regexp.MustCompile(`serial ([0-9A-Fa-f:]+),`)

// haIssueCredential issues a consumer credential with the dev CA (recorded
// in the registry) into a new directory and returns it.
func haIssueCredential(t *testing.T, r *haReplica, siret string) string {
	t.Helper()
	dir, err := os.MkdirTemp(r.dataDir, "cred-")
	if err != nil {
		t.Fatal(err)
	}
	out := haMustCtl(t, r, "credentials", "issue", "--dev-ca", filepath.Join(r.dataDir, "dev"), "--consumer", siret, "--out", dir)
	m := haIssuedSerial.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("credentials issue: no serial in %q", out)
	}
	if err := os.WriteFile(filepath.Join(dir, "serial"), []byte(m[1]), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// haDial connects to addr over mTLS with the credential in dir
// (cert.pem, key.pem) trusting caFile.
//
// WaitForReady: behind HAProxy a connection to a replica that just went
// away breaks; a waiting call rides the client's reconnection (which
// HAProxy sends to a live replica) instead of failing at once with
// Unavailable, as a client of a replicated service is configured. Calls
// already sent on the broken connection still fail: the tests count them.
func haDial(t *testing.T, addr, dir, caFile string) *grpc.ClientConn {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("%s holds no certificate", caFile)
	}
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12})),
		grpc.WithDefaultCallOptions(grpc.WaitForReady(true)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// haSubjects are sandbox citizens with a family quotient; a load gives
// each worker its own, since the duplicate-in-flight guard (shared by
// the replicas) refuses a second identical call in flight.
func haSubjects() []*commonv1.SubjectIdentity {
	id := func(name, given string, sex commonv1.Sex, date, place string) *commonv1.SubjectIdentity {
		return &commonv1.SubjectIdentity{BirthName: name, GivenNames: []string{given}, Sex: sex, BirthDate: date, BirthPlaceCog: place, BirthCountryCog: "99100"}
	}
	f, m := commonv1.Sex_SEX_FEMALE, commonv1.Sex_SEX_MALE
	return []*commonv1.SubjectIdentity{
		zoeIdentity(),
		id("MARTIN", "Lucas", m, "1979-11-02", "69123"),
		id("BERNARD", "Inès", f, "1975-06-14", "31555"),
		id("FAURE", "Louise", f, "1996-02-29", "33063"),
		id("FONTAINE", "Rose", f, "1990-10-10", "59350"),
		id("SANTONI", "Marc", m, "1970-08-15", "2A004"),
		id("LE GALL-KERBRAT", "Élodie", f, "1993-07-07", "35238"),
		id("DUBOIS", "Alice", f, "1988-12-01", "44109"),
	}
}

// haResult is one call's outcome as the client saw it.
type haResult struct {
	requestID string
	code      string // gRPC code name
	reason    string // ErrorInfo reason, "" on success
	at        time.Time
}

func (c haResult) ok() bool { return c.code == "OK" }

// haCall calls GetFamilyQuotient once on conn for subject.
func haCall(conn *grpc.ClientConn, subject *commonv1.SubjectIdentity, caseRef string, timeout time.Duration) haResult {
	var header, trailer metadata.MD
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := familyquotientv1.NewFamilyQuotientServiceClient(conn).GetFamilyQuotient(ctx, &familyquotientv1.GetFamilyQuotientRequest{
		AccessContext: &commonv1.AccessContext{Recipient: haRecipient, Purpose: haPurpose, CaseReference: caseRef},
		Subject:       subject,
	}, grpc.Header(&header), grpc.Trailer(&trailer))
	res := haResult{at: time.Now(), code: "OK"}
	if ids := append(header.Get("x-request-id"), trailer.Get("x-request-id")...); len(ids) > 0 {
		res.requestID = ids[0]
	}
	if err != nil {
		st := status.Convert(err)
		res.code = st.Code().String()
		for _, d := range st.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok {
				res.reason = info.GetReason()
			}
		}
	}
	return res
}

// haLoad is a bounded load: one worker per connection, each with its own
// subject, calling back to back until stopped or max calls.
type haLoad struct {
	mu      sync.Mutex
	results []haResult
	stop    chan struct{}
	wg      sync.WaitGroup
	stopped sync.Once
}

// haStartLoad starts one worker per conn; each makes at most max calls.
func haStartLoad(t *testing.T, conns []*grpc.ClientConn, caseRef string, max int, timeout time.Duration) *haLoad {
	t.Helper()
	subjects := haSubjects()
	if len(conns) > len(subjects) {
		t.Fatalf("%d workers but %d distinct subjects", len(conns), len(subjects))
	}
	l := &haLoad{stop: make(chan struct{})}
	for w, conn := range conns {
		l.wg.Go(func() {
			for i := 0; i < max; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				res := haCall(conn, subjects[w], caseRef, timeout)
				l.mu.Lock()
				l.results = append(l.results, res)
				l.mu.Unlock()
				if !res.ok() {
					// A client backs off after a refusal; without it a
					// fast-failing replica turns the load into a spin.
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	t.Cleanup(l.halt)
	return l
}

func (l *haLoad) halt() {
	l.stopped.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// Wait waits until every worker made its calls and returns every
// result.
func (l *haLoad) Wait() []haResult {
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]haResult(nil), l.results...)
}

// Stop stops the workers, waits for their last calls and returns every
// result.
func (l *haLoad) Stop() []haResult {
	l.halt()
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]haResult(nil), l.results...)
}

// count returns how many calls ended, and how many were OK.
func (l *haLoad) count() (total, ok int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.results {
		if r.ok() {
			ok++
		}
	}
	return len(l.results), ok
}

// waitOK waits until n more calls than now have succeeded.
func (l *haLoad) waitOK(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	_, base := l.count()
	deadline := time.Now().Add(timeout)
	for {
		total, ok := l.count()
		if ok >= base+n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("load: %d more successes not reached within %s (%d calls, %d OK)", n, timeout, total, ok)
		}
		time.Sleep(10 * time.Millisecond) // polling counters the workers update
	}
}

// haTally counts results by "code/reason".
func haTally(rs []haResult) map[string]int {
	m := map[string]int{}
	for _, r := range rs {
		k := r.code
		if r.reason != "" {
			k += "/" + r.reason
		}
		m[k]++
	}
	return m
}

// haAuditRow is a record as stored: its chain and outcome.
type haAuditRow struct{ chain, code, consumer string }

// haAuditByRequest reads every audit record of the database as its admin,
// keyed by request id.
func haAuditByRequest(t *testing.T, dsn string) map[string]haAuditRow {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT chain, code, consumer, convert_from(stored, 'UTF8')::jsonb #>> '{record,RequestID}' FROM audit_records`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]haAuditRow{}
	for rows.Next() {
		var r haAuditRow
		var id *string
		if err := rows.Scan(&r.chain, &r.code, &r.consumer, &id); err != nil {
			t.Fatal(err)
		}
		if id != nil && *id != "" {
			out[*id] = r
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// haCheckOKsRecorded fails t for an OK response without its OK record,
// and returns how many OK responses each chain served.
func haCheckOKsRecorded(t *testing.T, dsn string, rs []haResult) map[string]int {
	t.Helper()
	recs := haAuditByRequest(t, dsn)
	perChain := map[string]int{}
	missing := 0
	for _, r := range rs {
		if !r.ok() {
			continue
		}
		rec, found := recs[r.requestID]
		switch {
		case r.requestID == "":
			t.Errorf("an OK response carried no x-request-id")
		case !found:
			missing++
			if missing <= 5 {
				t.Errorf("OK response %s has no audit record", r.requestID)
			}
		case rec.code != "OK":
			t.Errorf("OK response %s is recorded as %s", r.requestID, rec.code)
		default:
			perChain[rec.chain]++
		}
	}
	if missing > 0 {
		t.Errorf("%d OK responses without their audit record", missing)
	}
	return perChain
}

// haReadyz returns a replica's /readyz status and body ("" and the error
// when it does not answer).
func haReadyz(addr string) (int, string, error) {
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), nil
}

// haWaitReadyz polls /readyz until want(status, body) or fails t.
func haWaitReadyz(t *testing.T, r *haReplica, what string, timeout time.Duration, want func(int, string) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, body, err := haReadyz(r.ops)
		if err == nil && want(code, body) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s /readyz not %s after %s: %d %q %v", r.id, what, timeout, code, body, err)
		}
		time.Sleep(20 * time.Millisecond) // polling an HTTP endpoint
	}
}

// haPercentile returns the p-th percentile (0 < p ≤ 100, nearest rank).
func haPercentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	k := int(float64(len(s))*p/100+0.999999) - 1
	k = max(0, min(k, len(s)-1))
	return s[k]
}
