package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/registry/pgreg"
	"github.com/relais-broker/relais/internal/keyfile"
	"github.com/relais-broker/relais/internal/localserver"
	"github.com/relais-broker/relais/internal/pgdb"
)

// The relais-ha targets: relaisd serve replicas on one PostgreSQL
// database (registry, quotas, duplicate guard and audit chains in the
// database, one chain per replica), behind Debian's HAProxy in TCP mode
// health-checking /readyz — TLS passes through, so each replica still
// sees the client certificate. relais-ha1 is one replica behind HAProxy,
// relais-ha2 two. On one 2-core machine shared by the client, HAProxy,
// PostgreSQL and the replicas, a second replica adds no CPU: these
// targets show the cost of the shared store and the balancer, not the
// scaling.

// haAdminRole is the throwaway cluster's superuser, trusted on loopback.
const haAdminRole = "relais_bench"

// haEnv is what the HA targets run on: the database and its processes.
type haEnv struct {
	dsn      string
	postgres *exec.Cmd
	root     string // the cluster's directory, removed at stop
	keys     string // audit and pseudonym keys every replica shares
}

// ensurePG starts the throwaway PostgreSQL once, migrates and seeds it,
// and makes the audit and pseudonym keys its replicas share.
func (e *env) ensurePG() (*haEnv, error) {
	if e.pg != nil {
		return e.pg, nil
	}
	h, err := e.startPostgres()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := pgdb.Migrate(ctx, h.dsn); err != nil {
		return nil, fmt.Errorf("migrate the bench database: %w", err)
	}
	if err := seedPG(ctx, h.dsn); err != nil {
		return nil, err
	}
	h.keys = filepath.Join(e.dir, "pg-keys")
	if err := os.MkdirAll(h.keys, 0o700); err != nil {
		return nil, err
	}
	if err := keyfile.CreateSigningKey(filepath.Join(h.keys, "audit.key"), filepath.Join(h.keys, "audit.pub")); err != nil {
		return nil, err
	}
	if err := keyfile.CreatePseudonymKey(filepath.Join(h.keys, "pseudonym.key")); err != nil {
		return nil, err
	}
	e.pg = h
	return h, nil
}

// startRelaisPostgres runs the relais-postgres target: one relaisd serve
// on the database, whose source is the remote adapter to upstream (the
// same hop as relais-remote), without a balancer in front.
func (e *env) startRelaisPostgres(upstream string, upstreamProc *exec.Cmd) (target, error) {
	h, err := e.ensurePG()
	if err != nil {
		return target{}, err
	}
	p, err := e.startReplica(h, "relais-postgres", e.remoteSources(upstream))
	if err != nil {
		return target{}, err
	}
	return target{"relais-postgres", p.data, map[string][]*exec.Cmd{roleOwn: {p.cmd}, roleUpstream: {upstreamProc}, roleStore: {h.postgres}}}, nil
}

// startHA starts replicas replicas of relaisd serve on the database
// (sandbox source) and one HAProxy per replica count in counts (each in
// front of the first n replicas). It returns the targets, named
// relais-haN.
func (e *env) startHA(replicas int, counts []int) ([]target, error) {
	if _, err := haproxyBin(); err != nil {
		return nil, err
	}
	h, err := e.ensurePG()
	if err != nil {
		return nil, err
	}
	var rs []*relaisProc
	for i := 1; i <= replicas; i++ {
		p, err := e.startReplica(h, fmt.Sprintf("bench-%d", i), sandboxSources)
		if err != nil {
			return nil, err
		}
		rs = append(rs, p)
	}
	var targets []target
	for _, n := range counts {
		if n > len(rs) {
			return nil, fmt.Errorf("relais-ha%d: only %d replicas", n, len(rs))
		}
		var backends [][2]string
		var procs []*exec.Cmd
		for _, r := range rs[:n] {
			backends = append(backends, [2]string{r.data, r.ops})
			procs = append(procs, r.cmd)
		}
		addr, proxy, err := e.startHAProxy(fmt.Sprintf("ha%d", n), backends)
		if err != nil {
			return nil, err
		}
		targets = append(targets, target{fmt.Sprintf("relais-ha%d", n), addr, map[string][]*exec.Cmd{roleOwn: append(procs, proxy), roleStore: {h.postgres}}})
	}
	return targets, nil
}

// startPostgres runs a throwaway cluster from Debian's server binaries
// in the foreground (a child process whose backends are its children, so
// its CPU is counted like nginx's workers), as `nobody` when run as root
// (initdb refuses root).
func (e *env) startPostgres() (*haEnv, error) {
	bin := localserver.PostgresBinDir()
	if bin == "" {
		return nil, errors.New("no PostgreSQL server binaries (apt-get install postgresql, or set RELAIS_PG_BINDIR)")
	}
	// Not under e.dir: the server's user must traverse every parent.
	root, err := os.MkdirTemp("/tmp", "relais-bench-pg")
	if err != nil {
		return nil, err
	}
	e.cleanups = append(e.cleanups, func() { _ = os.RemoveAll(root) })
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		cred = localserver.Unprivileged()
		if err := os.Chown(root, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	run := func(name string, args ...string) *exec.Cmd {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.Dir = root
		cmd.Env = []string{"HOME=" + root, "LANG=C", "LC_ALL=C", "PATH=" + os.Getenv("PATH")}
		if cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
		return cmd
	}
	data := filepath.Join(root, "data")
	if out, err := run("initdb", "-D", data, "-U", haAdminRole, "-A", "trust", "-E", "UTF8", "--locale=C", "-N").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	port, err := localserver.FreePort()
	if err != nil {
		return nil, err
	}
	// fsync and synchronous commit on: the audit records are durable
	// before the answer, as in production.
	conf := fmt.Sprintf("\nlisten_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\nfsync = on\nsynchronous_commit = on\nmax_connections = 200\nshared_buffers = 64MB\nlogging_collector = off\n", port, root)
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteString(conf)
		err = errors.Join(err, f.Close())
	}
	if err != nil {
		return nil, err
	}
	cmd := run("postgres", "-D", data)
	cmd.Stderr, _ = os.Create(filepath.Join(e.dir, "postgres.log"))
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	e.procs = append(e.procs, cmd) // stop: SIGINT, PostgreSQL's fast shutdown
	admin := fmt.Sprintf("postgres://%s@127.0.0.1:%d/postgres?sslmode=disable", haAdminRole, port)
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := pgx.Connect(ctx, admin)
		if err == nil {
			_, err = conn.Exec(ctx, "CREATE DATABASE relais")
			_ = conn.Close(ctx)
			cancel()
			if err != nil {
				return nil, fmt.Errorf("create the bench database: %w", err)
			}
			break
		}
		cancel()
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("postgres not accepting connections after 60 s: %w", err)
		}
		time.Sleep(100 * time.Millisecond) // polling a server starting up
	}
	return &haEnv{dsn: fmt.Sprintf("postgres://%s@127.0.0.1:%d/relais?sslmode=disable", haAdminRole, port), postgres: cmd, root: root}, nil
}

// seedPG grants the bench consumer the family quotient without rate
// limit, as startRelais does in its bbolt registry.
func seedPG(ctx context.Context, dsn string) error {
	pool, err := pgdb.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()
	reg, err := pgreg.Open(ctx, pool, pgreg.Options{})
	if err != nil {
		return err
	}
	defer reg.Close()
	if _, err := reg.AddConsumer(ctx, registry.Consumer{SIRET: benchConsumer, Name: "Bench"}); err != nil {
		return fmt.Errorf("seed the consumer: %w", err)
	}
	_, err = reg.AddGrant(ctx, benchGrant())
	if err != nil {
		return fmt.Errorf("seed the grant: %w", err)
	}
	return nil
}

// startReplica runs relaisd serve on the database as replica id, with
// the shared keys and the given sources file.
func (e *env) startReplica(h *haEnv, id, sources string) (*relaisProc, error) {
	d := filepath.Join(e.dir, id)
	if err := os.MkdirAll(d, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(d, "dsn"), []byte(h.dsn+"\n"), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(d, "sources.yaml"), []byte(sources), 0o600); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`store: {kind: postgres, dsn_file: %[1]s/dsn}
replica_id: %[4]s
drain_period: 0s
listen: {data: "127.0.0.1:0", admin: "127.0.0.1:0", ops: "127.0.0.1:0", http: "127.0.0.1:0"}
tls: {server_names: [localhost], server_ips: [127.0.0.1], dev_ca_dir: %[2]s}
audit: {signing_key_file: %[3]s/audit.key, pseudonym_key_file: %[3]s/pseudonym.key}
sources_file: %[1]s/sources.yaml
limits: {allow_duplicate_calls: true}   # the load repeats one subject
`, d, filepath.Join(e.dir, "ca"), h.keys, id)
	if err := os.WriteFile(filepath.Join(d, "relaisd.yaml"), []byte(conf), 0o600); err != nil {
		return nil, err
	}
	p, err := e.startRelaisd(id, filepath.Join(d, "relaisd.yaml"))
	if err != nil {
		return nil, fmt.Errorf("replica %s: %w", id, err)
	}
	p.dataDir = d
	return p, nil
}

func haproxyBin() (string, error) {
	if p := os.Getenv("HAPROXY_BIN"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/haproxy"); err == nil {
		return "/usr/sbin/haproxy", nil
	}
	return "", errors.New("haproxy is not installed (apt-get install haproxy)")
}

// startHAProxy runs HAProxy in TCP mode in front of backends (data and
// ops address of each replica), checking GET /readyz on the ops port, as
// deploy/haproxy does, and waits until it accepts connections.
func (e *env) startHAProxy(name string, backends [][2]string) (string, *exec.Cmd, error) {
	bin, err := haproxyBin()
	if err != nil {
		return "", nil, err
	}
	port, err := localserver.FreePort()
	if err != nil {
		return "", nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	var servers strings.Builder
	for i, b := range backends {
		host, hport, _ := net.SplitHostPort(b[1])
		fmt.Fprintf(&servers, "    server r%d %s check addr %s port %s\n", i+1, b[0], host, hport)
	}
	conf := fmt.Sprintf(`global
    nbthread 1
defaults
    mode tcp
    timeout connect 1s
    timeout client 1m
    timeout server 1m
    timeout check 1s
    retries 3
    option redispatch 1
frontend relais_in
    bind %s
    default_backend relais
backend relais
    balance roundrobin
    option httpchk
    http-check send meth GET uri /readyz
    http-check expect status 200
    default-server inter 1s fall 2 rise 2
%s`, addr, servers.String())
	path := filepath.Join(e.dir, "haproxy-"+name+".cfg")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, "-db", "-f", path)
	cmd.Stdout, _ = os.Create(filepath.Join(e.dir, "haproxy-"+name+".log"))
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	e.procs = append(e.procs, cmd)
	for i := 0; i < 200; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr, cmd, nil
		}
		time.Sleep(50 * time.Millisecond) // polling a listener coming up
	}
	return "", nil, errors.New("haproxy did not start (see its log)")
}
