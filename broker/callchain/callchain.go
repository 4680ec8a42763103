// Package callchain is the one mechanism every Relais RPC goes through —
// the data API (gRPC and its HTTPS gateway), the admin API and credential
// renewal — so that a fix to one is a fix to all. A call runs, in this
// fixed order:
//
//	edge          turns errors into gRPC statuses (the only place), and
//	              recovers a panic the steps below could not
//	begin         request id (answered in the x-request-id header), trace
//	              id of the current span, start time
//	audit         runs everything below, recovering its panics (Internal),
//	              then writes the call's audit record — bounded by
//	              AuditTimeout, even when the caller has gone — logs one
//	              line and tells the observer; no record, no answer
//	authenticate  the verified client certificate, of the kind the API serves
//	decode        the request bytes: the size limit, then protobuf or JSON;
//	              inside the chain, so that a malformed or oversized request
//	              is traced like any other refusal
//	stages        the API's own steps (validation, authorization, limits)
//	act           the handler
//
// An API describes itself with a Spec (identity kind, record builder, its
// stages) over a call state of its own that embeds Call.
package callchain

import (
	"context"
	"errors"
	"log/slog"
	"runtime/debug"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/authn"
	"github.com/relais-broker/relais/broker/errcat"
	"github.com/relais-broker/relais/broker/identity"
)

// RequestIDHeader is the response header carrying the call's request id.
const RequestIDHeader = "x-request-id"

// AuditTimeout bounds the durable write of one audit record.
const AuditTimeout = 5 * time.Second

// Call is what every API knows of a call; API call states embed it.
type Call struct {
	// Method is the full gRPC method, e.g. /relais.admin.v1.X/Y.
	Method    string
	RequestID string
	// TraceID is the OpenTelemetry trace id of the call, when traced.
	TraceID string
	Start   time.Time
	// CertSerial is the serial of the verified client certificate, set
	// even when authentication then refuses it (wrong kind, revoked).
	CertSerial string
	// Credential is the authenticated caller; nil until authenticate
	// accepted it.
	Credential *authn.Credential
	// RequestBytes is the size of the request as received, once decoded.
	RequestBytes int
}

// Core returns c, so that any state embedding Call satisfies State.
func (c *Call) Core() *Call { return c }

// CallerID is the authenticated caller's id (SIRET or operator id), or "".
func (c *Call) CallerID() string {
	if c.Credential == nil {
		return ""
	}
	return c.Credential.Identity.ID
}

// State is an API's call state: anything embedding *Call or Call.
type State interface{ Core() *Call }

// Handler is the rest of a chain, or its final act. req is a *Request
// before the decode step and the decoded proto.Message after it.
type Handler[C State] func(ctx context.Context, c C, req any) (any, error)

// Stage is one step of a chain: it gets the call and the rest of the
// chain, and returns the response or a catalogued error. A stage that
// errors stops the call: nothing after it runs (fail closed).
type Stage[C State] func(ctx context.Context, c C, req any, next Handler[C]) (any, error)

// Observer is told about every traced call: its audit record (no personal
// data) and how long the source took (zero when none was called).
type Observer interface {
	ObserveCall(r audit.Record, sourceLatency time.Duration)
}

// Spec describes one API to the mechanism.
type Spec[C State] struct {
	// Kind is the identity kind the API serves (consumer, operator).
	Kind identity.Kind
	// Revocations refuses revoked certificates on every call; nil revokes nothing.
	Revocations authn.RevocationChecker
	// Audit receives every call's record; required.
	Audit audit.Recorder
	// Record builds the audit record of a call that ended with err (nil
	// on success); required. Time, RequestID, TraceID, Method, CertSerial,
	// Code, Reason and Latency are filled in by the mechanism when left empty.
	Record func(c C, err error) audit.Record
	// Observe, when set, sees every call once traced.
	Observe func(c C, r audit.Record)
	// Logger receives one line per call (LogMessage, "call" when empty);
	// nil discards.
	Logger     *slog.Logger
	LogMessage string
	// Clock is the time source; nil means time.Now.
	Clock func() time.Time
	// MaxRequestBytes bounds a request; DefaultMaxRequestBytes when zero.
	MaxRequestBytes int
	// Stages run after authentication and decoding, in order.
	Stages []Stage[C]
}

// DefaultMaxRequestBytes bounds a request when the Spec sets no limit:
// Relais requests are a few hundred bytes; anything near this is an
// attack or a bug.
const DefaultMaxRequestBytes = 64 << 10

// Chain runs calls of one API.
type Chain[C State] struct {
	spec   Spec[C]
	stages []Stage[C]
}

// New checks spec and returns its chain.
func New[C State](spec Spec[C]) (*Chain[C], error) {
	if spec.Audit == nil || spec.Record == nil {
		return nil, errors.New("callchain: an audit recorder and a record builder are required")
	}
	if spec.Kind == "" {
		return nil, errors.New("callchain: an identity kind is required")
	}
	if spec.Logger == nil {
		spec.Logger = slog.New(slog.DiscardHandler)
	}
	if spec.LogMessage == "" {
		spec.LogMessage = "call"
	}
	if spec.Clock == nil {
		spec.Clock = time.Now
	}
	if spec.MaxRequestBytes <= 0 {
		spec.MaxRequestBytes = DefaultMaxRequestBytes
	}
	ch := &Chain[C]{spec: spec}
	ch.stages = append([]Stage[C]{ch.edge, ch.begin, ch.audit, ch.authenticate, ch.decode}, spec.Stages...)
	return ch, nil
}

// Serve runs one call through the chain and then act. c is a fresh call
// state whose Method is set; req is a *Request still to decode (or an
// already decoded message). The error, if any, is a gRPC status error.
func (ch *Chain[C]) Serve(ctx context.Context, c C, req any, act Handler[C]) (any, error) {
	return Run(ctx, c, req, ch.stages, act)
}

// Run calls stages[0] with the rest of stages, then last, as its next step.
func Run[C State](ctx context.Context, c C, req any, stages []Stage[C], last Handler[C]) (any, error) {
	if len(stages) == 0 {
		return last(ctx, c, req)
	}
	return stages[0](ctx, c, req, func(ctx context.Context, c C, req any) (any, error) {
		return Run(ctx, c, req, stages[1:], last)
	})
}

// edge is the only place where errors become gRPC statuses. The audit
// step recovers what panics below it; this recovers the rest (a panic
// while building the record), so a call never crashes the process.
func (ch *Chain[C]) edge(ctx context.Context, c C, req any, next Handler[C]) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			// The stack is logged; the panic value is not, as it could hold request data.
			ch.spec.Logger.Error("panic outside the audited part of a call", "request_id", c.Core().RequestID,
				"method", c.Core().Method, "stack", string(debug.Stack()))
			resp, err = nil, errcat.New(errcat.Internal).Status().Err()
		}
	}()
	resp, err = next(ctx, c, req)
	if err == nil {
		return resp, nil
	}
	var e *errcat.Error
	if errors.As(err, &e) {
		return nil, e.Status().Err()
	}
	if _, ok := status.FromError(err); ok {
		// A status the handler built itself (a stream's): it stands.
		return nil, err
	}
	return nil, errcat.Wrap(errcat.Internal, err).Status().Err()
}

// catalogued is the catalogue error err stands for: itself, the reason
// of the ErrorInfo of a status a handler built, or Internal.
func catalogued(err error) *errcat.Error {
	var e *errcat.Error
	if errors.As(err, &e) {
		return e
	}
	if st, ok := status.FromError(err); ok {
		for _, d := range st.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == errcat.Domain {
				if _, known := errcat.Lookup(errcat.Reason(info.GetReason())); known {
					return errcat.Wrap(errcat.Reason(info.GetReason()), err)
				}
			}
		}
	}
	return errcat.Wrap(errcat.Internal, err)
}

func (ch *Chain[C]) begin(ctx context.Context, c C, req any, next Handler[C]) (any, error) {
	core := c.Core()
	core.RequestID = audit.NewRequestID()
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		core.TraceID = sc.TraceID().String()
	}
	core.Start = ch.spec.Clock()
	_ = grpc.SetHeader(ctx, metadata.Pairs(RequestIDHeader, core.RequestID))
	return next(ctx, c, req)
}

// errPanic is the cause recorded for a recovered panic.
var errPanic = errors.New("panic while serving the call")

// audit runs the rest of the chain, then records its outcome. Only when
// the record is durable does the response leave; otherwise the caller
// gets audit_unavailable and no data (fail closed).
func (ch *Chain[C]) audit(ctx context.Context, c C, req any, next Handler[C]) (any, error) {
	resp, err := ch.recovered(ctx, c, req, next)
	if err != nil && ctx.Err() != nil && !errors.As(err, new(*errcat.Error)) {
		err = errcat.Wrap(errcat.Cancelled, err)
	}
	rec, failed := ch.record(c, err)
	if failed {
		resp, err = nil, errcat.Wrap(errcat.Internal, errPanic)
	}
	// The trace must be written even if the caller has gone away.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), AuditTimeout)
	defer cancel()
	if aerr := ch.spec.Audit.Append(actx, rec); aerr != nil {
		ch.spec.Logger.Error("audit append failed: refusing to answer", "request_id", rec.RequestID, "method", rec.Method, "error", aerr.Error())
		resp, err = nil, errcat.Wrap(errcat.AuditUnavailable, aerr)
		rec.Code, rec.Reason = codes.Unavailable.String(), string(errcat.AuditUnavailable)
	}
	ch.log(rec, err)
	if ch.spec.Observe != nil {
		ch.spec.Observe(c, rec)
	}
	return resp, err
}

// recovered runs next and turns a panic into Internal, so that the
// record of the call is still written before the answer.
func (ch *Chain[C]) recovered(ctx context.Context, c C, req any, next Handler[C]) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			// The stack is logged; the panic value is not, as it could hold request data.
			ch.spec.Logger.Error("panic in call", "request_id", c.Core().RequestID, "method", c.Core().Method, "stack", string(debug.Stack()))
			resp, err = nil, errcat.Wrap(errcat.Internal, errPanic)
		}
	}()
	return next(ctx, c, req)
}

// record is the audit record of c, ended with err. When the API's
// builder fails, the call fails too (failed): the record says Internal.
func (ch *Chain[C]) record(c C, err error) (r audit.Record, failed bool) {
	core := c.Core()
	r, failed = ch.build(c, err)
	if failed {
		err = errcat.Wrap(errcat.Internal, errPanic)
	}
	if r.Time.IsZero() {
		r.Time = core.Start
	}
	if r.RequestID == "" {
		r.RequestID = core.RequestID
	}
	if r.TraceID == "" {
		r.TraceID = core.TraceID
	}
	if r.Method == "" {
		r.Method = core.Method
	}
	if r.CertSerial == "" {
		r.CertSerial = core.CertSerial
	}
	if r.Latency == 0 {
		r.Latency = ch.spec.Clock().Sub(core.Start)
	}
	r.Code, r.Reason = "OK", ""
	if err != nil {
		e := catalogued(err)
		r.Code, r.Reason = e.Code().String(), string(e.Reason)
	}
	return r, failed
}

// build runs the API's record builder; should it panic, the call is
// still recorded with what every call has, and fails (no complete
// record, no answer).
func (ch *Chain[C]) build(c C, err error) (r audit.Record, failed bool) {
	defer func() {
		if p := recover(); p != nil {
			ch.spec.Logger.Error("panic in the audit record builder", "request_id", c.Core().RequestID, "method", c.Core().Method, "stack", string(debug.Stack()))
			r, failed = audit.Record{}, true
		}
	}()
	return ch.spec.Record(c, err), false
}

func (ch *Chain[C]) log(r audit.Record, err error) {
	level := slog.LevelInfo
	attrs := []slog.Attr{slog.String("request_id", r.RequestID)}
	if r.Consumer != "" {
		attrs = append(attrs, slog.String("consumer", r.Consumer))
	}
	if r.Operator != "" {
		attrs = append(attrs, slog.String("operator", r.Operator))
	}
	attrs = append(attrs,
		slog.String("method", r.Method),
		slog.String("code", r.Code),
		slog.Float64("latency_ms", float64(r.Latency.Microseconds())/1000),
	)
	if r.Target != "" {
		attrs = append(attrs, slog.String("target", r.Target))
	}
	if r.TraceID != "" {
		attrs = append(attrs, slog.String("trace_id", r.TraceID))
	}
	if err != nil {
		e := catalogued(err)
		attrs = append(attrs, slog.String("reason", string(e.Reason)))
		if e.Cause != nil {
			// Causes come from our code and adapters, whose contract forbids personal data in errors.
			attrs = append(attrs, slog.String("cause", e.Cause.Error()))
		}
		if e.Code().String() == "Internal" {
			level = slog.LevelError
		}
	}
	ch.spec.Logger.LogAttrs(context.Background(), level, ch.spec.LogMessage, attrs...)
}

// authenticate derives the caller from the verified client certificate
// only, and refuses a revoked or expired one on every call.
func (ch *Chain[C]) authenticate(ctx context.Context, c C, req any, next Handler[C]) (any, error) {
	core := c.Core()
	if leaf := authn.Leaf(ctx); leaf != nil {
		core.CertSerial = identity.SerialHex(leaf)
	}
	cred, cerr := authn.Peer(ctx, ch.spec.Kind, ch.spec.Revocations, ch.spec.Clock())
	if cerr != nil {
		return nil, cerr
	}
	core.Credential = cred
	return next(ctx, c, req)
}

// decode turns a *Request into its message; an already decoded message
// passes through.
func (ch *Chain[C]) decode(ctx context.Context, c C, req any, next Handler[C]) (any, error) {
	r, ok := req.(*Request)
	if !ok {
		return next(ctx, c, req)
	}
	n, err := r.decode(ctx, ch.spec.MaxRequestBytes)
	c.Core().RequestBytes = n
	if err != nil {
		return nil, err
	}
	return next(ctx, c, r.msg)
}
