package broker

import (
	"context"

	"google.golang.org/grpc"

	"github.com/relais-broker/relais/broker/callchain"
	"github.com/relais-broker/relais/broker/errcat"
	"github.com/relais-broker/relais/broker/identity"
)

type (
	stage   = callchain.Stage[*call]
	handler = callchain.Handler[*call]
)

// newChain builds THE order every data-API call goes through, gRPC or
// HTTPS. It fails closed: a stage that errors stops the call, and
// nothing after it runs. The first five steps are callchain's, shared
// with the admin API and credential renewal:
//
//	edge          turns errors into gRPC statuses (only there)
//	begin         gives the call an id, returned in the x-request-id header
//	audit         traces the outcome of everything below — errors, panics,
//	              refusals before decoding — then answers; no record, no data
//	authenticate  caller identity from the verified client certificate
//	decode        size limit, then protobuf (gRPC) or JSON (gateway)
//	consumer      the registered consumer of that certificate
//	validate      protovalidate rules and the field mask; how the subject
//	              is designated (typed, or citizen_access_token)
//	authorize     active consumer, grant, purpose, validity window,
//	              designation mode, scopes
//	rateLimit     anomaly throttle, token bucket
//	designate     a citizen login resolved by the identity provider and
//	              the request rewritten with the identity; the pseudonym
//	quota         duplicate guard, daily quota
//	fetch         the source adapter, minimisation, then the response check
//
// The grants come before the identity provider is asked (a mode not
// granted never reaches it), and so does the token bucket (a consumer
// over its rate cannot load the provider); the pseudonym of a citizen
// login exists only after designate, so the duplicate guard and the
// daily quota come after it, and the anomaly observer sees the resolved
// pseudonym in the record.
func (b *Broker) newChain() (*callchain.Chain[*call], error) {
	return callchain.New(callchain.Spec[*call]{
		Kind:            identity.KindConsumer,
		Revocations:     b.revoked,
		Audit:           b.audit,
		Record:          b.record,
		Observe:         b.observe,
		Logger:          b.log,
		Clock:           b.now,
		MaxRequestBytes: MaxRequestBytes,
		Stages:          []stage{b.consumerStage, b.validate, b.authorize, b.rateLimit, b.designate, b.quota},
	})
}

// serve runs one data-API call of the catalogue method m through the chain.
func (b *Broker) serve(ctx context.Context, c *call, req *callchain.Request) (any, error) {
	return b.chain.Serve(ctx, c, req, b.fetch)
}

// unaryInterceptor lets the infrastructure services registered next to
// the typed ones (health) through with panic recovery only: the typed
// services never reach it, their handlers run the chain themselves.
func (b *Broker) unaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if r := recover(); r != nil {
				b.log.Error("panic in infrastructure call", "method", info.FullMethod)
				resp, err = nil, errcat.New(errcat.Internal).Status().Err()
			}
		}()
		return h(ctx, req)
	}
}
