package broker

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/callchain"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/errcat"
)

// HTTPHandler serves the typed services over HTTPS + JSON for bodies
// without gRPC: POST /<package.Service>/<Method> with the request as JSON
// (proto field names or their camelCase form), answered with the
// response as JSON (proto field names). It runs the very same chain as
// gRPC — the caller is the verified client certificate of the HTTPS
// connection, so the server must require and verify client certificates
// (certs.ServerConfig) — with the same minimisation, audit and limits;
// the verb, the content type, the body size and the JSON are checked by
// the chain's decode step, so those refusals are traced too. Errors are
// the google.rpc.Status as JSON, with the catalogue's ErrorInfo and field
// violations, and the HTTP status of their gRPC code (405 with Allow:
// POST for another verb, 413 for a body over the limit). Each call gets
// a server span when the Config has a TracerProvider.
func (b *Broker) HTTPHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := otel.GetTextMapPropagator().Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		m, known := b.catalog.Method(r.URL.Path)
		var span trace.Span
		if b.tracer != nil {
			name, attrs := spanNaming(r, m, known)
			ctx, span = b.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
			defer span.End()
		}
		var code int
		if !known {
			code = b.noSuchMethod(ctx, w, r)
		} else {
			code = b.serveHTTP(ctx, w, r, m)
		}
		if span != nil {
			span.SetAttributes(attribute.Int("http.response.status_code", code))
			if code >= 500 {
				span.SetStatus(otelcodes.Error, http.StatusText(code))
			}
		}
	})
}

// serveHTTP runs one gateway call through the chain and answers it; it
// returns the HTTP status.
func (b *Broker) serveHTTP(ctx context.Context, w http.ResponseWriter, r *http.Request, m *catalog.Method) int {
	if r.TLS != nil {
		addr, _ := net.ResolveTCPAddr("tcp", r.RemoteAddr)
		ctx = peer.NewContext(ctx, &peer.Peer{Addr: addr, AuthInfo: credentials.TLSInfo{State: *r.TLS}})
	}
	stream := &headerStream{method: m.FullMethod}
	ctx = grpc.NewContextWithServerTransportStream(ctx, stream)
	resp, err := b.serve(ctx, b.newCall(m), callchain.HTTP(m.Input.New().Interface(), r))
	if err != nil {
		return writeStatus(w, stream.md(), status.Convert(err))
	}
	out, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(resp.(proto.Message))
	if err != nil {
		return writeStatus(w, stream.md(), status.New(codes.Internal, "internal error"))
	}
	setHeaders(w, stream.md())
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
	return http.StatusOK
}

// noSuchMethod answers a path that names no method. It is not an API
// call (there is no method to trace it under), but it gets a request id
// and a log line like one; the path, the caller's text, is not logged.
func (b *Broker) noSuchMethod(ctx context.Context, w http.ResponseWriter, r *http.Request) int {
	id := audit.NewRequestID()
	w.Header().Set(RequestIDHeader, id)
	attrs := []slog.Attr{slog.String("request_id", id), slog.String("http_method", httpVerb(r)), slog.String("code", codes.NotFound.String()),
		slog.String("reason", string(errcat.MethodNotFound))}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()))
	}
	b.log.LogAttrs(ctx, slog.LevelInfo, "gateway: no such method", attrs...)
	return writeStatus(w, nil, errcat.New(errcat.MethodNotFound).Status())
}

// spanNaming follows the OpenTelemetry HTTP server conventions: "VERB
// route", the route being the method's path (an unknown path is not
// named: it is the caller's text).
func spanNaming(r *http.Request, m *catalog.Method, known bool) (string, []attribute.KeyValue) {
	verb := httpVerb(r)
	attrs := []attribute.KeyValue{attribute.String("http.request.method", verb)}
	if !known {
		return verb, attrs
	}
	return verb + " " + m.FullMethod, append(attrs, attribute.String("http.route", m.FullMethod), attribute.String("rpc.method", m.FullMethod))
}

// httpVerb is r's method when it is a standard one, else "_OTHER" (the
// conventions' name for it), so that no caller text reaches a span or log.
func httpVerb(r *http.Request) string {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return r.Method
	}
	return "_OTHER"
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

// writeStatus answers st as JSON and returns the HTTP status it used.
func writeStatus(w http.ResponseWriter, md metadata.MD, st *status.Status) int {
	setHeaders(w, md)
	code := httpStatus(st)
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.RetryInfo:
			secs := int(d.GetRetryDelay().AsDuration().Seconds() + 0.999)
			w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
		case *errdetails.ErrorInfo:
			switch errcat.Reason(d.GetReason()) {
			case errcat.MethodNotAllowed:
				w.Header().Set("Allow", http.MethodPost)
				code = http.StatusMethodNotAllowed
			case errcat.RequestTooLarge:
				code = http.StatusRequestEntityTooLarge
			}
		}
	}
	body, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(st.Proto())
	if err != nil {
		body = []byte(`{"code":13,"message":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(body)
	return code
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
