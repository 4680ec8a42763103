package admin

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"

	"github.com/relais-broker/relais/broker/errcat"
	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/registry"
	adminv1 "github.com/relais-broker/relais/proto/relais/admin/v1"
)

// errNoRegistry answers the registry-backed calls of a broker without one.
var errNoRegistry = errcat.Wrap(errcat.ServiceNotConfigured, errors.New("admin: no registry configured"))

// ListCredentials implements CredentialAdminService.
func (s *Server) ListCredentials(ctx context.Context, req *adminv1.ListCredentialsRequest) (*adminv1.ListCredentialsResponse, error) {
	if s.cfg.Registry == nil {
		return nil, errNoRegistry
	}
	recs, err := s.cfg.Registry.ListCredentials(ctx, req.GetSubject())
	if err != nil {
		return nil, registryError(err)
	}
	resp := &adminv1.ListCredentialsResponse{}
	for _, r := range recs {
		resp.Credentials = append(resp.Credentials, credentialPB(r))
	}
	return resp, nil
}

// RecordCredential implements CredentialAdminService: the record is
// derived from the certificate itself, which must carry a Relais identity.
func (s *Server) RecordCredential(ctx context.Context, req *adminv1.RecordCredentialRequest) (*adminv1.RecordCredentialResponse, error) {
	if s.cfg.Registry == nil {
		return nil, errNoRegistry
	}
	block, _ := pem.Decode([]byte(req.GetCertificatePem()))
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errcat.New(errcat.InvalidRequest).WithDetail("certificate_pem holds no PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, errcat.Wrap(errcat.InvalidRequest, err).WithDetail("certificate_pem is not a valid certificate")
	}
	id, err := identity.FromCertificate(cert)
	if err != nil {
		return nil, errcat.Wrap(errcat.InvalidRequest, err).WithDetail("the certificate carries no Relais identity")
	}
	operator := ""
	if cred, ok := ctx.Value(operatorKey{}).(string); ok {
		operator = cred
	}
	r := registry.CredentialRecord{
		Serial: identity.SerialHex(cert), Kind: string(id.Kind), Subject: id.ID, NotBefore: cert.NotBefore, NotAfter: cert.NotAfter,
		Status: registry.CredentialActive, IssuedBy: operator,
	}
	if err := s.cfg.Registry.PutCredential(ctx, r); err != nil {
		return nil, registryError(err)
	}
	setTarget(ctx, r.Serial)
	return &adminv1.RecordCredentialResponse{Credential: credentialPB(r)}, nil
}

func credentialPB(r registry.CredentialRecord) *adminv1.Credential {
	return &adminv1.Credential{
		Serial: r.Serial, Kind: r.Kind, Subject: r.Subject, NotBefore: ts(r.NotBefore), NotAfter: ts(r.NotAfter),
		Status: r.Status, RevokedAt: ts(r.RevokedAt), IssuedBy: r.IssuedBy,
	}
}
