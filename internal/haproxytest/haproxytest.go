// Package haproxytest starts a real HAProxy (the Debian package) for tests
// of several relaisd replicas behind a load balancer: TCP mode, so TLS
// passes through and each replica still sees the client certificate, with
// HTTP health checks of each replica's ops listener (`GET /readyz`) and
// redispatch of new connections away from a dead replica.
//
// Tests wait for what HAProxy itself reports, through its runtime API (a
// stats socket in the test's temporary directory), instead of sleeping:
// WaitState(t, "r1", "DOWN", timeout).
//
// The binary is $HAPROXY_BIN, else /usr/sbin/haproxy, else `haproxy` on
// PATH. When none is found the test is skipped, except when
// RELAIS_REQUIRE_HAPROXY=1 (CI sets it), where it fails.
package haproxytest

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/relais-broker/relais/internal/localserver"
)

// BackendName is the HAProxy backend (proxy) holding the replicas, as
// runtime API commands name it ("set server relais/r1 state drain").
const BackendName = "relais"

// Backend is one replica behind the proxy.
type Backend struct {
	// Name is the server's name in HAProxy (r1, r2…), used by WaitState.
	Name string
	// Addr is the replica's TLS listener, host:port; HAProxy forwards bytes
	// to it untouched.
	Addr string
	// HealthAddr is the replica's plain-HTTP ops listener, host:port, where
	// HAProxy asks GET /readyz and wants 200.
	HealthAddr string
}

// Options tunes the generated configuration; the zero value suits tests.
type Options struct {
	// Balance is the algorithm, roundrobin (default) or leastconn.
	Balance string
	// Inter is the health check interval (default 200ms); a replica is
	// marked DOWN after Fall failed checks and UP after Rise good ones
	// (default 2 each).
	Inter      time.Duration
	Fall, Rise int
	// ShutdownSessions closes a replica's established connections when it
	// is marked DOWN (on-marked-down shutdown-sessions). Off by default: a
	// draining replica turns /readyz 503 while it still serves in-flight
	// calls, which this option would cut (see deploy/haproxy/haproxy.cfg).
	ShutdownSessions bool
	// Timeout is HAProxy's client and server inactivity timeout (default
	// 1m).
	Timeout time.Duration
}

// Proxy is a running HAProxy in master-worker mode.
type Proxy struct {
	addr    string
	dir     string
	cfgPath string
	sock    string
	opts    Options

	cmd    *exec.Cmd
	exited chan struct{}
	out    *localserver.Buffer

	mu       sync.Mutex
	stopped  bool
	backends []Backend
}

// Binary returns the HAProxy binary to run, or "" when there is none.
func Binary() string {
	if p := os.Getenv("HAPROXY_BIN"); p != "" {
		return p
	}
	if _, err := os.Stat("/usr/sbin/haproxy"); err == nil {
		return "/usr/sbin/haproxy"
	}
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	return ""
}

// Require returns the binary or skips t (fails it under
// RELAIS_REQUIRE_HAPROXY=1).
func Require(t testing.TB) string {
	t.Helper()
	bin := Binary()
	if bin == "" {
		msg := "no HAProxy binary: apt-get install haproxy, or set HAPROXY_BIN"
		if os.Getenv("RELAIS_REQUIRE_HAPROXY") == "1" {
			t.Fatal(msg + " (RELAIS_REQUIRE_HAPROXY=1: the HAProxy tests must run)")
		}
		t.Skip(msg)
	}
	return bin
}

// Start starts HAProxy on a free 127.0.0.1 port in front of backends and
// stops it when t ends. It returns once HAProxy answers on its runtime API
// (its listener is bound by then); backends may still be in their first
// checks: use WaitState before counting on one.
func Start(t testing.TB, backends []Backend, opts ...Options) *Proxy {
	t.Helper()
	bin := Require(t)
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	o = o.withDefaults()
	if o.Balance != "roundrobin" && o.Balance != "leastconn" {
		t.Fatalf("haproxytest: balance %q is not roundrobin or leastconn", o.Balance)
	}
	if err := checkBackends(backends); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if len(filepath.Join(dir, "admin.sock")) > 100 {
		// A unix socket path has at most 107 bytes: a long TMPDIR or test
		// name would make HAProxy refuse the stats socket.
		short, err := os.MkdirTemp("/tmp", "haproxytest")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(short) })
		dir = short
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		p, err := start(bin, dir, backends, o)
		if err == nil {
			t.Cleanup(func() {
				p.Stop(t)
				if t.Failed() {
					t.Logf("haproxy output:\n%s", p.Output())
				}
			})
			return p
		}
		lastErr = err // most likely the free port was taken meanwhile
	}
	t.Fatalf("haproxy: %v", lastErr)
	return nil
}

func (o Options) withDefaults() Options {
	if o.Balance == "" {
		o.Balance = "roundrobin"
	}
	if o.Inter <= 0 {
		o.Inter = 200 * time.Millisecond
	}
	if o.Fall <= 0 {
		o.Fall = 2
	}
	if o.Rise <= 0 {
		o.Rise = 2
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Minute
	}
	return o
}

func checkBackends(backends []Backend) error {
	if len(backends) == 0 {
		return fmt.Errorf("haproxytest: no backends")
	}
	seen := map[string]bool{}
	for _, b := range backends {
		if b.Name == "" || strings.ContainsAny(b.Name, " \t\n/#") {
			return fmt.Errorf("haproxytest: backend name %q is not a plain word", b.Name)
		}
		if seen[b.Name] {
			return fmt.Errorf("haproxytest: backend name %q used twice", b.Name)
		}
		seen[b.Name] = true
		for _, a := range []string{b.Addr, b.HealthAddr} {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return fmt.Errorf("haproxytest: backend %s: address %q: %v", b.Name, a, err)
			}
		}
	}
	return nil
}

func start(bin, dir string, backends []Backend, o Options) (*Proxy, error) {
	port, err := localserver.FreePort()
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		addr:     "127.0.0.1:" + strconv.Itoa(port),
		dir:      dir,
		cfgPath:  filepath.Join(dir, "haproxy.cfg"),
		sock:     filepath.Join(dir, "admin.sock"),
		opts:     o,
		exited:   make(chan struct{}),
		out:      &localserver.Buffer{},
		backends: append([]Backend(nil), backends...),
	}
	if err := p.writeConfig(); err != nil {
		return nil, err
	}
	_ = os.Remove(p.sock)
	// -W: master-worker, so a reload (SIGUSR2 to the master) keeps the PID
	// we stop; -db: stay in the foreground, as our child.
	p.cmd = exec.Command(bin, "-W", "-db", "-f", p.cfgPath)
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	if err := p.waitReady(10 * time.Second); err != nil {
		p.kill()
		return nil, fmt.Errorf("%w\n%s", err, p.out.String())
	}
	return p, nil
}

// waitReady polls the runtime API until the worker answers.
func (p *Proxy) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := p.Command("show info"); err == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("haproxy exited before it was ready")
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("haproxy runtime api not answering after %s", timeout)
		}
	}
}

var cfgTemplate = template.Must(template.New("cfg").Parse(`# generated by internal/haproxytest
global
    nbthread 1
    stats socket {{.Sock}} mode 600 level admin
    # no log section: what goes wrong reaches stderr, kept by the test

defaults
    mode tcp
    timeout connect 1s
    timeout client {{.Timeout}}
    timeout server {{.Timeout}}
    timeout check 1s
    retries 3
    option redispatch 1

frontend relais_in
    bind {{.Addr}}
    default_backend {{.Backend}}

backend {{.Backend}}
    balance {{.Balance}}
    option httpchk
    http-check send meth GET uri /readyz
    http-check expect status 200
    default-server inter {{.Inter}} fall {{.Fall}} rise {{.Rise}}{{if .ShutdownSessions}} on-marked-down shutdown-sessions{{end}}
{{- range .Servers}}
    server {{.Name}} {{.Addr}} check addr {{.HealthHost}} port {{.HealthPort}}
{{- end}}
`))

type cfgServer struct{ Name, Addr, HealthHost, HealthPort string }

func (p *Proxy) writeConfig() error {
	var servers []cfgServer
	for _, b := range p.backends {
		host, port, _ := net.SplitHostPort(b.HealthAddr)
		servers = append(servers, cfgServer{Name: b.Name, Addr: b.Addr, HealthHost: host, HealthPort: port})
	}
	var buf bytes.Buffer
	err := cfgTemplate.Execute(&buf, map[string]any{
		"Sock": p.sock, "Addr": p.addr, "Backend": BackendName,
		"Balance": p.opts.Balance, "Timeout": ms(p.opts.Timeout), "Inter": ms(p.opts.Inter),
		"Fall": p.opts.Fall, "Rise": p.opts.Rise, "ShutdownSessions": p.opts.ShutdownSessions,
		"Servers": servers,
	})
	if err != nil {
		return err
	}
	return os.WriteFile(p.cfgPath, buf.Bytes(), 0o600)
}

func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) + "ms" }

// Addr is where clients connect, 127.0.0.1:PORT.
func (p *Proxy) Addr() string { return p.addr }

// ConfigPath is the generated configuration, for tests that want to read
// or check it.
func (p *Proxy) ConfigPath() string { return p.cfgPath }

// Output is what HAProxy printed so far (server state changes, alerts).
func (p *Proxy) Output() string { return p.out.String() }

// Stop stops HAProxy (SIGTERM to the master it started, SIGKILL after 5 s)
// and waits for it to exit. It is called at cleanup; calling it again is a
// no-op.
func (p *Proxy) Stop(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	p.stopped = true
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		t.Logf("haproxy did not stop on SIGTERM within 5 s: killing pid %d", p.cmd.Process.Pid)
		p.kill()
	}
}

func (p *Proxy) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// Reload replaces the backends with a new list: it rewrites the
// configuration and asks the master for a graceful reload (SIGUSR2), then
// waits until a new worker answers. Established connections stay on the
// old worker until they end.
func (p *Proxy) Reload(t testing.TB, backends []Backend) {
	t.Helper()
	if err := checkBackends(backends); err != nil {
		t.Fatal(err)
	}
	old, err := p.workerPID()
	if err != nil {
		t.Fatalf("haproxy reload: %v", err)
	}
	p.mu.Lock()
	p.backends = append([]Backend(nil), backends...)
	err = p.writeConfig()
	p.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var asked time.Time
	for {
		if pid, err := p.workerPID(); err == nil && pid != old {
			return
		}
		// A reload asked while the master is still settling after its
		// start (or a previous reload) can go unheard: ask again.
		if time.Since(asked) > time.Second {
			if err := p.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
				t.Fatalf("haproxy reload: %v", err)
			}
			asked = time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy reload: no new worker after 10 s (old pid %d)\n%s", old, p.Output())
		}
		select {
		case <-p.exited:
			t.Fatalf("haproxy exited during reload\n%s", p.Output())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (p *Proxy) workerPID() (int, error) {
	out, err := p.Command("show info")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "Pid: "); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("haproxy show info has no pid")
}

// Command sends one runtime API command ("show stat", "set server
// relais/r1 state drain"…) and returns HAProxy's answer.
func (p *Proxy) Command(cmd string) (string, error) {
	c, err := net.DialTimeout("unix", p.sock, time.Second)
	if err != nil {
		return "", fmt.Errorf("haproxy runtime api: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		return "", fmt.Errorf("haproxy runtime api: %w", err)
	}
	out, err := io.ReadAll(c)
	if err != nil {
		return "", fmt.Errorf("haproxy runtime api: %w", err)
	}
	return string(out), nil
}

// Server is one replica as HAProxy sees it (a row of `show stat`).
type Server struct {
	Name string
	// Status is HAProxy's word: UP, DOWN, DRAIN, MAINT, or a transition
	// such as "UP 1/2" (up, one failed check of the two that mark it down).
	Status string
	// Current and Total count client sessions (connections) routed to the
	// server: open now, and since start.
	Current, Total int
	// CheckStatus is the last health check result (L7OK, L7STS, L4CON…).
	CheckStatus string
}

// Servers returns every replica's state, in configuration order.
func (p *Proxy) Servers() ([]Server, error) {
	out, err := p.Command("show stat")
	if err != nil {
		return nil, err
	}
	r := csv.NewReader(bufio.NewReader(strings.NewReader(strings.TrimPrefix(out, "# "))))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil || len(rows) == 0 {
		return nil, fmt.Errorf("haproxy show stat: unreadable answer %q", firstLine(out))
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	width := 0
	for _, need := range []string{"pxname", "svname", "status", "scur", "stot", "check_status"} {
		i, ok := col[need]
		if !ok {
			return nil, fmt.Errorf("haproxy show stat: no %s column", need)
		}
		width = max(width, i+1)
	}
	var servers []Server
	for _, row := range rows[1:] {
		if len(row) < width || row[col["pxname"]] != BackendName {
			continue
		}
		name := row[col["svname"]]
		if name == "BACKEND" || name == "FRONTEND" {
			continue
		}
		cur, _ := strconv.Atoi(row[col["scur"]])
		tot, _ := strconv.Atoi(row[col["stot"]])
		servers = append(servers, Server{Name: name, Status: row[col["status"]], Current: cur, Total: tot, CheckStatus: row[col["check_status"]]})
	}
	return servers, nil
}

// Server returns one replica's state.
func (p *Proxy) Server(name string) (Server, error) {
	servers, err := p.Servers()
	if err != nil {
		return Server{}, err
	}
	for _, s := range servers {
		if s.Name == name {
			return s, nil
		}
	}
	return Server{}, fmt.Errorf("haproxy has no server %s/%s", BackendName, name)
}

// WaitState waits until HAProxy reports server name in status (exactly:
// "UP", "DOWN", "DRAIN", "MAINT"; "UP" also needs a passed health check)
// and fails t after timeout.
func (p *Proxy) WaitState(t testing.TB, name, status string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last Server
	var lastErr error
	for {
		last, lastErr = p.Server(name)
		// HAProxy counts a server UP before its first check: "UP" here
		// means a check has passed too.
		if lastErr == nil && last.Status == status && (status != "UP" || last.CheckStatus == "L7OK") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy server %s not %s after %s: last %+v, %v", name, status, timeout, last, lastErr)
		}
		select {
		case <-p.exited:
			t.Fatalf("haproxy exited while waiting for %s to be %s\n%s", name, status, p.Output())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// SetServerState sets a replica's administrative state through the runtime
// API: "drain" (no new connections, established ones go on), "maint" (out
// of rotation, checks stopped) or "ready" (back in rotation).
func (p *Proxy) SetServerState(t testing.TB, name, state string) {
	t.Helper()
	switch state {
	case "ready", "drain", "maint":
	default:
		t.Fatalf("haproxytest: server state %q is not ready, drain or maint", state)
	}
	out, err := p.Command("set server " + BackendName + "/" + name + " state " + state)
	if err != nil {
		t.Fatal(err)
	}
	if s := strings.TrimSpace(out); s != "" {
		t.Fatalf("haproxy set server %s state %s: %s", name, state, s)
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
