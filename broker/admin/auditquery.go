package admin

import (
	"context"
	"errors"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/audit/boltlog"
	"github.com/relais-broker/relais/broker/errcat"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/subject"
	adminv1 "github.com/relais-broker/relais/proto/relais/admin/v1"
)

// AuditReader reads the audit log; boltlog.Log implements it.
type AuditReader interface {
	Query(ctx context.Context, f boltlog.Filter) ([]audit.Record, error)
	Subject(ctx context.Context, pseudonym string) ([]audit.Record, error)
}

// auditQueries implements AuditAdminService.
type auditQueries struct {
	adminv1.UnimplementedAuditAdminServiceServer
	log        AuditReader
	pseudonyms *subject.Pseudonymizer
	reg        registry.Store
}

func (a *auditQueries) QueryAudit(ctx context.Context, req *adminv1.QueryAuditRequest) (*adminv1.QueryAuditResponse, error) {
	f := boltlog.Filter{Consumer: req.GetConsumerSiret(), Method: req.GetMethod(), Code: req.GetCode(), Limit: int(req.GetLimit())}
	if req.GetFrom() != nil {
		f.From = req.GetFrom().AsTime()
	}
	if req.GetTo() != nil {
		f.To = req.GetTo().AsTime()
	}
	recs, err := a.log.Query(ctx, f)
	if err != nil {
		return nil, errcat.Wrap(errcat.Internal, err)
	}
	resp := &adminv1.QueryAuditResponse{}
	for _, r := range recs {
		resp.Records = append(resp.Records, auditPB(r))
	}
	return resp, nil
}

// SubjectAccesses answers a citizen's "who accessed my data?". The
// identity only feeds the pseudonym; the admin audit record of this call
// names the pseudonym, never the identity.
func (a *auditQueries) SubjectAccesses(ctx context.Context, req *adminv1.SubjectAccessesRequest) (*adminv1.SubjectAccessesResponse, error) {
	if a.pseudonyms == nil {
		return nil, errcat.Wrap(errcat.ServiceNotConfigured, errors.New("admin: no pseudonymisation key configured"))
	}
	pseudonym := a.pseudonyms.Of(req)
	setTarget(ctx, "subject "+pseudonym)
	recs, err := a.log.Subject(ctx, pseudonym)
	if err != nil {
		return nil, errcat.Wrap(errcat.Internal, err)
	}
	resp := &adminv1.SubjectAccessesResponse{}
	names, labels := map[string]string{}, map[string]map[string]string{}
	for _, r := range recs {
		acc := &adminv1.SubjectAccess{Time: ts(r.Time), ConsumerSiret: r.Consumer, Purpose: r.Purpose, Method: r.Method, FieldsReturned: r.FieldsReturned, Code: r.Code}
		if a.reg != nil {
			if _, ok := names[r.Consumer]; !ok {
				c, _ := a.reg.Consumer(ctx, r.Consumer)
				names[r.Consumer] = c.Name
				labels[r.Consumer] = purposeLabels(ctx, a.reg, r.Consumer)
			}
			acc.ConsumerName, acc.PurposeLabel = names[r.Consumer], labels[r.Consumer][r.Purpose]
		}
		resp.Accesses = append(resp.Accesses, acc)
	}
	return resp, nil
}

// purposeLabels maps the consumer's purpose codes to their labels, from
// its grants (revoked ones included: the access may predate the revocation).
func purposeLabels(ctx context.Context, reg registry.Store, siret string) map[string]string {
	out := map[string]string{}
	grants, _ := reg.ListGrants(ctx, registry.GrantFilter{Consumer: siret})
	for _, g := range grants {
		for _, p := range g.Purposes {
			out[p.Code] = p.Label
		}
	}
	return out
}

func auditPB(r audit.Record) *adminv1.AuditRecord {
	return &adminv1.AuditRecord{
		Time: ts(r.Time), RequestId: r.RequestID, ConsumerSiret: r.Consumer, Operator: r.Operator, Target: r.Target, CertSerial: r.CertSerial,
		RecipientSiret: r.Recipient, Method: r.Method, Purpose: r.Purpose, CaseReference: r.CaseReference, Agent: r.Agent,
		SubjectPseudonym: r.Subject, FieldsRequested: r.FieldsRequested, FieldsReturned: r.FieldsReturned, Source: r.Source,
		Code: r.Code, Reason: r.Reason, Latency: durationpb.New(r.Latency),
	}
}
