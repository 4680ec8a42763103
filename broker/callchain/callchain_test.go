package callchain

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/errcat"
	"github.com/relais-broker/relais/broker/identity"
)

// withCert returns ctx as seen by a call whose verified client
// certificate binds kind:id (what the TLS stack hands the chain).
func withCert(t *testing.T, ctx context.Context, kind identity.Kind, id string) context.Context {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(0xabc), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		URIs: []*url.URL{identity.URI(kind, id)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return peer.NewContext(ctx, &peer.Peer{AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert}}}}})
}

type testCall struct {
	Call
	reached bool
}

func newTestChain(t *testing.T, rec audit.Recorder, logs *bytes.Buffer, stages ...Stage[*testCall]) *Chain[*testCall] {
	t.Helper()
	ch, err := New(Spec[*testCall]{
		Kind: identity.KindOperator, Audit: rec, Logger: slog.New(slog.NewJSONHandler(logs, nil)), LogMessage: "test",
		Record: func(c *testCall, _ error) audit.Record { return audit.Record{Operator: c.CallerID()} },
		Stages: stages,
	})
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func reasonOf(err error) (codes.Code, string) {
	st := status.Convert(err)
	for _, d := range st.Details() {
		if e, ok := d.(interface{ GetReason() string }); ok {
			return st.Code(), e.GetReason()
		}
	}
	return st.Code(), ""
}

// TestPostStepRunsWhateverHappens: every outcome below the audit step —
// success, refusal, panic, cancellation, missing certificate — leaves
// exactly one record, written before the answer.
func TestPostStepRunsWhateverHappens(t *testing.T) {
	t.Parallel()
	ok := func(context.Context, *testCall, any) (any, error) { return &emptypb.Empty{}, nil }
	tests := []struct {
		name    string
		ctx     func(t *testing.T) context.Context
		act     Handler[*testCall]
		code    codes.Code
		reason  string
		caller  string
		reached bool
	}{
		{"success", func(t *testing.T) context.Context {
			return withCert(t, context.Background(), identity.KindOperator, "alice")
		}, ok, codes.OK, "", "alice", true},
		{"refusal", func(t *testing.T) context.Context {
			return withCert(t, context.Background(), identity.KindOperator, "alice")
		},
			func(context.Context, *testCall, any) (any, error) { return nil, errcat.New(errcat.NotFound) }, codes.NotFound, "not_found", "alice", true},
		{"panic", func(t *testing.T) context.Context {
			return withCert(t, context.Background(), identity.KindOperator, "alice")
		},
			func(context.Context, *testCall, any) (any, error) { panic("secret value") }, codes.Internal, "internal", "alice", true},
		{"cancelled", func(t *testing.T) context.Context {
			ctx, cancel := context.WithCancel(withCert(t, context.Background(), identity.KindOperator, "alice"))
			cancel()
			return ctx
		}, func(ctx context.Context, _ *testCall, _ any) (any, error) { return nil, ctx.Err() }, codes.Canceled, "cancelled", "alice", true},
		{"a status built by the handler", func(t *testing.T) context.Context {
			return withCert(t, context.Background(), identity.KindOperator, "alice")
		},
			func(context.Context, *testCall, any) (any, error) {
				return nil, errcat.New(errcat.ServiceNotConfigured).WithDetail("no export").Status().Err()
			}, codes.Unimplemented, "service_not_configured", "alice", true},
		{"no certificate", func(*testing.T) context.Context { return context.Background() }, ok, codes.Unauthenticated, "credential_missing", "", false},
		{"wrong kind", func(t *testing.T) context.Context {
			return withCert(t, context.Background(), identity.KindConsumer, "21990000100005")
		}, ok, codes.Unauthenticated, "credential_invalid", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec, logs := &audit.Memory{}, &bytes.Buffer{}
			ch := newTestChain(t, rec, logs, func(ctx context.Context, c *testCall, req any, next Handler[*testCall]) (any, error) {
				c.reached = true
				return next(ctx, c, req)
			})
			c := &testCall{Call: Call{Method: "/t.v1.S/M"}}
			_, err := ch.Serve(tt.ctx(t), c, Decoded(&emptypb.Empty{}), tt.act)
			if code, reason := reasonOf(err); code != tt.code || reason != tt.reason {
				t.Fatalf("got %s/%s, want %s/%s", code, reason, tt.code, tt.reason)
			}
			recs := rec.Records()
			if len(recs) != 1 || recs[0].Reason != tt.reason || recs[0].Operator != tt.caller || recs[0].Method != "/t.v1.S/M" || recs[0].RequestID != c.RequestID {
				t.Fatalf("records = %+v", recs)
			}
			if tt.name == "wrong kind" && recs[0].CertSerial != "abc" {
				t.Errorf("the refused certificate is not named: %+v", recs[0])
			}
			if c.reached != tt.reached {
				t.Errorf("stage reached = %v", c.reached)
			}
			if strings.Contains(logs.String(), "secret value") || !strings.Contains(logs.String(), `"request_id":"`+c.RequestID+`"`) {
				t.Errorf("logs = %s", logs.String())
			}
		})
	}
}

func TestNoRecordNoAnswer(t *testing.T) {
	t.Parallel()
	rec := &audit.Memory{}
	rec.SetFail(errors.New("disk full"))
	ch := newTestChain(t, rec, &bytes.Buffer{})
	resp, err := ch.Serve(withCert(t, context.Background(), identity.KindOperator, "alice"), &testCall{}, Decoded(&emptypb.Empty{}),
		func(context.Context, *testCall, any) (any, error) { return &emptypb.Empty{}, nil })
	if code, reason := reasonOf(err); code != codes.Unavailable || reason != "audit_unavailable" || resp != nil {
		t.Fatalf("got %v, %s/%s", resp, code, reason)
	}
}

func TestTransportRefusalsAreNamed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err    error
		reason errcat.Reason
	}{
		{status.Error(codes.ResourceExhausted, "grpc: received message larger than max"), errcat.RequestTooLarge},
		{status.Error(codes.Canceled, "context canceled"), errcat.Cancelled},
		{status.Error(codes.Internal, "cardinality violation"), errcat.MalformedRequest},
	}
	for _, tt := range tests {
		req := GRPC(&emptypb.Empty{}, func(any) error { return tt.err })
		if _, err := req.decode(context.Background(), 10); err == nil || err.Reason != tt.reason {
			t.Errorf("%v → %v, want %s", tt.err, err, tt.reason)
		}
	}
	// Within the transport bound but over the chain's limit.
	req := GRPC(&emptypb.Empty{}, func(v any) error { v.(*rawMessage).b = make([]byte, 11); return nil })
	if n, err := req.decode(context.Background(), 10); err == nil || err.Reason != errcat.RequestTooLarge || n != 11 || err.Metadata["limit_bytes"] != "10" {
		t.Errorf("11 bytes over a limit of 10: %d, %v", n, err)
	}
}

// ctxRecorder remembers the context Append was given.
type ctxRecorder struct {
	ctx context.Context
	err error // ctx.Err() during Append
}

func (r *ctxRecorder) Append(ctx context.Context, _ audit.Record) error {
	r.ctx, r.err = ctx, ctx.Err()
	return nil
}

// TestAuditWriteIsBounded: the record is written even when the caller has
// gone, but never waits more than AuditTimeout — for every API alike.
func TestAuditWriteIsBounded(t *testing.T) {
	t.Parallel()
	rec := &ctxRecorder{}
	ch := newTestChain(t, rec, &bytes.Buffer{})
	ctx, cancel := context.WithCancel(withCert(t, context.Background(), identity.KindOperator, "alice"))
	cancel()
	start := time.Now()
	_, _ = ch.Serve(ctx, &testCall{}, Decoded(&emptypb.Empty{}), func(context.Context, *testCall, any) (any, error) { return &emptypb.Empty{}, nil })
	deadline, ok := rec.ctx.Deadline()
	if !ok || deadline.Sub(start) > AuditTimeout+time.Second {
		t.Fatalf("audit write deadline %v (set %v)", deadline.Sub(start), ok)
	}
	if rec.err != nil {
		t.Fatal("the caller's cancellation reached the audit write")
	}
}

// TestRecordBuilderPanic: a bug in an API's record builder still leaves
// a record, and the call fails rather than answer with a partial one.
func TestRecordBuilderPanic(t *testing.T) {
	t.Parallel()
	rec := &audit.Memory{}
	ch, err := New(Spec[*testCall]{Kind: identity.KindOperator, Audit: rec,
		Record: func(*testCall, error) audit.Record { panic("builder bug") }})
	if err != nil {
		t.Fatal(err)
	}
	c := &testCall{Call: Call{Method: "/t.v1.S/M"}}
	resp, err := ch.Serve(withCert(t, context.Background(), identity.KindOperator, "alice"), c, Decoded(&emptypb.Empty{}),
		func(context.Context, *testCall, any) (any, error) { return &emptypb.Empty{}, nil })
	if code, reason := reasonOf(err); code != codes.Internal || reason != "internal" || resp != nil {
		t.Fatalf("got %v, %s/%s", resp, code, reason)
	}
	if recs := rec.Records(); len(recs) != 1 || recs[0].Reason != "internal" || recs[0].Method != "/t.v1.S/M" || recs[0].RequestID != c.RequestID {
		t.Fatalf("records = %+v", recs)
	}
}
