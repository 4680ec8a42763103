// Package renewal serves relais.credentials.v1.CredentialService: a
// consumer holding a valid certificate renews it by sending a CSR for the
// same identity. The identity comes from the verified certificate only;
// the new certificate never outlives the consumer's grants; the renewal is
// traced before the certificate leaves (no trace, no certificate). Calls
// go through broker/callchain, like the data and admin APIs.
package renewal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/authn"
	"github.com/relais-broker/relais/broker/callchain"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/errcat"
	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/registry"
	credentialsv1 "github.com/relais-broker/relais/proto/relais/credentials/v1"
)

// Method is the full gRPC method of Renew, as audit records name it.
const Method = "/relais.credentials.v1.CredentialService/Renew"

// Signer signs a consumer's CSR; certs.Issuer implementations do. Its
// errors wrap identity.ErrInvalidCSR, identity.ErrInvalidRequest or
// identity.ErrIssuerUnavailable when they are about the CSR, the request
// or the CA.
type Signer interface {
	SignClientCSR(ctx context.Context, req identity.ClientRequest, csrPEM []byte) (*identity.Credential, error)
}

// Config is what the service needs.
type Config struct {
	Signer   Signer
	Registry registry.Reader
	Catalog  *catalog.Catalog
	Audit    audit.Recorder
	// Revocations: a revoked certificate cannot renew itself.
	Revocations authn.RevocationChecker
	// TTL is the life of renewed certificates, capped by the grants;
	// identity.DefaultTTL when zero.
	TTL   time.Duration
	Clock func() time.Time
	// Logger receives one line per call; nil discards.
	Logger *slog.Logger
	// Observer, when set, sees the record of every renewal.
	Observer callchain.Observer
	// Records, when set, receives a record of each renewed certificate.
	Records interface {
		PutCredential(ctx context.Context, r registry.CredentialRecord) error
	}
}

// Server implements credentialsv1.CredentialServiceServer.
type Server struct {
	credentialsv1.UnimplementedCredentialServiceServer
	cfg   Config
	chain *callchain.Chain[*callchain.Call]
}

// New returns the service.
func New(cfg Config) (*Server, error) {
	if cfg.Signer == nil || cfg.Registry == nil || cfg.Audit == nil {
		return nil, errors.New("renewal: signer, registry and audit are required")
	}
	if cfg.Catalog == nil {
		cfg.Catalog = catalog.Default()
	}
	if cfg.TTL <= 0 {
		cfg.TTL = identity.DefaultTTL
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	s := &Server{cfg: cfg}
	spec := callchain.Spec[*callchain.Call]{
		Kind: identity.KindConsumer, Revocations: cfg.Revocations, Audit: cfg.Audit, Logger: cfg.Logger, LogMessage: "renewal", Clock: cfg.Clock,
		Record: func(c *callchain.Call, _ error) audit.Record { return audit.Record{Consumer: c.CallerID()} },
	}
	if cfg.Observer != nil {
		spec.Observe = func(_ *callchain.Call, r audit.Record) { cfg.Observer.ObserveCall(r, 0) }
	}
	chain, err := callchain.New(spec)
	if err != nil {
		return nil, fmt.Errorf("renewal: %w", err)
	}
	s.chain = chain
	return s, nil
}

// Register serves the service on r so that requests are decoded inside
// the chain (a malformed one is refused and traced). r must be built with
// callchain.ServerOptions (broker.NewGRPCServer's server is).
func (s *Server) Register(r grpc.ServiceRegistrar) {
	r.RegisterService(callchain.Lazy(&credentialsv1.CredentialService_ServiceDesc, func(ctx context.Context, method string, req *callchain.Request, _ grpc.UnaryHandler) (any, error) {
		return s.chain.Serve(ctx, &callchain.Call{Method: method}, req, s.act)
	}), s)
}

// Renew implements the RPC for a request already decoded (the generated
// registration); it runs the same chain as Register's.
func (s *Server) Renew(ctx context.Context, req *credentialsv1.RenewRequest) (*credentialsv1.RenewResponse, error) {
	resp, err := s.chain.Serve(ctx, &callchain.Call{Method: Method}, req, s.act)
	if err != nil {
		return nil, err
	}
	return resp.(*credentialsv1.RenewResponse), nil
}

// act is the end of the chain: the caller is an authenticated consumer
// certificate and the request decoded.
func (s *Server) act(ctx context.Context, c *callchain.Call, req any) (any, error) {
	in, ok := req.(*credentialsv1.RenewRequest)
	if !ok {
		return nil, errcat.Wrap(errcat.Internal, fmt.Errorf("renewal: request is %T", req))
	}
	resp, cerr := s.renew(ctx, c.Credential, in)
	if cerr != nil {
		return nil, cerr
	}
	return resp, nil
}

func (s *Server) renew(ctx context.Context, cred *authn.Credential, req *credentialsv1.RenewRequest) (*credentialsv1.RenewResponse, *errcat.Error) {
	now := s.cfg.Clock()
	if req.GetCsrPem() == "" || len(req.GetCsrPem()) > 16384 {
		return nil, errcat.Wrap(errcat.InvalidCSR, errors.New("csr_pem must hold one PEM CSR of at most 16 KiB"))
	}
	consumer, err := s.cfg.Registry.Consumer(ctx, cred.Identity.ID)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return nil, errcat.New(errcat.ConsumerUnknown)
	case err != nil:
		return nil, errcat.Wrap(errcat.Internal, fmt.Errorf("registry: %w", err))
	case consumer.Status != registry.StatusActive:
		return nil, errcat.New(errcat.ConsumerSuspended)
	}
	grantEnd, err := s.latestGrantEnd(ctx, consumer.SIRET, now)
	if err != nil {
		return nil, errcat.Wrap(errcat.Internal, fmt.Errorf("registry: %w", err))
	}
	if grantEnd.IsZero() {
		return nil, errcat.Wrap(errcat.NoGrant, errors.New("no grant in force: nothing to renew a credential for"))
	}
	ttl := min(s.cfg.TTL, grantEnd.Sub(now))
	issued, err := s.cfg.Signer.SignClientCSR(ctx, identity.ClientRequest{Kind: identity.KindConsumer, ID: consumer.SIRET, CommonName: consumer.Name, TTL: ttl}, []byte(req.GetCsrPem()))
	switch {
	case errors.Is(err, identity.ErrInvalidCSR), errors.Is(err, identity.ErrInvalidRequest):
		return nil, errcat.Wrap(errcat.InvalidCSR, err)
	case errors.Is(err, identity.ErrIssuerUnavailable):
		return nil, errcat.Wrap(errcat.IssuerUnavailable, err)
	case err != nil:
		return nil, errcat.Wrap(errcat.Internal, fmt.Errorf("sign: %w", err))
	}
	if s.cfg.Records != nil {
		// Best effort: the certificate is issued; a missing record only
		// hides it from `relaisctl credentials list`.
		_ = s.cfg.Records.PutCredential(ctx, registry.CredentialRecord{
			Serial: issued.Serial, Kind: string(identity.KindConsumer), Subject: consumer.SIRET,
			NotBefore: issued.NotBefore, NotAfter: issued.NotAfter, Status: registry.CredentialActive, IssuedBy: "renewal",
		})
	}
	return &credentialsv1.RenewResponse{
		CertificatePem: string(issued.CertPEM),
		ChainPem:       string(issued.ChainPEM),
		Serial:         issued.Serial,
		NotBefore:      timestamppb.New(issued.NotBefore),
		NotAfter:       timestamppb.New(issued.NotAfter),
	}, nil
}

// latestGrantEnd is the end of the consumer's grant in force that ends
// last, or zero when none is in force.
func (s *Server) latestGrantEnd(ctx context.Context, siret string, now time.Time) (time.Time, error) {
	var end time.Time
	for _, svc := range s.cfg.Catalog.Services() {
		grants, err := s.cfg.Registry.Grants(ctx, siret, svc)
		if err != nil {
			return time.Time{}, err
		}
		for _, g := range grants {
			if !now.Before(g.NotBefore) && now.Before(g.NotAfter) && g.NotAfter.After(end) {
				end = g.NotAfter
			}
		}
	}
	return end, nil
}
