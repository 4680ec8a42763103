package main_test

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/metrics"
)

// These tests run the client examples of examples/clients — Python with
// Debian's grpcio, Node with grpc-js — as a vendor would: against a real
// `relaisd dev`, with code generated from (or loaded from) the proto
// bundle the broker serves, and nothing else from the repository.

// requireClients skips when a client toolchain is missing, unless CI says
// it must be there (RELAIS_REQUIRE_CLIENTS=1, .ci/run).
func requireClients(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("RELAIS_REQUIRE_CLIENTS") == "1" {
		t.Fatalf("RELAIS_REQUIRE_CLIENTS=1 but %v", err)
	}
	t.Skipf("%v (set RELAIS_REQUIRE_CLIENTS=1 to fail instead)", err)
}

// debianPython is the interpreter that has Debian's grpcio, protobuf and
// cryptography: /usr/bin/python3 first (a PATH python3 may be another).
func debianPython() (string, error) {
	candidates := []string{"/usr/bin/python3"}
	if p, err := exec.LookPath("python3"); err == nil {
		candidates = append(candidates, p)
	}
	for _, py := range candidates {
		if exec.Command(py, "-c", "import grpc, google.protobuf, cryptography").Run() == nil {
			return py, nil
		}
	}
	return "", errors.New("no python3 with grpc, protobuf and cryptography (Debian: python3-grpcio python3-protobuf python3-cryptography)")
}

// fetchBundle downloads /docs/proto.tar.gz from the broker and unpacks it
// into a fresh directory outside the repository; it returns the bundle root.
func fetchBundle(t *testing.T, d *devBroker) string {
	t.Helper()
	c := httpClient(t, d, filepath.Join(d.dataDir, "dev", "consumers", "mairie-exemple"))
	resp, err := c.Get("https://" + d.webAddr + "/docs/proto.tar.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/gzip" {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		t.Fatalf("GET /docs/proto.tar.gz: %d %s\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tr := tar.NewReader(zr)
	files := 0
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Clean(hdr.Name)
		if !filepath.IsLocal(name) {
			t.Fatalf("bundle entry %q escapes the directory", hdr.Name)
		}
		path := filepath.Join(dir, name)
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(path, 0o755)
		case tar.TypeReg:
			var data []byte
			if data, err = io.ReadAll(tr); err == nil {
				err = os.WriteFile(path, data, 0o644)
			}
			files++
		default:
			t.Fatalf("bundle entry %q: type %c", hdr.Name, hdr.Typeflag)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	root := filepath.Join(dir, "relais-proto")
	if _, err := os.Stat(filepath.Join(root, "google", "rpc", "error_details.proto")); err != nil || files < 10 {
		t.Fatalf("bundle: %d files, google/rpc missing: %v", files, err)
	}
	return root
}

// clientFlags are the example's flags for the demo consumers of d.
func clientFlags(d *devBroker, renewOut string) []string {
	dev := filepath.Join(d.dataDir, "dev")
	full, limited := filepath.Join(dev, "consumers", "mairie-exemple"), filepath.Join(dev, "consumers", "ccas-limite")
	return []string{
		"--addr", d.addr, "--ca", filepath.Join(dev, "ca.pem"),
		"--cert", filepath.Join(full, "cert.pem"), "--key", filepath.Join(full, "key.pem"),
		"--limited-cert", filepath.Join(limited, "cert.pem"), "--limited-key", filepath.Join(limited, "key.pem"),
		"--renew-out", renewOut,
	}
}

// run runs a client process with a deadline and returns its output.
func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// checkClientOutput checks every step the examples report, and the
// renewed credential they wrote.
func checkClientOutput(t *testing.T, d *devBroker, out, renewOut string) {
	t.Helper()
	line := func(prefix string) string {
		for l := range strings.SplitSeq(out, "\n") {
			if strings.HasPrefix(l, prefix) {
				return strings.TrimPrefix(l, prefix)
			}
		}
		t.Fatalf("no line %q in:\n%s", prefix, out)
		return ""
	}
	fields := func(s string) map[string]bool {
		m := map[string]bool{}
		for f := range strings.SplitSeq(s, ",") {
			m[f] = true
		}
		return m
	}
	full := fields(line("first call: ok, fields "))
	for _, f := range []string{"value", "regime", "beneficiaries", "children", "address"} {
		if !full[f] {
			t.Errorf("first call: %q missing:\n%s", f, out)
		}
	}
	limited := fields(line("limited consumer: ok, fields "))
	if !limited["value"] || limited["beneficiaries"] || limited["children"] || limited["address"] {
		t.Errorf("limited consumer: not the minimised answer:\n%s", out)
	}
	if got := line("invalid siret: "); got != "code INVALID_ARGUMENT reason invalid_recipient violations access_context.recipient" {
		t.Errorf("invalid siret decoded as %q", got)
	}
	m := regexp.MustCompile(`^serial ([0-9a-f]+), not after `).FindStringSubmatch(line("renewed: "))
	if m == nil {
		t.Fatalf("renewal line:\n%s", out)
	}
	line("renewed credential: ok")
	pair, err := tls.LoadX509KeyPair(filepath.Join(renewOut, "cert.pem"), filepath.Join(renewOut, "key.pem"))
	if err != nil {
		t.Fatalf("the renewed credential: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	id, err := identity.FromCertificate(leaf)
	if err != nil || id.Kind != identity.KindConsumer || id.ID != "21990000100005" {
		t.Errorf("renewed certificate identity %+v, %v", id, err)
	}
	if identity.SerialHex(leaf) != m[1] {
		t.Errorf("cert.pem has serial %s, the client reported %s", identity.SerialHex(leaf), m[1])
	}
	oldPEM, _ := os.ReadFile(filepath.Join(d.dataDir, "dev", "consumers", "mairie-exemple", "cert.pem"))
	if old, err := tls.X509KeyPair(oldPEM, mustRead(t, filepath.Join(d.dataDir, "dev", "consumers", "mairie-exemple", "key.pem"))); err == nil {
		if oldLeaf, _ := x509.ParseCertificate(old.Certificate[0]); oldLeaf != nil && identity.SerialHex(oldLeaf) == m[1] {
			t.Error("the renewed certificate is the old one")
		}
	}
	if len(pair.Certificate) < 2 {
		t.Error("cert.pem holds no issuing chain after the leaf")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPythonClientFromTheServedBundle(t *testing.T) {
	t.Parallel()
	py, err := debianPython()
	requireClients(t, err)
	for _, tool := range []string{"protoc", "grpc_python_plugin"} {
		_, err := exec.LookPath(tool)
		requireClients(t, err)
	}
	d := startDev(t)
	bundle := fetchBundle(t, d)
	stubs := filepath.Join(t.TempDir(), "stubs")
	example, err := filepath.Abs("../../examples/clients/python")
	if err != nil {
		t.Fatal(err)
	}
	// Generated outside the repository, from the bundle alone.
	run(t, t.TempDir(), filepath.Join(example, "generate.sh"), bundle, stubs)
	renewOut := filepath.Join(t.TempDir(), "renewed")
	out := run(t, t.TempDir(), py, append([]string{filepath.Join(example, "relais_client.py"), "--stubs", stubs}, clientFlags(d, renewOut)...)...)
	t.Logf("python client:\n%s", out)
	checkClientOutput(t, d, out, renewOut)
}

func TestNodeClientFromTheServedBundle(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	requireClients(t, err)
	example, err := filepath.Abs("../../examples/clients/node")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(example, "node_modules", "@grpc", "grpc-js")); err != nil {
		requireClients(t, fmt.Errorf("examples/clients/node has no node_modules: run npm ci there: %w", err))
	}
	d := startDev(t)
	bundle := fetchBundle(t, d)
	renewOut := filepath.Join(t.TempDir(), "renewed")
	out := run(t, example, node, append([]string{"client.js", "--bundle", bundle}, clientFlags(d, renewOut)...)...)
	t.Logf("node client:\n%s", out)
	checkClientOutput(t, d, out, renewOut)
}

// TestGRPCWithoutALPNIsLoggedAndCounted: gRPC closes a TLS connection that
// negotiated no ALPN without telling the client; the broker says why in
// its log and counts it.
func TestGRPCWithoutALPNIsLoggedAndCounted(t *testing.T) {
	t.Parallel()
	d := startDev(t)
	dir := filepath.Join(d.dataDir, "dev", "consumers", "mairie-exemple")
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(mustRead(t, filepath.Join(d.dataDir, "dev", "ca.pem")))
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", d.addr,
		&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, ServerName: "localhost", MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("handshake without ALPN: %v", err)
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the connection without ALPN was not closed: %v", err)
	}
	_ = conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		logs, _ := os.ReadFile(d.stderr.Name())
		resp, err := http.Get("http://" + d.opsAddr + "/metrics")
		var exposition []byte
		if err == nil {
			exposition, _ = io.ReadAll(resp.Body)
			_ = resp.Body.Close()
		}
		logged := strings.Contains(string(logs), metrics.NoALPNMessage) && strings.Contains(string(logs), "21990000100005")
		counted := regexp.MustCompile(`(?m)^relais_tls_no_alpn_total 1$`).Match(exposition)
		if logged && counted {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: logged %v, counted %v\nlogs:\n%s", logged, counted, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
