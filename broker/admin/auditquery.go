package admin

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/audit/seal"
	"github.com/relais-broker/relais/broker/errcat"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/subject"
	"github.com/relais-broker/relais/broker/transparency"
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
	// transparency tells a subject's accesses (the portal's implementation).
	transparency *transparency.Service
}

// newAuditQueries serves AuditAdminService over log and reg.
func newAuditQueries(log AuditReader, pseudonyms *subject.Pseudonymizer, reg registry.Store) (*auditQueries, error) {
	var tr transparency.Registry = noRegistry{}
	if reg != nil {
		tr = reg
	}
	t, err := transparency.New(transparency.Config{Audit: log, Registry: tr})
	if err != nil {
		return nil, err
	}
	return &auditQueries{log: log, pseudonyms: pseudonyms, reg: reg, transparency: t}, nil
}

// noRegistry names no body: the accesses of a broker configured without
// a registry (tests) are told by SIRET only.
type noRegistry struct{}

func (noRegistry) Consumer(context.Context, string) (registry.Consumer, error) {
	return registry.Consumer{}, registry.ErrNotFound
}

func (noRegistry) ListGrants(context.Context, registry.GrantFilter) ([]registry.Grant, error) {
	return nil, nil
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
	// The operators' view of what the portal tells the citizen: one
	// implementation (broker/transparency), deferred accesses included.
	accesses, err := a.transparency.Accesses(ctx, pseudonym, transparency.OperatorView)
	if err != nil {
		return nil, errcat.Wrap(errcat.Internal, err)
	}
	resp := &adminv1.SubjectAccessesResponse{}
	// Oldest first, as this API always answered.
	for i := len(accesses) - 1; i >= 0; i-- {
		x := accesses[i]
		acc := &adminv1.SubjectAccess{Time: ts(x.Time), ConsumerSiret: x.Body.SIRET, ConsumerName: x.Body.Name, Purpose: x.Purpose.Code,
			PurposeLabel: x.Purpose.Label, LegalBasis: x.Purpose.LegalBasis, Method: x.Method, FieldsReturned: x.FieldsReturned, Code: x.Code,
			DiscloseAfter: ts(x.DiscloseAfter)}
		if x.CitizenInitiated {
			acc.SubjectOrigin = audit.OriginCitizenLogin
		}
		resp.Accesses = append(resp.Accesses, acc)
	}
	return resp, nil
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
