// Package admin serves the operator API (relais.admin.v1) on its own
// listener. Only operator certificates (urn:relais:operator:<id>) are
// accepted — a consumer certificate is refused whatever it asks — and every
// action is traced with the operator's identity before it is answered.
// Calls go through broker/callchain, the mechanism the data API and
// credential renewal use too: request id, audit post-step (also for
// panics and requests that do not decode), one log line.
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
	"github.com/relais-broker/relais/broker/callchain"
	"github.com/relais-broker/relais/broker/errcat"
	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/subject"
	adminv1 "github.com/relais-broker/relais/proto/relais/admin/v1"
)

// Revoker revokes in the issuing CA; certs.Authority implementations do.
// Its errors wrap identity.ErrIssuerUnavailable or
// identity.ErrInvalidRequest when they are about the CA or the request.
type Revoker interface {
	Revoke(ctx context.Context, serial string) error
	SerialsFor(ctx context.Context, siret string) ([]string, error)
}

// Revocations is the broker's live set of revoked certificate serials
// (certs.Revocations, or the registry's revocation records): the admin
// API adds to it and refuses revoked operator certificates from it.
type Revocations interface {
	// Add revokes serials (identity.SerialHex form) and returns those it
	// could not read.
	Add(serials ...string) (invalid []string)
	IsRevoked(serial string) bool
}

// Config is what the admin API needs.
type Config struct {
	// Issuer revokes in the CA (Vault or the dev CA).
	Issuer Revoker
	// Revocations is the broker's live set, updated at once.
	Revocations Revocations
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
	// Observer, when set, sees the record of every admin call.
	Observer callchain.Observer
	// Anomalies, when set, serves AnomalyAdminService (broker/anomaly).
	Anomalies AnomalyLister
	// Reminders, when set, serves ReminderAdminService (broker/reminders).
	Reminders ReminderLister
	// Backups, when set, serves BackupAdminService: the bbolt store files
	// an online backup copies (backup.go).
	Backups []BackupFile
}

// Server implements the admin services.
type Server struct {
	adminv1.UnimplementedCredentialAdminServiceServer
	cfg       Config
	validator protovalidate.Validator
	chain     *callchain.Chain[*call]
	// audit serves AuditAdminService when Config.AuditLog is set.
	audit *auditQueries
}

// call is the state of one admin call.
type call struct {
	callchain.Call
	// target is what the action acted on (setTarget); note the operator's
	// reason for it (setNote).
	target, note string
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
	s := &Server{cfg: cfg, validator: v}
	if cfg.AuditLog != nil {
		if s.audit, err = newAuditQueries(cfg.AuditLog, cfg.Pseudonyms, cfg.Registry); err != nil {
			return nil, fmt.Errorf("admin: %w", err)
		}
	}
	spec := callchain.Spec[*call]{
		Kind: identity.KindOperator, Revocations: cfg.Revocations, Audit: cfg.Audit, Record: record,
		Logger: cfg.Logger, LogMessage: "admin", Clock: cfg.Clock,
		Stages: []callchain.Stage[*call]{s.actionContext, s.validate},
	}
	if cfg.Observer != nil {
		spec.Observe = func(_ *call, r audit.Record) { cfg.Observer.ObserveCall(r, 0) }
	}
	if s.chain, err = callchain.New(spec); err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	return s, nil
}

// NewGRPCServer returns a gRPC server for the admin API. opts must carry
// the listener's mTLS credentials.
func (s *Server) NewGRPCServer(opts ...grpc.ServerOption) *grpc.Server {
	opts = append(opts, grpc.ChainStreamInterceptor(s.interceptStream))
	srv := grpc.NewServer(append(opts, callchain.ServerOptions()...)...)
	srv.RegisterService(s.lazy(&adminv1.CredentialAdminService_ServiceDesc), s)
	if s.cfg.Registry != nil {
		srv.RegisterService(s.lazy(&adminv1.ConsumerAdminService_ServiceDesc), &consumers{reg: s.cfg.Registry})
		srv.RegisterService(s.lazy(&adminv1.GrantAdminService_ServiceDesc), &grants{reg: s.cfg.Registry})
	}
	srv.RegisterService(s.lazy(&adminv1.SourceAdminService_ServiceDesc), &sources{list: s.cfg.Sources})
	if s.audit != nil {
		srv.RegisterService(s.lazy(&adminv1.AuditAdminService_ServiceDesc), s.audit)
	}
	if s.cfg.Anomalies != nil {
		srv.RegisterService(s.lazy(&adminv1.AnomalyAdminService_ServiceDesc), &anomalies{list: s.cfg.Anomalies})
	}
	if s.cfg.Reminders != nil {
		srv.RegisterService(s.lazy(&adminv1.ReminderAdminService_ServiceDesc), &reminderList{list: s.cfg.Reminders})
	}
	s.registerBackups(srv)
	return srv
}

// lazy registers a generated admin service so that its unary calls run
// the admin chain, decoding included (a request that does not decode is
// refused and traced like any other).
func (s *Server) lazy(sd *grpc.ServiceDesc) *grpc.ServiceDesc {
	return callchain.Lazy(sd, func(ctx context.Context, method string, req *callchain.Request, h grpc.UnaryHandler) (any, error) {
		return s.chain.Serve(ctx, &call{Call: callchain.Call{Method: method}}, req, func(ctx context.Context, _ *call, req any) (any, error) {
			return h(ctx, req)
		})
	})
}

// interceptStream runs streaming admin calls through the same chain: the
// operator is authenticated before the handler starts, each message it
// receives is validated, and the call is traced once it ends.
func (s *Server) interceptStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	_, err := s.chain.Serve(ss.Context(), &call{Call: callchain.Call{Method: info.FullMethod}}, streamRequest{}, func(ctx context.Context, _ *call, _ any) (any, error) {
		return nil, h(srv, &validatedStream{ServerStream: ss, ctx: ctx, validator: s.validator})
	})
	return err
}

// streamRequest stands for the request of a streaming call, whose
// messages the handler receives itself.
type streamRequest struct{}

// validatedStream is a server stream under the admin chain: its context
// carries the operator and target, and what it receives is validated.
type validatedStream struct {
	grpc.ServerStream
	ctx       context.Context
	validator protovalidate.Validator
}

func (v *validatedStream) Context() context.Context { return v.ctx }

func (v *validatedStream) RecvMsg(m any) error {
	if err := v.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if msg, ok := m.(proto.Message); ok {
		if verr := errcat.Validate(v.validator, msg); verr != nil {
			return verr.Status().Err()
		}
	}
	return nil
}

// record is the audit record of an admin call; the chain fills in the
// rest (request id, time, code, latency, certificate serial).
func record(c *call, _ error) audit.Record {
	return audit.Record{Operator: c.CallerID(), Target: c.target, Note: c.note}
}

// actionContext gives the handlers the operator's id and where to write
// the target and the operator's reason of the action.
func (s *Server) actionContext(ctx context.Context, c *call, req any, next callchain.Handler[*call]) (any, error) {
	ctx = context.WithValue(ctx, targetKey{}, &c.target)
	ctx = context.WithValue(ctx, noteKey{}, &c.note)
	return next(context.WithValue(ctx, operatorKey{}, c.CallerID()), c, req)
}

// validate applies the request's protovalidate rules.
func (s *Server) validate(ctx context.Context, c *call, req any, next callchain.Handler[*call]) (any, error) {
	if msg, ok := req.(proto.Message); ok {
		if verr := errcat.Validate(s.validator, msg); verr != nil {
			return nil, verr
		}
	}
	return next(ctx, c, req)
}

// union returns a's serials then b's not in a, in order.
func union(a, b []string) []string {
	seen := make(map[string]bool, len(a))
	for _, s := range a {
		seen[s] = true
	}
	for _, s := range b {
		if !seen[s] {
			a, seen[s] = append(a, s), true
		}
	}
	return a
}

// operatorKey carries the authenticated operator id to the handlers.
type operatorKey struct{}

// RevokeCredential revokes in this broker first (effective at its next
// call), then in the registry (every replica, and the next start), then
// in the CA. A failure is reported — the broker keeps refusing the
// certificate — so the operator can retry; revoking twice is harmless.
func (s *Server) RevokeCredential(ctx context.Context, req *adminv1.RevokeCredentialRequest) (*adminv1.RevokeCredentialResponse, error) {
	var serials []string
	switch t := req.GetTarget().(type) {
	case *adminv1.RevokeCredentialRequest_Serial:
		serials = []string{identity.NormaliseSerial(t.Serial)}
	case *adminv1.RevokeCredentialRequest_ConsumerSiret:
		if err := identity.ValidSIRET(t.ConsumerSiret); err != nil {
			return nil, errcat.Wrap(errcat.InvalidRequest, err)
		}
		found, err := s.cfg.Issuer.SerialsFor(ctx, t.ConsumerSiret)
		if err != nil {
			return nil, issuerError(err)
		}
		serials = found
		if s.cfg.Registry != nil {
			known, err := s.registrySerials(ctx, t.ConsumerSiret)
			if err != nil {
				return nil, err
			}
			serials = union(serials, known)
		}
	}
	setNote(ctx, req.GetReason())
	setTarget(ctx, strings.Join(serials, ","))
	s.cfg.Revocations.Add(serials...)
	if s.cfg.Registry != nil && len(serials) > 0 {
		if err := s.recordRevocations(ctx, serials); err != nil {
			return nil, err
		}
	}
	for _, serial := range serials {
		if err := s.cfg.Issuer.Revoke(ctx, serial); err != nil {
			return nil, issuerError(fmt.Errorf("serial %s revoked in the broker but not in the CA: %w", serial, err))
		}
	}
	return &adminv1.RevokeCredentialResponse{Serials: serials}, nil
}

func issuerError(err error) *errcat.Error {
	switch {
	case errors.Is(err, identity.ErrIssuerUnavailable):
		return errcat.Wrap(errcat.IssuerUnavailable, err)
	case errors.Is(err, identity.ErrInvalidRequest):
		return errcat.Wrap(errcat.InvalidRequest, err)
	default:
		return errcat.Wrap(errcat.Internal, err)
	}
}
