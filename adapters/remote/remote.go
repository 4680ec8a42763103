// Package remote is the adapter for a source administration that runs its
// own gRPC server implementing the same typed service as Relais: the
// broker forwards the call over mTLS, with the caller's remaining deadline
// (gRPC propagates it) and the scopes the caller may receive in the
// x-relais-scopes metadata, so the source can fetch no more than needed.
// The source's answers are untrusted: its status codes map onto the
// adapter contract, its messages are dropped (they could hold personal
// data), and the broker validates and minimises the response anyway.
package remote

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/scope"
	"github.com/relais-broker/relais/broker/source"
)

// ScopesHeader carries the allowed scopes, comma-separated.
const ScopesHeader = "x-relais-scopes"

// Config says where the source is and how to reach it.
type Config struct {
	// Addr is host:port of the source's gRPC server.
	Addr string
	// TLS is the client configuration: the broker's client certificate
	// for the source and the source's CA. Required: no plaintext.
	TLS *tls.Config
	// Catalog defaults to catalog.Default().
	Catalog *catalog.Catalog
}

// Adapter forwards calls to a remote source.
type Adapter struct {
	conn *grpc.ClientConn
	cat  *catalog.Catalog
	addr string
}

var _ source.Adapter = (*Adapter)(nil)

// New prepares the connection (dialled lazily by gRPC).
func New(cfg Config) (*Adapter, error) {
	if cfg.Addr == "" || cfg.TLS == nil {
		return nil, errors.New("remote: an address and a TLS configuration are required")
	}
	if cfg.Catalog == nil {
		cfg.Catalog = catalog.Default()
	}
	conn, err := grpc.NewClient(cfg.Addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg.TLS)))
	if err != nil {
		return nil, fmt.Errorf("remote %s: %w", cfg.Addr, err)
	}
	return &Adapter{conn: conn, cat: cfg.Catalog, addr: cfg.Addr}, nil
}

// Close closes the connection.
func (a *Adapter) Close() error { return a.conn.Close() }

// Fetch implements source.Adapter.
func (a *Adapter) Fetch(ctx context.Context, req source.Request) (proto.Message, error) {
	m, ok := a.cat.Method(req.Method)
	if !ok {
		return nil, fmt.Errorf("remote: unknown method %s", req.Method)
	}
	ctx = metadata.AppendToOutgoingContext(ctx, ScopesHeader, strings.Join(req.Scopes.Sorted(), ","))
	out := m.Output.New().Interface()
	if err := a.conn.Invoke(ctx, m.FullMethod, req.Input, out); err != nil {
		return nil, a.mapError(err)
	}
	return out, nil
}

// mapError keeps the code and drops the source's message.
func (a *Adapter) mapError(err error) error {
	st, _ := status.FromError(err)
	where := fmt.Sprintf("remote source %s answered %s", a.addr, st.Code())
	switch st.Code() {
	case codes.NotFound:
		return fmt.Errorf("%w (%s)", source.ErrSubjectNotFound, where)
	case codes.FailedPrecondition:
		return fmt.Errorf("%w (%s)", source.ErrNotIdentifiable, where)
	case codes.DeadlineExceeded:
		return fmt.Errorf("%w (%s)", source.ErrTimeout, where)
	case codes.Canceled:
		return fmt.Errorf("%w (%s)", context.Canceled, where)
	case codes.Unavailable, codes.ResourceExhausted, codes.Unimplemented, codes.Unauthenticated, codes.PermissionDenied:
		return &source.RetryableError{RetryAfter: retryAfter(st), Cause: errors.New(where)}
	default:
		return fmt.Errorf("%w (%s)", source.ErrInvalidResponse, where)
	}
}

func retryAfter(st *status.Status) time.Duration {
	for _, d := range st.Details() {
		if r, ok := d.(*errdetails.RetryInfo); ok {
			return r.GetRetryDelay().AsDuration()
		}
	}
	return 0
}

// AllowedScopes is for source servers: the scopes the broker's caller may
// receive, from the incoming metadata. A source should fetch and answer
// only those.
func AllowedScopes(ctx context.Context) scope.Set {
	md, _ := metadata.FromIncomingContext(ctx)
	var names []string
	for _, v := range md.Get(ScopesHeader) {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				names = append(names, s)
			}
		}
	}
	return scope.Of(names...)
}
