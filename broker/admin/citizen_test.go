package admin_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/relais-broker/relais/broker/admin"
	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/audit/boltlog"
	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/registry/boltreg"
	"github.com/relais-broker/relais/broker/subject"
	"github.com/relais-broker/relais/certs"
	"github.com/relais-broker/relais/internal/tlstest"
	adminv1 "github.com/relais-broker/relais/proto/relais/admin/v1"
)

const studentService = "relais.studentstatus.v1.StudentStatusService"

// citizenEnv is the admin API over real TLS with a real registry file, a
// real audit log file and a pseudonymisation key.
type citizenEnv struct {
	grants adminv1.GrantAdminServiceClient
	audits adminv1.AuditAdminServiceClient
	reg    *boltreg.Store
	log    *boltlog.Log
	pseud  *subject.Pseudonymizer
}

func startCitizen(t *testing.T) *citizenEnv {
	t.Helper()
	dir := t.TempDir()
	reg, err := boltreg.Open(filepath.Join(dir, "registry.db"), boltreg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	log, err := boltlog.Open(filepath.Join(dir, "audit.db"), boltlog.Options{SigningKey: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = log.Close() })
	pseud, err := subject.New(subject.Key("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	pki := tlstest.New(t)
	revoked := certs.NewRevocations()
	s, err := admin.New(admin.Config{Issuer: pki.CA, Revocations: revoked, Audit: log, AuditLog: log, Registry: reg, Pseudonyms: pseud})
	if err != nil {
		t.Fatal(err)
	}
	addr := tlstest.Serve(t, s.NewGRPCServer(pki.ServerCreds(certs.RejectRevoked(revoked))))
	conn := pki.Dial(t, addr, pki.Issue(t, identity.KindOperator, "alice"))
	if _, err := reg.AddConsumer(context.Background(), registry.Consumer{SIRET: siretA, Name: "Mairie", Status: registry.StatusActive}); err != nil {
		t.Fatal(err)
	}
	return &citizenEnv{grants: adminv1.NewGrantAdminServiceClient(conn), audits: adminv1.NewAuditAdminServiceClient(conn), reg: reg, log: log, pseud: pseud}
}

func grantRequest(service, scope, legalBasis string, designations []string, d *adminv1.Disclosure) *adminv1.AddGrantRequest {
	return &adminv1.AddGrantRequest{
		ConsumerSiret: siretA, Service: service, Scopes: []string{scope},
		Purposes:  []*adminv1.Purpose{{Code: "aide_sociale", Label: "Aide sociale", LegalBasis: legalBasis}},
		NotBefore: timestamppb.New(time.Now().Add(-time.Hour)), NotAfter: timestamppb.New(time.Now().AddDate(1, 0, 0)),
		Quota: &adminv1.Quota{RatePerSecond: 5, Burst: 10}, Designations: designations, Disclosure: d,
	}
}

// TestGrantDesignationsAndDisclosure: the admin API takes both fields,
// refuses bad ones with InvalidArgument and stores nothing, and answers
// and lists what the registry stored (designations in canonical order).
func TestGrantDesignationsAndDisclosure(t *testing.T) {
	t.Parallel()
	e := startCitizen(t)
	ctx := context.Background()
	year := durationpb.New(8760 * time.Hour)
	for name, req := range map[string]*adminv1.AddGrantRequest{
		"unknown designation":     grantRequest(fqService, "family_quotient.value", "CRPA art. L114-8", []string{"typed", "eidas"}, nil),
		"designation twice":       grantRequest(fqService, "family_quotient.value", "CRPA art. L114-8", []string{"typed", "typed"}, nil),
		"delay without reference": grantRequest(fqService, "family_quotient.value", "CRPA art. L114-8", nil, &adminv1.Disclosure{Delay: year}),
		"reference without delay": grantRequest(fqService, "family_quotient.value", "CRPA art. L114-8", nil, &adminv1.Disclosure{LegalReference: "CSS art. L114-9"}),
		"delay over ten years":    grantRequest(fqService, "family_quotient.value", "CRPA art. L114-8", nil, &adminv1.Disclosure{Delay: durationpb.New(87601 * time.Hour), LegalReference: "x"}),
		"negative delay":          grantRequest(fqService, "family_quotient.value", "CRPA art. L114-8", nil, &adminv1.Disclosure{Delay: durationpb.New(-time.Hour), LegalReference: "x"}),
		"delay not whole seconds": grantRequest(fqService, "family_quotient.value", "CRPA art. L114-8", nil, &adminv1.Disclosure{Delay: durationpb.New(1500 * time.Millisecond), LegalReference: "x"}),
	} {
		if _, err := e.grants.AddGrant(ctx, req); err == nil {
			t.Errorf("%s: accepted", name)
		} else if code, _, _ := reasonOf(err); code != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	if list, _ := e.reg.ListGrants(ctx, registry.GrantFilter{}); len(list) != 0 {
		t.Fatalf("a refused grant was stored: %+v", list)
	}
	resp, err := e.grants.AddGrant(ctx, grantRequest(fqService, "family_quotient.value", "CRPA art. L114-8",
		[]string{"citizen_login", "typed"}, &adminv1.Disclosure{Delay: year, LegalReference: "CSS art. L114-9"}))
	if err != nil {
		t.Fatal(err)
	}
	g := resp.GetGrant()
	if !slices.Equal(g.GetDesignations(), []string{"typed", "citizen_login"}) || g.GetDisclosure().GetDelay().AsDuration() != 8760*time.Hour ||
		g.GetDisclosure().GetLegalReference() != "CSS art. L114-9" {
		t.Fatalf("answered %v", g)
	}
	stored, err := e.reg.Grants(ctx, siretA, fqService)
	if err != nil || len(stored) != 1 || !stored[0].Allows(registry.DesignationCitizenLogin) ||
		stored[0].Disclosure != (registry.Disclosure{Delay: 8760 * time.Hour, LegalReference: "CSS art. L114-9"}) {
		t.Fatalf("stored %+v %v", stored, err)
	}
	plain, err := e.grants.AddGrant(ctx, grantRequest(fqService, "family_quotient.value", "CRPA art. L114-8", nil, nil))
	if err != nil || plain.GetGrant().GetDesignations() != nil || plain.GetGrant().GetDisclosure() != nil {
		t.Fatalf("plain grant: %v %v", plain, err)
	}
	list, err := e.grants.ListGrants(ctx, &adminv1.ListGrantsRequest{ConsumerSiret: siretA})
	if err != nil || len(list.GetGrants()) != 2 {
		t.Fatalf("listed %v %v", list, err)
	}
	for _, lg := range list.GetGrants() {
		if lg.GetId() == g.GetId() && (!slices.Equal(lg.GetDesignations(), g.GetDesignations()) || lg.GetDisclosure().GetLegalReference() != "CSS art. L114-9") {
			t.Fatalf("listed %v, want %v", lg, g)
		}
	}
}

// TestDeferredAccessesInAuditQueries: QueryAudit's deferred_only keeps the
// records with a disclosure date and shows the new fields; the subject
// report carries the origin, the disclosure date and the legal basis of
// the purpose as declared in the grant of the method's service.
func TestDeferredAccessesInAuditQueries(t *testing.T) {
	t.Parallel()
	e := startCitizen(t)
	ctx := context.Background()
	// The same purpose code under two services, with different legal bases.
	for _, req := range []*adminv1.AddGrantRequest{
		grantRequest(fqService, "family_quotient.value", "CRPA art. L114-8", nil, nil),
		grantRequest(studentService, "student_status.admissions", "Code de l'éducation, art. L821-1", []string{"citizen_login"},
			&adminv1.Disclosure{Delay: durationpb.New(8760 * time.Hour), LegalReference: "CSS art. L114-9"}),
	} {
		if _, err := e.grants.AddGrant(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	who := &adminv1.SubjectAccessesRequest{Subject: &adminv1.SubjectAccessesRequest_Ine{Ine: "1234567890A"}}
	pseudonym := e.pseud.Of(who)
	t0 := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	typed := audit.Record{Time: t0, RequestID: "req-typed", Consumer: siretA, Method: "/" + fqService + "/GetFamilyQuotient",
		Purpose: "aide_sociale", Subject: pseudonym, FieldsReturned: []string{"value"}, Code: "OK"}
	login := audit.Record{Time: t0.Add(time.Minute), RequestID: "req-login", Consumer: siretA, Method: "/" + studentService + "/GetStudentStatus",
		Purpose: "aide_sociale", Subject: pseudonym, FieldsReturned: []string{"admissions"}, Code: "OK",
		SubjectOrigin: audit.OriginCitizenLogin, DiscloseAfter: t0.Add(time.Minute + 8760*time.Hour), DisclosureReference: "CSS art. L114-9"}
	for _, r := range []audit.Record{typed, login} {
		if err := e.log.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}

	all, err := e.audits.QueryAudit(ctx, &adminv1.QueryAuditRequest{ConsumerSiret: siretA})
	if err != nil || len(all.GetRecords()) < 2 {
		t.Fatalf("query: %v %v", all, err)
	}
	deferred, err := e.audits.QueryAudit(ctx, &adminv1.QueryAuditRequest{DeferredOnly: true})
	if err != nil || len(deferred.GetRecords()) != 1 {
		t.Fatalf("deferred only: %v %v", deferred, err)
	}
	r := deferred.GetRecords()[0]
	if r.GetRequestId() != "req-login" || r.GetSubjectOrigin() != "citizen_login" || !r.GetDiscloseAfter().AsTime().Equal(login.DiscloseAfter) ||
		r.GetDisclosureReference() != "CSS art. L114-9" {
		t.Fatalf("deferred record %v", r)
	}

	rep, err := e.audits.SubjectAccesses(ctx, who)
	if err != nil || len(rep.GetAccesses()) != 2 {
		t.Fatalf("subject accesses: %v %v", rep, err)
	}
	a, b := rep.GetAccesses()[0], rep.GetAccesses()[1]
	if a.GetSubjectOrigin() != "" || a.GetDiscloseAfter() != nil || a.GetLegalBasis() != "CRPA art. L114-8" || a.GetPurposeLabel() != "Aide sociale" {
		t.Errorf("typed access %v", a)
	}
	if b.GetSubjectOrigin() != "citizen_login" || !b.GetDiscloseAfter().AsTime().Equal(login.DiscloseAfter) || b.GetLegalBasis() != "Code de l'éducation, art. L821-1" {
		t.Errorf("citizen access %v", b)
	}
}
