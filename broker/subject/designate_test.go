package subject

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
	jobseekerpaymentsv1 "github.com/relais-broker/relais/proto/relais/jobseekerpayments/v1"
	studentstatusv1 "github.com/relais-broker/relais/proto/relais/studentstatus/v1"
)

func zoe() *commonv1.SubjectIdentity {
	return &commonv1.SubjectIdentity{BirthName: "DUPONT", GivenNames: []string{"Zoé", "Marie"}, Sex: commonv1.Sex_SEX_FEMALE,
		BirthDate: "1984-03-12", BirthPlaceCog: "75056", BirthCountryCog: "99100"}
}

// An unresolved token request has no pseudonym (never a hash of the
// token), and once rewritten it designates exactly what the typed
// identity does: same designation, same pseudonym, same bytes.
func TestTokenDesignation(t *testing.T) {
	p, err := New(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name         string
		token, typed proto.Message
	}{
		{"field next to subject",
			&familyquotientv1.GetFamilyQuotientRequest{CitizenAccessToken: "tok-123"},
			&familyquotientv1.GetFamilyQuotientRequest{Subject: zoe()}},
		{"member of the subject oneof",
			&studentstatusv1.GetStudentStatusRequest{Subject: &studentstatusv1.GetStudentStatusRequest_CitizenAccessToken{CitizenAccessToken: "tok-123"}},
			&studentstatusv1.GetStudentStatusRequest{Subject: &studentstatusv1.GetStudentStatusRequest_Identity{Identity: zoe()}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Designate(tc.token)
			if d.Token != "tok-123" || d.Typed() || d.Identity != nil || d.Kind != "" {
				t.Fatalf("designation of a token request = %+v", d)
			}
			if ps := p.Of(tc.token); ps != "" {
				t.Fatalf("pseudonym of an unresolved token request = %q, want none", ps)
			}
			if !CanHoldIdentity(tc.token.ProtoReflect().Descriptor()) {
				t.Fatal("request cannot hold an identity")
			}
			if err := SetIdentity(tc.token, zoe()); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(tc.token, tc.typed) {
				t.Fatalf("rewritten = %v, want %v", tc.token, tc.typed)
			}
			if a, b := p.Of(tc.token), p.Of(tc.typed); a == "" || a != b {
				t.Fatalf("pseudonyms differ: %q %q", a, b)
			}
			if !Designate(tc.token).Typed() {
				t.Fatal("rewritten request is not typed")
			}
		})
	}
}

func TestSetIdentityWithoutIdentityField(t *testing.T) {
	req := &jobseekerpaymentsv1.GetJobSeekerPaymentsRequest{CitizenAccessToken: "tok-123"}
	if CanHoldIdentity(req.ProtoReflect().Descriptor()) {
		t.Fatal("a france_travail_id-only request claims to hold an identity")
	}
	if err := SetIdentity(req, zoe()); err != ErrNoIdentityField {
		t.Fatalf("err = %v, want ErrNoIdentityField", err)
	}
	if req.GetCitizenAccessToken() != "tok-123" {
		t.Fatal("a refused rewrite changed the request")
	}
}
