package broker

import (
	"context"
	"errors"
	"fmt"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"

	"github.com/relais-broker/relais/broker/errcat"
	"github.com/relais-broker/relais/broker/minimise"
	"github.com/relais-broker/relais/broker/source"
)

// fetch is the end of the chain: one live call to the source adapter, a
// check of what it answered, then minimisation. Nothing is cached.
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
	if err := b.validator.Validate(resp); err != nil {
		var verr *protovalidate.ValidationError
		if errors.As(err, &verr) {
			// Field paths and rule ids only: the violation messages are ours, values are not logged.
			return nil, errcat.Wrap(errcat.SourceInvalidResponse, fmt.Errorf("source %s: %d rule violations, first on %s", src.ID, len(verr.Violations), protovalidate.FieldPathString(verr.Violations[0].Proto.GetField())))
		}
		return nil, errcat.Wrap(errcat.Internal, err)
	}
	c.returned = minimise.ApplyMask(c.method, resp, c.decision.Scopes, c.mask)
	return resp, nil
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
