// Package localserver holds what every harness that starts a real server
// on this machine needs — the test harnesses (internal/pgtest,
// internal/vaultdev, internal/haproxytest) and relais-bench: a free
// loopback port, the unprivileged user PostgreSQL runs as under root, the
// PostgreSQL server binaries, and a buffer a child process can write its
// output into while the caller reads it.
package localserver

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// FreePort returns a TCP port free on 127.0.0.1 at the time of the call.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Unprivileged is the credential of the user "nobody" (65534 when the
// lookup fails): initdb and pg_ctl refuse to run as root.
func Unprivileged() *syscall.Credential {
	uid, gid := uint32(65534), uint32(65534)
	if u, err := user.Lookup("nobody"); err == nil {
		if n, err := strconv.Atoi(u.Uid); err == nil {
			uid = uint32(n)
		}
		if n, err := strconv.Atoi(u.Gid); err == nil {
			gid = uint32(n)
		}
	}
	return &syscall.Credential{Uid: uid, Gid: gid, NoSetGroups: true}
}

// PostgresBinDir finds the PostgreSQL server binaries (initdb, pg_ctl,
// postgres): $RELAIS_PG_BINDIR, then `pg_config --bindir`, then the newest
// Debian /usr/lib/postgresql/N/bin; "" when none has them.
func PostgresBinDir() string {
	var candidates []string
	if d := os.Getenv("RELAIS_PG_BINDIR"); d != "" {
		candidates = append(candidates, d)
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		candidates = append(candidates, strings.TrimSpace(string(out)))
	}
	globbed, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(globbed, func(i, j int) bool { return pgMajor(globbed[i]) > pgMajor(globbed[j]) })
	candidates = append(candidates, globbed...)
	for _, d := range candidates {
		if hasServer(d) {
			return d
		}
	}
	return ""
}

func pgMajor(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func hasServer(dir string) bool {
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() {
			return false
		}
	}
	return true
}

// Buffer collects a child process's output safely while it is read.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns what was written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
