package callchain

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/relais-broker/relais/broker/errcat"
)

// MaxTransportBytes is what the gRPC transport itself accepts
// (grpc.MaxRecvMsgSize of the servers): well above the chain's limit, so
// that requests between the two are refused inside the chain, with a
// precise error and a trace. Beyond it the transport answers on its own
// (ResourceExhausted without ErrorInfo); the call is still traced.
const MaxTransportBytes = 1 << 20

// maxDepth bounds message nesting when decoding: Relais requests nest a
// few levels; the protobuf default (10,000) lets a 64 KiB body cost far
// more than any real request.
const maxDepth = 32

// Request is a request message not yet decoded: the decode step of the
// chain fills it from the bytes that arrived, so that every refusal of a
// malformed or oversized request is traced.
type Request struct {
	msg  proto.Message
	read func(ctx context.Context, limit int) (int, *errcat.Error)
}

func (r *Request) decode(ctx context.Context, limit int) (int, *errcat.Error) {
	return r.read(ctx, limit)
}

// GRPC is a request arriving on a gRPC server: dec is the decoder grpc
// hands the method handler. The server must use ServerOptions (its codec
// hands the raw bytes to the chain instead of decoding them).
func GRPC(msg proto.Message, dec func(any) error) *Request {
	return &Request{msg: msg, read: func(ctx context.Context, limit int) (int, *errcat.Error) {
		var raw rawMessage
		if err := dec(&raw); err != nil {
			return 0, transportError(ctx, err)
		}
		if len(raw.b) > limit {
			return len(raw.b), tooLarge(limit)
		}
		if err := (proto.UnmarshalOptions{RecursionLimit: maxDepth}).Unmarshal(raw.b, msg); err != nil {
			path, problem := locateWire(msg.ProtoReflect().Descriptor(), raw.b, 0)
			return len(raw.b), malformed(fmt.Errorf("protobuf: %w", err), path, problem)
		}
		return len(raw.b), nil
	}}
}

// HTTP is a request arriving on the HTTPS/JSON gateway: POST, a JSON body
// (proto field names or their JSON form) of at most the chain's limit.
func HTTP(msg proto.Message, r *http.Request) *Request {
	return &Request{msg: msg, read: func(_ context.Context, limit int) (int, *errcat.Error) {
		if r.Method != http.MethodPost {
			return 0, errcat.New(errcat.MethodNotAllowed)
		}
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
			return 0, errcat.New(errcat.MalformedRequest).WithDetail("the body must be application/json")
		}
		if r.ContentLength > int64(limit) {
			return int(min(r.ContentLength, 1<<31-1)), tooLarge(limit)
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
		if err != nil {
			return len(body), errcat.Wrap(errcat.MalformedRequest, fmt.Errorf("read body: %w", err)).WithDetail("the body could not be read")
		}
		if len(body) > limit {
			return len(body), tooLarge(limit)
		}
		if err := (protojson.UnmarshalOptions{RecursionLimit: maxDepth}).Unmarshal(body, msg); err != nil {
			// protojson's message may quote the input: it is not kept.
			path, problem := locateJSON(msg.ProtoReflect().Descriptor(), body, 0)
			return len(body), malformed(errors.New("json does not decode"), path, problem)
		}
		return len(body), nil
	}}
}

// Decoded is a request already decoded (tests, internal callers).
func Decoded(msg proto.Message) *Request {
	return &Request{msg: msg, read: func(context.Context, int) (int, *errcat.Error) { return proto.Size(msg), nil }}
}

func tooLarge(limit int) *errcat.Error {
	return errcat.New(errcat.RequestTooLarge).
		WithDetail("at most "+strconv.Itoa(limit)+" bytes").
		WithMetadata("limit_bytes", strconv.Itoa(limit))
}

// malformed is malformed_request naming the broken field when known.
// cause is for the log line and holds no request content.
func malformed(cause error, path, problem string) *errcat.Error {
	e := errcat.Wrap(errcat.MalformedRequest, cause)
	if path == "" {
		if problem != "" {
			e.WithDetail(problem)
		}
		return e
	}
	if problem == "" {
		problem = "does not decode"
	}
	return e.WithDetail("field "+path+": "+problem).WithMetadata("field", path).
		WithViolations([]*errdetails.BadRequest_FieldViolation{{Field: path, Description: problem, Reason: string(errcat.MalformedRequest)}})
}

// transportError maps what grpc's decoder refused before the chain could
// see the bytes. grpc has answered the caller already in that case; the
// chain still traces the call with the matching reason.
func transportError(ctx context.Context, err error) *errcat.Error {
	st, _ := status.FromError(err)
	switch {
	case st.Code() == codes.ResourceExhausted:
		return tooLarge(MaxTransportBytes)
	case ctx.Err() != nil, st.Code() == codes.Canceled, st.Code() == codes.DeadlineExceeded:
		return errcat.Wrap(errcat.Cancelled, err)
	default:
		return errcat.Wrap(errcat.MalformedRequest, fmt.Errorf("transport: %s", st.Code()))
	}
}

// rawMessage receives a request's bytes from codec instead of a decoded
// message.
type rawMessage struct{ b []byte }

// codec is grpc's proto codec, except that it hands a rawMessage the
// bytes as they are, so the chain decodes them itself.
type codec struct{ encoding.CodecV2 }

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*rawMessage); ok {
		r.b = data.Materialize()
		return nil
	}
	return c.CodecV2.Unmarshal(data, v)
}

// ServerOptions are what a gRPC server serving chains needs: the codec
// that lets the chain decode requests, and the transport bound.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(codec{encoding.GetCodecV2(grpcproto.Name)}),
		grpc.MaxRecvMsgSize(MaxTransportBytes),
	}
}
