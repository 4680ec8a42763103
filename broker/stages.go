package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/authn"
	"github.com/relais-broker/relais/broker/authz"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/errcat"
	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/ratelimit"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/scope"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
)

// call is the state of one call, filled in by the stages in order.
type call struct {
	method    *catalog.Method
	requestID string
	start     time.Time
	caller    identity.Identity
	consumer  registry.Consumer
	access    *commonv1.AccessContext
	requested scope.Set
	decision  authz.Decision
	returned  scope.Set
	sourceID  string
	subject   string // pseudonym
	traceID   string
	// sourceLatency is how long the source took, when it was called.
	sourceLatency time.Duration
}

// RequestIDHeader is the response header carrying the call's request id.
const RequestIDHeader = "x-request-id"

// edge is the only place where errors become gRPC statuses, and where a
// panic anywhere below becomes Internal instead of a crash.
func (b *Broker) edge(ctx context.Context, c *call, req any, next handler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			// The stack is logged; the panic value is not, as it could hold request data.
			b.log.Error("panic in call", "request_id", c.requestID, "stack", string(debug.Stack()))
			resp, err = nil, errcat.New(errcat.Internal).Status().Err()
		}
	}()
	resp, err = next(ctx, c, req)
	if err != nil {
		return nil, errcat.From(err).Status().Err()
	}
	return resp, nil
}

func (b *Broker) requestID(ctx context.Context, c *call, req any, next handler) (any, error) {
	c.requestID = audit.NewRequestID()
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		c.traceID = sc.TraceID().String()
	}
	c.start = b.now()
	_ = grpc.SetHeader(ctx, metadata.Pairs(RequestIDHeader, c.requestID))
	return next(ctx, c, req)
}

// auditTimeout bounds the durable write of one audit record.
const auditTimeout = 5 * time.Second

// auditStage runs the rest of the chain, then records its outcome. Only
// when the record is durable does the response leave; otherwise the
// caller gets audit_unavailable and no data (fail closed).
func (b *Broker) auditStage(ctx context.Context, c *call, req any, next handler) (any, error) {
	resp, err := next(ctx, c, req)
	if err != nil && ctx.Err() != nil && !errors.As(err, new(*errcat.Error)) {
		err = errcat.Wrap(errcat.Cancelled, err)
	}
	rec := b.record(c, err)
	// The trace must be written even if the caller has gone away.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditTimeout)
	defer cancel()
	if aerr := b.audit.Append(actx, rec); aerr != nil {
		b.log.Error("audit append failed: refusing to answer", "request_id", c.requestID, "err", aerr)
		resp, err = nil, errcat.Wrap(errcat.AuditUnavailable, aerr)
		rec.Code, rec.Reason = errcat.From(err).Code().String(), string(errcat.AuditUnavailable)
	}
	b.logCall(rec, err)
	if b.observer != nil {
		b.observer.ObserveCall(rec, c.sourceLatency)
	}
	return resp, err
}

func (b *Broker) record(c *call, err error) audit.Record {
	r := audit.Record{
		Time:            c.start,
		RequestID:       c.requestID,
		TraceID:         c.traceID,
		Consumer:        c.caller.ID,
		CertSerial:      c.caller.Serial,
		Method:          c.method.FullMethod,
		FieldsRequested: c.requested.Sorted(),
		FieldsReturned:  c.returned.Sorted(),
		Source:          c.sourceID,
		Subject:         c.subject,
		Code:            "OK",
		Latency:         b.now().Sub(c.start),
	}
	if c.access != nil {
		r.Recipient = c.access.GetRecipient()
		r.Purpose = c.access.GetPurpose()
		r.CaseReference = c.access.GetCaseReference()
		r.Agent = c.access.GetAgent()
	}
	if err != nil {
		e := errcat.From(err)
		r.Code, r.Reason = e.Code().String(), string(e.Reason)
	}
	return r
}

func (b *Broker) logCall(r audit.Record, err error) {
	level := slog.LevelInfo
	attrs := []slog.Attr{
		slog.String("request_id", r.RequestID),
		slog.String("consumer", r.Consumer),
		slog.String("method", r.Method),
		slog.String("code", r.Code),
		slog.Float64("latency_ms", float64(r.Latency.Microseconds())/1000),
	}
	if r.TraceID != "" {
		attrs = append(attrs, slog.String("trace_id", r.TraceID))
	}
	if err != nil {
		e := errcat.From(err)
		attrs = append(attrs, slog.String("reason", string(e.Reason)))
		if e.Cause != nil {
			// Causes come from our code and adapters, whose contract forbids personal data in errors.
			attrs = append(attrs, slog.String("cause", e.Cause.Error()))
		}
		if e.Code().String() == "Internal" {
			level = slog.LevelError
		}
	}
	b.log.LogAttrs(context.Background(), level, "call", attrs...)
}

// authn derives the caller from the verified client certificate only, and
// refuses a revoked or expired one on every call.
func (b *Broker) authn(ctx context.Context, c *call, req any, next handler) (any, error) {
	cred, cerr := authn.Peer(ctx, identity.KindConsumer, b.revoked, b.now())
	if cerr != nil {
		return nil, cerr
	}
	id := cred.Identity
	c.caller = id
	consumer, err := b.registry.Consumer(ctx, id.ID)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return nil, errcat.New(errcat.ConsumerUnknown)
	case err != nil:
		return nil, errcat.Wrap(errcat.Internal, fmt.Errorf("registry: %w", err))
	}
	c.consumer = consumer
	return next(ctx, c, req)
}

// validate applies the protovalidate rules of the request and checks the
// field mask against the response's personal-data fields.
func (b *Broker) validate(ctx context.Context, c *call, req any, next handler) (any, error) {
	msg, ok := req.(proto.Message)
	if !ok {
		return nil, errcat.Wrap(errcat.Internal, errors.New("request is not a proto message"))
	}
	refl := msg.ProtoReflect()
	if fd := refl.Descriptor().Fields().ByName(catalog.AccessContextField); refl.Has(fd) {
		c.access, _ = refl.Get(fd).Message().Interface().(*commonv1.AccessContext)
	}
	c.subject = b.pseudonyms.Of(msg)
	if err := errcat.Validate(b.validator, msg); err != nil {
		return nil, err
	}
	var paths []string
	if fd := refl.Descriptor().Fields().ByName(catalog.FieldMaskField); refl.Has(fd) {
		fm, _ := refl.Get(fd).Message().Interface().(*fieldmaskpb.FieldMask)
		paths = fm.GetPaths()
	}
	requested, err := c.method.ScopesForMask(paths)
	if err != nil {
		return nil, errcat.Wrap(errcat.InvalidFieldMask, err).WithViolations([]*errdetails.BadRequest_FieldViolation{{
			Field:       string(catalog.FieldMaskField),
			Description: err.Error(),
		}})
	}
	c.requested = requested
	return next(ctx, c, req)
}

// authorize applies the grants: deny by default.
func (b *Broker) authorize(ctx context.Context, c *call, req any, next handler) (any, error) {
	grants, err := b.registry.Grants(ctx, c.consumer.SIRET, c.method.Service)
	if err != nil {
		return nil, errcat.Wrap(errcat.Internal, fmt.Errorf("registry: %w", err))
	}
	d, err := authz.Decide(c.consumer, grants, c.access.GetPurpose(), c.requested, b.now())
	if err != nil {
		return nil, err
	}
	c.decision = d
	return next(ctx, c, req)
}

// rateLimit applies the grant's token bucket for consumer × service and
// reports the bucket in the ratelimit-* response headers.
func (b *Broker) rateLimit(ctx context.Context, c *call, req any, next handler) (any, error) {
	key := ratelimit.Key(c.consumer.SIRET, c.method.Service)
	v := b.limiter.Allow(key, c.decision.Quota, b.now())
	if v.Limit >= 0 {
		_ = grpc.SetHeader(ctx, metadata.Pairs(
			"ratelimit-limit", strconv.Itoa(v.Limit),
			"ratelimit-remaining", strconv.Itoa(v.Remaining),
			"ratelimit-reset", strconv.Itoa(int(v.RetryAfter.Round(time.Second)/time.Second)),
		))
	}
	if !v.Allowed {
		return nil, errcat.New(errcat.RateLimited).WithRetryAfter(v.RetryAfter)
	}
	if ok, reset := b.daily.Take(key, c.decision.Quota.DailyCap, b.now()); !ok {
		return nil, errcat.New(errcat.DailyQuotaExceeded).WithRetryAfter(reset)
	}
	// One call at a time per consumer, method and subject: a duplicate is
	// refused rather than sent to the source twice.
	if c.subject != "" && !b.allowDup {
		dup := key + "|" + c.method.FullMethod + "|" + c.subject
		if _, busy := b.inFlight.LoadOrStore(dup, struct{}{}); busy {
			return nil, errcat.New(errcat.DuplicateInFlight)
		}
		defer b.inFlight.Delete(dup)
	}
	return next(ctx, c, req)
}
