// Package admin serves the operator API (relais.admin.v1) on its own
// listener. Only operator certificates (urn:relais:operator:<id>) are
// accepted — a consumer certificate is refused whatever it asks — and every
// action is traced with the operator's identity before it is answered.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"buf.build/go/protovalidate"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/authn"
	"github.com/relais-broker/relais/broker/errcat"
	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/subject"
	"github.com/relais-broker/relais/certs"
	adminv1 "github.com/relais-broker/relais/proto/relais/admin/v1"
)

// Revoker revokes in the issuing CA; certs.Authority implementations do.
type Revoker interface {
	Revoke(ctx context.Context, serial string) error
	SerialsFor(ctx context.Context, siret string) ([]string, error)
}

// Config is what the admin API needs.
type Config struct {
	// Issuer revokes in the CA (Vault or the dev CA).
	Issuer Revoker
	// Revocations is the broker's live set, updated at once.
	Revocations *certs.Revocations
	// Registry, when set, serves the consumer and grant services and the
	// credential records.
	Registry registry.Store
	// Sources describes the typed services and their adapters, for
	// SourceAdminService; called at each request, so it follows reloads.
	Sources func() []SourceInfo
	// AuditLog and Pseudonyms, when set, serve AuditAdminService.
	AuditLog   AuditReader
	Pseudonyms *subject.Pseudonymizer
	Audit      audit.Recorder
	Logger     *slog.Logger
	Clock      func() time.Time
}

// Server implements the admin services.
type Server struct {
	adminv1.UnimplementedCredentialAdminServiceServer
	cfg       Config
	validator protovalidate.Validator
}

// New checks cfg and returns the server.
func New(cfg Config) (*Server, error) {
	if cfg.Issuer == nil || cfg.Revocations == nil || cfg.Audit == nil {
		return nil, errors.New("admin: issuer, revocations and audit are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	v, err := protovalidate.New()
	if err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, validator: v}, nil
}

// NewGRPCServer returns a gRPC server for the admin API. opts must carry
// the listener's mTLS credentials.
func (s *Server) NewGRPCServer(opts ...grpc.ServerOption) *grpc.Server {
	srv := grpc.NewServer(append(opts, grpc.ChainUnaryInterceptor(s.intercept))...)
	adminv1.RegisterCredentialAdminServiceServer(srv, s)
	if s.cfg.Registry != nil {
		adminv1.RegisterConsumerAdminServiceServer(srv, &consumers{reg: s.cfg.Registry})
		adminv1.RegisterGrantAdminServiceServer(srv, &grants{reg: s.cfg.Registry})
	}
	adminv1.RegisterSourceAdminServiceServer(srv, &sources{list: s.cfg.Sources})
	if s.cfg.AuditLog != nil {
		adminv1.RegisterAuditAdminServiceServer(srv, &auditQueries{log: s.cfg.AuditLog, pseudonyms: s.cfg.Pseudonyms, reg: s.cfg.Registry})
	}
	return srv
}

// intercept authenticates the operator, validates the request, runs the
// action and traces it; no trace, no answer.
func (s *Server) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	start := s.cfg.Clock()
	rec := audit.Record{Time: start, RequestID: audit.NewRequestID(), Method: info.FullMethod, Code: "OK"}
	ctx = context.WithValue(ctx, targetKey{}, &rec.Target)
	defer func() {
		if r := recover(); r != nil {
			s.cfg.Logger.Error("panic in admin call", "request_id", rec.RequestID, "method", info.FullMethod)
			resp, err = nil, errcat.New(errcat.Internal)
		}
		var cerr *errcat.Error
		if err != nil {
			cerr = errcat.From(err)
			rec.Code, rec.Reason = cerr.Code().String(), string(cerr.Reason)
		}
		rec.Latency = s.cfg.Clock().Sub(start)
		if aerr := s.cfg.Audit.Append(context.WithoutCancel(ctx), rec); aerr != nil {
			s.cfg.Logger.Error("admin audit append failed", "request_id", rec.RequestID, "error", aerr.Error())
			resp, err = nil, errcat.Wrap(errcat.AuditUnavailable, aerr)
			return
		}
		s.cfg.Logger.Info("admin", "request_id", rec.RequestID, "operator", rec.Operator, "method", rec.Method, "code", rec.Code, "reason", rec.Reason, "target", rec.Target)
		if cerr != nil {
			err = cerr
		}
	}()
	cred, cerr := authn.Peer(ctx, identity.KindOperator, s.cfg.Revocations, start)
	if cerr != nil {
		return nil, cerr
	}
	rec.Operator, rec.CertSerial = cred.Identity.ID, cred.Serial
	msg, ok := req.(proto.Message)
	if !ok {
		return nil, errcat.Wrap(errcat.Internal, errors.New("request is not a proto message"))
	}
	if verr := errcat.Validate(s.validator, msg); verr != nil {
		return nil, verr
	}
	return h(context.WithValue(ctx, operatorKey{}, cred.Identity.ID), req)
}

// operatorKey carries the authenticated operator id to the handlers.
type operatorKey struct{}

// RevokeCredential revokes in the broker first (effective at the next
// call), then in the CA. A CA failure is reported — the broker keeps
// refusing the certificate — so the operator can retry.
func (s *Server) RevokeCredential(ctx context.Context, req *adminv1.RevokeCredentialRequest) (*adminv1.RevokeCredentialResponse, error) {
	var serials []string
	switch t := req.GetTarget().(type) {
	case *adminv1.RevokeCredentialRequest_Serial:
		serials = []string{identity.NormaliseSerial(t.Serial)}
	case *adminv1.RevokeCredentialRequest_ConsumerSiret:
		if err := certs.ValidSIRET(t.ConsumerSiret); err != nil {
			return nil, errcat.Wrap(errcat.InvalidRequest, err)
		}
		found, err := s.cfg.Issuer.SerialsFor(ctx, t.ConsumerSiret)
		if err != nil {
			return nil, issuerError(err)
		}
		serials = found
	}
	s.cfg.Revocations.Add(serials...)
	for _, serial := range serials {
		if err := s.cfg.Issuer.Revoke(ctx, serial); err != nil {
			return nil, issuerError(fmt.Errorf("serial %s revoked in the broker but not in the CA: %w", serial, err))
		}
	}
	setTarget(ctx, strings.Join(serials, ","))
	if s.cfg.Registry != nil {
		s.recordRevocations(ctx, serials)
	}
	return &adminv1.RevokeCredentialResponse{Serials: serials}, nil
}

func issuerError(err error) *errcat.Error {
	switch {
	case errors.Is(err, certs.ErrIssuerUnavailable):
		return errcat.Wrap(errcat.IssuerUnavailable, err)
	case errors.Is(err, certs.ErrInvalidRequest):
		return errcat.Wrap(errcat.InvalidRequest, err)
	default:
		return errcat.Wrap(errcat.Internal, err)
	}
}
