package sandbox_test

import (
	"testing"

	"github.com/relais-broker/relais/adapters/adaptertest"
	"github.com/relais-broker/relais/adapters/sandbox"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
	healthcoverv1 "github.com/relais-broker/relais/proto/relais/healthcover/v1"
	jobseekerv1 "github.com/relais-broker/relais/proto/relais/jobseeker/v1"
	studentscholarshipv1 "github.com/relais-broker/relais/proto/relais/studentscholarship/v1"
	studentstatusv1 "github.com/relais-broker/relais/proto/relais/studentstatus/v1"
)

func ident(name, given string, sex commonv1.Sex, date, place, country string) *commonv1.SubjectIdentity {
	return &commonv1.SubjectIdentity{BirthName: name, GivenNames: []string{given}, Sex: sex, BirthDate: date, BirthPlaceCog: place, BirthCountryCog: country}
}

var (
	cZoe    = ident("DUPONT", "Zoé", commonv1.Sex_SEX_FEMALE, "1984-03-12", "75056", "99100")
	cHugo   = ident("PETIT", "Hugo", commonv1.Sex_SEX_MALE, "2004-01-20", "75056", "99100")
	cNobody = ident("INCONNU", "Personne", commonv1.Sex_SEX_FEMALE, "2000-01-01", "75056", "99100")
	cMinh   = ident("NGUYEN", "Minh", commonv1.Sex_SEX_MALE, "1990-05-05", "", "99243")
	cPaul   = ident("MERCIER", "Paul", commonv1.Sex_SEX_MALE, "1965-01-01", "75056", "99100")
	cEmma   = ident("BLANC", "Emma", commonv1.Sex_SEX_FEMALE, "1972-02-14", "69123", "99100")
)

// TestConformance runs the adapter contract's suite on the sandbox, for
// every typed service.
func TestConformance(t *testing.T) {
	fq := func(id *commonv1.SubjectIdentity) *familyquotientv1.GetFamilyQuotientRequest {
		return &familyquotientv1.GetFamilyQuotientRequest{Subject: id}
	}
	hc := func(id *commonv1.SubjectIdentity) *healthcoverv1.GetSolidarityHealthCoverRequest {
		return &healthcoverv1.GetSolidarityHealthCoverRequest{Subject: id}
	}
	js := func(id *commonv1.SubjectIdentity) *jobseekerv1.GetJobSeekerStatusRequest {
		return &jobseekerv1.GetJobSeekerStatusRequest{Subject: &jobseekerv1.GetJobSeekerStatusRequest_Identity{Identity: id}}
	}
	ss := func(id *commonv1.SubjectIdentity) *studentstatusv1.GetStudentStatusRequest {
		return &studentstatusv1.GetStudentStatusRequest{Subject: &studentstatusv1.GetStudentStatusRequest_Identity{Identity: id}}
	}
	sch := func(id *commonv1.SubjectIdentity) *studentscholarshipv1.GetStudentScholarshipRequest {
		return &studentscholarshipv1.GetStudentScholarshipRequest{Subject: &studentscholarshipv1.GetStudentScholarshipRequest_Identity{Identity: id}}
	}
	adaptertest.Run(t, adaptertest.Suite{
		Adapter: sandbox.New(sandbox.Default(), sandbox.Options{SourceID: "sandbox"}),
		Cases: []adaptertest.Case{
			{Method: fqMethod, Found: fq(cZoe), NotFound: fq(cNobody), NotIdentifiable: fq(cMinh), Unavailable: fq(cPaul), Hang: fq(cEmma)},
			{Method: hcMethod, Found: hc(cZoe), NotFound: hc(cNobody), NotIdentifiable: hc(cMinh), Unavailable: hc(cPaul), Hang: hc(cEmma)},
			{Method: jsMethod, Found: js(cZoe), NotFound: js(cNobody), NotIdentifiable: js(cMinh), Unavailable: js(cPaul), Hang: js(cEmma)},
			{Method: ssMethod, Found: ss(cHugo), NotFound: ss(cNobody), NotIdentifiable: ss(cMinh), Unavailable: ss(cPaul), Hang: ss(cEmma)},
			{Method: schMethod, Found: sch(cHugo), NotFound: sch(cNobody), NotIdentifiable: sch(cMinh), Unavailable: sch(cPaul), Hang: sch(cEmma)},
		},
	})
}
