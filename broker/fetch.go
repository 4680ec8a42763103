package broker

import (
	"context"
	"errors"
	"fmt"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"

	"github.com/relais-broker/relais/broker/errcat"
	"github.com/relais-broker/relais/broker/minimise"
	"github.com/relais-broker/relais/broker/source"
)

// fetch is the end of the chain: one live call to the source adapter,
// minimisation, then a check of what is left. Nothing is cached. The
// check runs on the minimised answer and counts only the violations on
// fields the consumer receives: a bad value in a returned field fails the
// call (source_invalid_response) as before, one in a field the consumer
// does not get no longer does, and the validator has less to walk.
func (b *Broker) fetch(ctx context.Context, c *call, req any) (any, error) {
	src, ok := b.source(c.method.Service)
	if !ok {
		return nil, errcat.New(errcat.ServiceNotConfigured)
	}
	c.sourceID = src.ID
	fctx, cancel := context.WithTimeout(ctx, src.Timeout)
	defer cancel()
	start := b.now()
	defer func() { c.sourceLatency = b.now().Sub(start) }()
	resp, err := src.Adapter.Fetch(fctx, source.Request{
		Method: c.method.FullMethod,
		Input:  req.(proto.Message),
		Scopes: c.decision.Scopes,
	})
	if err != nil {
		return nil, sourceError(ctx, err)
	}
	if resp == nil || resp.ProtoReflect().Descriptor().FullName() != c.method.Output.Descriptor().FullName() {
		return nil, errcat.Wrap(errcat.SourceInvalidResponse, fmt.Errorf("source %s answered the wrong message type", src.ID))
	}
	returned := minimise.ApplyMask(c.method, resp, c.decision.Scopes, c.mask)
	if err := b.validator.Validate(resp); err != nil {
		var verr *protovalidate.ValidationError
		if !errors.As(err, &verr) {
			return nil, errcat.Wrap(errcat.Internal, err)
		}
		n, first := 0, ""
		for _, v := range verr.Violations {
			if delivered(c, v.Proto.GetField()) {
				if n == 0 {
					first = protovalidate.FieldPathString(v.Proto.GetField())
				}
				n++
			}
		}
		if n > 0 {
			// Field paths only: the violation messages are ours, values are not logged.
			return nil, errcat.Wrap(errcat.SourceInvalidResponse, fmt.Errorf("source %s: %d rule violations, first on %s", src.ID, n, first))
		}
	}
	c.returned = returned
	return resp, nil
}

// delivered reports whether the consumer receives the field a response
// violation names: a not-personal field, or a personal one its scopes and
// mask select. A rule on the response itself (no path) counts. A field
// the minimisation cleared holds its zero value, which may break a rule
// of the field without the source having answered anything wrong there.
func delivered(c *call, fp *validate.FieldPath) bool {
	els := fp.GetElements()
	if len(els) == 0 {
		return true
	}
	top, ok := c.method.Field(els[0].GetFieldName())
	switch {
	case !ok:
		return false // unknown to the catalogue: cleared
	case top.NotPersonal:
		return true
	case !c.decision.Scopes.Has(top.Scope):
		return false
	}
	mask := c.mask
	if mask == nil {
		mask, _ = c.method.Mask(nil)
	}
	f, sel := &top, mask.Field(top.Index())
	for _, el := range els[1:] {
		if sel == nil || sel.Whole() {
			break
		}
		next := -1
		for i := range f.Fields {
			if f.Fields[i].Name == el.GetFieldName() {
				next = i
				break
			}
		}
		if next < 0 {
			return true // not nameable by a mask: kept with its parent
		}
		f, sel = &f.Fields[next], sel.Field(next)
	}
	return sel != nil
}

// sourceError maps an adapter error onto the catalogue. ctx is the
// caller's context, to tell the caller's cancellation from a source
// timeout.
func sourceError(ctx context.Context, err error) *errcat.Error {
	var retry *source.RetryableError
	switch {
	case errors.Is(err, source.ErrSubjectNotFound):
		return errcat.Wrap(errcat.SubjectNotFound, err)
	case errors.Is(err, source.ErrNotIdentifiable):
		return errcat.Wrap(errcat.SubjectNotIdentifiable, err)
	case errors.As(err, &retry):
		return errcat.Wrap(errcat.SourceUnavailable, err).WithRetryAfter(retry.RetryAfter)
	case errors.Is(err, source.ErrUnavailable):
		return errcat.Wrap(errcat.SourceUnavailable, err)
	case errors.Is(ctx.Err(), context.Canceled):
		return errcat.Wrap(errcat.Cancelled, err)
	case errors.Is(err, source.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return errcat.Wrap(errcat.SourceTimeout, err)
	case errors.Is(err, source.ErrInvalidResponse):
		return errcat.Wrap(errcat.SourceInvalidResponse, err)
	default:
		return errcat.Wrap(errcat.Internal, fmt.Errorf("source: %w", err))
	}
}
