// Package pgtest runs a real, throwaway PostgreSQL cluster for tests, from
// the Debian server binaries (/usr/lib/postgresql/N/bin), so that the
// PostgreSQL stores are tested against the server they will run on rather
// than a fake.
//
// A cluster lives in its own temporary directory: initdb creates it,
// `pg_ctl start -w` starts it (waiting for readiness, never sleeping) on a
// free 127.0.0.1 port with its unix socket in that directory, and `pg_ctl
// stop` stops it. initdb and pg_ctl refuse to run as root: when the tests
// run as root the server runs as the unprivileged user `nobody`, which owns
// the directory. fsync and synchronous commit stay on: durability is what
// the tests of the audit log check.
//
// Authentication, for tests only: the admin role (AdminRole, the cluster's
// superuser) is trusted on 127.0.0.1 without a password, so DSN needs no
// secret; every other role authenticates with SCRAM over 127.0.0.1 — NewLogin
// creates such a role with a random password, for tests of the password path
// and of the grants given to relais_broker.
//
// Every test binary shares one cluster (Shared), started at first use and
// stopped by Main, which the package's TestMain must call. Tests that stop
// and restart the server take their own (Start). When the server binaries
// are missing the tests are skipped, except when RELAIS_REQUIRE_POSTGRES=1
// (CI sets it), where they fail: CI must never skip the PostgreSQL suites.
// RELAIS_PG_BINDIR overrides where the binaries are looked for.
//
// A test binary killed before its cleanup (a -timeout panic) leaves its
// server running: the next cluster started on the machine stops and removes
// clusters whose test process is gone.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/relais-broker/relais/internal/localserver"
)

// AdminRole is the cluster's superuser, trusted on 127.0.0.1 (tests only).
const AdminRole = "relais_admin"

// dirPrefix names cluster directories, so stale ones can be found.
const dirPrefix = "relais-pgtest-"

// Cluster is a running (or stopped) throwaway PostgreSQL cluster.
type Cluster struct {
	bin  string
	root string // owned by the server's user; holds data/, the socket and server.log
	data string
	port int
	cred *syscall.Credential // nil when the tests do not run as root

	mu      sync.Mutex
	running bool
}

var (
	mainCalled atomic.Bool
	sharedMu   sync.Mutex
	shared     *Cluster
	sharedErr  error
	seq        atomic.Int64
)

// Main is for TestMain: it runs the tests, stops the shared cluster and
// exits with the tests' status.
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run is Main for a TestMain that has more to clean up: it runs the
// tests, stops the shared cluster and returns the exit code.
func Run(m *testing.M) int {
	mainCalled.Store(true)
	code := m.Run()
	sharedMu.Lock()
	if shared != nil {
		if err := shared.close(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
		shared = nil
	}
	sharedMu.Unlock()
	return code
}

// Shared returns the test binary's cluster, started at first use. It must
// not be stopped by the test: use Start for that.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	bin := binDir(t)
	if !mainCalled.Load() {
		t.Fatal("pgtest.Shared needs func TestMain(m *testing.M) { pgtest.Main(m) } in this package, so the cluster is stopped")
	}
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil && sharedErr == nil {
		shared, sharedErr = start(bin)
	}
	if sharedErr != nil {
		t.Fatalf("pgtest: %v", sharedErr)
	}
	return shared
}

// Start returns a cluster of the test's own, stopped and removed when the
// test ends: for tests that stop and restart the server.
func Start(t testing.TB) *Cluster {
	t.Helper()
	c, err := start(binDir(t))
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("postgres log (tail):\n%s", c.logTail(4000))
		}
		if err := c.close(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return c
}

// binDir finds the server binaries, or skips (fails under
// RELAIS_REQUIRE_POSTGRES=1) when there are none.
func binDir(t testing.TB) string {
	t.Helper()
	if dir := localserver.PostgresBinDir(); dir != "" {
		return dir
	}
	msg := "no PostgreSQL server binaries (initdb, pg_ctl, postgres): apt-get install postgresql, or set RELAIS_PG_BINDIR"
	if os.Getenv("RELAIS_REQUIRE_POSTGRES") == "1" {
		t.Fatal(msg + " (RELAIS_REQUIRE_POSTGRES=1: the PostgreSQL suites must run)")
	}
	t.Skip(msg)
	return ""
}

// start creates and starts a cluster.
func start(bin string) (*Cluster, error) {
	base := baseDir()
	reapStale(base, bin)
	root, err := os.MkdirTemp(base, dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("cluster directory: %w", err)
	}
	c := &Cluster{bin: bin, root: root, data: filepath.Join(root, "data")}
	ok := false
	defer func() {
		if !ok {
			_ = killPostmaster(c.data) // a start that timed out may have left one
			_ = os.RemoveAll(root)
		}
	}()
	if err := os.WriteFile(filepath.Join(root, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return nil, fmt.Errorf("cluster directory: %w", err)
	}
	if os.Geteuid() == 0 {
		c.cred = localserver.Unprivileged()
		if err := os.Chown(root, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return nil, fmt.Errorf("give the cluster directory to uid %d: %w", c.cred.Uid, err)
		}
		if err := os.Chmod(root, 0o700); err != nil {
			return nil, err
		}
	}
	// -N: initdb's own fsync of the template files is not what we test,
	// and the running server keeps fsync on.
	if out, err := c.run("initdb", "-D", c.data, "-U", AdminRole, "-A", "trust", "-E", "UTF8", "--locale=C", "-N"); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	if err := c.writeHBA(); err != nil {
		return nil, err
	}
	base0, err := os.ReadFile(filepath.Join(c.data, "postgresql.conf"))
	if err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := localserver.FreePort()
		if err != nil {
			return nil, err
		}
		c.port = port
		if err := c.writeConf(base0); err != nil {
			return nil, err
		}
		if lastErr = c.pgStart(); lastErr == nil {
			ok = true
			return c, nil
		}
		if !strings.Contains(c.logTail(2000), "could not bind") && !strings.Contains(c.logTail(2000), "in use") {
			break // not a port race: retrying will not help
		}
	}
	return nil, lastErr
}

// baseDir is where cluster directories go: the temp dir, when every parent
// is traversable by the server's user, else /tmp.
func baseDir() string {
	d := os.TempDir()
	if os.Geteuid() != 0 {
		return d
	}
	for p := d; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return "/tmp"
		}
		if p == filepath.Dir(p) {
			return d
		}
	}
}

func (c *Cluster) writeHBA() error {
	hba := "# written by internal/pgtest: tests only\n" +
		"local all " + AdminRole + " trust\n" +
		"host  all " + AdminRole + " 127.0.0.1/32 trust\n" +
		"host  all all 127.0.0.1/32 scram-sha-256\n"
	return c.writeOwned(filepath.Join(c.data, "pg_hba.conf"), hba)
}

func (c *Cluster) writeConf(base []byte) error {
	conf := string(base) + fmt.Sprintf(`
# written by internal/pgtest
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%s'
fsync = on
synchronous_commit = on
full_page_writes = on
shared_buffers = 16MB
max_connections = 200
logging_collector = off
log_min_messages = warning
timezone = 'UTC'
`, c.port, c.root)
	return c.writeOwned(filepath.Join(c.data, "postgresql.conf"), conf)
}

// writeOwned writes a file of the data directory, owned by the server's user.
func (c *Cluster) writeOwned(path, content string) error {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return err
	}
	if c.cred != nil {
		return os.Chown(path, int(c.cred.Uid), int(c.cred.Gid))
	}
	return nil
}

// run runs one of the server binaries as the server's user.
func (c *Cluster) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	cmd.Dir = c.root
	cmd.Env = childEnv(c.root)
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	cmd.WaitDelay = 10 * time.Second
	return cmd.CombinedOutput()
}

// childEnv is the environment without PG* variables that would redirect
// the tools to another server.
func childEnv(home string) []string {
	env := []string{"HOME=" + home, "LANG=C", "LC_ALL=C"}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PATH=") || strings.HasPrefix(kv, "TZ=") {
			env = append(env, kv)
		}
	}
	return env
}

func (c *Cluster) pgStart() error {
	out, err := c.run("pg_ctl", "start", "-D", c.data, "-w", "-t", "60", "-s", "-l", filepath.Join(c.root, "server.log"))
	if err != nil {
		return fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, c.logTail(2000))
	}
	c.mu.Lock()
	c.running = true
	c.mu.Unlock()
	return nil
}

func (c *Cluster) pgStop() error {
	out, err := c.run("pg_ctl", "stop", "-D", c.data, "-m", "fast", "-w", "-t", "60", "-s")
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %v\n%s", err, out)
	}
	c.mu.Lock()
	c.running = false
	c.mu.Unlock()
	return nil
}

// close stops the server (killing our own postmaster as a last resort) and
// removes the cluster's directory.
func (c *Cluster) close() error {
	var stopErr error
	if c.isRunning() {
		if stopErr = c.pgStop(); stopErr != nil {
			if kerr := killPostmaster(c.data); kerr != nil {
				stopErr = fmt.Errorf("%v; %v", stopErr, kerr)
			} else {
				stopErr = nil
			}
		}
	}
	if err := os.RemoveAll(c.root); err != nil && stopErr == nil {
		stopErr = err
	}
	return stopErr
}

// killPostmaster sends SIGQUIT (immediate shutdown), then SIGKILL, to the
// postmaster recorded in dataDir, only if that process is a postgres
// serving dataDir.
func killPostmaster(dataDir string) error {
	raw, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return nil // not running
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(raw), "\n", 2)[0]))
	if err != nil || pid <= 1 {
		return fmt.Errorf("unreadable postmaster.pid")
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), "postgres") || !strings.Contains(string(cmdline), dataDir) {
		return nil // gone, or another process now has that pid
	}
	_ = syscall.Kill(pid, syscall.SIGQUIT)
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			deadline = time.Now().Add(10 * time.Second)
		}
		time.Sleep(50 * time.Millisecond) // polling a process we cannot wait for
	}
	return nil
}

// alive reports whether pid is a live process (a zombie is not).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // no procfs: trust kill(0)
	}
	// The state follows the parenthesised command name.
	if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z' && stat[i+2] != 'X'
	}
	return true
}

// reapStale stops and removes the clusters left by test processes that are
// gone (killed before their cleanup ran).
func reapStale(base, bin string) {
	dirs, _ := filepath.Glob(filepath.Join(base, dirPrefix+"*"))
	for _, root := range dirs {
		raw, err := os.ReadFile(filepath.Join(root, "owner"))
		if err != nil {
			continue // being created, or not ours
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil || pid <= 0 || alive(pid) {
			continue
		}
		c := &Cluster{bin: bin, root: root, data: filepath.Join(root, "data")}
		if fi, err := os.Stat(root); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 && st.Uid != 0 {
				c.cred = &syscall.Credential{Uid: st.Uid, Gid: st.Gid, NoSetGroups: true}
			}
		}
		if _, err := os.Stat(filepath.Join(c.data, "postmaster.pid")); err == nil {
			if _, err := c.run("pg_ctl", "stop", "-D", c.data, "-m", "immediate", "-w", "-t", "30", "-s"); err != nil {
				_ = killPostmaster(c.data)
			}
		}
		_ = os.RemoveAll(root)
	}
}

func (c *Cluster) isRunning() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.running
}

func (c *Cluster) logTail(n int) string {
	raw, _ := os.ReadFile(filepath.Join(c.root, "server.log"))
	if len(raw) > n {
		raw = raw[len(raw)-n:]
	}
	return string(raw)
}

// Port is the server's 127.0.0.1 port.
func (c *Cluster) Port() int { return c.port }

// DataDir is the cluster's data directory (for byte scans of what the
// server stores).
func (c *Cluster) DataDir() string { return c.data }

// DSN is the connection string of database db for the admin role, over
// 127.0.0.1 without TLS.
func (c *Cluster) DSN(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", AdminRole, c.port, db)
}

// Stop stops the server (pg_ctl stop -m fast); its data is kept for
// Restart.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	if err := c.pgStop(); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
}

// Restart starts the server again, on the same port with the same data.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	if err := c.pgStart(); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
}

// NewDatabase creates a fresh empty database owned by the admin role,
// dropped when the test ends, and returns its DSN.
func (c *Cluster) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d_%s", seq.Add(1), randomHex(4))
	if err := c.admin(context.Background(), "postgres", "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		if !c.isRunning() {
			return // the test stopped its own cluster: it is removed whole
		}
		if err := c.admin(context.Background(), "postgres", "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database: %v", err)
		}
	})
	return c.DSN(name)
}

// NewLogin creates a login role with a random password, member of the
// given roles (e.g. relais_broker, once migrations created it), and
// returns a DSN of database db (a DSN or a database name) that
// authenticates with that password (SCRAM over 127.0.0.1). The role is
// dropped, with what it owns in db, when the test ends.
func (c *Cluster) NewLogin(t testing.TB, db string, memberOf ...string) string {
	t.Helper()
	dbName := db
	if cfg, err := pgx.ParseConfig(db); err == nil && strings.Contains(db, "://") {
		dbName = cfg.Database
	}
	role := fmt.Sprintf("login_%d_%s", seq.Add(1), randomHex(4))
	password := randomHex(16)
	stmt := "CREATE ROLE " + role + " LOGIN PASSWORD '" + password + "'"
	if len(memberOf) > 0 {
		quoted := make([]string, len(memberOf))
		for i, r := range memberOf {
			quoted[i] = pgx.Identifier{r}.Sanitize()
		}
		stmt += " IN ROLE " + strings.Join(quoted, ", ")
	}
	if err := c.admin(context.Background(), "postgres", stmt); err != nil {
		t.Fatalf("pgtest: create login role: %v", err)
	}
	t.Cleanup(func() {
		if !c.isRunning() {
			return
		}
		ctx := context.Background()
		_ = c.admin(ctx, dbName, "REASSIGN OWNED BY "+role+" TO "+AdminRole+"; DROP OWNED BY "+role)
		if err := c.admin(ctx, "postgres", "DROP ROLE IF EXISTS "+role); err != nil {
			t.Errorf("pgtest: drop login role: %v", err)
		}
	})
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", role, password, c.port, dbName)
}

// admin runs sql as the admin role in database db.
func (c *Cluster) admin(ctx context.Context, db, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN(db))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
