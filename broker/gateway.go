package broker

import (
	"context"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/relais-broker/relais/broker/errcat"
)

// HTTPHandler serves the typed services over HTTPS + JSON for bodies
// without gRPC: POST /<package.Service>/<Method> with the request as JSON
// (proto field names or their camelCase form), answered with the
// response as JSON (proto field names). It runs the very same chain as
// gRPC — the caller is the verified client certificate of the HTTPS
// connection, so the server must require and verify client certificates
// (certs.ServerConfig) — with the same minimisation, audit and limits.
// Errors are the google.rpc.Status as JSON, with the catalogue's
// ErrorInfo and field violations, and the HTTP status of their gRPC code.
func (b *Broker) HTTPHandler() http.Handler {
	chain := b.unaryInterceptor()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m, ok := b.catalog.Method(r.URL.Path)
		if !ok {
			writeStatus(w, nil, status.New(codes.NotFound, "no such method: POST /<package.Service>/<Method>, see the OpenAPI document"))
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			writeStatus(w, nil, status.New(codes.Unimplemented, "use POST"))
			return
		}
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
			writeStatus(w, nil, errcat.New(errcat.InvalidRequest).WithDetail("the body must be application/json").Status())
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, MaxRequestBytes+1))
		if err != nil || len(body) > MaxRequestBytes {
			writeStatus(w, nil, errcat.New(errcat.InvalidRequest).WithDetail("the body is unreadable or larger than 64 KiB").Status())
			return
		}
		in := m.Input.New().Interface()
		if err := protojson.Unmarshal(body, in); err != nil {
			writeStatus(w, nil, errcat.New(errcat.InvalidRequest).WithDetail("the body is not a valid "+string(m.Input.Descriptor().Name())+" in JSON").Status())
			return
		}
		ctx := r.Context()
		if r.TLS != nil {
			addr, _ := net.ResolveTCPAddr("tcp", r.RemoteAddr)
			ctx = peer.NewContext(ctx, &peer.Peer{Addr: addr, AuthInfo: credentials.TLSInfo{State: *r.TLS}})
		}
		stream := &headerStream{method: m.FullMethod}
		ctx = grpc.NewContextWithServerTransportStream(ctx, stream)
		resp, err := chain(ctx, in, &grpc.UnaryServerInfo{FullMethod: m.FullMethod}, func(context.Context, any) (any, error) {
			return nil, errNoChain
		})
		if err != nil {
			writeStatus(w, stream.md(), status.Convert(err))
			return
		}
		out, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(resp.(proto.Message))
		if err != nil {
			writeStatus(w, stream.md(), status.New(codes.Internal, "internal error"))
			return
		}
		setHeaders(w, stream.md())
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(out)
	})
}

// httpStatus maps gRPC codes onto HTTP, as grpc-gateway does, with 422
// for a subject that cannot be identified with certainty.
func httpStatus(st *status.Status) int {
	switch st.Code() {
	case codes.OK:
		return http.StatusOK
	case codes.InvalidArgument:
		return http.StatusBadRequest
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.NotFound:
		return http.StatusNotFound
	case codes.FailedPrecondition:
		return http.StatusUnprocessableEntity
	case codes.Aborted, codes.AlreadyExists:
		return http.StatusConflict
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Canceled:
		return 499
	default:
		return http.StatusInternalServerError
	}
}

func writeStatus(w http.ResponseWriter, md metadata.MD, st *status.Status) {
	setHeaders(w, md)
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			secs := int(ri.GetRetryDelay().AsDuration().Seconds() + 0.999)
			w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
		}
	}
	body, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(st.Proto())
	if err != nil {
		body = []byte(`{"code":13,"message":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(httpStatus(st))
	_, _ = w.Write(body)
}

// setHeaders copies the chain's response metadata (request id,
// ratelimit-*) to HTTP headers.
func setHeaders(w http.ResponseWriter, md metadata.MD) {
	for k, vs := range md {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
}

// headerStream collects what the chain sets with grpc.SetHeader.
type headerStream struct {
	method string
	mu     sync.Mutex
	header metadata.MD
}

func (s *headerStream) Method() string { return s.method }
func (s *headerStream) SetHeader(md metadata.MD) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.header = metadata.Join(s.header, md)
	return nil
}
func (s *headerStream) SendHeader(md metadata.MD) error { return s.SetHeader(md) }
func (s *headerStream) SetTrailer(metadata.MD) error    { return errors.New("no trailers over HTTP") }
func (s *headerStream) md() metadata.MD {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := metadata.MD{}
	for k, v := range s.header {
		out[strings.ToLower(k)] = v
	}
	return out
}
