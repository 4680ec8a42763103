package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/authz"
	"github.com/relais-broker/relais/broker/callchain"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/errcat"
	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/ratelimit"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/scope"
	"github.com/relais-broker/relais/broker/subject"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
)

// call is the state of one data-API call, filled in by the stages in
// order; callchain.Call holds what every API shares (request id, trace
// id, start, the certificate).
type call struct {
	callchain.Call
	method    *catalog.Method
	caller    identity.Identity
	consumer  registry.Consumer
	access    *commonv1.AccessContext
	requested scope.Set
	// mask is the call's field mask resolved against the response.
	mask     *catalog.Mask
	decision authz.Decision
	// returned are the mask paths of the personal fields returned.
	returned []string
	sourceID string
	subject  string // pseudonym
	// mode is how the request designates its subject (a
	// registry.Designation* constant), read before authorization.
	mode string
	// origin is the audit record's SubjectOrigin, set once a citizen
	// login was resolved.
	origin string
	// sourceLatency is how long the source took, when it was called.
	sourceLatency time.Duration
}

// RequestIDHeader is the response header carrying the call's request id.
const RequestIDHeader = callchain.RequestIDHeader

// record is the audit record of a data-API call that ended with err;
// the chain fills in the request id, trace id, time, code and latency.
func (b *Broker) record(c *call, _ error) audit.Record {
	r := audit.Record{
		Consumer:        c.CallerID(),
		Method:          c.method.FullMethod,
		FieldsRequested: c.mask.Paths(),
		FieldsReturned:  c.returned,
		Source:          c.sourceID,
		Subject:         c.subject,
		SubjectOrigin:   c.origin,
	}
	// A deferred disclosure follows the grants that decided the call: the
	// longest delay wins, with its legal reference.
	for _, g := range c.decision.Grants {
		if d := g.Disclosure.Delay; d > 0 && !c.Start.IsZero() && c.Start.Add(d).After(r.DiscloseAfter) {
			r.DiscloseAfter, r.DisclosureReference = c.Start.Add(d), g.Disclosure.LegalReference
		}
	}
	if c.access != nil {
		r.Recipient = c.access.GetRecipient()
		r.Purpose = c.access.GetPurpose()
		r.CaseReference = c.access.GetCaseReference()
		r.Agent = c.access.GetAgent()
	}
	return r
}

// observe tells the configured observer (metrics, anomaly detection)
// about a traced call.
func (b *Broker) observe(c *call, r audit.Record) {
	if b.observer != nil {
		b.observer.ObserveCall(r, c.sourceLatency)
	}
}

// consumerStage finds the registered consumer of the authenticated
// certificate.
func (b *Broker) consumerStage(ctx context.Context, c *call, req any, next handler) (any, error) {
	c.caller = c.Credential.Identity
	consumer, err := b.registry.Consumer(ctx, c.caller.ID)
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
	// The pseudonym is taken before validation, so that refusals are
	// traced with it too; a citizen_access_token request has none until
	// the designate stage resolves it (never a hash of the token).
	c.subject = b.pseudonyms.Of(msg)
	c.mode = registry.DesignationTyped
	if subject.Designate(msg).Token != "" {
		c.mode = registry.DesignationCitizenLogin
	}
	if err := errcat.Validate(b.validator, msg); err != nil {
		return nil, err
	}
	var paths []string
	if fd := refl.Descriptor().Fields().ByName(catalog.FieldMaskField); refl.Has(fd) {
		fm, _ := refl.Get(fd).Message().Interface().(*fieldmaskpb.FieldMask)
		paths = fm.GetPaths()
	}
	mask, err := c.method.Mask(paths)
	if err != nil {
		// The error text is fit for the log; the paths go to the caller only.
		var merr *catalog.MaskError
		errors.As(err, &merr)
		violations := make([]*errdetails.BadRequest_FieldViolation, 0, len(merr.Problems))
		for _, p := range merr.Problems {
			violations = append(violations, &errdetails.BadRequest_FieldViolation{Field: p.Field(), Description: p.Description()})
		}
		return nil, errcat.Wrap(errcat.InvalidFieldMask, err).WithViolations(violations)
	}
	c.mask, c.requested = mask, mask.Scopes()
	return next(ctx, c, req)
}

// authorize applies the grants: deny by default, the designation mode
// included (a citizen login needs a grant that allows it, decided before
// the identity provider is asked anything).
func (b *Broker) authorize(ctx context.Context, c *call, req any, next handler) (any, error) {
	grants, err := b.registry.Grants(ctx, c.consumer.SIRET, c.method.Service)
	if err != nil {
		return nil, errcat.Wrap(errcat.Internal, fmt.Errorf("registry: %w", err))
	}
	d, err := authz.DecideMode(c.consumer, grants, c.access.GetPurpose(), c.mode, c.requested, b.now())
	if err != nil {
		return nil, err
	}
	c.decision = d
	return next(ctx, c, req)
}

// rateLimit applies, in this order, the anomaly throttle and the grant's
// token bucket for consumer × service (this replica's share of it when
// Config.RateShare is set; reported in the ratelimit-* response
// headers): before the identity provider is asked, so that a consumer
// over its rate cannot load it.
func (b *Broker) rateLimit(ctx context.Context, c *call, req any, next handler) (any, error) {
	now := b.now()
	if b.throttle != nil {
		if throttled, retry := b.throttle.Throttled(c.consumer.SIRET, now); throttled {
			return nil, errcat.New(errcat.Throttled).WithRetryAfter(retry)
		}
	}
	key := ratelimit.Key(c.consumer.SIRET, c.method.Service)
	q := c.decision.Quota
	if b.share != nil {
		// This replica's part of the grant's rate and burst; the daily
		// cap below stays the grant's own (counted in the shared store).
		q = b.share.Quota(q, now)
	}
	v := b.limiter.Allow(key, q, now)
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
	return next(ctx, c, req)
}

// designate resolves a subject designated by the citizen's login: the
// token goes to the identity provider (Config.Citizens), and the request
// is rewritten — token cleared, the identity set in its subject field —
// so that the pseudonym, the duplicate guard, the anomaly observer, the
// source adapter and minimisation see exactly what a typed identity
// gives. A typed subject passes through.
func (b *Broker) designate(ctx context.Context, c *call, req any, next handler) (any, error) {
	if c.mode != registry.DesignationCitizenLogin {
		return next(ctx, c, req)
	}
	msg := req.(proto.Message)
	if !subject.CanHoldIdentity(msg.ProtoReflect().Descriptor()) {
		// The service names its subjects by a domain identifier only: a
		// civil identity from the login cannot designate anyone there.
		return nil, errcat.Wrap(errcat.SubjectNotIdentifiable, errors.New("citizen login on a service without a civil-identity field"))
	}
	if b.citizens == nil {
		return nil, errcat.New(errcat.CitizenLoginNotConfigured)
	}
	id, err := b.citizens.Resolve(ctx, subject.Designate(msg).Token)
	if err != nil {
		var e *errcat.Error
		if errors.As(err, &e) {
			return nil, e
		}
		// A resolver outside the catalogue: its text may hold anything.
		return nil, errcat.Wrap(errcat.IdentityProviderUnavailable, errors.New("citizen resolver failed")).WithRetryAfter(time.Second)
	}
	if id == nil {
		return nil, errcat.Wrap(errcat.Internal, errors.New("citizen resolver returned no identity"))
	}
	if err := subject.SetIdentity(msg, id); err != nil {
		return nil, errcat.Wrap(errcat.Internal, err)
	}
	c.subject = b.pseudonyms.Of(msg)
	c.origin = audit.OriginCitizenLogin
	return next(ctx, c, req)
}

// quota applies the duplicate-in-flight guard and only then the daily
// quota, so that a refused duplicate does not use up the quota; both need
// the subject's pseudonym, known once designate ran.
func (b *Broker) quota(ctx context.Context, c *call, req any, next handler) (any, error) {
	now := b.now()
	key := ratelimit.Key(c.consumer.SIRET, c.method.Service)
	// One call at a time per consumer, method and subject: a duplicate is
	// refused rather than sent to the source twice.
	if c.subject != "" && !b.allowDup {
		release, ok, err := b.inFlight.Acquire(ctx, key+"|"+c.method.FullMethod+"|"+c.subject, b.inFlightTTL(c.method.Service))
		switch {
		case err != nil:
			return nil, errcat.Wrap(errcat.QuotaUnavailable, fmt.Errorf("in-flight guard: %w", err))
		case !ok:
			return nil, errcat.New(errcat.DuplicateInFlight)
		}
		defer release()
	}
	ok, reset, err := b.daily.Take(ctx, key, c.decision.Quota.DailyCap, now)
	switch {
	case err != nil:
		return nil, errcat.Wrap(errcat.QuotaUnavailable, fmt.Errorf("daily quota: %w", err))
	case !ok:
		return nil, errcat.New(errcat.DailyQuotaExceeded).WithRetryAfter(reset)
	}
	return next(ctx, c, req)
}

// inFlightTTL bounds how long a call holds its in-flight key should its
// replica die before releasing it: the source timeout, then the audit write.
func (b *Broker) inFlightTTL(service string) time.Duration {
	timeout := DefaultSourceTimeout
	if src, ok := b.source(service); ok {
		timeout = src.Timeout
	}
	return timeout + callchain.AuditTimeout
}
