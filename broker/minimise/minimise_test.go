package minimise_test

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"
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

func TestApplyMask(t *testing.T) {
	t.Parallel()
	m, _ := catalog.Default().Method("/relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient")
	source := fullFamilyQuotient().Source
	// answer is what the source sends: two children, one without birth
	// date nor given names, an address with a postal code.
	answer := func() *familyquotientv1.GetFamilyQuotientResponse {
		r := fullFamilyQuotient()
		r.Children[0].BirthDate, r.Children[0].GivenNames = "2015-01-02", []string{"Bea"}
		r.Address.PostalCode = "75001"
		return r
	}
	tests := []struct {
		name     string
		allowed  scope.Set
		paths    []string
		edit     func(*familyquotientv1.GetFamilyQuotientResponse) // on the source's answer
		want     *familyquotientv1.GetFamilyQuotientResponse
		returned string
	}{
		{"no mask is everything granted", m.Scopes, nil, nil, answer(),
			"address,beneficiaries,children,reference_month,reference_year,regime,value"},
		{"top-level field alone, not its scope", m.Scopes, []string{"value"}, nil,
			&familyquotientv1.GetFamilyQuotientResponse{Source: source, Value: proto.Int32(612)}, "value"},
		{"two fields of one scope", m.Scopes, []string{"reference_year", "regime"}, nil,
			&familyquotientv1.GetFamilyQuotientResponse{Source: source, ReferenceYear: proto.Int32(2026), Regime: familyquotientv1.Regime_REGIME_CNAF}, "reference_year,regime"},
		{"nested field", m.Scopes, []string{"address.postal_code"}, nil,
			&familyquotientv1.GetFamilyQuotientResponse{Source: source, Address: &commonv1.PostalAddress{PostalCode: "75001"}}, "address.postal_code"},
		{"nested field the source left empty clears the message", m.Scopes, []string{"address.country"}, nil,
			&familyquotientv1.GetFamilyQuotientResponse{Source: source}, ""},
		{"repeated message keeps every element", m.Scopes, []string{"children.birth_date"}, nil,
			&familyquotientv1.GetFamilyQuotientResponse{Source: source, Children: []*commonv1.Person{{BirthDate: "2015-01-02"}, {}}}, "children.birth_date"},
		{"repeated message left all empty is cleared", m.Scopes, []string{"children.usage_name"}, nil,
			&familyquotientv1.GetFamilyQuotientResponse{Source: source}, ""},
		{"two sub-fields of a repeated message", m.Scopes, []string{"children.given_names", "children.birth_name"}, nil,
			&familyquotientv1.GetFamilyQuotientResponse{Source: source, Children: []*commonv1.Person{
				{BirthName: "B", GivenNames: []string{"Bea"}}, {BirthName: "C"}}}, "children.birth_name,children.given_names"},
		{"whole field wins over a nested path", m.Scopes, []string{"address.city", "address"}, nil,
			&familyquotientv1.GetFamilyQuotientResponse{Source: source, Address: answer().Address}, "address"},
		{"mask outside the grant is silently absent", scope.Of("family_quotient.value"), []string{"value", "children.birth_date", "address"}, nil,
			&familyquotientv1.GetFamilyQuotientResponse{Source: source, Value: proto.Int32(612)}, "value"},
		{"grant without the mask's fields leaves the source metadata", scope.Of("family_quotient.children"), []string{"value"}, nil,
			&familyquotientv1.GetFamilyQuotientResponse{Source: source}, ""},
		{"source named in the mask", m.Scopes, []string{"source", "regime"}, nil,
			&familyquotientv1.GetFamilyQuotientResponse{Source: source, Regime: familyquotientv1.Regime_REGIME_CNAF}, "regime"},
		{"field the source did not send is not returned", m.Scopes, []string{"value", "reference_month"},
			func(r *familyquotientv1.GetFamilyQuotientResponse) { r.Value = nil },
			&familyquotientv1.GetFamilyQuotientResponse{Source: source, ReferenceMonth: proto.Int32(5)}, "reference_month"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mask, err := m.Mask(tt.paths)
			if err != nil {
				t.Fatal(err)
			}
			resp := answer()
			if tt.edit != nil {
				tt.edit(resp)
			}
			got := minimise.ApplyMask(m, resp, tt.allowed, mask)
			if !proto.Equal(resp, tt.want) {
				t.Errorf("after ApplyMask:\n got %v\nwant %v", resp, tt.want)
			}
			if strings.Join(got, ",") != tt.returned {
				t.Errorf("returned = %q, want %q", got, tt.returned)
			}
		})
	}
}

// TestApplyMaskDropsNestedUnknownFields: a newer source schema could add a
// field to Person; kept whole or narrowed, it never reaches the caller.
func TestApplyMaskDropsNestedUnknownFields(t *testing.T) {
	t.Parallel()
	m, _ := catalog.Default().Method("/relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient")
	for _, paths := range [][]string{nil, {"children"}, {"children.birth_name"}, {"address.city"}} {
		resp := fullFamilyQuotient()
		unknown := []byte{0x98, 0x06, 0x01} // field 99
		for _, p := range append(resp.Children, resp.Beneficiaries...) {
			p.ProtoReflect().SetUnknown(unknown)
		}
		resp.Address.ProtoReflect().SetUnknown(unknown)
		resp.Source.ProtoReflect().SetUnknown(unknown)
		resp.Source.ProducedAt.ProtoReflect().SetUnknown(unknown)
		mask, _ := m.Mask(paths)
		minimise.ApplyMask(m, resp, m.Scopes, mask)
		b, _ := proto.Marshal(resp)
		var back familyquotientv1.GetFamilyQuotientResponse
		if err := (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		// Without any field 99 anywhere, the bytes are those of the known fields only.
		if clean, _ := proto.Marshal(&back); len(clean) != len(b) {
			t.Errorf("mask %v: unknown fields kept in %x", paths, b)
		}
	}
}

// TestApplyMaskOnAnEqualDescriptor: a response built from another copy of
// the same schema (dynamicpb) is understood; a field whose name differs
// from the catalogue's is cleared (fail closed).
func TestApplyMaskOnAnEqualDescriptor(t *testing.T) {
	t.Parallel()
	m, _ := catalog.Default().Method("/relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient")
	fdp := protodesc.ToFileDescriptorProto(familyquotientv1.File_relais_familyquotient_v1_family_quotient_proto)
	fdp.Name = proto.String("test/copy.proto")
	for _, msg := range fdp.MessageType {
		if msg.GetName() == "GetFamilyQuotientResponse" {
			msg.Field[2].Name = proto.String("annee") // reference_year, renamed
		}
	}
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	resp := dynamicpb.NewMessage(fd.Messages().ByName("GetFamilyQuotientResponse"))
	b, _ := proto.Marshal(fullFamilyQuotient())
	if err := proto.Unmarshal(b, resp); err != nil {
		t.Fatal(err)
	}
	mask, _ := m.Mask([]string{"value", "reference_year", "address.city"})
	got := minimise.ApplyMask(m, resp, m.Scopes, mask)
	if strings.Join(got, ",") != "address.city,value" {
		t.Errorf("returned = %v", got)
	}
	fields := resp.Descriptor().Fields()
	if !resp.Has(fields.ByName("value")) || resp.Has(fields.ByName("annee")) || !resp.Has(fields.ByName("source")) || resp.Has(fields.ByName("children")) {
		t.Errorf("after ApplyMask: %v", resp)
	}
}
