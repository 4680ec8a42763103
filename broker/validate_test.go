package broker_test

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/registry"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
	jobseekerv1 "github.com/relais-broker/relais/proto/relais/jobseeker/v1"
	studentscholarshipv1 "github.com/relais-broker/relais/proto/relais/studentscholarship/v1"
	studentstatusv1 "github.com/relais-broker/relais/proto/relais/studentstatus/v1"
)

// TestValidationRules covers every protovalidate rule of the requests: each
// case breaks one rule and must come back InvalidArgument with a field
// violation naming the field, without reaching the adapter.
func TestValidationRules(t *testing.T) {
	h := newHarness(t, registry.Quota{})
	cc := h.conn(t, identity.KindConsumer, sirenFull)
	fq := familyquotientv1.NewFamilyQuotientServiceClient(cc)
	tests := []struct {
		name   string
		edit   func(r *familyquotientv1.GetFamilyQuotientRequest)
		field  string
		reason string
	}{
		{"no access context", func(r *familyquotientv1.GetFamilyQuotientRequest) { r.AccessContext = nil }, "access_context", "invalid_request"},
		{"recipient empty", func(r *familyquotientv1.GetFamilyQuotientRequest) { r.AccessContext.Recipient = "" }, "access_context.recipient", "invalid_recipient"},
		{"recipient 13 digits", func(r *familyquotientv1.GetFamilyQuotientRequest) { r.AccessContext.Recipient = "2199000010000" }, "access_context.recipient", "invalid_recipient"},
		{"recipient letters", func(r *familyquotientv1.GetFamilyQuotientRequest) { r.AccessContext.Recipient = "2199000010000A" }, "access_context.recipient", "invalid_recipient"},
		{"recipient bad checksum", func(r *familyquotientv1.GetFamilyQuotientRequest) { r.AccessContext.Recipient = "21990000100006" }, "access_context.recipient", "invalid_recipient"},
		{"recipient La Poste without digit-sum", func(r *familyquotientv1.GetFamilyQuotientRequest) { r.AccessContext.Recipient = "35600000012345" }, "access_context.recipient", "invalid_recipient"},
		{"purpose empty", func(r *familyquotientv1.GetFamilyQuotientRequest) { r.AccessContext.Purpose = "" }, "access_context.purpose", "invalid_request"},
		{"purpose upper case", func(r *familyquotientv1.GetFamilyQuotientRequest) { r.AccessContext.Purpose = "Cantine" }, "access_context.purpose", "invalid_request"},
		{"case reference empty", func(r *familyquotientv1.GetFamilyQuotientRequest) { r.AccessContext.CaseReference = "" }, "access_context.case_reference", "invalid_request"},
		{"case reference control char", func(r *familyquotientv1.GetFamilyQuotientRequest) { r.AccessContext.CaseReference = "D\n1" }, "access_context.case_reference", "invalid_request"},
		{"agent is an e-mail", func(r *familyquotientv1.GetFamilyQuotientRequest) { r.AccessContext.Agent = "jean.dupont@mairie.fr" }, "access_context.agent", "invalid_request"},
		{"no subject", func(r *familyquotientv1.GetFamilyQuotientRequest) { r.Subject = nil }, "subject", "invalid_subject"},
		{"birth name empty", func(r *familyquotientv1.GetFamilyQuotientRequest) { r.Subject.BirthName = "" }, "subject.birth_name", "invalid_subject"},
		{"birth name digits", func(r *familyquotientv1.GetFamilyQuotientRequest) { r.Subject.BirthName = "D4PONT" }, "subject.birth_name", "invalid_subject"},
		{"usage name digits", func(r *familyquotientv1.GetFamilyQuotientRequest) { r.Subject.UsageName = "X1" }, "subject.usage_name", "invalid_subject"},
		{"no given name", func(r *familyquotientv1.GetFamilyQuotientRequest) { r.Subject.GivenNames = nil }, "subject.given_names", "invalid_subject"},
		{"given name empty", func(r *familyquotientv1.GetFamilyQuotientRequest) { r.Subject.GivenNames = []string{""} }, "subject.given_names[0]", "invalid_subject"},
		{"too many given names", func(r *familyquotientv1.GetFamilyQuotientRequest) {
			r.Subject.GivenNames = []string{"A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K"}
		}, "subject.given_names", "invalid_subject"},
		{"sex unspecified", func(r *familyquotientv1.GetFamilyQuotientRequest) { r.Subject.Sex = commonv1.Sex_SEX_UNSPECIFIED }, "subject.sex", "invalid_subject"},
		{"sex undefined", func(r *familyquotientv1.GetFamilyQuotientRequest) { r.Subject.Sex = 7 }, "subject.sex", "invalid_subject"},
		{"birth date format", func(r *familyquotientv1.GetFamilyQuotientRequest) { r.Subject.BirthDate = "12/03/1984" }, "subject.birth_date", "invalid_subject"},
		{"birth date 30 February", func(r *familyquotientv1.GetFamilyQuotientRequest) { r.Subject.BirthDate = "1984-02-30" }, "subject.birth_date", "invalid_subject"},
		{"birth date 29 February of a common year", func(r *familyquotientv1.GetFamilyQuotientRequest) { r.Subject.BirthDate = "1900-02-29" }, "subject.birth_date", "invalid_subject"},
		{"birth date in the future", func(r *familyquotientv1.GetFamilyQuotientRequest) { r.Subject.BirthDate = "2999-01-01" }, "subject.birth_date", "invalid_subject"},
		{"birth date before 1900", func(r *familyquotientv1.GetFamilyQuotientRequest) { r.Subject.BirthDate = "1899-12-31" }, "subject.birth_date", "invalid_subject"},
		{"birth place malformed", func(r *familyquotientv1.GetFamilyQuotientRequest) { r.Subject.BirthPlaceCog = "7505" }, "subject.birth_place_cog", "invalid_subject"},
		{"born in France without birth place", func(r *familyquotientv1.GetFamilyQuotientRequest) { r.Subject.BirthPlaceCog = "" }, "subject", "invalid_subject"},
		{"birth country malformed", func(r *familyquotientv1.GetFamilyQuotientRequest) { r.Subject.BirthCountryCog = "FR" }, "subject.birth_country_cog", "invalid_subject"},
		{"unknown field in mask", func(r *familyquotientv1.GetFamilyQuotientRequest) {
			r.FieldMask = &fieldmaskpb.FieldMask{Paths: []string{"revenu_fiscal"}}
		}, "field_mask.paths[0]", "invalid_field_mask"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := validFQ()
			tt.edit(req)
			_, err := fq.GetFamilyQuotient(context.Background(), req)
			code, reason := reasonOf(t, err)
			if code != codes.InvalidArgument || reason != tt.reason {
				t.Fatalf("got %s/%s, want InvalidArgument/%s (%v)", code, reason, tt.reason, err)
			}
			if !hasViolation(err, tt.field) {
				t.Fatalf("no violation on %q in %v", tt.field, violations(err))
			}
		})
	}
	t.Run("valid corner cases pass", func(t *testing.T) {
		for _, edit := range []func(r *familyquotientv1.GetFamilyQuotientRequest){
			func(r *familyquotientv1.GetFamilyQuotientRequest) { r.AccessContext.Recipient = "35600000000048" }, // La Poste head office, Luhn
			func(r *familyquotientv1.GetFamilyQuotientRequest) { r.AccessContext.Recipient = "35600000049837" }, // La Poste digit-sum rule
			func(r *familyquotientv1.GetFamilyQuotientRequest) { r.Subject.BirthDate = "2000-02-29" },
			func(r *familyquotientv1.GetFamilyQuotientRequest) { r.Subject.BirthPlaceCog = "2A004" },
			func(r *familyquotientv1.GetFamilyQuotientRequest) {
				r.Subject.BirthPlaceCog, r.Subject.BirthCountryCog = "", "99350"
			},
			func(r *familyquotientv1.GetFamilyQuotientRequest) {
				r.Subject.BirthName, r.Subject.GivenNames = "N'DIAYE-LÉON", []string{"Anne Sophie", "Zoé"}
			},
			func(r *familyquotientv1.GetFamilyQuotientRequest) { r.AccessContext.Agent = "agent-4f2a" },
		} {
			req := validFQ()
			edit(req)
			if _, err := fq.GetFamilyQuotient(context.Background(), req); err != nil {
				t.Errorf("%v: %v", req, err)
			}
		}
	})
	if n := h.adapter.Calls(); n != 7 {
		t.Errorf("adapter called %d times, want 7 (only the valid corner cases)", n)
	}

	ctx := fqContext()
	t.Run("student status: subject required", func(t *testing.T) {
		_, err := studentstatusv1.NewStudentStatusServiceClient(cc).GetStudentStatus(context.Background(), &studentstatusv1.GetStudentStatusRequest{AccessContext: ctx})
		expectViolation(t, err, "subject")
	})
	t.Run("student status: malformed INE", func(t *testing.T) {
		_, err := studentstatusv1.NewStudentStatusServiceClient(cc).GetStudentStatus(context.Background(), &studentstatusv1.GetStudentStatusRequest{
			AccessContext: ctx, Subject: &studentstatusv1.GetStudentStatusRequest_Ine{Ine: "12345"}})
		expectViolation(t, err, "ine")
	})
	t.Run("scholarship: malformed INE", func(t *testing.T) {
		_, err := studentscholarshipv1.NewStudentScholarshipServiceClient(cc).GetStudentScholarship(context.Background(), &studentscholarshipv1.GetStudentScholarshipRequest{
			AccessContext: ctx, Subject: &studentscholarshipv1.GetStudentScholarshipRequest_Ine{Ine: "abcdefghijk"}})
		expectViolation(t, err, "ine")
	})
	t.Run("job seeker: malformed France Travail id", func(t *testing.T) {
		_, err := jobseekerv1.NewJobSeekerStatusServiceClient(cc).GetJobSeekerStatus(context.Background(), &jobseekerv1.GetJobSeekerStatusRequest{
			AccessContext: ctx, Subject: &jobseekerv1.GetJobSeekerStatusRequest_FranceTravailId{FranceTravailId: "12-34"}})
		expectViolation(t, err, "france_travail_id")
	})
	t.Run("job seeker: invalid identity in the oneof", func(t *testing.T) {
		subject := validFQ().Subject
		subject.Sex = commonv1.Sex_SEX_UNSPECIFIED
		_, err := jobseekerv1.NewJobSeekerStatusServiceClient(cc).GetJobSeekerStatus(context.Background(), &jobseekerv1.GetJobSeekerStatusRequest{
			AccessContext: ctx, Subject: &jobseekerv1.GetJobSeekerStatusRequest_Identity{Identity: subject}})
		expectViolation(t, err, "identity.sex")
	})
}

func fqContext() *commonv1.AccessContext { return validFQ().AccessContext }

func hasViolation(err error, field string) bool {
	for _, v := range violations(err) {
		if v.GetField() == field && v.GetDescription() != "" {
			return true
		}
	}
	return false
}

func expectViolation(t *testing.T, err error, field string) {
	t.Helper()
	if code, _ := reasonOf(t, err); code != codes.InvalidArgument || !hasViolation(err, field) {
		t.Fatalf("want InvalidArgument on %s, got %v (%v)", field, err, violations(err))
	}
}
