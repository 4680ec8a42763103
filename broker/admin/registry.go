package admin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/relais-broker/relais/broker/errcat"
	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/scope"
	adminv1 "github.com/relais-broker/relais/proto/relais/admin/v1"
)

// consumers implements ConsumerAdminService over the registry.
type consumers struct {
	adminv1.UnimplementedConsumerAdminServiceServer
	reg registry.Store
}

func (c *consumers) AddConsumer(ctx context.Context, req *adminv1.AddConsumerRequest) (*adminv1.AddConsumerResponse, error) {
	setTarget(ctx, req.GetSiret())
	in := registry.Consumer{SIRET: req.GetSiret(), Name: req.GetName(), Status: registry.StatusActive}
	for _, ct := range req.GetContacts() {
		in.Contacts = append(in.Contacts, registry.Contact{Name: ct.GetName(), Email: ct.GetEmail(), Phone: ct.GetPhone()})
	}
	out, err := c.reg.AddConsumer(ctx, in)
	if err != nil {
		return nil, registryError(err)
	}
	return &adminv1.AddConsumerResponse{Consumer: consumerPB(out)}, nil
}

func (c *consumers) GetConsumer(ctx context.Context, req *adminv1.GetConsumerRequest) (*adminv1.GetConsumerResponse, error) {
	setTarget(ctx, req.GetSiret())
	out, err := c.reg.Consumer(ctx, req.GetSiret())
	if err != nil {
		return nil, registryError(err)
	}
	return &adminv1.GetConsumerResponse{Consumer: consumerPB(out)}, nil
}

func (c *consumers) ListConsumers(ctx context.Context, _ *adminv1.ListConsumersRequest) (*adminv1.ListConsumersResponse, error) {
	all, err := c.reg.ListConsumers(ctx)
	if err != nil {
		return nil, registryError(err)
	}
	resp := &adminv1.ListConsumersResponse{}
	for _, x := range all {
		resp.Consumers = append(resp.Consumers, consumerPB(x))
	}
	return resp, nil
}

func (c *consumers) SetConsumerStatus(ctx context.Context, req *adminv1.SetConsumerStatusRequest) (*adminv1.SetConsumerStatusResponse, error) {
	setTarget(ctx, req.GetSiret())
	setNote(ctx, req.GetReason())
	st := registry.StatusActive
	if req.GetStatus() == adminv1.ConsumerStatus_CONSUMER_STATUS_SUSPENDED {
		st = registry.StatusSuspended
	}
	out, err := c.reg.SetConsumerStatus(ctx, req.GetSiret(), st)
	if err != nil {
		return nil, registryError(err)
	}
	return &adminv1.SetConsumerStatusResponse{Consumer: consumerPB(out)}, nil
}

// grants implements GrantAdminService over the registry.
type grants struct {
	adminv1.UnimplementedGrantAdminServiceServer
	reg registry.Store
}

func (g *grants) AddGrant(ctx context.Context, req *adminv1.AddGrantRequest) (*adminv1.AddGrantResponse, error) {
	in := registry.Grant{
		Consumer: req.GetConsumerSiret(), Service: req.GetService(), Scopes: scope.Of(req.GetScopes()...),
		NotBefore: req.GetNotBefore().AsTime(), NotAfter: req.GetNotAfter().AsTime(),
		Quota:               registry.Quota{RatePerSecond: req.GetQuota().GetRatePerSecond(), Burst: int(req.GetQuota().GetBurst()), DailyCap: int(req.GetQuota().GetDailyCap())},
		ExpectedDailyVolume: int(req.GetExpectedDailyVolume()),
		Anomaly:             anomalyPolicy(req.GetAnomaly()),
		Designations:        req.GetDesignations(),
		Disclosure:          disclosure(req.GetDisclosure()),
	}
	for _, p := range req.GetPurposes() {
		in.Purposes = append(in.Purposes, registry.Purpose{Code: p.GetCode(), Label: p.GetLabel(), LegalBasis: p.GetLegalBasis()})
	}
	out, err := g.reg.AddGrant(ctx, in)
	if err != nil {
		return nil, registryError(err)
	}
	setTarget(ctx, out.ID)
	return &adminv1.AddGrantResponse{Grant: grantPB(out)}, nil
}

func (g *grants) ListGrants(ctx context.Context, req *adminv1.ListGrantsRequest) (*adminv1.ListGrantsResponse, error) {
	f := registry.GrantFilter{Consumer: req.GetConsumerSiret(), Service: req.GetService()}
	if req.GetExpiringBefore() != nil {
		f.ExpiringBefore = req.GetExpiringBefore().AsTime()
	}
	all, err := g.reg.ListGrants(ctx, f)
	if err != nil {
		return nil, registryError(err)
	}
	resp := &adminv1.ListGrantsResponse{}
	for _, x := range all {
		resp.Grants = append(resp.Grants, grantPB(x))
	}
	return resp, nil
}

func (g *grants) RevokeGrant(ctx context.Context, req *adminv1.RevokeGrantRequest) (*adminv1.RevokeGrantResponse, error) {
	setTarget(ctx, req.GetId())
	setNote(ctx, req.GetReason())
	out, err := g.reg.RevokeGrant(ctx, req.GetId())
	if err != nil {
		return nil, registryError(err)
	}
	return &adminv1.RevokeGrantResponse{Grant: grantPB(out)}, nil
}

func (g *grants) ExtendGrant(ctx context.Context, req *adminv1.ExtendGrantRequest) (*adminv1.ExtendGrantResponse, error) {
	setTarget(ctx, req.GetId())
	out, err := g.reg.ExtendGrant(ctx, req.GetId(), req.GetNotAfter().AsTime())
	if err != nil {
		return nil, registryError(err)
	}
	return &adminv1.ExtendGrantResponse{Grant: grantPB(out)}, nil
}

// recordRevocations marks the revoked serials in the registry's
// credential records, best effort: the revocation itself is already in
// force in the broker and the CA.
// recordRevocations writes the revocations through the registry, where
// every replica reads its revoked set from (and the next start too).
func (s *Server) recordRevocations(ctx context.Context, serials []string) error {
	if _, err := s.cfg.Registry.RevokeCredentials(ctx, serials...); err != nil {
		return registryError(fmt.Errorf("revoked in this broker but not recorded in the registry (other replicas and the next start do not know it yet; retry): %w", err))
	}
	return nil
}

// registrySerials are the consumer's certificates the registry knows
// (issued or renewed through relaisd), to revoke with the CA's own list.
func (s *Server) registrySerials(ctx context.Context, siret string) ([]string, error) {
	recs, err := s.cfg.Registry.ListCredentials(ctx, siret)
	if err != nil {
		return nil, registryError(err)
	}
	var out []string
	for _, r := range recs {
		if r.Kind == string(identity.KindConsumer) && r.Status == registry.CredentialActive {
			out = append(out, r.Serial)
		}
	}
	return out, nil
}

func registryError(err error) *errcat.Error {
	switch {
	case errors.Is(err, registry.ErrInvalid):
		return errcat.Wrap(errcat.InvalidRequest, err).WithDetail(err.Error())
	case errors.Is(err, registry.ErrNotFound):
		return errcat.Wrap(errcat.NotFound, err).WithDetail(err.Error())
	case errors.Is(err, registry.ErrExists):
		return errcat.Wrap(errcat.AlreadyExists, err).WithDetail(err.Error())
	case errors.Is(err, registry.ErrUnavailable):
		return errcat.Wrap(errcat.RegistryUnavailable, err)
	default:
		return errcat.Wrap(errcat.Internal, err)
	}
}

func consumerPB(c registry.Consumer) *adminv1.Consumer {
	st := adminv1.ConsumerStatus_CONSUMER_STATUS_ACTIVE
	if c.Status == registry.StatusSuspended {
		st = adminv1.ConsumerStatus_CONSUMER_STATUS_SUSPENDED
	}
	out := &adminv1.Consumer{Siret: c.SIRET, Name: c.Name, Status: st, CreatedAt: ts(c.CreatedAt), UpdatedAt: ts(c.UpdatedAt)}
	for _, ct := range c.Contacts {
		out.Contacts = append(out.Contacts, &adminv1.Contact{Name: ct.Name, Email: ct.Email, Phone: ct.Phone})
	}
	return out
}

func grantPB(g registry.Grant) *adminv1.Grant {
	out := &adminv1.Grant{
		Id: g.ID, ConsumerSiret: g.Consumer, Service: g.Service, Scopes: g.Scopes.Sorted(),
		NotBefore: ts(g.NotBefore), NotAfter: ts(g.NotAfter), CreatedAt: ts(g.CreatedAt), RevokedAt: ts(g.RevokedAt),
		Quota:               &adminv1.Quota{RatePerSecond: g.Quota.RatePerSecond, Burst: int32(g.Quota.Burst), DailyCap: int32(g.Quota.DailyCap)},
		ExpectedDailyVolume: int32(g.ExpectedDailyVolume),
		Anomaly:             anomalyPolicyPB(g.Anomaly),
		Designations:        g.Designations,
		Disclosure:          disclosurePB(g.Disclosure),
	}
	for _, p := range g.Purposes {
		out.Purposes = append(out.Purposes, &adminv1.Purpose{Code: p.Code, Label: p.Label, LegalBasis: p.LegalBasis})
	}
	return out
}

// disclosure maps the admin API's deferred disclosure to the registry's;
// unset is disclosure at once.
func disclosure(d *adminv1.Disclosure) registry.Disclosure {
	if d == nil {
		return registry.Disclosure{}
	}
	out := registry.Disclosure{LegalReference: d.GetLegalReference()}
	if d.GetDelay() != nil {
		// Out of range saturates, which the registry's rules then refuse.
		out.Delay = d.GetDelay().AsDuration()
	}
	return out
}

// disclosurePB maps a grant's deferred disclosure to the admin API; a
// disclosure at once is left unset.
func disclosurePB(d registry.Disclosure) *adminv1.Disclosure {
	if d == (registry.Disclosure{}) {
		return nil
	}
	return &adminv1.Disclosure{Delay: durationpb.New(d.Delay), LegalReference: d.LegalReference}
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
