// Package renewal serves relais.credentials.v1.CredentialService: a
// consumer holding a valid certificate renews it by sending a CSR for the
// same identity. The identity comes from the verified certificate only;
// the new certificate never outlives the consumer's grants; the renewal is
// traced before the certificate leaves (no trace, no certificate).
package renewal

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/authn"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/errcat"
	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/certs"
	credentialsv1 "github.com/relais-broker/relais/proto/relais/credentials/v1"
)

// Method is the full gRPC method of Renew, as audit records name it.
const Method = "/relais.credentials.v1.CredentialService/Renew"

// Signer signs a consumer's CSR; certs.Issuer implementations do.
type Signer interface {
	SignClientCSR(ctx context.Context, req certs.ClientRequest, csrPEM []byte) (*certs.Credential, error)
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
	// certs.DefaultTTL when zero.
	TTL   time.Duration
	Clock func() time.Time
	// Records, when set, receives a record of each renewed certificate.
	Records interface {
		PutCredential(ctx context.Context, r registry.CredentialRecord) error
	}
}

// Server implements credentialsv1.CredentialServiceServer.
type Server struct {
	credentialsv1.UnimplementedCredentialServiceServer
	cfg Config
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
		cfg.TTL = certs.DefaultTTL
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return &Server{cfg: cfg}, nil
}

// Renew implements the RPC.
func (s *Server) Renew(ctx context.Context, req *credentialsv1.RenewRequest) (*credentialsv1.RenewResponse, error) {
	start := s.cfg.Clock()
	rec := audit.Record{Time: start, RequestID: audit.NewRequestID(), Method: Method, Code: "OK"}
	resp, cerr := s.renew(ctx, req, &rec)
	if cerr != nil {
		rec.Code, rec.Reason = cerr.Code().String(), string(cerr.Reason)
	}
	rec.Latency = s.cfg.Clock().Sub(start)
	if err := s.cfg.Audit.Append(context.WithoutCancel(ctx), rec); err != nil {
		return nil, errcat.Wrap(errcat.AuditUnavailable, err)
	}
	if cerr != nil {
		return nil, cerr
	}
	return resp, nil
}

func (s *Server) renew(ctx context.Context, req *credentialsv1.RenewRequest, rec *audit.Record) (*credentialsv1.RenewResponse, *errcat.Error) {
	now := s.cfg.Clock()
	cred, cerr := authn.Peer(ctx, identity.KindConsumer, s.cfg.Revocations, now)
	if cerr != nil {
		return nil, cerr
	}
	rec.Consumer, rec.CertSerial = cred.Identity.ID, cred.Serial
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
	issued, err := s.cfg.Signer.SignClientCSR(ctx, certs.ClientRequest{Kind: identity.KindConsumer, ID: consumer.SIRET, CommonName: consumer.Name, TTL: ttl}, []byte(req.GetCsrPem()))
	switch {
	case errors.Is(err, certs.ErrInvalidCSR), errors.Is(err, certs.ErrInvalidRequest):
		return nil, errcat.Wrap(errcat.InvalidCSR, err)
	case errors.Is(err, certs.ErrIssuerUnavailable):
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
