package sandbox_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/relais-broker/relais/adapters/sandbox"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/scope"
	"github.com/relais-broker/relais/broker/source"
	"github.com/relais-broker/relais/internal/golden"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
	healthcoverv1 "github.com/relais-broker/relais/proto/relais/healthcover/v1"
	jobseekerv1 "github.com/relais-broker/relais/proto/relais/jobseeker/v1"
	studentscholarshipv1 "github.com/relais-broker/relais/proto/relais/studentscholarship/v1"
	studentstatusv1 "github.com/relais-broker/relais/proto/relais/studentstatus/v1"
)

const (
	fqMethod  = "/relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient"
	ssMethod  = "/relais.studentstatus.v1.StudentStatusService/GetStudentStatus"
	schMethod = "/relais.studentscholarship.v1.StudentScholarshipService/GetStudentScholarship"
	jsMethod  = "/relais.jobseeker.v1.JobSeekerStatusService/GetJobSeekerStatus"
	hcMethod  = "/relais.healthcover.v1.SolidarityHealthCoverService/GetSolidarityHealthCover"
)

var fixedNow = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func newAdapter(t *testing.T) (*sandbox.Adapter, *catalog.Catalog) {
	t.Helper()
	cat := catalog.Default()
	return sandbox.New(sandbox.Default(), sandbox.Options{SourceID: "sandbox-test", Catalog: cat, Clock: func() time.Time { return fixedNow }}), cat
}

func allScopes(t *testing.T, cat *catalog.Catalog, method string) scope.Set {
	t.Helper()
	m, ok := cat.Method(method)
	if !ok {
		t.Fatalf("no method %s", method)
	}
	return m.Scopes
}

func zoe() *commonv1.SubjectIdentity {
	return &commonv1.SubjectIdentity{BirthName: "DUPONT", GivenNames: []string{"Zoé"}, Sex: commonv1.Sex_SEX_FEMALE, BirthDate: "1984-03-12", BirthPlaceCog: "75056", BirthCountryCog: "99100"}
}

func fq(id *commonv1.SubjectIdentity) *familyquotientv1.GetFamilyQuotientRequest {
	return &familyquotientv1.GetFamilyQuotientRequest{Subject: id}
}

func TestFullRecordWithAllScopes(t *testing.T) {
	a, cat := newAdapter(t)
	got, err := a.Fetch(context.Background(), source.Request{Method: fqMethod, Input: fq(zoe()), Scopes: allScopes(t, cat, fqMethod)})
	if err != nil {
		t.Fatal(err)
	}
	r := got.(*familyquotientv1.GetFamilyQuotientResponse)
	if r.GetValue() != 755 || r.GetRegime() != familyquotientv1.Regime_REGIME_CNAF || len(r.GetChildren()) != 2 || len(r.GetBeneficiaries()) != 2 || r.GetAddress().GetCity() != "PARIS" {
		t.Fatalf("unexpected record: %v", r)
	}
	if r.GetSource().GetSourceId() != "sandbox-test" || r.GetSource().GetProvider() != sandbox.Provider || !r.GetSource().GetProducedAt().AsTime().Equal(fixedNow) || !r.GetSource().GetValidUntil().AsTime().Equal(fixedNow.Add(sandbox.Validity)) {
		t.Fatalf("source metadata: %v", r.GetSource())
	}
}

func TestScopesLimitTheAnswer(t *testing.T) {
	a, _ := newAdapter(t)
	got, err := a.Fetch(context.Background(), source.Request{Method: fqMethod, Input: fq(zoe()), Scopes: scope.Of("family_quotient.value")})
	if err != nil {
		t.Fatal(err)
	}
	r := got.(*familyquotientv1.GetFamilyQuotientResponse)
	if r.GetValue() != 755 || r.Children != nil || r.Beneficiaries != nil || r.Address != nil {
		t.Fatalf("fields outside the scopes were answered: %v", r)
	}
	// The data set itself is untouched: a second call with every scope
	// gets the children back.
	full, err := a.Fetch(context.Background(), source.Request{Method: fqMethod, Input: fq(zoe()), Scopes: scope.Of("family_quotient.children")})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(full.(*familyquotientv1.GetFamilyQuotientResponse).GetChildren()); n != 2 {
		t.Fatalf("children after a narrower call: %d, want 2", n)
	}
}

func TestMatching(t *testing.T) {
	a, cat := newAdapter(t)
	elodie := &commonv1.SubjectIdentity{BirthName: "le gall kerbrat", GivenNames: []string{"ELODIE", "Anne"}, Sex: commonv1.Sex_SEX_FEMALE, BirthDate: "1993-07-07", BirthPlaceCog: "35238", BirthCountryCog: "99100"}
	wrongPlace := proto.Clone(zoe()).(*commonv1.SubjectIdentity)
	wrongPlace.BirthPlaceCog = "69123"
	wrongSex := proto.Clone(zoe()).(*commonv1.SubjectIdentity)
	wrongSex.Sex = commonv1.Sex_SEX_MALE
	homonym := &commonv1.SubjectIdentity{BirthName: "Nguyen", GivenNames: []string{"Minh"}, Sex: commonv1.Sex_SEX_MALE, BirthDate: "1990-05-05", BirthCountryCog: "99243"}
	usageNameOnly := &commonv1.SubjectIdentity{BirthName: "LEFEBVRE", GivenNames: []string{"Alice"}, Sex: commonv1.Sex_SEX_FEMALE, BirthDate: "1988-12-01", BirthPlaceCog: "44109", BirthCountryCog: "99100"}
	abroad := &commonv1.SubjectIdentity{BirthName: "d’Almeida", GivenNames: []string{"Rui"}, Sex: commonv1.Sex_SEX_MALE, BirthDate: "1978-03-21", BirthCountryCog: "99139"}
	for _, tc := range []struct {
		name   string
		method string
		in     proto.Message
		want   error
	}{
		{"accents, case and hyphens are folded", fqMethod, fq(elodie), nil},
		{"other birth place", fqMethod, fq(wrongPlace), source.ErrSubjectNotFound},
		{"other sex", fqMethod, fq(wrongSex), source.ErrSubjectNotFound},
		{"homonyms are not identifiable", fqMethod, fq(homonym), source.ErrNotIdentifiable},
		{"usage name is not a birth name", fqMethod, fq(usageNameOnly), source.ErrSubjectNotFound},
		{"curly apostrophe, born abroad", jsMethod, &jobseekerv1.GetJobSeekerStatusRequest{Subject: &jobseekerv1.GetJobSeekerStatusRequest_Identity{Identity: abroad}}, nil},
		{"known citizen unknown to this source", ssMethod, &studentstatusv1.GetStudentStatusRequest{Subject: &studentstatusv1.GetStudentStatusRequest_Identity{Identity: zoe()}}, source.ErrSubjectNotFound},
		{"homonym told apart by INE", ssMethod, &studentstatusv1.GetStudentStatusRequest{Subject: &studentstatusv1.GetStudentStatusRequest_Ine{Ine: "SBXINE00008"}}, nil},
		{"unknown INE", schMethod, &studentscholarshipv1.GetStudentScholarshipRequest{Subject: &studentscholarshipv1.GetStudentScholarshipRequest_Ine{Ine: "SBXINE99999"}}, source.ErrSubjectNotFound},
		{"France Travail identifier", jsMethod, &jobseekerv1.GetJobSeekerStatusRequest{Subject: &jobseekerv1.GetJobSeekerStatusRequest_FranceTravailId{FranceTravailId: "SBX0000003"}}, nil},
		{"no subject at all", hcMethod, &healthcoverv1.GetSolidarityHealthCoverRequest{}, source.ErrNotIdentifiable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.Fetch(context.Background(), source.Request{Method: tc.method, Input: tc.in, Scopes: allScopes(t, cat, tc.method)})
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestIdentityEchoAndINE(t *testing.T) {
	a, cat := newAdapter(t)
	got, err := a.Fetch(context.Background(), source.Request{Method: ssMethod, Input: &studentstatusv1.GetStudentStatusRequest{Subject: &studentstatusv1.GetStudentStatusRequest_Ine{Ine: "SBXINE00001"}}, Scopes: allScopes(t, cat, ssMethod)})
	if err != nil {
		t.Fatal(err)
	}
	r := got.(*studentstatusv1.GetStudentStatusResponse)
	if id := r.GetIdentity(); id.GetBirthName() != "PETIT" || id.GetBirthDate() != "2004-01-20" || len(id.GetGivenNames()) != 1 {
		t.Fatalf("identity echo: %v", id)
	}
	if len(r.GetAdmissions()) != 2 || r.GetAdmissions()[0].GetEnrolled() || !r.GetAdmissions()[1].GetEnrolled() {
		t.Fatalf("admissions: %v", r.GetAdmissions())
	}
}

func TestBehaviours(t *testing.T) {
	a, cat := newAdapter(t)
	id := func(name, given string, sex commonv1.Sex, date, place string) *commonv1.SubjectIdentity {
		return &commonv1.SubjectIdentity{BirthName: name, GivenNames: []string{given}, Sex: sex, BirthDate: date, BirthPlaceCog: place, BirthCountryCog: "99100"}
	}
	t.Run("unavailable", func(t *testing.T) {
		_, err := a.Fetch(context.Background(), source.Request{Method: hcMethod, Input: &healthcoverv1.GetSolidarityHealthCoverRequest{Subject: id("MERCIER", "Paul", commonv1.Sex_SEX_MALE, "1965-01-01", "75056")}, Scopes: allScopes(t, cat, hcMethod)})
		var retry *source.RetryableError
		if !errors.As(err, &retry) || retry.RetryAfter != sandbox.RetryAfter || !errors.Is(err, source.ErrUnavailable) {
			t.Fatalf("err = %v, want a retryable unavailability", err)
		}
	})
	t.Run("timeout waits for the deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := a.Fetch(ctx, source.Request{Method: fqMethod, Input: fq(id("BLANC", "Emma", commonv1.Sex_SEX_FEMALE, "1972-02-14", "69123")), Scopes: allScopes(t, cat, fqMethod)})
		if !errors.Is(err, source.ErrTimeout) || ctx.Err() == nil {
			t.Fatalf("err = %v (ctx %v), want a timeout at the deadline", err, ctx.Err())
		}
	})
	t.Run("invalid response breaks its rules", func(t *testing.T) {
		got, err := a.Fetch(context.Background(), source.Request{Method: fqMethod, Input: fq(id("CHEVALIER", "Arthur", commonv1.Sex_SEX_MALE, "1980-06-18", "35238")), Scopes: allScopes(t, cat, fqMethod)})
		if err != nil {
			t.Fatal(err)
		}
		if err := protovalidate.Validate(got); err == nil {
			t.Fatal("the invalid_response citizen answered a valid response")
		}
	})
}

// TestEveryRecordIsValid fetches every record of the data set by its
// citizen's identity and checks it against the response's own rules,
// the ones the broker enforces on real sources.
func TestEveryRecordIsValid(t *testing.T) {
	a, cat := newAdapter(t)
	d := sandbox.Default()
	if n := len(d.Citizens()); n < 25 {
		t.Fatalf("%d citizens; the sandbox promises at least 25", n)
	}
	perService := map[string]int{}
	for _, c := range d.Citizens() {
		if c.Behaviour != sandbox.BehaveNormally {
			continue
		}
		for svc, record := range c.Records {
			var m *catalog.Method
			for _, mm := range cat.Methods() {
				if mm.Service == svc {
					m = mm
				}
			}
			in := m.Input.New()
			fields := in.Descriptor().Fields()
			f := fields.ByName("subject")
			if f == nil { // oneof subject: use its identity case
				f = fields.ByName("identity")
			}
			switch {
			case f != nil:
				in.Set(f, protoreflect.ValueOfMessage(proto.Clone(c.Identity).ProtoReflect()))
			case fields.ByName("france_travail_id") != nil && c.FranceTravailID != "":
				in.Set(fields.ByName("france_travail_id"), protoreflect.ValueOfString(c.FranceTravailID))
			default:
				t.Errorf("%s / %s: a record the data set cannot be asked for (no identity field, no identifier)", c.ID, svc)
				continue
			}
			got, err := a.Fetch(context.Background(), source.Request{Method: m.FullMethod, Input: in.Interface(), Scopes: m.Scopes})
			if errors.Is(err, source.ErrNotIdentifiable) && strings.HasPrefix(c.ID, "nguyen-minh") {
				continue // the homonyms; covered by TestMatching
			}
			if err != nil {
				t.Errorf("%s / %s: %v", c.ID, svc, err)
				continue
			}
			if err := protovalidate.Validate(got); err != nil {
				t.Errorf("%s / %s: %v", c.ID, svc, err)
			}
			if proto.Size(got) <= proto.Size(record) {
				t.Errorf("%s / %s: answer carries no more than the stored record (no source metadata?)", c.ID, svc)
			}
			perService[svc]++
		}
	}
	for _, svc := range cat.Services() {
		if perService[svc] < 3 {
			t.Errorf("service %s: %d citizens with a record, want at least 3", svc, perService[svc])
		}
	}
}

func TestLoadRejects(t *testing.T) {
	cat := catalog.Default()
	const zoeIdentity = `identity: {birth_name: DUPONT, given_names: [Zoé], sex: F, birth_date: "1984-03-12", birth_place_cog: "75056", birth_country_cog: "99100"}`
	citizen := func(extra string) string {
		return "citizens:\n  - id: a\n    note: n\n    " + zoeIdentity + "\n" + extra
	}
	for _, tc := range []struct{ name, data, want string }{
		{"empty", "citizens: []\n", "no citizens"},
		{"unknown top-level key", "people: []\n", "field people not found"},
		{"unknown citizen key", citizen("    nickname: z\n    records: {solidarity_health_cover: {is_beneficiary: true}}\n"), "field nickname not found"},
		{"unknown record", citizen("    records:\n      pensions: {amount: 3}\n"), `line 6: unknown record "pensions"`},
		{"unknown response field", citizen("    records:\n      family_quotient: {amount: 3}\n"), "unknown field"},
		{"bad enum", citizen("    records:\n      family_quotient: {regime: REGIME_OTHER}\n"), "REGIME_OTHER"},
		{"no records", citizen(""), "no records"},
		{"bad behaviour", citizen("    behaviour: flaky\n"), `behaviour "flaky"`},
		{"bad INE", citizen("    ine: abc\n    records: {solidarity_health_cover: {is_beneficiary: true}}\n"), `ine "abc"`},
		{"bad sex", strings.Replace(citizen("    records: {solidarity_health_cover: {is_beneficiary: true}}\n"), "sex: F", "sex: X", 1), `sex "X"`},
		{"impossible date", strings.Replace(citizen("    records: {solidarity_health_cover: {is_beneficiary: true}}\n"), "1984-03-12", "1984-02-30", 1), "birth_date"},
		{"birth in France without place", strings.Replace(citizen("    records: {solidarity_health_cover: {is_beneficiary: true}}\n"), `birth_place_cog: "75056", `, "", 1), "birth_place_cog"},
		{"duplicate id", citizen("    records: {solidarity_health_cover: {is_beneficiary: true}}\n") + "  - id: a\n    note: n\n    " + zoeIdentity + "\n    records: {solidarity_health_cover: {is_beneficiary: true}}\n", "duplicate id"},
		{"bad id", strings.Replace(citizen("    records: {solidarity_health_cover: {is_beneficiary: true}}\n"), "id: a", "id: A B", 1), `id "A B"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sandbox.Load([]byte(tc.data), cat)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestDocsInStep(t *testing.T) {
	golden.Check(t, "../../docs/sandbox.md", sandbox.Default().Markdown())
}
