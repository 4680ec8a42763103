package broker

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/relais-broker/relais/broker/callchain"
	"github.com/relais-broker/relais/broker/catalog"
)

// NewGRPCServer returns a gRPC server serving the typed source services
// through the chain, the gRPC health service (one status per typed service
// plus the empty name for the whole server) and server reflection. opts
// must include the transport credentials: the data API is mTLS only. The
// chain's server options (its codec, the transport bound) come last and
// win. Other chained services (credential renewal) may be registered on it.
func (b *Broker) NewGRPCServer(opts ...grpc.ServerOption) (*grpc.Server, *health.Server) {
	opts = append(opts, grpc.ChainUnaryInterceptor(b.unaryInterceptor()))
	opts = append(opts, callchain.ServerOptions()...)
	s := grpc.NewServer(opts...)
	for _, svc := range b.catalog.Services() {
		s.RegisterService(b.serviceDesc(svc), struct{}{})
	}
	hs := health.NewServer()
	for _, svc := range b.catalog.Services() {
		st := healthpb.HealthCheckResponse_SERVING
		if _, ok := b.source(svc); !ok {
			st = healthpb.HealthCheckResponse_NOT_SERVING
		}
		hs.SetServingStatus(svc, st)
	}
	healthpb.RegisterHealthServer(s, hs)
	reflection.Register(s)
	return s, hs
}

// serviceDesc describes service to gRPC with one generic handler per
// method, which runs the chain itself: decoding is one of its steps, and
// the chain ends in fetch.
func (b *Broker) serviceDesc(service string) *grpc.ServiceDesc {
	sd := &grpc.ServiceDesc{ServiceName: service, HandlerType: (*any)(nil)}
	for _, m := range b.catalog.Methods() {
		if m.Service != service {
			continue
		}
		sd.Methods = append(sd.Methods, grpc.MethodDesc{
			MethodName: m.FullMethod[len(service)+2:],
			Handler:    b.methodHandler(m),
		})
		sd.Metadata = m.Input.Descriptor().ParentFile().Path()
	}
	return sd
}

// methodHandler hands the request to the chain undecoded: a malformed or
// oversized one is then refused by the chain's decode step, traced.
func (b *Broker) methodHandler(m *catalog.Method) func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) {
	return func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
		return b.serve(ctx, b.newCall(m), callchain.GRPC(m.Input.New().Interface(), dec))
	}
}

func (b *Broker) newCall(m *catalog.Method) *call {
	c := &call{method: m}
	c.Method = m.FullMethod
	return c
}
