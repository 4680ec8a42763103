package main_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const (
	tracedMethod   = "/relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient"
	tracedConsumer = "21990000100005" // the demo consumer mairie-exemple
)

// rawBytes sends the test's bytes as the gRPC request: a broken or hostile client.
type rawBytes struct{}

func (rawBytes) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*(v.(*[]byte)))}, nil
}
func (rawBytes) Unmarshal(data mem.BufferSlice, v any) error {
	*(v.(*[]byte)) = data.Materialize()
	return nil
}
func (rawBytes) Name() string { return "proto" }

// demoConn dials the data API of d as the demo consumer mairie-exemple.
func demoConn(t *testing.T, d *devBroker) *grpc.ClientConn {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(d.dataDir, "dev", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	dir := filepath.Join(d.dataDir, "dev", "consumers", "mairie-exemple")
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(d.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// refusal is what a test expects of one malformed call.
type refusal struct {
	name      string
	requestID string
	code      string // gRPC code name, as records and metrics write it
	reason    string
	gateway   bool
}

// TestMalformedCallsAreTracedEndToEnd sends, to a real relaisd, what the
// issue found refused before the chain — over gRPC and over HTTPS — and
// finds each call with its documented code and reason in the answer, in
// the audit log (relaisctl audit query), in relais_requests_total and in
// the broker's log, with a trace id.
func TestMalformedCallsAreTracedEndToEnd(t *testing.T) {
	t.Parallel()
	d := startDev(t)
	cc := demoConn(t, d)
	var calls []refusal
	for _, tc := range []struct {
		name   string
		body   []byte
		code   codes.Code
		reason string
	}{
		{"issue bytes: invalid utf-8", []byte("\x0a\x05\x0a\x03\xff\xfe\xfd"), codes.InvalidArgument, "malformed_request"},
		{"truncated", []byte("\x12\x10\x0a\x03abc"), codes.InvalidArgument, "malformed_request"},
		{"groups nested 12,000 deep", bytes.Repeat([]byte{0x7b}, 12000), codes.InvalidArgument, "malformed_request"},
		{"oversized", bytes.Repeat([]byte{0}, 100<<10), codes.ResourceExhausted, "request_too_large"},
	} {
		var out []byte
		var header metadata.MD
		body := tc.body
		err := cc.Invoke(context.Background(), tracedMethod, &body, &out, grpc.ForceCodecV2(rawBytes{}), grpc.Header(&header))
		st := status.Convert(err)
		var info *errdetails.ErrorInfo
		for _, det := range st.Details() {
			if i, ok := det.(*errdetails.ErrorInfo); ok {
				info = i
			}
		}
		if st.Code() != tc.code || info.GetReason() != tc.reason {
			t.Fatalf("gRPC %s: got %s/%s (%v)", tc.name, st.Code(), info.GetReason(), err)
		}
		if tc.reason == "request_too_large" && info.GetMetadata()["limit_bytes"] != "65536" {
			t.Errorf("gRPC %s: ErrorInfo metadata %v", tc.name, info.GetMetadata())
		}
		ids := header.Get("x-request-id")
		if len(ids) != 1 {
			t.Fatalf("gRPC %s: x-request-id %v", tc.name, ids)
		}
		calls = append(calls, refusal{tc.name, ids[0], tc.code.String(), tc.reason, false})
	}

	web := httpClient(t, d, filepath.Join(d.dataDir, "dev", "consumers", "mairie-exemple"))
	for _, tc := range []struct {
		name, verb, contentType, body string
		status                        int
		code, reason                  string
	}{
		{"bad json", "POST", "application/json", `{"subject":{"birth_name":12}}`, 400, "InvalidArgument", "malformed_request"},
		{"wrong content type", "POST", "text/plain", `{}`, 400, "InvalidArgument", "malformed_request"},
		{"oversized body", "POST", "application/json", strings.Repeat(" ", 100<<10), 413, "ResourceExhausted", "request_too_large"},
		{"get", "GET", "", "", 405, "Unimplemented", "method_not_allowed"},
	} {
		req, err := http.NewRequest(tc.verb, "https://"+d.webAddr+tracedMethod, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		if tc.contentType != "" {
			req.Header.Set("Content-Type", tc.contentType)
		}
		resp, err := web.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		a := httpAnswer{code: resp.StatusCode, header: resp.Header, raw: string(raw)}
		_ = json.Unmarshal(raw, &a.body)
		if a.code != tc.status || reasonIn(a) != tc.reason {
			t.Fatalf("HTTPS %s: got %d %q: %s", tc.name, a.code, reasonIn(a), a.raw)
		}
		if tc.status == 405 && a.header.Get("Allow") != "POST" {
			t.Errorf("405 without Allow: POST: %v", a.header)
		}
		calls = append(calls, refusal{tc.name, a.header.Get("x-request-id"), tc.code, tc.reason, true})
	}

	// An unknown path: 404 with an ErrorInfo, no placeholder text.
	a := post(t, web, d, "relais.nothing.v1.Nope/Get", `{}`)
	if a.code != http.StatusNotFound || reasonIn(a) != "method_not_found" || strings.Contains(a.raw, "<package") || a.header.Get("x-request-id") == "" {
		t.Errorf("unknown path: %d %s", a.code, a.raw)
	}

	// The audit log, through the admin API.
	admin := fmt.Sprintf("--admin-addr %s --operator-dir %s", d.adminAddr, filepath.Join(d.dataDir, "dev", "operators", "admin"))
	out, err := shell(t, "relaisctl audit query --consumer "+tracedConsumer+" -o csv "+admin)
	if err != nil {
		t.Fatalf("audit query: %v\n%s", err, out)
	}
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(rows) < 1 {
		t.Fatalf("audit csv: %v\n%s", err, out)
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	byID := map[string][]string{}
	for _, r := range rows[1:] {
		byID[r[col["request_id"]]] = r
	}
	wantMetric := map[string]int{}
	for _, c := range calls {
		r, ok := byID[c.requestID]
		if !ok {
			t.Errorf("%s: no audit record for request %s", c.name, c.requestID)
			continue
		}
		if r[col["code"]] != c.code || r[col["reason"]] != c.reason || r[col["method"]] != tracedMethod {
			t.Errorf("%s: audit record %v", c.name, r)
		}
		wantMetric[c.code]++
	}

	// relais_requests_total counts each of them.
	got := scrapeRequests(t, d)
	for code, n := range wantMetric {
		if got[code] < float64(n) {
			t.Errorf("relais_requests_total{code=%q} = %v, want at least %d", code, got[code], n)
		}
	}

	// The broker's log: one call line per request id, with a trace id.
	logs, err := os.ReadFile(d.stderr.Name())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range calls {
		found := false
		for _, line := range bytes.Split(logs, []byte("\n")) {
			var l map[string]any
			if json.Unmarshal(line, &l) != nil || l["msg"] != "call" || l["request_id"] != c.requestID {
				continue
			}
			found = true
			if l["reason"] != c.reason || l["consumer"] != tracedConsumer {
				t.Errorf("%s: log line %s", c.name, line)
			}
			if tid, _ := l["trace_id"].(string); len(tid) != 32 {
				t.Errorf("%s: log line without trace id (gateway %v): %s", c.name, c.gateway, line)
			}
		}
		if !found {
			t.Errorf("%s: no log line for request %s", c.name, c.requestID)
		}
	}
}

// scrapeRequests reads relais_requests_total of the demo consumer's
// family-quotient calls from the operations listener, by code.
func scrapeRequests(t *testing.T, d *devBroker) map[string]float64 {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + d.opsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("exposition format: %v", err)
	}
	out := map[string]float64{}
	for _, m := range families["relais_requests_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["consumer"] == tracedConsumer && labels["method"] == tracedMethod {
			out[labels["code"]] += m.GetCounter().GetValue()
		}
	}
	return out
}
