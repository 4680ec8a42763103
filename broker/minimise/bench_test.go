// Benchmarks of the per-call minimisation; each iteration clones the
// response, as Apply works in place.
package minimise_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/minimise"
	"github.com/relais-broker/relais/broker/scope"
)

func BenchmarkCloneOnly(b *testing.B) {
	full := fullFamilyQuotient()
	b.ReportAllocs()
	for b.Loop() {
		_ = proto.Clone(full)
	}
}

func BenchmarkApply(b *testing.B) {
	m, _ := catalog.Default().Method("/relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient")
	full := fullFamilyQuotient()
	for _, bc := range []struct {
		name    string
		allowed scope.Set
	}{{"all", m.Scopes}, {"value", scope.Of("family_quotient.value")}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				minimise.Apply(m, proto.Clone(full), bc.allowed)
			}
		})
	}
}

// BenchmarkApplyMask is the broker's per-call minimisation (clone
// included: subtract BenchmarkCloneOnly).
func BenchmarkApplyMask(b *testing.B) {
	m, _ := catalog.Default().Method("/relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient")
	full := fullFamilyQuotient()
	for _, bc := range []struct {
		name    string
		allowed scope.Set
		paths   []string
	}{
		{"all/nomask", m.Scopes, nil},
		{"value/nomask", scope.Of("family_quotient.value"), nil},
		{"all/value", m.Scopes, []string{"value"}},
		{"all/nested", m.Scopes, []string{"children.birth_date", "address.postal_code"}},
	} {
		mask, err := m.Mask(bc.paths)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				minimise.ApplyMask(m, proto.Clone(full), bc.allowed, mask)
			}
		})
	}
}
