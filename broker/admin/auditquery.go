package admin

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/audit/seal"
	"github.com/relais-broker/relais/broker/errcat"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/subject"
	adminv1 "github.com/relais-broker/relais/proto/relais/admin/v1"
)

// AuditReader reads the audit log; auditlog.Log implements it.
type AuditReader interface {
	Query(ctx context.Context, f audit.Filter) ([]audit.Record, error)
	Subject(ctx context.Context, pseudonym string) ([]audit.Record, error)
}

// AuditExporter is the optional capability of an AuditReader behind
// ExportAudit (auditlog.Log has it): every entry from one consistent read.
type AuditExporter interface {
	Export(ctx context.Context, fn func(seal.Entry) error) error
}

// exportBatch is how many entries go in one ExportAudit message.
const exportBatch = 256

// auditQueries implements AuditAdminService.
type auditQueries struct {
	adminv1.UnimplementedAuditAdminServiceServer
	log        AuditReader
	pseudonyms *subject.Pseudonymizer
	reg        registry.Store
}

// QueryAudit lists records for operators, filtered, oldest first.
func (a *auditQueries) QueryAudit(ctx context.Context, req *adminv1.QueryAuditRequest) (*adminv1.QueryAuditResponse, error) {
	f := audit.Filter{Consumer: req.GetConsumerSiret(), Method: req.GetMethod(), Code: req.GetCode(), DeferredOnly: req.GetDeferredOnly(), Limit: int(req.GetLimit())}
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

// ExportAudit streams the log from one read of the storage; the caller
// verifies it with the public key alone. The stream's admin record names
// the export, never its content.
func (a *auditQueries) ExportAudit(_ *adminv1.ExportAuditRequest, stream grpc.ServerStreamingServer[adminv1.ExportAuditResponse]) error {
	ctx := stream.Context()
	exp, ok := a.log.(AuditExporter)
	if !ok {
		return errcat.Wrap(errcat.ServiceNotConfigured, errors.New("admin: this audit log cannot be exported")).Status().Err()
	}
	setTarget(ctx, "audit log export")
	batch := &adminv1.ExportAuditResponse{}
	flush := func() error {
		if len(batch.Entries) == 0 {
			return nil
		}
		err := stream.Send(batch)
		batch = &adminv1.ExportAuditResponse{}
		return err
	}
	err := exp.Export(ctx, func(e seal.Entry) error {
		batch.Entries = append(batch.Entries, ExportEntryPB(e))
		if len(batch.Entries) >= exportBatch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return errcat.Wrap(errcat.Internal, err).Status().Err()
	}
	return nil
}

// ExportEntryPB is the wire form of an export entry; EntryFromPB reads it.
func ExportEntryPB(e seal.Entry) *adminv1.AuditExportEntry {
	if c := e.Checkpoint; c != nil {
		return &adminv1.AuditExportEntry{Entry: &adminv1.AuditExportEntry_Checkpoint{Checkpoint: &adminv1.AuditCheckpoint{
			Chain: c.Chain, Seq: c.Seq, Head: c.Head, Time: timestamppb.New(c.Time), Boundary: c.Boundary, Sig: c.Sig,
		}}}
	}
	return &adminv1.AuditExportEntry{Entry: &adminv1.AuditExportEntry_Record{Record: e.Record}}
}

// EntryFromPB turns a wire entry back into the export entry it was, for
// verification on the operator's side.
func EntryFromPB(pb *adminv1.AuditExportEntry) (seal.Entry, error) {
	switch x := pb.GetEntry().(type) {
	case *adminv1.AuditExportEntry_Record:
		if len(x.Record) == 0 {
			return seal.Entry{}, errors.New("export entry with an empty record")
		}
		return seal.RecordEntry(x.Record), nil
	case *adminv1.AuditExportEntry_Checkpoint:
		c := x.Checkpoint
		return seal.CheckpointEntry(seal.Checkpoint{Chain: c.GetChain(), Seq: c.GetSeq(), Head: c.GetHead(), Time: c.GetTime().AsTime(), Boundary: c.GetBoundary(), Sig: c.GetSig()}), nil
	default:
		return seal.Entry{}, errors.New("export entry holds neither a record nor a checkpoint")
	}
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
	names, purposes := map[string]string{}, map[string]grantPurposes{}
	for _, r := range recs {
		acc := &adminv1.SubjectAccess{Time: ts(r.Time), ConsumerSiret: r.Consumer, Purpose: r.Purpose, Method: r.Method, FieldsReturned: r.FieldsReturned, Code: r.Code,
			SubjectOrigin: r.SubjectOrigin, DiscloseAfter: ts(r.DiscloseAfter)}
		if a.reg != nil {
			if _, ok := names[r.Consumer]; !ok {
				c, _ := a.reg.Consumer(ctx, r.Consumer)
				names[r.Consumer] = c.Name
				purposes[r.Consumer] = purposesOf(ctx, a.reg, r.Consumer)
			}
			p := purposes[r.Consumer].of(r.Method, r.Purpose)
			acc.ConsumerName, acc.PurposeLabel, acc.LegalBasis = names[r.Consumer], p.Label, p.LegalBasis
		}
		resp.Accesses = append(resp.Accesses, acc)
	}
	return resp, nil
}

// grantPurposes are a consumer's declared purposes, from its grants
// (revoked ones included: the access may predate the revocation), by
// service and by code alone.
type grantPurposes struct {
	byService map[string]map[string]registry.Purpose
	byCode    map[string]registry.Purpose
}

func purposesOf(ctx context.Context, reg registry.Store, siret string) grantPurposes {
	out := grantPurposes{byService: map[string]map[string]registry.Purpose{}, byCode: map[string]registry.Purpose{}}
	grants, _ := reg.ListGrants(ctx, registry.GrantFilter{Consumer: siret})
	for _, g := range grants {
		if out.byService[g.Service] == nil {
			out.byService[g.Service] = map[string]registry.Purpose{}
		}
		for _, p := range g.Purposes {
			out.byService[g.Service][p.Code] = p
			out.byCode[p.Code] = p
		}
	}
	return out
}

// of returns the purpose code as declared in the grant of the method's
// service ("/pkg.Service/Method"), else in any grant of the consumer, else
// the zero purpose.
func (g grantPurposes) of(method, code string) registry.Purpose {
	service, _, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	if p, ok := g.byService[service][code]; ok {
		return p
	}
	return g.byCode[code]
}

func auditPB(r audit.Record) *adminv1.AuditRecord {
	return &adminv1.AuditRecord{
		Time: ts(r.Time), RequestId: r.RequestID, ConsumerSiret: r.Consumer, Operator: r.Operator, Target: r.Target, CertSerial: r.CertSerial,
		RecipientSiret: r.Recipient, Method: r.Method, Purpose: r.Purpose, CaseReference: r.CaseReference, Agent: r.Agent,
		SubjectPseudonym: r.Subject, FieldsRequested: r.FieldsRequested, FieldsReturned: r.FieldsReturned, Source: r.Source,
		Code: r.Code, Reason: r.Reason, Latency: durationpb.New(r.Latency), Note: r.Note,
		SubjectOrigin: r.SubjectOrigin, DiscloseAfter: ts(r.DiscloseAfter), DisclosureReference: r.DisclosureReference,
	}
}
