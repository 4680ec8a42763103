package admin_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/relais-broker/relais/broker/admin"
	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/audit/audittest"
	"github.com/relais-broker/relais/broker/audit/boltlog"
	"github.com/relais-broker/relais/broker/audit/seal"
	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/certs"
	"github.com/relais-broker/relais/internal/tlstest"
	adminv1 "github.com/relais-broker/relais/proto/relais/admin/v1"
)

// startWithLog serves the admin API over real TLS with log as its audit
// log (and, when it is a Recorder, as the recorder of admin actions).
func startWithLog(t *testing.T, log admin.AuditReader, rec audit.Recorder) (*tlstest.PKI, string) {
	t.Helper()
	pki := tlstest.New(t)
	revoked := certs.NewRevocations()
	s, err := admin.New(admin.Config{Issuer: pki.CA, Revocations: revoked, Audit: rec, AuditLog: log})
	if err != nil {
		t.Fatal(err)
	}
	return pki, tlstest.Serve(t, s.NewGRPCServer(pki.ServerCreds(certs.RejectRevoked(revoked))))
}

// exportOnline streams the export and verifies it with pub, as relaisctl does.
func exportOnline(t *testing.T, client adminv1.AuditAdminServiceClient, pub ed25519.PublicKey) (*seal.Report, int, error) {
	t.Helper()
	stream, err := client.ExportAudit(context.Background(), &adminv1.ExportAuditRequest{})
	if err != nil {
		return nil, 0, err
	}
	v := seal.NewVerifier(pub)
	n := 0
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return v.Report(), n, nil
		}
		if err != nil {
			return nil, n, err
		}
		for _, pb := range resp.GetEntries() {
			e, err := admin.EntryFromPB(pb)
			if err != nil {
				t.Fatal(err)
			}
			n++
			v.Add(e)
		}
	}
}

func TestExportAuditStreamsAVerifiableLog(t *testing.T) {
	t.Parallel()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	pub := key.Public().(ed25519.PublicKey)
	log, err := boltlog.Open(filepath.Join(t.TempDir(), "audit.db"), boltlog.Options{SigningKey: key, CheckpointEvery: 100})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = log.Close() })
	for i := 1; i <= 700; i++ { // several batches of the stream
		if err := log.Append(context.Background(), audittest.Record(i)); err != nil {
			t.Fatal(err)
		}
	}
	pki, addr := startWithLog(t, log, log)
	client := adminv1.NewAuditAdminServiceClient(pki.Dial(t, addr, pki.Issue(t, identity.KindOperator, "alice")))
	rep, n, err := exportOnline(t, client, pub)
	if err != nil || !rep.OK() || rep.Records != 700 || rep.Checkpoints != 7 || n != 707 {
		t.Fatalf("online export: %+v, %d entries, %v", rep, n, err)
	}
	// The export itself is an admin action, traced in the same log.
	recs, err := log.Query(context.Background(), audit.Filter{Method: adminv1.AuditAdminService_ExportAudit_FullMethodName})
	if err != nil || len(recs) != 1 || recs[0].Operator != "alice" || recs[0].Code != "OK" || recs[0].Target != "audit log export" {
		t.Fatalf("admin record of the export: %+v, %v", recs, err)
	}
	// A second export sees that record, and still verifies.
	if rep, _, err := exportOnline(t, client, pub); err != nil || !rep.OK() || rep.Records != 701 {
		t.Fatalf("second export: %+v, %v", rep, err)
	}
	// A foreign key does not verify it.
	_, foreign, _ := ed25519.GenerateKey(rand.Reader)
	if rep, _, _ := exportOnline(t, client, foreign.Public().(ed25519.PublicKey)); rep.OK() || rep.BadSeq != 100 {
		t.Fatalf("verified with a foreign key: %+v", rep)
	}
	// A consumer certificate gets nothing.
	consumer := adminv1.NewAuditAdminServiceClient(pki.Dial(t, addr, pki.Issue(t, identity.KindConsumer, siretA)))
	if _, n, err := exportOnline(t, consumer, pub); err == nil || n != 0 {
		t.Fatalf("consumer export: %d entries, %v", n, err)
	} else if code, _, _ := reasonOf(err); code != codes.PermissionDenied && code != codes.Unauthenticated {
		t.Fatalf("consumer export: %v", err)
	}
}

// tamperedLog exports the entries of a log with one byte of record 42
// changed: what a broker whose storage was modified would stream.
type tamperedLog struct {
	audit.Memory
	entries []seal.Entry
}

func (l *tamperedLog) Query(context.Context, audit.Filter) ([]audit.Record, error) { return nil, nil }
func (l *tamperedLog) Subject(context.Context, string) ([]audit.Record, error)     { return nil, nil }
func (l *tamperedLog) Export(_ context.Context, fn func(seal.Entry) error) error {
	for _, e := range l.entries {
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

func TestOnlineVerificationCatchesAModifiedRecord(t *testing.T) {
	t.Parallel()
	m := &audittest.Memory{}
	signer := audittest.NewSigner(t)
	audittest.Seed(t, m, signer, "", audittest.Records(1, 60), 20)
	entries := audittest.Entries(t, m)
	for i, e := range entries {
		if s, err := seal.Unseal(e.Record); e.Record != nil && err == nil && s.Seq == 42 {
			r := bytes.Clone(e.Record)
			r[bytes.Index(r, []byte("tarification"))] = 'T'
			entries[i] = seal.RecordEntry(r)
		}
	}
	log := &tamperedLog{entries: entries}
	pki, addr := startWithLog(t, log, &log.Memory)
	client := adminv1.NewAuditAdminServiceClient(pki.Dial(t, addr, pki.Issue(t, identity.KindOperator, "alice")))
	rep, _, err := exportOnline(t, client, signer.Public())
	if err != nil || rep.OK() || rep.BadSeq != 42 {
		t.Fatalf("modified record 42: %+v, %v", rep, err)
	}
}

func TestExportAuditNeedsAnExportableLog(t *testing.T) {
	t.Parallel()
	pki, addr := startWithLog(t, queryOnly{}, &audit.Memory{})
	client := adminv1.NewAuditAdminServiceClient(pki.Dial(t, addr, pki.Issue(t, identity.KindOperator, "alice")))
	if _, _, err := exportOnline(t, client, nil); err == nil {
		t.Fatal("export from a log that cannot export")
	} else if _, reason, _ := reasonOf(err); reason == "" {
		t.Fatalf("no ErrorInfo reason: %v", err)
	}
}

type queryOnly struct{}

func (queryOnly) Query(context.Context, audit.Filter) ([]audit.Record, error) { return nil, nil }
func (queryOnly) Subject(context.Context, string) ([]audit.Record, error)     { return nil, nil }
