package broker

import (
	"runtime"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/relais-broker/relais/broker/callchain"
)

// Limits of the data API's gRPC server.
const (
	// MaxRequestBytes bounds a request: typed requests are a few hundred
	// bytes; anything near this is an attack or a bug. The chain enforces
	// it (request_too_large, traced); the transport accepts up to
	// callchain.MaxTransportBytes so that the chain sees such requests.
	MaxRequestBytes = callchain.DefaultMaxRequestBytes
	// MaxResponseBytes bounds a response.
	MaxResponseBytes = 4 << 20
	// MaxStreamsPerConnection bounds concurrent calls on one connection.
	MaxStreamsPerConnection = 128
)

// ServerOptions are the lifecycle settings relaisd serves the data and
// admin APIs with: message size limits (the transport bound; the chain
// applies MaxRequestBytes), per-connection stream limit, and
// keepalive enforcement (clients may not ping more often than every 20 s;
// idle connections close after 15 min; every connection is recycled
// within 2 h, with 30 s of grace, so certificate changes reach it). Calls
// run on a pool of stream workers (one per CPU; grpc-go starts a new
// goroutine when all are busy), whose stacks have already grown to what a
// call needs, instead of a fresh goroutine each.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))),
		grpc.MaxRecvMsgSize(callchain.MaxTransportBytes),
		grpc.MaxSendMsgSize(MaxResponseBytes),
		grpc.MaxConcurrentStreams(MaxStreamsPerConnection),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 20 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 15 * time.Minute, MaxConnectionAge: 2 * time.Hour,
			MaxConnectionAgeGrace: 30 * time.Second, Time: 5 * time.Minute, Timeout: 20 * time.Second}),
	}
}
