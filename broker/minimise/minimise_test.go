package minimise_test

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/minimise"
	"github.com/relais-broker/relais/broker/scope"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
	healthcoverv1 "github.com/relais-broker/relais/proto/relais/healthcover/v1"
)

func fullFamilyQuotient() *familyquotientv1.GetFamilyQuotientResponse {
	return &familyquotientv1.GetFamilyQuotientResponse{
		Source:         &commonv1.SourceMetadata{SourceId: "s", Provider: "CNAF", ProducedAt: &timestamppb.Timestamp{Seconds: 1780000000}},
		Value:          proto.Int32(612),
		ReferenceYear:  proto.Int32(2026),
		ReferenceMonth: proto.Int32(5),
		Regime:         familyquotientv1.Regime_REGIME_CNAF,
		Beneficiaries:  []*commonv1.Person{{BirthName: "A"}},
		Children:       []*commonv1.Person{{BirthName: "B"}, {BirthName: "C"}},
		Address:        &commonv1.PostalAddress{City: "X"},
	}
}

func TestApply(t *testing.T) {
	t.Parallel()
	m, _ := catalog.Default().Method("/relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient")
	tests := []struct {
		name     string
		allowed  scope.Set
		check    func(*familyquotientv1.GetFamilyQuotientResponse) bool
		returned string
	}{
		{"everything", m.Scopes, func(r *familyquotientv1.GetFamilyQuotientResponse) bool {
			return proto.Equal(r, fullFamilyQuotient())
		}, "family_quotient.address,family_quotient.beneficiaries,family_quotient.children,family_quotient.value"},
		{"value only keeps every field of the scope", scope.Of("family_quotient.value"), func(r *familyquotientv1.GetFamilyQuotientResponse) bool {
			return r.Value != nil && r.ReferenceYear != nil && r.ReferenceMonth != nil && r.Regime != 0 &&
				r.Children == nil && r.Beneficiaries == nil && r.Address == nil && r.Source != nil
		}, "family_quotient.value"},
		{"children and address", scope.Of("family_quotient.children", "family_quotient.address"), func(r *familyquotientv1.GetFamilyQuotientResponse) bool {
			return r.Value == nil && r.Regime == 0 && len(r.Children) == 2 && r.Address != nil && r.Beneficiaries == nil
		}, "family_quotient.address,family_quotient.children"},
		{"nothing allowed keeps only source metadata", scope.Of(), func(r *familyquotientv1.GetFamilyQuotientResponse) bool {
			return proto.Equal(r, &familyquotientv1.GetFamilyQuotientResponse{Source: fullFamilyQuotient().Source})
		}, ""},
		{"scopes of another service do not leak", scope.Of("solidarity_health_cover.status"), func(r *familyquotientv1.GetFamilyQuotientResponse) bool {
			return r.Value == nil && r.Children == nil
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp := fullFamilyQuotient()
			got := minimise.Apply(m, resp, tt.allowed)
			if !tt.check(resp) {
				t.Errorf("after Apply: %v", resp)
			}
			if got.String() != tt.returned {
				t.Errorf("returned = %q, want %q", got, tt.returned)
			}
		})
	}
}

func TestApplyDropsUnknownFields(t *testing.T) {
	t.Parallel()
	m, _ := catalog.Default().Method("/relais.healthcover.v1.SolidarityHealthCoverService/GetSolidarityHealthCover")
	resp := &healthcoverv1.GetSolidarityHealthCoverResponse{IsBeneficiary: proto.Bool(true)}
	// Field 99, as a newer source schema could send it.
	resp.ProtoReflect().SetUnknown([]byte{0x98, 0x06, 0x01})
	minimise.Apply(m, resp, scope.Of("solidarity_health_cover.status"))
	if len(resp.ProtoReflect().GetUnknown()) != 0 {
		t.Error("unknown fields were kept")
	}
	if !resp.GetIsBeneficiary() {
		t.Error("granted field was cleared")
	}
}
