package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/registry/boltreg"
	"github.com/relais-broker/relais/broker/scope"
	"github.com/relais-broker/relais/certs"
	"github.com/relais-broker/relais/internal/keyfile"
	"github.com/relais-broker/relais/internal/localserver"
)

// benchConsumer is the SIRET of the consumer every target serves.
const benchConsumer = "21990000100005"

// fqService is the service every target answers.
const fqService = "relais.familyquotient.v1.FamilyQuotientService"

// env holds what one run starts: the dev CA, the certificates, the
// relaisd binary and every child process, stopped together.
type env struct {
	dir      string
	ca       *certs.DevCA
	caFile   string
	client   tls.Certificate
	roots    *x509.CertPool
	procs    []*exec.Cmd
	relaisd  string
	selfPath string
	keep     bool
	pg       *haEnv
	// cleanups run at stop, after every process exited.
	cleanups []func()
}

// relaisProc is one relaisd serve process and where it listens.
type relaisProc struct {
	cmd           *exec.Cmd
	data, ops     string
	dataDir       string
	config, files string
}

// setup makes a dev CA, the certificates and builds relaisd.
func setup(keep bool) (*env, error) {
	if _, err := os.Stat(filepath.Join("cmd", "relaisd")); err != nil {
		return nil, errors.New("run from the repository root (it builds ./cmd/relaisd)")
	}
	dir, err := os.MkdirTemp("", "relais-bench")
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir, keep: keep}
	if e.ca, err = certs.OpenDevCA(filepath.Join(dir, "ca"), nil); err != nil {
		return e, err
	}
	e.caFile = filepath.Join(dir, "ca", "ca.pem")
	ctx := context.Background()
	srv, err := e.ca.IssueServer(ctx, []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, 24*time.Hour)
	if err != nil {
		return e, err
	}
	if err := certs.WriteCredential(filepath.Join(dir, "server"), srv, nil); err != nil {
		return e, err
	}
	for _, id := range []struct {
		kind identity.Kind
		name string
	}{{identity.KindConsumer, benchConsumer}, {identity.KindOperator, "proxy"}} {
		c, err := e.ca.IssueClient(ctx, certs.ClientRequest{Kind: id.kind, ID: id.name, TTL: 24 * time.Hour})
		if err != nil {
			return e, err
		}
		if err := certs.WriteCredential(filepath.Join(dir, id.name), c, nil); err != nil {
			return e, err
		}
	}
	if e.client, err = tls.LoadX509KeyPair(e.clientCert(), e.clientKey()); err != nil {
		return e, err
	}
	caPEM, err := os.ReadFile(e.caFile)
	if err != nil {
		return e, err
	}
	e.roots = x509.NewCertPool()
	e.roots.AppendCertsFromPEM(caPEM)
	e.relaisd = filepath.Join(dir, "relaisd")
	if out, err := exec.Command("go", "build", "-o", e.relaisd, "./cmd/relaisd").CombinedOutput(); err != nil {
		return e, fmt.Errorf("build relaisd: %v\n%s", err, out)
	}
	e.selfPath, err = os.Executable()
	return e, err
}

func (e *env) clientCert() string { return filepath.Join(e.dir, benchConsumer, "cert.pem") }
func (e *env) clientKey() string  { return filepath.Join(e.dir, benchConsumer, "key.pem") }

// start runs a child process and returns the first line it prints.
func (e *env) start(logName, name string, args ...string) (*exec.Cmd, string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "RELAIS_PPROF=1") // relaisd: pprof on the ops listener, for -cpuprofile
	logf, err := os.Create(filepath.Join(e.dir, logName+".log"))
	if err != nil {
		return nil, "", err
	}
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
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
			return nil, "", fmt.Errorf("%s exited before it was ready (log %s)", logName, logf.Name())
		}
		return cmd, l, nil
	case <-time.After(60 * time.Second):
		return nil, "", fmt.Errorf("%s not ready after 60 s", logName)
	}
}

// startLimit runs the limit server (this binary's limit-server command).
func (e *env) startLimit(name string, delay time.Duration) (string, *exec.Cmd, error) {
	cmd, addr, err := e.start(name, e.selfPath, "limit-server", "--cert", filepath.Join(e.dir, "server", "cert.pem"), "--key", filepath.Join(e.dir, "server", "key.pem"),
		"--ca", e.caFile, "--delay", delay.String())
	return addr, cmd, err
}

// startNginx runs Debian's nginx as an mTLS gRPC reverse proxy in front
// of the limit server.
func (e *env) startNginx(upstream string) (string, *exec.Cmd, error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			return "", nil, errors.New("nginx is not installed (apt-get install nginx-light)")
		}
		bin = "/usr/sbin/nginx"
	}
	port, err := localserver.FreePort()
	if err != nil {
		return "", nil, err
	}
	prefix := filepath.Join(e.dir, "nginx")
	if err := os.MkdirAll(filepath.Join(prefix, "logs"), 0o700); err != nil {
		return "", nil, err
	}
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
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr, cmd, nil
		}
		time.Sleep(50 * time.Millisecond) // polling a listener coming up
	}
	return "", nil, fmt.Errorf("nginx did not start (see %s/logs)", prefix)
}

// remoteSources is a sources file whose family-quotient source is the
// remote adapter to upstream, with the broker's client certificate
// ("proxy", the same nginx presents), as an operator configures it.
func (e *env) remoteSources(upstream string) string {
	return fmt.Sprintf("sources:\n  - {service: %s, id: limit, kind: remote, addr: '%s', server_name: localhost, ca_file: '%s', cert_file: '%s', key_file: '%s', max_concurrent: 1024}\n",
		fqService, upstream, e.caFile, filepath.Join(e.dir, "proxy", "cert.pem"), filepath.Join(e.dir, "proxy", "key.pem"))
}

// sandboxSources is a sources file serving the family quotient from the
// in-process sandbox.
const sandboxSources = "sources:\n  - {service: " + fqService + ", id: sandbox, kind: sandbox, max_concurrent: 1024}\n"

// startRelais runs `relaisd serve` on bbolt stores in its own data
// directory with a registry granting the bench consumer everything
// without rate limit, a durable audit log and the given sources file.
func (e *env) startRelais(name, sources string) (*relaisProc, error) {
	d := filepath.Join(e.dir, name)
	if err := os.MkdirAll(d, 0o700); err != nil {
		return nil, err
	}
	if err := keyfile.CreateSigningKey(filepath.Join(d, "audit.key"), filepath.Join(d, "audit.pub")); err != nil {
		return nil, err
	}
	if err := keyfile.CreatePseudonymKey(filepath.Join(d, "pseudonym.key")); err != nil {
		return nil, err
	}
	reg, err := boltreg.Open(filepath.Join(d, "registry.db"), boltreg.Options{})
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	_, err = reg.AddConsumer(ctx, registry.Consumer{SIRET: benchConsumer, Name: "Bench"})
	if err == nil {
		_, err = reg.AddGrant(ctx, benchGrant())
	}
	err = errors.Join(err, reg.Close())
	if err != nil {
		return nil, fmt.Errorf("seed %s: %w", name, err)
	}
	if err := os.WriteFile(filepath.Join(d, "sources.yaml"), []byte(sources), 0o600); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`data_dir: %[1]s
listen: {data: "127.0.0.1:0", admin: "127.0.0.1:0", ops: "127.0.0.1:0", http: "127.0.0.1:0"}
tls: {server_names: [localhost], server_ips: [127.0.0.1], dev_ca_dir: %[2]s}
audit: {signing_key_file: %[1]s/audit.key, pseudonym_key_file: %[1]s/pseudonym.key}
sources_file: %[1]s/sources.yaml
limits: {allow_duplicate_calls: true}   # the load repeats one subject
`, d, filepath.Join(e.dir, "ca"))
	if err := os.WriteFile(filepath.Join(d, "relaisd.yaml"), []byte(conf), 0o600); err != nil {
		return nil, err
	}
	p, err := e.startRelaisd(name, filepath.Join(d, "relaisd.yaml"))
	if err != nil {
		return nil, err
	}
	p.dataDir = d
	return p, nil
}

// benchGrant grants the bench consumer every field of the family
// quotient, without rate limit.
func benchGrant() registry.Grant {
	return registry.Grant{Consumer: benchConsumer, Service: fqService,
		Scopes:    scope.Of("family_quotient.value", "family_quotient.beneficiaries", "family_quotient.children", "family_quotient.address"),
		Purposes:  []registry.Purpose{{Code: "tarification_sociale", Label: "Bench", LegalBasis: "bench"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
}

// startRelaisd runs relaisd serve with a config file and reads its
// addresses from the banner.
func (e *env) startRelaisd(name, config string) (*relaisProc, error) {
	cmd, banner, err := e.start(name, e.relaisd, "serve", "--config", config)
	if err != nil {
		return nil, err
	}
	p := &relaisProc{cmd: cmd, config: config}
	f := strings.Fields(banner) // relaisd: data API on ADDR, …, operations on http://ADDR, …
	for i, w := range f {
		switch {
		case strings.HasPrefix(w, "http://") && p.ops == "":
			p.ops = strings.TrimSuffix(strings.TrimPrefix(w, "http://"), ",")
		case w == "on" && i > 0 && f[i-1] == "API" && p.data == "":
			p.data = strings.TrimSuffix(f[i+1], ",")
		}
	}
	if p.data == "" || p.ops == "" {
		return nil, fmt.Errorf("%s banner: %q", name, banner)
	}
	return p, nil
}

// stop interrupts every child process, kills those still running after
// 10 s, then removes the run's directory.
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
	if e.keep {
		fmt.Fprintln(os.Stderr, "relais-bench: kept", e.dir)
		return
	}
	_ = os.RemoveAll(e.dir)
}

// cpuOf sums user+system time of the processes and their direct
// children (nginx workers, PostgreSQL backends), from /proc/PID/stat;
// the process line already adds up all its threads. Clock ticks are
// taken as 10 ms (USER_HZ on Linux).
func cpuOf(procs []*exec.Cmd) time.Duration {
	var total time.Duration
	for _, p := range procs {
		for _, pid := range append([]int{p.Process.Pid}, childPIDs(p.Process.Pid)...) {
			raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if err != nil {
				continue
			}
			s := string(raw)
			i := strings.LastIndexByte(s, ')')
			if i < 0 || i+2 > len(s) {
				continue
			}
			fields := strings.Fields(s[i+2:])
			if len(fields) > 12 {
				u, _ := strconv.ParseInt(fields[11], 10, 64)
				k, _ := strconv.ParseInt(fields[12], 10, 64)
				total += time.Duration(u+k) * 10 * time.Millisecond
			}
		}
	}
	return total
}

// childPIDs lists the direct children of pid's main thread.
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

// rssOf sums VmRSS (MiB) of the processes and their direct children.
func rssOf(procs []*exec.Cmd) float64 {
	var total float64
	for _, p := range procs {
		for _, pid := range append([]int{p.Process.Pid}, childPIDs(p.Process.Pid)...) {
			total += rssPID(pid)
		}
	}
	return total
}

func rssPID(pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			if len(f) < 2 {
				return 0
			}
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}
