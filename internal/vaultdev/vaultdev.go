// Package vaultdev starts a real HashiCorp Vault server (`vault server
// -dev`) on a free 127.0.0.1 port for tests, with a random root token, and
// stops it when the test ends.
//
// The binary is $VAULT_BIN, else `vault` on PATH; tools/devvault/build.sh
// builds one from source and prints its path (`make test` does this). When
// none is found the test is skipped, except when RELAIS_REQUIRE_VAULT=1
// (CI sets it), where it fails: CI must never skip the Vault suite.
//
// A -dev server keeps its state in memory: to make Vault unreachable and
// bring it back with its state, put an internal/netcut proxy in front of
// it instead of stopping it.
package vaultdev

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relais-broker/relais/internal/localserver"
)

// Server is a running dev Vault.
type Server struct {
	// Addr is the Vault address, http://127.0.0.1:PORT.
	Addr string
	// Token is the root token: for tests only, never for the broker's
	// production configuration.
	Token string

	cmd *exec.Cmd
	out *localserver.Buffer
}

// Binary returns the Vault binary to run, or "" when there is none.
func Binary() string {
	if p := os.Getenv("VAULT_BIN"); p != "" {
		return p
	}
	if p, err := exec.LookPath("vault"); err == nil {
		return p
	}
	return ""
}

// Start starts a dev Vault for t and stops it at the end of t.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary()
	if bin == "" {
		msg := "no Vault binary: run `make test`, or set VAULT_BIN=$(tools/devvault/build.sh)"
		if os.Getenv("RELAIS_REQUIRE_VAULT") == "1" {
			t.Fatal(msg + " (RELAIS_REQUIRE_VAULT=1: the Vault suite must run)")
		}
		t.Skip(msg)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s, err := start(t, bin)
		if err == nil {
			return s
		}
		lastErr = err
	}
	t.Fatalf("vault: %v", lastErr)
	return nil
}

func start(t testing.TB, bin string) (*Server, error) {
	port, err := localserver.FreePort()
	if err != nil {
		return nil, err
	}
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	s := &Server{Addr: "http://127.0.0.1:" + strconv.Itoa(port), Token: hex.EncodeToString(raw[:]), out: &localserver.Buffer{}}
	home := t.TempDir()
	s.cmd = exec.Command(bin, "server", "-dev", "-dev-root-token-id="+s.Token, "-dev-listen-address=127.0.0.1:"+strconv.Itoa(port), "-dev-no-store-token")
	s.cmd.Dir = home
	s.cmd.Env = append(os.Environ(), "HOME="+home, "VAULT_ADDR=", "VAULT_TOKEN=", "VAULT_LOG_LEVEL=warn")
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- s.cmd.Wait() }()
	if err := s.waitReady(exited); err != nil {
		_ = s.cmd.Process.Kill()
		<-exited
		return nil, fmt.Errorf("%w\n%s", err, s.out.String())
	}
	t.Cleanup(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = s.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("vault output:\n%s", s.Output())
		}
	})
	return s, nil
}

// waitReady polls sys/health until Vault is initialised and unsealed.
func (s *Server) waitReady(exited <-chan error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.Addr+"/v1/sys/health", nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-exited:
			return fmt.Errorf("vault exited before it was ready: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("vault not ready after 30 s")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Output is what the server printed so far, without the unseal key and
// root token lines.
func (s *Server) Output() string {
	var kept []string
	for _, line := range strings.Split(s.out.String(), "\n") {
		if !strings.Contains(line, "Root Token") && !strings.Contains(line, "Unseal Key") {
			kept = append(kept, line)
		}
	}
	return strings.Join(kept, "\n")
}
