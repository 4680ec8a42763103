package broker

import (
	"context"
	"testing"
	"time"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/authz"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/scope"
	"github.com/relais-broker/relais/broker/source"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
)

// answerAdapter answers a fresh copy of one message, as a source does.
type answerAdapter struct{ answer proto.Message }

func (a answerAdapter) Fetch(context.Context, source.Request) (proto.Message, error) {
	return proto.Clone(a.answer), nil
}

func benchFamilyQuotient() *familyquotientv1.GetFamilyQuotientResponse {
	person := func(given string) *commonv1.Person {
		return &commonv1.Person{BirthName: "ALPHA", GivenNames: []string{given}, BirthDate: "2015-01-02", Sex: commonv1.Sex_SEX_FEMALE}
	}
	return &familyquotientv1.GetFamilyQuotientResponse{
		Source: &commonv1.SourceMetadata{SourceId: "bench", Provider: "CNAF", ProducedAt: timestamppb.New(time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC))},
		Value:  proto.Int32(612), ReferenceYear: proto.Int32(2026), ReferenceMonth: proto.Int32(5),
		Regime:        familyquotientv1.Regime_REGIME_CNAF,
		Beneficiaries: []*commonv1.Person{person("Test"), person("Autre")},
		Children:      []*commonv1.Person{person("Kid"), person("Kid2"), person("Kid3")},
		Address:       &commonv1.PostalAddress{StreetLine: "1 rue de l'Essai", PostalCode: "75001", City: "PARIS"},
	}
}

// BenchmarkFetch measures the end of the chain (source call, response
// check, minimisation) for a family quotient answer: the whole grant
// without a mask, and the value alone (mask "value").
func BenchmarkFetch(b *testing.B) {
	const svc = "relais.familyquotient.v1.FamilyQuotientService"
	br, err := New(Config{
		Registry: registry.NewMemory(nil, nil),
		Audit:    &audit.Memory{},
		Sources:  map[string]Source{svc: {ID: "bench", Adapter: answerAdapter{benchFamilyQuotient()}}},
	})
	if err != nil {
		b.Fatal(err)
	}
	m, _ := br.catalog.Method("/" + svc + "/GetFamilyQuotient")
	for _, tc := range []struct {
		name  string
		paths []string
	}{{"all", nil}, {"value", []string{"value"}}} {
		b.Run(tc.name, func(b *testing.B) {
			mask, err := m.Mask(tc.paths)
			if err != nil {
				b.Fatal(err)
			}
			req := &familyquotientv1.GetFamilyQuotientRequest{}
			b.ReportAllocs()
			for b.Loop() {
				c := &call{method: m, mask: mask, decision: authz.Decision{Scopes: m.Scopes.Union(scope.Set{})}}
				if _, err := br.fetch(context.Background(), c, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestDelivered: a response violation counts only on a field the
// consumer receives. Today's response rules all accept the zero value a
// cleared field holds, so the end-to-end test cannot reach every branch;
// this one names the paths directly.
func TestDelivered(t *testing.T) {
	m, _ := catalog.Default().Method("/relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient")
	path := func(names ...string) *validate.FieldPath {
		fp := &validate.FieldPath{}
		for _, n := range names {
			fp.Elements = append(fp.Elements, &validate.FieldPathElement{FieldName: proto.String(n)})
		}
		return fp
	}
	mask := func(paths ...string) *catalog.Mask {
		k, err := m.Mask(paths)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	all := m.Scopes
	valueOnly := scope.Of("family_quotient.value")
	for _, tc := range []struct {
		name   string
		scopes scope.Set
		mask   *catalog.Mask
		path   *validate.FieldPath
		want   bool
	}{
		{"the response itself", valueOnly, nil, path(), true},
		{"not personal", valueOnly, mask("value"), path("source", "source_id"), true},
		{"granted, no mask", all, nil, path("children", "birth_date"), true},
		{"not granted", valueOnly, nil, path("children", "birth_date"), false},
		{"granted, outside the mask", all, mask("value"), path("children", "birth_date"), false},
		{"granted, in a nested mask", all, mask("children.birth_date"), path("children", "birth_date"), true},
		{"granted, outside a nested mask", all, mask("children.given_names"), path("children", "birth_date"), false},
		{"the parent of a nested mask", all, mask("children.given_names"), path("children"), true},
		{"unknown to the catalogue", all, nil, path("revenu_fiscal"), false},
	} {
		c := &call{method: m, mask: tc.mask, decision: authz.Decision{Scopes: tc.scopes}}
		if got := delivered(c, tc.path); got != tc.want {
			t.Errorf("%s: delivered = %v, want %v", tc.name, got, tc.want)
		}
	}
}
