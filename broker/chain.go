package broker

import (
	"context"

	"google.golang.org/grpc"
)

// stage is one step of the chain: it gets the call state and the rest of
// the chain, and returns the response or a catalogued error.
type stage func(ctx context.Context, c *call, req any, next handler) (any, error)

type handler func(ctx context.Context, c *call, req any) (any, error)

// chain is THE order every data-API call goes through. It fails closed:
// a stage that errors stops the call, and nothing after it runs.
//
//	edge       recovers panics, turns errors into gRPC statuses (only here)
//	requestID  gives the call an id, returned in the x-request-id header
//	audit      traces the outcome of everything below, then answers;
//	           no record, no data (its record is written last)
//	authn      caller identity from the verified client certificate
//	validate   protovalidate rules and the field mask
//	authz      active consumer, grant, purpose, validity window, scopes
//	rateLimit  the grant's token bucket
//	fetch      the source adapter, then minimisation
func (b *Broker) chain() []stage {
	return []stage{
		b.edge,
		b.requestID,
		b.auditStage,
		b.authn,
		b.validate,
		b.authorize,
		b.rateLimit,
	}
}

// unaryInterceptor runs the chain for the typed source methods and lets
// the infrastructure services registered next to them (health) through
// with panic recovery only.
func (b *Broker) unaryInterceptor() grpc.UnaryServerInterceptor {
	stages := b.chain()
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		m, ok := b.catalog.Method(info.FullMethod)
		if !ok {
			return b.edge(ctx, &call{}, req, func(ctx context.Context, _ *call, req any) (any, error) {
				return h(ctx, req)
			})
		}
		c := &call{method: m}
		return run(ctx, c, req, stages, b.fetch)
	}
}

// run calls stages[0] with the rest of the chain as its next step.
func run(ctx context.Context, c *call, req any, stages []stage, last handler) (any, error) {
	if len(stages) == 0 {
		return last(ctx, c, req)
	}
	return stages[0](ctx, c, req, func(ctx context.Context, c *call, req any) (any, error) {
		return run(ctx, c, req, stages[1:], last)
	})
}
