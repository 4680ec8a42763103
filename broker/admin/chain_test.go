package admin_test

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/relais-broker/relais/broker/admin"
	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/certs"
	"github.com/relais-broker/relais/internal/tlstest"
	adminv1 "github.com/relais-broker/relais/proto/relais/admin/v1"
)

const revokeMethod = "/relais.admin.v1.CredentialAdminService/RevokeCredential"

// rawCodec sends the test's bytes as they are: a broken client.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*(v.(*[]byte)))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*(v.(*[]byte)) = data.Materialize()
	return nil
}
func (rawCodec) Name() string { return "proto" }

// TestAdminMalformedRequestIsTraced: the admin API decodes inside the
// same chain as the data API, so a request that does not decode gets
// malformed_request, a request id and a record naming the operator.
func TestAdminMalformedRequestIsTraced(t *testing.T) {
	e := start(t)
	cc := e.pki.Dial(t, e.addr, e.issue(t, identity.KindOperator, "alice"))
	body := []byte("\x0a\x03\xff\xfe\xfd") // serial (field 1) with invalid UTF-8
	var out []byte
	var header metadata.MD
	err := cc.Invoke(context.Background(), revokeMethod, &body, &out, grpc.ForceCodecV2(rawCodec{}), grpc.Header(&header))
	code, reason, fv := reasonOf(err)
	if code != codes.InvalidArgument || reason != "malformed_request" || len(fv) != 1 || fv[0].GetField() != "serial" {
		t.Fatalf("got %s/%s %v (%v)", code, reason, fv, err)
	}
	recs := e.audit.Records()
	ids := header.Get("x-request-id")
	if len(recs) != 1 || len(ids) != 1 || recs[0].RequestID != ids[0] || recs[0].Operator != "alice" || recs[0].Reason != "malformed_request" || recs[0].Method != revokeMethod {
		t.Fatalf("records %+v, x-request-id %v", recs, ids)
	}
}

// panickingCA is a Revoker with a bug.
type panickingCA struct{}

func (panickingCA) Revoke(context.Context, string) error { panic("ca bug") }
func (panickingCA) SerialsFor(context.Context, string) ([]string, error) {
	panic("ca bug")
}

// TestAdminPanicIsTraced: a panic in an admin handler answers Internal
// after its record is written, like on the data API.
func TestAdminPanicIsTraced(t *testing.T) {
	pki := tlstest.New(t)
	revoked, rec := certs.NewRevocations(), &audit.Memory{}
	s, err := admin.New(admin.Config{Issuer: panickingCA{}, Revocations: revoked, Audit: rec})
	if err != nil {
		t.Fatal(err)
	}
	addr := tlstest.Serve(t, s.NewGRPCServer(pki.ServerCreds()))
	op := adminv1.NewCredentialAdminServiceClient(pki.Dial(t, addr, pki.Issue(t, identity.KindOperator, "alice")))
	_, err = op.RevokeCredential(context.Background(), &adminv1.RevokeCredentialRequest{Target: &adminv1.RevokeCredentialRequest_ConsumerSiret{ConsumerSiret: siretA}})
	if code, reason, _ := reasonOf(err); code != codes.Internal || reason != "internal" {
		t.Fatalf("got %v", status.Convert(err))
	}
	if recs := rec.Records(); len(recs) != 1 || recs[0].Reason != "internal" || recs[0].Operator != "alice" {
		t.Fatalf("records = %+v", recs)
	}
}
