package sandbox_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/relais-broker/relais/adapters/adaptertest"
	"github.com/relais-broker/relais/adapters/sandbox"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/scope"
	"github.com/relais-broker/relais/broker/source"
	aahv1 "github.com/relais-broker/relais/proto/relais/aah/v1"
	activitybonusv1 "github.com/relais-broker/relais/proto/relais/activitybonus/v1"
	aeehv1 "github.com/relais-broker/relais/proto/relais/aeeh/v1"
	asfv1 "github.com/relais-broker/relais/proto/relais/asf/v1"
	civicservicev1 "github.com/relais-broker/relais/proto/relais/civicservice/v1"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	jobseekerpaymentsv1 "github.com/relais-broker/relais/proto/relais/jobseekerpayments/v1"
	nationalservicev1 "github.com/relais-broker/relais/proto/relais/nationalservice/v1"
	rsav1 "github.com/relais-broker/relais/proto/relais/rsa/v1"
	schoolingv1 "github.com/relais-broker/relais/proto/relais/schooling/v1"
)

// Methods of the services added toward API particulier's catalogue.
const (
	rsaMethod  = "/relais.rsa.v1.RsaStatusService/GetRsaStatus"
	abMethod   = "/relais.activitybonus.v1.ActivityBonusService/GetActivityBonus"
	aahMethod  = "/relais.aah.v1.DisabledAdultAllowanceService/GetDisabledAdultAllowance"
	asfMethod  = "/relais.asf.v1.FamilySupportAllowanceService/GetFamilySupportAllowance"
	aeehMethod = "/relais.aeeh.v1.DisabledChildAllowanceService/GetDisabledChildAllowance"
	schMethodP = "/relais.schooling.v1.SchoolingService/GetSchooling"
	nsMethod   = "/relais.nationalservice.v1.NationalServiceStatusService/GetNationalServiceStatus"
	csMethod   = "/relais.civicservice.v1.CivicServiceStatusService/GetCivicServiceStatus"
	jspMethod  = "/relais.jobseekerpayments.v1.JobSeekerPaymentsService/GetJobSeekerPayments"
)

var (
	cLucas  = ident("MARTIN", "Lucas", commonv1.Sex_SEX_MALE, "1979-11-02", "69123", "99100")
	cInes   = ident("BERNARD", "Inès", commonv1.Sex_SEX_FEMALE, "1975-06-14", "31555", "99100")
	cElodie = ident("LE GALL-KERBRAT", "Élodie", commonv1.Sex_SEX_FEMALE, "1993-07-07", "35238", "99100")
	cYasm   = ident("BENALI", "Yasmine", commonv1.Sex_SEX_FEMALE, "1986-04-23", "", "99350")
	cPupil  = ident("ROBERT", "Inès", commonv1.Sex_SEX_FEMALE, "2014-05-21", "75056", "99100")
	cAdam   = ident("FOURNIER", "Adam", commonv1.Sex_SEX_MALE, "2005-11-11", "33063", "99100")
)

// byIdentity builds a request of method's input type designating id,
// whether the subject is a plain field or the identity case of a oneof.
func byIdentity(t *testing.T, method string, id *commonv1.SubjectIdentity) proto.Message {
	t.Helper()
	m, ok := catalog.Default().Method(method)
	if !ok {
		t.Fatalf("no method %s", method)
	}
	in := m.Input.New()
	f := in.Descriptor().Fields().ByName("subject")
	if f == nil {
		f = in.Descriptor().Fields().ByName("identity")
	}
	in.Set(f, protoreflect.ValueOfMessage(proto.Clone(id).ProtoReflect()))
	return in.Interface()
}

func payments(ftid string) *jobseekerpaymentsv1.GetJobSeekerPaymentsRequest {
	return &jobseekerpaymentsv1.GetJobSeekerPaymentsRequest{FranceTravailId: ftid}
}

// TestConformanceNewServices runs the adapter contract's suite on the
// services added toward API particulier's catalogue. The payments service
// is asked by France Travail identifier only, so no homonym exists there.
func TestConformanceNewServices(t *testing.T) {
	var cases []adaptertest.Case
	for method, found := range map[string]*commonv1.SubjectIdentity{
		rsaMethod: cZoe, abMethod: cLucas, aahMethod: cElodie, asfMethod: cInes, aeehMethod: cYasm,
		schMethodP: cPupil, nsMethod: cHugo, csMethod: cAdam,
	} {
		cases = append(cases, adaptertest.Case{
			Method: method, Found: byIdentity(t, method, found), NotFound: byIdentity(t, method, cNobody),
			NotIdentifiable: byIdentity(t, method, cMinh), Unavailable: byIdentity(t, method, cPaul), Hang: byIdentity(t, method, cEmma),
		})
	}
	cases = append(cases, adaptertest.Case{
		Method: jspMethod, Found: payments("SBX0000001"), NotFound: payments("SBX9999999"),
		Unavailable: payments("SBX0000090"), Hang: payments("SBX0000091"),
	})
	adaptertest.Run(t, adaptertest.Suite{Adapter: sandbox.New(sandbox.Default(), sandbox.Options{SourceID: "sandbox"}), Cases: cases})
}

// TestNewServiceAnswers checks the answers a consumer integrates against:
// the values, the identity echo, and the identifier designations.
func TestNewServiceAnswers(t *testing.T) {
	a, cat := newAdapter(t)
	fetch := func(t *testing.T, method string, in proto.Message) proto.Message {
		t.Helper()
		got, err := a.Fetch(context.Background(), source.Request{Method: method, Input: in, Scopes: allScopes(t, cat, method)})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	t.Run("rsa with the single-parent increase", func(t *testing.T) {
		r := fetch(t, rsaMethod, &rsav1.GetRsaStatusRequest{Subject: cInes}).(*rsav1.GetRsaStatusResponse)
		if !r.GetIsBeneficiary() || !r.GetWithIncrease() || r.GetRightsStartDate() != "2024-09-01" {
			t.Fatalf("rsa: %v", r)
		}
	})
	t.Run("a false answer is present, not absent", func(t *testing.T) {
		r := fetch(t, abMethod, &activitybonusv1.GetActivityBonusRequest{Subject: ident("GARCIA", "Manon", commonv1.Sex_SEX_FEMALE, "1987-08-08", "31555", "99100")}).(*activitybonusv1.GetActivityBonusResponse)
		if r.IsBeneficiary == nil || r.GetIsBeneficiary() || r.WithIncrease == nil {
			t.Fatalf("activity bonus: %v", r)
		}
		l := fetch(t, aahMethod, &aahv1.GetDisabledAdultAllowanceRequest{Subject: ident("LAMBERT", "Chloé", commonv1.Sex_SEX_FEMALE, "1983-05-05", "67482", "99100")}).(*aahv1.GetDisabledAdultAllowanceResponse)
		if l.IsBeneficiary == nil || l.GetIsBeneficiary() || l.GetRightsStartDate() != "" {
			t.Fatalf("aah: %v", l)
		}
	})
	t.Run("aeeh knows the parent and the child", func(t *testing.T) {
		parent := fetch(t, aeehMethod, &aeehv1.GetDisabledChildAllowanceRequest{Subject: cYasm}).(*aeehv1.GetDisabledChildAllowanceResponse)
		child := fetch(t, aeehMethod, &aeehv1.GetDisabledChildAllowanceRequest{Subject: ident("BENALI", "Adam", commonv1.Sex_SEX_MALE, "2015-01-30", "13055", "99100")}).(*aeehv1.GetDisabledChildAllowanceResponse)
		if parent.GetStatus() != aeehv1.AeehStatus_AEEH_STATUS_RECIPIENT || child.GetStatus() != aeehv1.AeehStatus_AEEH_STATUS_ENTITLING_CHILD || parent.GetRightsStartDate() != child.GetRightsStartDate() {
			t.Fatalf("aeeh: parent %v, child %v", parent, child)
		}
	})
	t.Run("asf", func(t *testing.T) {
		r := fetch(t, asfMethod, &asfv1.GetFamilySupportAllowanceRequest{Subject: cInes}).(*asfv1.GetFamilySupportAllowanceResponse)
		if !r.GetIsBeneficiary() || r.GetRightsStartDate() != "2019-04-01" {
			t.Fatalf("asf: %v", r)
		}
	})
	t.Run("schooling by INE echoes the identity", func(t *testing.T) {
		r := fetch(t, schMethodP, &schoolingv1.GetSchoolingRequest{Subject: &schoolingv1.GetSchoolingRequest_Ine{Ine: "SBXINE00010"}}).(*schoolingv1.GetSchoolingResponse)
		id := r.GetIdentity()
		if id.GetBirthName() != "ROBERT" || id.GetSex() != commonv1.Sex_SEX_FEMALE || id.GetBirthDate() != "2014-05-21" || len(id.GetGivenNames()) != 1 {
			t.Fatalf("identity echo: %v", id)
		}
		if !r.GetIsEnrolled() || r.GetScholarshipEchelon() != 2 || r.GetEstablishment().GetUai() != "0999201A" || r.GetBoardingRegime() != schoolingv1.BoardingRegime_BOARDING_REGIME_HALF_BOARDER {
			t.Fatalf("schooling: %v", r)
		}
	})
	t.Run("national service", func(t *testing.T) {
		r := fetch(t, nsMethod, &nationalservicev1.GetNationalServiceStatusRequest{Subject: cHugo}).(*nationalservicev1.GetNationalServiceStatusResponse)
		if r.GetStatus() != nationalservicev1.NationalServiceStatus_NATIONAL_SERVICE_STATUS_IN_ORDER || r.GetComment() == "" {
			t.Fatalf("national service: %v", r)
		}
	})
	t.Run("civic service, current and past", func(t *testing.T) {
		r := fetch(t, csMethod, &civicservicev1.GetCivicServiceStatusRequest{Subject: cAdam}).(*civicservicev1.GetCivicServiceStatusResponse)
		if !r.GetCurrent().GetFound() || !r.GetPast().GetFound() || r.GetPast().GetEndDate() != "2024-08-14" {
			t.Fatalf("civic service: %v", r)
		}
	})
	t.Run("payments by France Travail identifier", func(t *testing.T) {
		r := fetch(t, jspMethod, payments("SBX0000001")).(*jobseekerpaymentsv1.GetJobSeekerPaymentsResponse)
		if len(r.GetMonthlyTotals()) != 3 || len(r.GetPayments()) != 4 || r.GetMonthlyTotals()[1].GetTotalCents() != 113040 {
			t.Fatalf("payments: %v", r)
		}
		var sum int32
		for _, p := range r.GetPayments() {
			if p.GetPaymentDate()[:7] == "2026-09" {
				sum += p.GetTotalCents()
			}
		}
		if sum != r.GetMonthlyTotals()[1].GetTotalCents() {
			t.Fatalf("September payments sum to %d, the monthly total says %d", sum, r.GetMonthlyTotals()[1].GetTotalCents())
		}
	})
}

func TestNewServiceRefusals(t *testing.T) {
	a, cat := newAdapter(t)
	for _, tc := range []struct {
		name   string
		method string
		in     proto.Message
		want   error
	}{
		{"payments of an unknown identifier", jspMethod, payments("SBX9999999"), source.ErrSubjectNotFound},
		{"payments without an identifier", jspMethod, payments(""), source.ErrNotIdentifiable},
		{"a citizen unknown to the national service", nsMethod, &nationalservicev1.GetNationalServiceStatusRequest{Subject: cZoe}, source.ErrSubjectNotFound},
		{"schooling by an unknown INE", schMethodP, &schoolingv1.GetSchoolingRequest{Subject: &schoolingv1.GetSchoolingRequest_Ine{Ine: "SBXINE99999"}}, source.ErrSubjectNotFound},
		{"homonyms in a benefit", rsaMethod, &rsav1.GetRsaStatusRequest{Subject: cMinh}, source.ErrNotIdentifiable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.Fetch(context.Background(), source.Request{Method: tc.method, Input: tc.in, Scopes: allScopes(t, cat, tc.method)})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestNewServicesMisbehave: the unavailable, timeout and invalid-response
// citizens misbehave in every new service, by identity and by identifier.
func TestNewServicesMisbehave(t *testing.T) {
	a, cat := newAdapter(t)
	arthur := ident("CHEVALIER", "Arthur", commonv1.Sex_SEX_MALE, "1980-06-18", "35238", "99100")
	for _, method := range []string{rsaMethod, abMethod, aahMethod, asfMethod, aeehMethod, schMethodP, nsMethod, csMethod, jspMethod} {
		var unavailable, hang, invalid proto.Message = payments("SBX0000090"), payments("SBX0000091"), payments("SBX0000092")
		if method != jspMethod {
			unavailable, hang, invalid = byIdentity(t, method, cPaul), byIdentity(t, method, cEmma), byIdentity(t, method, arthur)
		}
		t.Run(method, func(t *testing.T) {
			_, err := a.Fetch(context.Background(), source.Request{Method: method, Input: unavailable, Scopes: allScopes(t, cat, method)})
			if !errors.Is(err, source.ErrUnavailable) {
				t.Errorf("unavailable citizen: %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			if _, err := a.Fetch(ctx, source.Request{Method: method, Input: hang, Scopes: allScopes(t, cat, method)}); !errors.Is(err, source.ErrTimeout) {
				t.Errorf("timeout citizen: %v", err)
			}
			got, err := a.Fetch(context.Background(), source.Request{Method: method, Input: invalid, Scopes: allScopes(t, cat, method)})
			if err != nil {
				t.Fatalf("invalid-response citizen: %v", err)
			}
			if err := protovalidate.Validate(got); err == nil {
				t.Error("the invalid_response citizen answered a valid response")
			}
		})
	}
}

// TestLimitedScopesOnNewServices: a status-only grant gets no dates, no
// increase, no comment.
func TestLimitedScopesOnNewServices(t *testing.T) {
	a, _ := newAdapter(t)
	got, err := a.Fetch(context.Background(), source.Request{Method: rsaMethod, Input: &rsav1.GetRsaStatusRequest{Subject: cInes}, Scopes: scope.Of("rsa.status")})
	if err != nil {
		t.Fatal(err)
	}
	if r := got.(*rsav1.GetRsaStatusResponse); !r.GetIsBeneficiary() || r.WithIncrease != nil {
		t.Fatalf("rsa.status only: %v", r)
	}
	got, err = a.Fetch(context.Background(), source.Request{Method: jspMethod, Input: payments("SBX0000001"), Scopes: scope.Of("job_seeker_payments.monthly")})
	if err != nil {
		t.Fatal(err)
	}
	if r := got.(*jobseekerpaymentsv1.GetJobSeekerPaymentsResponse); len(r.GetMonthlyTotals()) != 3 || r.GetPayments() != nil {
		t.Fatalf("monthly only: %v", r)
	}
}
