package broker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/relais-broker/relais/broker"
	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/source"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
)

const fqMethod = "/" + fqService + "/GetFamilyQuotient"

// rawCodec sends the test's bytes as the request and keeps the answer's
// bytes: what a broken or hostile client puts on the wire.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*(v.(*[]byte)))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*(v.(*[]byte)) = data.Materialize()
	return nil
}
func (rawCodec) Name() string { return "proto" }

// rawCall sends body as the request of method and returns the response
// header (x-request-id) and the error.
func rawCall(t *testing.T, cc *grpc.ClientConn, body []byte) (metadata.MD, error) {
	t.Helper()
	var out []byte
	var header metadata.MD
	err := cc.Invoke(context.Background(), fqMethod, &body, &out, grpc.ForceCodecV2(rawCodec{}), grpc.Header(&header))
	return header, err
}

// errorInfo returns the ErrorInfo of a status, nil when there is none.
func errorInfo(st *status.Status) *errdetails.ErrorInfo {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}

// expectTraced checks that the call of request id id left one audit
// record, one observer sample and one log line, all with reason.
func expectTraced(t *testing.T, h *harness, id, reason string) audit.Record {
	t.Helper()
	if len(id) != 32 {
		t.Fatalf("x-request-id = %q", id)
	}
	var rec *audit.Record
	for _, r := range h.audit.Records() {
		if r.RequestID == id {
			if rec != nil {
				t.Fatalf("two audit records for %s", id)
			}
			rec = &r
		}
	}
	if rec == nil {
		t.Fatalf("no audit record for request %s", id)
	}
	if rec.Reason != reason || rec.Method != fqMethod || rec.Consumer != sirenFull || rec.CertSerial == "" {
		t.Errorf("audit record = %+v, want reason %s from %s", *rec, reason, sirenFull)
	}
	observed := 0
	for _, r := range h.observer.Records() {
		if r.RequestID == id && r.Reason == reason {
			observed++
		}
	}
	if observed != 1 {
		t.Errorf("observer saw the call %d times, want 1", observed)
	}
	logged := 0
	for _, line := range strings.Split(h.logs.String(), "\n") {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) == nil && l["request_id"] == id && l["msg"] == "call" {
			logged++
			if got, _ := l["reason"].(string); got != reason || l["consumer"] != sirenFull || l["method"] != fqMethod {
				t.Errorf("log line = %s", line)
			}
		}
	}
	if logged != 1 {
		t.Errorf("%d log lines for the call, want 1: %s", logged, h.logs.String())
	}
	return *rec
}

// nestedGroups is n start-group tags of an unknown field, each opening a
// group inside the previous one.
func nestedGroups(n int) []byte { return bytes.Repeat([]byte{0x7b}, n) } // field 15, wire type 3

// TestMalformedGRPCRequestsAreTraced sends what the issue found refused
// before the chain: each gets the documented code and reason, and a
// record, a metric sample and a log line.
func TestMalformedGRPCRequestsAreTraced(t *testing.T) {
	h := newHarness(t, registry.Quota{})
	cc := h.conn(t, identity.KindConsumer, sirenFull)
	valid, err := proto.Marshal(validFQ())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		body   []byte
		code   codes.Code
		reason string
		field  string // ErrorInfo metadata and BadRequest, "" when not known
	}{
		// The byte string of the issue (after the 5-byte gRPC frame header).
		{"invalid utf-8 in the recipient", []byte("\x0a\x05\x0a\x03\xff\xfe\xfd"), codes.InvalidArgument, "malformed_request", "access_context.recipient"},
		{"invalid utf-8 in the birth name", []byte("\x12\x05\x0a\x03\xff\xfe\xfd"), codes.InvalidArgument, "malformed_request", "subject.birth_name"},
		{"invalid utf-8 in a field-mask path", append(append([]byte{}, valid...), "\x1a\x04\x0a\x02\xff\xfe"...), codes.InvalidArgument, "malformed_request", "field_mask.paths[0]"},
		{"truncated", valid[:len(valid)-3], codes.InvalidArgument, "malformed_request", "subject"},
		{"groups nested 12,000 deep", nestedGroups(12000), codes.InvalidArgument, "malformed_request", ""},
		{"over the limit", bytes.Repeat([]byte{0}, 100<<10), codes.ResourceExhausted, "request_too_large", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header, err := rawCall(t, cc, tt.body)
			st := status.Convert(err)
			info := errorInfo(st)
			if st.Code() != tt.code || info.GetReason() != tt.reason {
				t.Fatalf("got %s/%s (%v), want %s/%s", st.Code(), info.GetReason(), err, tt.code, tt.reason)
			}
			if got := info.GetMetadata()["field"]; got != tt.field {
				t.Errorf("ErrorInfo field = %q, want %q", got, tt.field)
			}
			if tt.field != "" && !hasViolation(err, tt.field) {
				t.Errorf("no BadRequest violation on %s: %v", tt.field, violations(err))
			}
			if tt.reason == "request_too_large" && info.GetMetadata()["limit_bytes"] != "65536" {
				t.Errorf("ErrorInfo metadata = %v, want limit_bytes 65536", info.GetMetadata())
			}
			ids := header.Get("x-request-id")
			if len(ids) != 1 {
				t.Fatalf("x-request-id = %v", ids)
			}
			rec := expectTraced(t, h, ids[0], tt.reason)
			if rec.Code != tt.code.String() || rec.Subject != "" {
				t.Errorf("audit record = %+v", rec)
			}
		})
	}
	if h.adapter.Calls() != 0 {
		t.Fatal("a malformed request reached the adapter")
	}
}

// TestBeyondTheTransportBoundIsTraced: past what the transport reads at
// all, grpc answers on its own, but the call is still traced.
func TestBeyondTheTransportBoundIsTraced(t *testing.T) {
	h := newHarness(t, registry.Quota{})
	header, err := rawCall(t, h.conn(t, identity.KindConsumer, sirenFull), bytes.Repeat([]byte{0}, 2<<20))
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted {
		t.Fatalf("got %v", err)
	}
	ids := header.Get("x-request-id")
	if len(ids) != 1 {
		t.Fatalf("x-request-id = %v", ids)
	}
	// grpc wrote its status before the chain answered: wait for the trace.
	h.observer.waitFor(t, ids[0])
	expectTraced(t, h, ids[0], "request_too_large")
}

// TestPanickingAdapterIsTraced: a panic below the audit step answers
// Internal, and the record is written before the answer.
func TestPanickingAdapterIsTraced(t *testing.T) {
	h := newHarness(t, registry.Quota{})
	h.adapter.setAnswer(func(context.Context, source.Request) (proto.Message, error) { panic("adapter bug") })
	var header metadata.MD
	cc := h.conn(t, identity.KindConsumer, sirenFull)
	err := cc.Invoke(context.Background(), fqMethod, validFQ(), new(familyquotientv1.GetFamilyQuotientResponse), grpc.Header(&header))
	if code, reason := reasonOf(t, err); code != codes.Internal || reason != "internal" {
		t.Fatalf("got %s/%s (%v)", code, reason, err)
	}
	if n := len(h.audit.Records()); n != 1 {
		t.Fatalf("%d audit records, want 1", n)
	}
	rec := expectTraced(t, h, header.Get("x-request-id")[0], "internal")
	if rec.Source != "fake" || rec.Code != "Internal" {
		t.Errorf("record = %+v", rec)
	}
	if !strings.Contains(h.logs.String(), "panic in call") || strings.Contains(h.logs.String(), "adapter bug") {
		t.Errorf("the panic must be logged with its stack but not its value: %s", h.logs.String())
	}
}

// post sends body to path on the gateway.
func post(t *testing.T, c *http.Client, h *harness, method, path, contentType string, body []byte) (*http.Response, *status.Status) {
	t.Helper()
	req, err := http.NewRequest(method, "https://"+h.httpAddr+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	var sp statuspb.Status
	if err := protojson.Unmarshal(raw, &sp); err != nil {
		t.Fatalf("error body %q: %v", raw, err)
	}
	return resp, status.FromProto(&sp)
}

// TestMalformedGatewayRequestsAreTraced: the HTTPS gateway refuses inside
// the chain too, with the documented status, and each refusal is traced
// under the call's span.
func TestMalformedGatewayRequestsAreTraced(t *testing.T) {
	h := newHarness(t, registry.Quota{})
	c := h.httpClient(t, identity.KindConsumer, sirenFull)
	valid, err := protojson.Marshal(validFQ())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, verb, contentType string
		body                    []byte
		httpStatus              int
		reason, field           string
	}{
		{"wrong type in a nested field", "POST", "application/json", []byte(`{"subject":{"birth_name":12}}`), 400, "malformed_request", "subject.birth_name"},
		{"not json", "POST", "application/json", []byte(`{"subject":`), 400, "malformed_request", ""},
		{"unknown field", "POST", "application/json", []byte(`{"revenu":1}`), 400, "malformed_request", ""},
		{"bad field mask", "POST", "application/json", []byte(`{"field_mask":12}`), 400, "malformed_request", "field_mask"},
		{"wrong content type", "POST", "text/plain", valid, 400, "malformed_request", ""},
		{"oversized body", "POST", "application/json", bytes.Repeat([]byte(" "), 100<<10), 413, "request_too_large", ""},
		{"get", "GET", "", nil, 405, "method_not_allowed", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, st := post(t, c, h, tt.verb, fqMethod, tt.contentType, tt.body)
			info := errorInfo(st)
			if resp.StatusCode != tt.httpStatus || info.GetReason() != tt.reason {
				t.Fatalf("got %d %s (%v), want %d %s", resp.StatusCode, info.GetReason(), st.Message(), tt.httpStatus, tt.reason)
			}
			if got := info.GetMetadata()["field"]; got != tt.field {
				t.Errorf("field = %q, want %q (%s)", got, tt.field, st.Message())
			}
			if tt.reason == "method_not_allowed" && resp.Header.Get("Allow") != "POST" {
				t.Errorf("Allow = %q", resp.Header.Get("Allow"))
			}
			id := resp.Header.Get("x-request-id")
			rec := expectTraced(t, h, id, tt.reason)
			span := waitSpan(t, h, rec.TraceID)
			if span.Name() != tt.verb+" "+fqMethod {
				t.Errorf("span name %q", span.Name())
			}
		})
	}
	if h.adapter.Calls() != 0 {
		t.Fatal("a malformed request reached the adapter")
	}
	// And a good call still goes through, traced under its span.
	resp, _ := post(t, c, h, "POST", fqMethod, "application/json", valid)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("valid call: %d", resp.StatusCode)
	}
	rec := expectTraced(t, h, resp.Header.Get("x-request-id"), "")
	waitSpan(t, h, rec.TraceID)
}

// TestGatewayUnknownPath: 404 with an ErrorInfo and a request id, no
// placeholder text, and no audit record (no method was called).
func TestGatewayUnknownPath(t *testing.T) {
	h := newHarness(t, registry.Quota{})
	c := h.httpClient(t, identity.KindConsumer, sirenFull)
	resp, st := post(t, c, h, "POST", "/relais.nothing.v1.Nope/Get", "application/json", []byte(`{}`))
	if resp.StatusCode != http.StatusNotFound || errorInfo(st).GetReason() != "method_not_found" || strings.Contains(st.Message(), "<") {
		t.Fatalf("got %d %v %q", resp.StatusCode, errorInfo(st), st.Message())
	}
	id := resp.Header.Get("x-request-id")
	if len(id) != 32 || !strings.Contains(h.logs.String(), `"request_id":"`+id+`"`) {
		t.Fatalf("request id %q not logged: %s", id, h.logs.String())
	}
	if strings.Contains(h.logs.String(), "Nope") || len(h.audit.Records()) != 0 {
		t.Fatal("the unknown path was logged or audited")
	}
}

// waitSpan waits for the gateway span of traceID to end (it ends once
// the response is written, so after the client has it) and returns it.
func waitSpan(t *testing.T, h *harness, traceID string) sdktrace.ReadOnlySpan {
	t.Helper()
	if traceID == "" {
		t.Fatal("no trace id in the record")
	}
	return h.spans.wait(t, func(s sdktrace.ReadOnlySpan) bool { return s.SpanContext().TraceID().String() == traceID })
}

// TestObserversFanOut: every observer given to Observers sees each call.
func TestObserversFanOut(t *testing.T) {
	second := &recordingObserver{}
	h := newHarness(t, registry.Quota{}, func(c *broker.Config) { c.Observer = broker.Observers(c.Observer, nil, second) })
	if _, err := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, sirenFull)).GetFamilyQuotient(context.Background(), validFQ()); err != nil {
		t.Fatal(err)
	}
	if len(h.observer.Records()) != 1 || len(second.Records()) != 1 {
		t.Fatalf("observers saw %d and %d calls", len(h.observer.Records()), len(second.Records()))
	}
}
