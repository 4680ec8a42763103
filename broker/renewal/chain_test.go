package renewal_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
)

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

// TestMalformedRenewalIsTraced: Renew decodes inside the chain, so a
// request that does not decode is refused with malformed_request and
// traced with the consumer of the certificate and a request id.
func TestMalformedRenewalIsTraced(t *testing.T) {
	e := start(t, time.Now().Add(30*24*time.Hour))
	conn, _, cred := e.client(t, siretA)
	body := []byte("\x0a\x05\x2d\x2d\x2d") // csr_pem (field 1) cut short
	var out []byte
	var header metadata.MD
	err := conn.Invoke(context.Background(), "/relais.credentials.v1.CredentialService/Renew", &body, &out, grpc.ForceCodecV2(rawCodec{}), grpc.Header(&header))
	if code, r := reason(err); code != codes.InvalidArgument || r != "malformed_request" {
		t.Fatalf("got %s/%s (%v)", code, r, err)
	}
	recs := e.audit.Records()
	ids := header.Get("x-request-id")
	if len(recs) != 1 || len(ids) != 1 || recs[0].RequestID != ids[0] || recs[0].Consumer != siretA || recs[0].CertSerial != cred.Serial || recs[0].Reason != "malformed_request" {
		t.Fatalf("records %+v, x-request-id %v", recs, ids)
	}
}
