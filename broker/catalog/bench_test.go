package catalog_test

import (
	"testing"

	"github.com/relais-broker/relais/broker/catalog"
)

func BenchmarkMask(b *testing.B) {
	m, _ := catalog.Default().Method("/relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient")
	for _, bc := range []struct {
		name  string
		paths []string
	}{{"none", nil}, {"value", []string{"value"}}, {"two", []string{"children", "value"}}, {"nested", []string{"children.birth_date", "address.postal_code"}}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.Mask(bc.paths); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
