package main_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/audit/seglog"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
)

// TestAuditSurvivesSIGKILL kills the broker with SIGKILL in the middle of
// a load: the log still verifies, and every call whose response the
// client received has its record.
func TestAuditSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	d := startDev(t)
	conn := grpcConn(t, d, "mairie-exemple")
	client := familyquotientv1.NewFamilyQuotientServiceClient(conn)
	req := &familyquotientv1.GetFamilyQuotientRequest{
		AccessContext: &commonv1.AccessContext{Recipient: "21990000100005", Purpose: "tarification_sociale", CaseReference: "CRASH-TEST"},
		Subject:       zoeIdentity(),
	}
	var mu sync.Mutex
	var received []string
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 8; w++ {
		wg.Go(func() {
			for i := 0; i < 10000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				var header, trailer metadata.MD
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := client.GetFamilyQuotient(ctx, req, grpc.Header(&header), grpc.Trailer(&trailer))
				cancel()
				ids := append(header.Get("x-request-id"), trailer.Get("x-request-id")...)
				if len(ids) > 0 && (err == nil || !strings.Contains(err.Error(), "Unavailable")) {
					mu.Lock()
					received = append(received, ids[0])
					mu.Unlock()
				}
				if err != nil && strings.Contains(err.Error(), "Unavailable") {
					return // the broker is gone
				}
			}
		})
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(received)
		mu.Unlock()
		if n >= 150 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := d.cmd.Process.Kill(); err != nil { // SIGKILL, mid-load
		t.Fatal(err)
	}
	_ = d.cmd.Wait()
	close(stop)
	wg.Wait()
	mu.Lock()
	got := append([]string(nil), received...)
	mu.Unlock()
	if len(got) < 50 {
		t.Fatalf("only %d responses before the kill", len(got))
	}

	out, err := shell(t, "relaisctl audit verify --dir "+filepath.Join(d.dataDir, "audit")+" --public-key "+filepath.Join(d.dataDir, "keys", "audit-signing.pub"))
	if err != nil || !strings.HasPrefix(out, "OK:") {
		t.Fatalf("verify after SIGKILL: %v\n%s", err, out)
	}
	// Read-only: what the SIGKILL left, torn tail included, as it is.
	st, err := seglog.OpenStoreReadOnly(filepath.Join(d.dataDir, "audit"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	recs, err := st.Query(context.Background(), audit.Filter{Limit: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, r := range recs {
		have[r.RequestID] = true
	}
	for _, id := range got {
		if !have[id] {
			t.Fatalf("response %s was received but has no audit record", id)
		}
	}
	t.Logf("SIGKILL after %d responses; %d records; every received response is traced; %s", len(got), len(recs), strings.TrimSpace(out))
}

// grpcConn dials the dev broker d as the demo consumer whose credential
// directory is DIR/dev/consumers/name, as a consumer's software would.
func grpcConn(t *testing.T, d *devBroker, name string) *grpc.ClientConn {
	t.Helper()
	dir := filepath.Join(d.dataDir, "dev")
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "consumers", name, "cert.pem"), filepath.Join(dir, "consumers", name, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	conn, err := grpc.NewClient(d.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// zoeIdentity is the sandbox citizen of the printed first call.
func zoeIdentity() *commonv1.SubjectIdentity {
	return &commonv1.SubjectIdentity{BirthName: "DUPONT", GivenNames: []string{"Zoé"}, Sex: commonv1.Sex_SEX_FEMALE, BirthDate: "1984-03-12",
		BirthPlaceCog: "75056", BirthCountryCog: "99100"}
}
