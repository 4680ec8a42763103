package callchain

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/relais-broker/relais/broker/errcat"
)

// ServeFunc is how a service's calls enter its chain: method is the full gRPC
// method, req the request still to decode, h the generated handler that
// acts once the chain reaches it.
type ServeFunc func(ctx context.Context, method string, req *Request, h grpc.UnaryHandler) (any, error)

// Lazy returns a copy of a generated service description whose unary
// methods hand their request undecoded to serve: decoding then happens
// inside the chain. The server's own unary interceptors are not used for
// these methods: the chain is their interceptor. The server must be built
// with ServerOptions. Streaming methods are left as they are.
func Lazy(sd *grpc.ServiceDesc, serve ServeFunc) *grpc.ServiceDesc {
	out := *sd
	out.Methods = make([]grpc.MethodDesc, len(sd.Methods))
	for i, md := range sd.Methods {
		generated := md.Handler
		out.Methods[i] = grpc.MethodDesc{MethodName: md.MethodName, Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			// The generated handler allocates the typed request and, seeing an
			// interceptor, gives it the request and the method to call: the
			// decoding it would have done first is left to the chain.
			return generated(srv, ctx, func(any) error { return nil }, func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				msg, ok := req.(proto.Message)
				if !ok {
					return nil, errcat.Wrap(errcat.Internal, errors.New("callchain: request is not a proto message")).Status().Err()
				}
				return serve(ctx, info.FullMethod, GRPC(msg, dec), h)
			})
		}}
	}
	return &out
}
