package haproxytest_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/certs"
	"github.com/relais-broker/relais/internal/haproxytest"
	"github.com/relais-broker/relais/internal/tlstest"
)

const siret = "21990000100005" // fictitious, as in the other tests

// replica is a tiny stand-in for relaisd: an mTLS listener that answers
// each connection with its name and the client certificate's URI SAN, and
// an ops listener whose /readyz can be flipped to 503.
type replica struct {
	name   string
	ln     net.Listener
	health *httptest.Server
	ready  atomic.Bool
	wg     sync.WaitGroup
}

func newReplica(t *testing.T, pki *tlstest.PKI, name string) *replica {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", certs.ServerConfig(pki.Server, pki.Trust))
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{name: name, ln: ln}
	r.ready.Store(true)
	r.health = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/readyz" {
			http.NotFound(w, req)
			return
		}
		if !r.ready.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		_, _ = fmt.Fprintln(w, "ready")
	}))
	r.wg.Add(1)
	go r.serve()
	t.Cleanup(func() {
		r.health.Close()
		_ = r.ln.Close()
		r.wg.Wait()
	})
	return r
}

func (r *replica) serve() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			tc := c.(*tls.Conn)
			if err := tc.Handshake(); err != nil {
				return
			}
			uri := "-"
			if peers := tc.ConnectionState().PeerCertificates; len(peers) > 0 && len(peers[0].URIs) == 1 {
				uri = peers[0].URIs[0].String()
			}
			_, _ = fmt.Fprintf(tc, "%s %s\n", r.name, uri)
			// Echo until the client closes: proves the stream is a plain
			// pass-through in both directions.
			sc := bufio.NewScanner(tc)
			for sc.Scan() {
				_, _ = fmt.Fprintf(tc, "%s\n", sc.Text())
			}
		}()
	}
}

func (r *replica) backend() haproxytest.Backend {
	return haproxytest.Backend{Name: r.name, Addr: r.ln.Addr().String(), HealthAddr: r.health.Listener.Addr().String()}
}

type bench struct {
	pki      *tlstest.PKI
	client   *tls.Config
	replicas []*replica
	proxy    *haproxytest.Proxy
}

func newBench(t *testing.T, n int, opts ...haproxytest.Options) *bench {
	t.Helper()
	haproxytest.Require(t)
	pki := tlstest.New(t)
	cred := pki.Issue(t, identity.KindConsumer, siret)
	src := certs.NewCertSource()
	if err := src.Set(cred.FullChainPEM(), cred.KeyPEM); err != nil {
		t.Fatal(err)
	}
	b := &bench{pki: pki, client: certs.ClientConfig(src, pki.Roots, "localhost")}
	var backends []haproxytest.Backend
	for i := 1; i <= n; i++ {
		r := newReplica(t, pki, fmt.Sprintf("r%d", i))
		b.replicas = append(b.replicas, r)
		backends = append(backends, r.backend())
	}
	b.proxy = haproxytest.Start(t, backends, opts...)
	for _, r := range b.replicas {
		b.proxy.WaitState(t, r.name, "UP", 10*time.Second)
	}
	return b
}

// call opens one new connection through the proxy and returns the name of
// the replica that served it and the URI SAN that replica saw.
func (b *bench) call(t *testing.T) (name, uri string) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", b.proxy.Addr(), b.client)
	if err != nil {
		t.Fatalf("dial through haproxy: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	rd := bufio.NewReader(c)
	line, err := rd.ReadString('\n')
	if err != nil {
		t.Fatalf("read greeting through haproxy: %v", err)
	}
	name, uri, _ = strings.Cut(strings.TrimSpace(line), " ")
	if _, err := fmt.Fprintln(c, "ping"); err != nil {
		t.Fatal(err)
	}
	if echo, err := rd.ReadString('\n'); err != nil || echo != "ping\n" {
		t.Fatalf("echo through haproxy: %q, %v", echo, err)
	}
	return name, uri
}

func (b *bench) spread(t *testing.T, n int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for i := 0; i < n; i++ {
		name, _ := b.call(t)
		seen[name]++
	}
	return seen
}

func TestTLSPassesThroughWithTheClientCertificate(t *testing.T) {
	b := newBench(t, 2)
	want := identity.URI(identity.KindConsumer, siret).String()
	for i := 0; i < 4; i++ {
		name, uri := b.call(t)
		if uri != want {
			t.Fatalf("replica %s saw client uri %q, want %q: tls was not passed through", name, uri, want)
		}
	}
}

func TestTrafficReachesEveryReplica(t *testing.T) {
	b := newBench(t, 2)
	seen := b.spread(t, 10)
	if seen["r1"] == 0 || seen["r2"] == 0 || seen["r1"]+seen["r2"] != 10 {
		t.Fatalf("connections per replica %v, want both served", seen)
	}
	// HAProxy's own counters agree with what the replicas saw.
	servers, err := b.proxy.Servers()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		if s.Total != seen[s.Name] {
			t.Errorf("haproxy counted %d sessions for %s, the replica saw %d", s.Total, s.Name, seen[s.Name])
		}
	}
}

func TestNotReadyReplicaGetsNoNewConnections(t *testing.T) {
	b := newBench(t, 2)
	r1 := b.replicas[0]

	r1.ready.Store(false)
	t0 := time.Now()
	b.proxy.WaitState(t, "r1", "DOWN", 10*time.Second)
	t.Logf("readyz 503 → DOWN in %s (inter 200ms, fall 2)", time.Since(t0).Round(time.Millisecond))
	if seen := b.spread(t, 8); seen["r2"] != 8 {
		t.Fatalf("with r1 DOWN, connections per replica %v, want all on r2", seen)
	}

	r1.ready.Store(true)
	t0 = time.Now()
	b.proxy.WaitState(t, "r1", "UP", 10*time.Second)
	t.Logf("readyz 200 → UP in %s (rise 2)", time.Since(t0).Round(time.Millisecond))
	if seen := b.spread(t, 8); seen["r1"] == 0 {
		t.Fatalf("with r1 back UP, connections per replica %v, want r1 served again", seen)
	}
}

func TestEstablishedConnectionSurvivesMarkDownUnlessShutdownSessions(t *testing.T) {
	for _, shutdown := range []bool{false, true} {
		t.Run(fmt.Sprintf("shutdown-sessions=%v", shutdown), func(t *testing.T) {
			b := newBench(t, 1, haproxytest.Options{ShutdownSessions: shutdown})
			c, err := tls.Dial("tcp", b.proxy.Addr(), b.client)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			rd := bufio.NewReader(c)
			if _, err := rd.ReadString('\n'); err != nil {
				t.Fatal(err)
			}
			b.replicas[0].ready.Store(false)
			b.proxy.WaitState(t, "r1", "DOWN", 10*time.Second)
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = fmt.Fprintln(c, "still there")
			echo, err := rd.ReadString('\n')
			alive := err == nil && echo == "still there\n"
			if alive == shutdown {
				t.Fatalf("after mark-down the established connection alive=%v (%q, %v), want %v", alive, echo, err, !shutdown)
			}
		})
	}
}

func TestDeadReplicaConnectionsRedispatched(t *testing.T) {
	// r1 stops accepting while its health check still says ready (a process
	// wedged between the two listeners, or killed before the next check):
	// redispatch sends each connection that r1 refuses to r2.
	b := newBench(t, 2)
	_ = b.replicas[0].ln.Close()
	if seen := b.spread(t, 6); seen["r2"] != 6 {
		t.Fatalf("with r1's listener closed, connections per replica %v, want all on r2", seen)
	}
}

func TestDrainAndMaintThroughTheRuntimeAPI(t *testing.T) {
	b := newBench(t, 2)
	for _, tc := range []struct{ state, status string }{{"drain", "DRAIN"}, {"maint", "MAINT"}} {
		b.proxy.SetServerState(t, "r1", tc.state)
		b.proxy.WaitState(t, "r1", tc.status, 5*time.Second)
		if seen := b.spread(t, 6); seen["r2"] != 6 {
			t.Fatalf("with r1 %s, connections per replica %v, want all on r2", tc.status, seen)
		}
		b.proxy.SetServerState(t, "r1", "ready")
		b.proxy.WaitState(t, "r1", "UP", 5*time.Second)
	}
	if seen := b.spread(t, 6); seen["r1"] == 0 {
		t.Fatalf("with r1 ready again, connections per replica %v", seen)
	}
}

func TestReloadChangesTheBackends(t *testing.T) {
	b := newBench(t, 1)
	r2 := newReplica(t, b.pki, "r2")
	b.proxy.Reload(t, []haproxytest.Backend{r2.backend()})
	b.proxy.WaitState(t, "r2", "UP", 10*time.Second)
	if seen := b.spread(t, 4); seen["r2"] != 4 {
		t.Fatalf("after reload, connections per replica %v, want all on r2", seen)
	}
	if _, err := b.proxy.Server("r1"); err == nil {
		t.Fatal("r1 still configured after reload")
	}
}

func TestDeployExampleParses(t *testing.T) {
	bin := haproxytest.Require(t)
	cfg := filepath.Join("..", "..", "deploy", "haproxy", "haproxy.cfg")
	out, err := exec.Command(bin, "-c", "-f", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("haproxy -c -f %s: %v\n%s", cfg, err, out)
	}
	if strings.Contains(string(out), "WARNING") {
		t.Fatalf("haproxy -c -f %s warns:\n%s", cfg, out)
	}
	// What the example promises, on its directive lines (comments aside).
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var directives []string
	for _, line := range strings.Split(string(raw), "\n") {
		if line, _, _ = strings.Cut(line, "#"); strings.TrimSpace(line) != "" {
			directives = append(directives, strings.Join(strings.Fields(line), " "))
		}
	}
	text := strings.Join(directives, "\n")
	for _, want := range []string{"mode tcp", "option httpchk", "http-check send meth GET uri /readyz", "http-check expect status 200", "option redispatch 1"} {
		if !strings.Contains(text, want) {
			t.Errorf("the example lacks %q", want)
		}
	}
	for _, bad := range []string{"mode http", " ssl", "shutdown-sessions"} {
		if strings.Contains(text, bad) {
			t.Errorf("the example has %q: tls must pass through and draining replicas keep their sessions", bad)
		}
	}
	if n := strings.Count(text, " check port 9090"); n != 6 {
		t.Errorf("the example health-checks %d servers on the ops port, want 3 replicas x 2 frontends", n)
	}
}
