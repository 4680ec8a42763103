package broker

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/relais-broker/relais/broker/catalog"
)

// NewGRPCServer returns a gRPC server serving the typed source services
// through the chain, the gRPC health service (one status per typed service
// plus the empty name for the whole server) and server reflection. opts
// must include the transport credentials: the data API is mTLS only.
func (b *Broker) NewGRPCServer(opts ...grpc.ServerOption) (*grpc.Server, *health.Server) {
	opts = append(opts, grpc.ChainUnaryInterceptor(b.unaryInterceptor()))
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
// method: decode into the generated request type, then the interceptor
// chain; the chain itself ends in fetch, so the handler below is never
// reached without it.
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

func (b *Broker) methodHandler(m *catalog.Method) func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) {
	return func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		in := m.Input.New().Interface()
		if err := dec(in); err != nil {
			return nil, err
		}
		info := &grpc.UnaryServerInfo{Server: srv, FullMethod: m.FullMethod}
		return interceptor(ctx, in, info, func(context.Context, any) (any, error) {
			// Unreachable: the chain's last step is fetch, never this handler.
			return nil, errNoChain
		})
	}
}

var errNoChain = errors.New("broker: the interceptor chain did not run")
