// Command relais-bench measures, in one run on one machine, the cost of
// Relais on the critical path: the same family-quotient call, the same
// mTLS and the same client concurrency against
//
//	limit   a bare grpc-go server answering from memory (the physical reference)
//	peer    the same server behind nginx as an mTLS gRPC reverse proxy (grpc_pass)
//	relais  relaisd serve: authn, validation, authz (rate limit off), minimisation,
//	        sandbox adapter, durable audit with group commit
//	relais-ha1, relais-ha2
//	        relaisd serve replicas on one PostgreSQL behind HAProxy (TCP mode,
//	        TLS passed through): one replica, then two (ha.go)
//
// and a second scenario where the source takes 20 ms (remote adapter).
// It writes bench/RESULTS.md with the exact command, the machine and the
// date. Every server is a child process it starts and stops; every loop is
// bounded in calls and time.
//
//	go run ./bench/cmd/relais-bench -calls 3000 -out bench/RESULTS.md
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/registry/boltreg"
	"github.com/relais-broker/relais/broker/scope"
	"github.com/relais-broker/relais/certs"
	"github.com/relais-broker/relais/internal/keyfile"
	"github.com/relais-broker/relais/internal/localserver"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "limit-server" {
		if err := runLimitServer(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	calls := flag.Int("calls", 3000, "calls per target and concurrency level")
	levels := flag.String("levels", "1,8,64", "client concurrency levels")
	maxTime := flag.Duration("max-time", 60*time.Second, "bound of each measurement")
	out := flag.String("out", "bench/RESULTS.md", "results file")
	profile := flag.String("cpuprofile", "", "write a CPU profile of relaisd during its highest-concurrency run to this file")
	ha := flag.Bool("ha", true, "also measure relais-ha1 and relais-ha2: replicas on PostgreSQL behind HAProxy (needs the postgresql and haproxy packages)")
	flag.Parse()
	if err := run(*calls, *levels, *maxTime, *out, *profile, *ha); err != nil {
		fmt.Fprintln(os.Stderr, "relais-bench:", err)
		os.Exit(1)
	}
}

type env struct {
	dir      string
	ca       *certs.DevCA
	caFile   string
	client   tls.Certificate
	roots    *x509.CertPool
	procs    []*exec.Cmd
	relaisd  string
	selfPath string
	profile  string
	opsAddr  map[*exec.Cmd]string
	// cleanups run at stop, after every process exited.
	cleanups []func()
}

func run(calls int, levelList string, maxTime time.Duration, outFile, profile string, ha bool) error {
	var levels []int
	for _, s := range strings.Split(levelList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("-levels %q", levelList)
		}
		levels = append(levels, n)
	}
	e, err := setup()
	if err != nil {
		return err
	}
	defer e.stop()
	limitAddr, limitProc, err := e.startLimit(0)
	if err != nil {
		return err
	}
	peerAddr, peerProcs, err := e.startNginx(limitAddr)
	if err != nil {
		return err
	}
	relaisAddr, relaisProc, err := e.startRelais("")
	if err != nil {
		return err
	}
	e.profile = profile
	targets := []target{
		{"limit", limitAddr, []*exec.Cmd{limitProc}},
		{"peer", peerAddr, append(peerProcs, limitProc)},
		{"relais", relaisAddr, []*exec.Cmd{relaisProc}},
	}
	if ha {
		haTargets, err := e.startHA(2, []int{1, 2})
		if err != nil {
			return fmt.Errorf("relais-ha targets (-ha=false to skip them): %w", err)
		}
		targets = append(targets, haTargets...)
	}
	results := map[string]map[int]result{}
	for _, t := range targets {
		results[t.name] = map[int]result{}
		for _, c := range levels {
			if t.name == "relais" && c == levels[len(levels)-1] && profile != "" {
				go e.captureProfile(relaisProc, profile)
			}
			r, err := e.measure(t, c, calls, maxTime)
			if err != nil {
				return fmt.Errorf("%s at concurrency %d: %w", t.name, c, err)
			}
			results[t.name][c] = r
			fmt.Fprintf(os.Stderr, "%-10s c=%-3d %8.0f calls/s  p50 %-9s p99 %-9s cpu/call %s\n", t.name, c, r.throughput, r.p50, r.p99, r.cpuPerCall)
		}
	}
	// Scenario 2: a source that takes 20 ms, called directly and through relais.
	slowAddr, _, err := e.startLimit(20 * time.Millisecond)
	if err != nil {
		return err
	}
	viaAddr, viaProc, err := e.startRelais(slowAddr)
	if err != nil {
		return err
	}
	direct, err := e.measure(target{"direct-20ms", slowAddr, nil}, 8, min(calls, 1000), maxTime)
	if err != nil {
		return err
	}
	via, err := e.measure(target{"relais-20ms", viaAddr, []*exec.Cmd{viaProc}}, 8, min(calls, 1000), maxTime)
	if err != nil {
		return err
	}
	return writeResults(outFile, calls, levels, targets, results, direct, via)
}

// setup makes a dev CA, the certificates and builds relaisd.
func setup() (*env, error) {
	dir, err := os.MkdirTemp("", "relais-bench")
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir}
	if e.ca, err = certs.OpenDevCA(filepath.Join(dir, "ca"), nil); err != nil {
		return nil, err
	}
	e.caFile = filepath.Join(dir, "ca", "ca.pem")
	ctx := context.Background()
	srv, err := e.ca.IssueServer(ctx, []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	if err := certs.WriteCredential(filepath.Join(dir, "server"), srv, nil); err != nil {
		return nil, err
	}
	for _, id := range []struct {
		kind identity.Kind
		name string
	}{{identity.KindConsumer, "21990000100005"}, {identity.KindOperator, "proxy"}} {
		c, err := e.ca.IssueClient(ctx, certs.ClientRequest{Kind: id.kind, ID: id.name, TTL: 24 * time.Hour})
		if err != nil {
			return nil, err
		}
		if err := certs.WriteCredential(filepath.Join(dir, id.name), c, nil); err != nil {
			return nil, err
		}
	}
	if e.client, err = tls.LoadX509KeyPair(filepath.Join(dir, "21990000100005", "cert.pem"), filepath.Join(dir, "21990000100005", "key.pem")); err != nil {
		return nil, err
	}
	caPEM, _ := os.ReadFile(e.caFile)
	e.roots = x509.NewCertPool()
	e.roots.AppendCertsFromPEM(caPEM)
	e.relaisd = filepath.Join(dir, "relaisd")
	if out, err := exec.Command("go", "build", "-o", e.relaisd, "./cmd/relaisd").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build relaisd: %v\n%s", err, out)
	}
	e.selfPath, err = os.Executable()
	return e, err
}

// start runs a child process and returns the first line it prints.
func (e *env) start(name string, args ...string) (*exec.Cmd, string, error) {
	cmd := exec.Command(name, args...)
	cmd.Stderr, _ = os.Create(filepath.Join(e.dir, filepath.Base(name)+strconv.Itoa(len(e.procs))+".log"))
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	e.procs = append(e.procs, cmd)
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		for sc.Scan() {
		}
	}()
	select {
	case l, ok := <-lines:
		if !ok {
			return nil, "", fmt.Errorf("%s exited before it was ready", name)
		}
		return cmd, l, nil
	case <-time.After(30 * time.Second):
		return nil, "", fmt.Errorf("%s not ready after 30 s", name)
	}
}

func (e *env) startLimit(delay time.Duration) (string, *exec.Cmd, error) {
	cmd, addr, err := e.start(e.selfPath, "limit-server", "--cert", filepath.Join(e.dir, "server", "cert.pem"), "--key", filepath.Join(e.dir, "server", "key.pem"),
		"--ca", e.caFile, "--delay", delay.String())
	return addr, cmd, err
}

// startNginx runs Debian's nginx as an mTLS gRPC reverse proxy in front
// of the limit server.
func (e *env) startNginx(upstream string) (string, []*exec.Cmd, error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		return "", nil, errors.New("nginx is not installed (apt-get install nginx-light)")
	}
	port, err := localserver.FreePort()
	if err != nil {
		return "", nil, err
	}
	prefix := filepath.Join(e.dir, "nginx")
	_ = os.MkdirAll(filepath.Join(prefix, "logs"), 0o700)
	conf := fmt.Sprintf(`worker_processes %d;
pid %[2]s/nginx.pid;
error_log %[2]s/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[2]s/body; proxy_temp_path %[2]s/proxy; fastcgi_temp_path %[2]s/fcgi; uwsgi_temp_path %[2]s/uwsgi; scgi_temp_path %[2]s/scgi;
  upstream limit { server %[3]s; keepalive 64; }
  server {
    listen 127.0.0.1:%[4]d ssl http2;
    ssl_certificate %[5]s/server/cert.pem;
    ssl_certificate_key %[5]s/server/key.pem;
    ssl_client_certificate %[6]s;
    ssl_verify_client on;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      grpc_pass grpcs://limit;
      grpc_ssl_certificate %[5]s/proxy/cert.pem;
      grpc_ssl_certificate_key %[5]s/proxy/key.pem;
      grpc_ssl_trusted_certificate %[6]s;
      grpc_ssl_verify on;
      grpc_ssl_name localhost;
      grpc_ssl_session_reuse on;
    }
  }
}
`, runtime.NumCPU(), prefix, upstream, port, e.dir, e.caFile)
	if err := os.WriteFile(filepath.Join(prefix, "nginx.conf"), []byte(conf), 0o600); err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, "-p", prefix, "-c", filepath.Join(prefix, "nginx.conf"), "-g", "daemon off;")
	cmd.Stderr, _ = os.Create(filepath.Join(prefix, "logs", "stderr.log"))
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	e.procs = append(e.procs, cmd)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr, []*exec.Cmd{cmd}, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "", nil, errors.New("nginx did not start (see its error log)")
}

// startRelais runs `relaisd serve` on the sandbox (or, with upstream, a
// remote source) with a registry granting the bench consumer everything
// without rate limit, and a durable audit log.
func (e *env) startRelais(upstream string) (string, *exec.Cmd, error) {
	d := filepath.Join(e.dir, "relais"+strconv.Itoa(len(e.procs)))
	_ = os.MkdirAll(d, 0o700)
	if err := keyfile.CreateSigningKey(filepath.Join(d, "audit.key"), filepath.Join(d, "audit.pub")); err != nil {
		return "", nil, err
	}
	if err := keyfile.CreatePseudonymKey(filepath.Join(d, "pseudonym.key")); err != nil {
		return "", nil, err
	}
	reg, err := boltreg.Open(filepath.Join(d, "registry.db"), boltreg.Options{})
	if err != nil {
		return "", nil, err
	}
	ctx := context.Background()
	_, _ = reg.AddConsumer(ctx, registry.Consumer{SIRET: "21990000100005", Name: "Bench"})
	_, err = reg.AddGrant(ctx, registry.Grant{Consumer: "21990000100005", Service: "relais.familyquotient.v1.FamilyQuotientService",
		Scopes:    scope.Of("family_quotient.value", "family_quotient.beneficiaries", "family_quotient.children", "family_quotient.address"),
		Purposes:  []registry.Purpose{{Code: "tarification_sociale", Label: "Bench", LegalBasis: "bench"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)})
	reg.Close()
	if err != nil {
		return "", nil, err
	}
	src := "sources:\n  - {service: relais.familyquotient.v1.FamilyQuotientService, id: sandbox, kind: sandbox, max_concurrent: 1024}\n"
	if upstream != "" {
		src = fmt.Sprintf("sources:\n  - {service: relais.familyquotient.v1.FamilyQuotientService, id: slow, kind: remote, addr: '%s', server_name: localhost, ca_file: '%s', cert_file: '%s', key_file: '%s', max_concurrent: 1024}\n",
			upstream, e.caFile, filepath.Join(e.dir, "proxy", "cert.pem"), filepath.Join(e.dir, "proxy", "key.pem"))
	}
	_ = os.WriteFile(filepath.Join(d, "sources.yaml"), []byte(src), 0o600)
	conf := fmt.Sprintf(`data_dir: %[1]s
listen: {data: "127.0.0.1:0", admin: "127.0.0.1:0", ops: "127.0.0.1:0", http: "127.0.0.1:0"}
tls: {server_names: [localhost], server_ips: [127.0.0.1], dev_ca_dir: %[2]s}
audit: {signing_key_file: %[1]s/audit.key, pseudonym_key_file: %[1]s/pseudonym.key}
sources_file: %[1]s/sources.yaml
limits: {allow_duplicate_calls: true}   # the load repeats one subject
`, d, filepath.Join(e.dir, "ca"))
	_ = os.WriteFile(filepath.Join(d, "relaisd.yaml"), []byte(conf), 0o600)
	_ = os.Setenv("RELAIS_PPROF", "1")
	cmd, banner, err := e.start(e.relaisd, "serve", "--config", filepath.Join(d, "relaisd.yaml"))
	if err != nil {
		return "", nil, err
	}
	f := strings.Fields(banner) // relaisd: data API on ADDR, …, operations on http://ADDR, …
	for _, w := range f {
		if strings.HasPrefix(w, "http://") {
			if e.opsAddr == nil {
				e.opsAddr = map[*exec.Cmd]string{}
			}
			e.opsAddr[cmd] = strings.TrimSuffix(strings.TrimPrefix(w, "http://"), ",")
		}
	}
	for i, w := range f {
		if w == "on" && i > 0 && f[i-1] == "API" {
			return strings.TrimSuffix(f[i+1], ","), cmd, nil
		}
	}
	return "", nil, fmt.Errorf("relaisd banner: %q", banner)
}

func (e *env) stop() {
	for _, p := range e.procs {
		_ = p.Process.Signal(os.Interrupt)
	}
	for _, p := range e.procs {
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = p.Process.Kill()
			<-done
		}
	}
	for _, f := range e.cleanups {
		f()
	}
	_ = os.RemoveAll(e.dir)
}

type target struct {
	name  string
	addr  string
	procs []*exec.Cmd // server-side processes whose CPU is counted
}

type result struct {
	calls, errors int
	throughput    float64
	p50, p90, p99 time.Duration
	cpuPerCall    time.Duration
	rssMiB        float64
}

// measure makes calls at concurrency c (bounded by maxTime) over
// min(c, 8) connections and reads the servers' CPU and RSS from /proc.
func (e *env) measure(t target, c, calls int, maxTime time.Duration) (result, error) {
	nconn := min(c, 8)
	var clients []familyquotientv1.FamilyQuotientServiceClient
	for i := 0; i < nconn; i++ {
		conn, err := grpc.NewClient(t.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			Certificates: []tls.Certificate{e.client}, RootCAs: e.roots, ServerName: "localhost", MinVersion: tls.VersionTLS12})))
		if err != nil {
			return result{}, err
		}
		defer conn.Close()
		clients = append(clients, familyquotientv1.NewFamilyQuotientServiceClient(conn))
	}
	req := &familyquotientv1.GetFamilyQuotientRequest{
		AccessContext: &commonv1.AccessContext{Recipient: "21990000100005", Purpose: "tarification_sociale", CaseReference: "BENCH"},
		Subject: &commonv1.SubjectIdentity{BirthName: "DUPONT", GivenNames: []string{"Zoé"}, Sex: commonv1.Sex_SEX_FEMALE, BirthDate: "1984-03-12",
			BirthPlaceCog: "75056", BirthCountryCog: "99100"},
	}
	for _, cl := range clients { // warm up every connection
		if _, err := cl.GetFamilyQuotient(context.Background(), req); err != nil {
			return result{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	cpu0 := cpuOf(t.procs)
	var next, errs atomic.Int64
	lat := make([][]time.Duration, c)
	deadline := time.Now().Add(maxTime)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < c; w++ {
		wg.Go(func() {
			cl := clients[w%nconn]
			for next.Add(1) <= int64(calls) && time.Now().Before(deadline) {
				s := time.Now()
				if _, err := cl.GetFamilyQuotient(context.Background(), req); err != nil {
					errs.Add(1)
					continue
				}
				lat[w] = append(lat[w], time.Since(s))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	if len(all) == 0 {
		return result{}, fmt.Errorf("no successful call (%d errors)", errs.Load())
	}
	slices.Sort(all)
	q := func(p float64) time.Duration { return all[min(len(all)-1, int(p*float64(len(all))))] }
	r := result{calls: len(all), errors: int(errs.Load()), throughput: float64(len(all)) / elapsed.Seconds(), p50: q(.5), p90: q(.9), p99: q(.99)}
	if len(t.procs) > 0 {
		r.cpuPerCall = (cpuOf(t.procs) - cpu0) / time.Duration(len(all))
		r.rssMiB = rssOf(t.procs[0])
	}
	return r, nil
}

// cpuOf sums user+system time of the processes and their children
// threads, from /proc/PID/stat (clock ticks of 10 ms).
func cpuOf(procs []*exec.Cmd) time.Duration {
	var total time.Duration
	for _, p := range procs {
		for _, pid := range append([]int{p.Process.Pid}, childPIDs(p.Process.Pid)...) {
			raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if err != nil {
				continue
			}
			s := string(raw)
			fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
			if len(fields) > 12 {
				u, _ := strconv.ParseInt(fields[11], 10, 64)
				k, _ := strconv.ParseInt(fields[12], 10, 64)
				total += time.Duration(u+k) * 10 * time.Millisecond
			}
		}
	}
	return total
}

// childPIDs lists the direct children (nginx workers).
func childPIDs(pid int) []int {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(raw)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func rssOf(p *exec.Cmd) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func writeResults(path string, calls int, levels []int, targets []target, res map[string]map[int]result, direct, via result) error {
	var b strings.Builder
	host, _ := os.Hostname()
	_ = host
	fmt.Fprintf(&b, "# Relais performance\n\n")
	fmt.Fprintf(&b, "One complete run of `go run ./bench/cmd/relais-bench -calls %d -levels %s` on %s, %d cores (%s), %s.\n\n",
		calls, joinInts(levels), runtime.GOOS+"/"+runtime.GOARCH, runtime.NumCPU(), cpuModel(), time.Now().UTC().Format("2006-01-02 15:04 MST"))
	b.WriteString("All targets answer the same family-quotient call over the same mTLS (ECDSA P-256, TLS 1.3, X25519MLKEM768 preferred) to the same Go client (min(c, 8) HTTP/2 connections), on loopback, with the client in the same 2-core machine: the figures compare the targets with each other, not with other hardware. CPU per call is the servers' user+system time from /proc (nginx workers plus the limit server for `peer`); RSS is the server process after the run.\n\n")
	b.WriteString("| target | concurrency | calls | errors | calls/s | p50 | p90 | p99 | CPU/call | RSS (MiB) |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, t := range targets {
		for _, c := range levels {
			r := res[t.name][c]
			fmt.Fprintf(&b, "| %s | %d | %d | %d | %.0f | %s | %s | %s | %s | %.0f |\n", t.name, c, r.calls, r.errors, r.throughput, ms(r.p50), ms(r.p90), ms(r.p99), us(r.cpuPerCall), r.rssMiB)
		}
	}
	b.WriteString("\n| concurrency | relais / limit (throughput) | relais / peer (throughput) |\n|---|---|---|\n")
	for _, c := range levels {
		fmt.Fprintf(&b, "| %d | %.2f | %.2f |\n", c, res["relais"][c].throughput/res["limit"][c].throughput, res["relais"][c].throughput/res["peer"][c].throughput)
	}
	if _, ok := res["relais-ha1"]; ok {
		writeHA(&b, levels, res)
	}
	fmt.Fprintf(&b, "\n## A source that takes 20 ms\n\nThe limit server answering after 20 ms, called directly and through relais (remote adapter over mTLS), concurrency 8:\n\n")
	b.WriteString("| path | calls | p50 | p99 |\n|---|---|---|---|\n")
	fmt.Fprintf(&b, "| direct | %d | %s | %s |\n| through relais | %d | %s | %s |\n", direct.calls, ms(direct.p50), ms(direct.p99), via.calls, ms(via.p50), ms(via.p99))
	fmt.Fprintf(&b, "\nAdded by the broker: **p50 %s, p99 %s**.\n", ms(via.p50-direct.p50), ms(via.p99-direct.p99))
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
func us(d time.Duration) string { return fmt.Sprintf("%d µs", d.Microseconds()) }

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func cpuModel() string {
	raw, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "model name") {
			return strings.TrimSpace(strings.SplitN(line, ":", 2)[1])
		}
	}
	return "unknown CPU"
}

// captureProfile fetches a 5 s CPU profile of a relaisd process.
func (e *env) captureProfile(p *exec.Cmd, path string) {
	time.Sleep(200 * time.Millisecond)
	resp, err := http.Get("http://" + e.opsAddr[p] + "/debug/pprof/profile?seconds=5")
	if err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = io.Copy(f, resp.Body)
}
