package catalog_test

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/internal/golden"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
)

func TestDocsInStep(t *testing.T) {
	golden.Check(t, "../../docs/scopes.md", catalog.Default().Markdown())
}

func TestDefaultHasFiveServices(t *testing.T) {
	t.Parallel()
	c := catalog.Default()
	if n := len(c.Services()); n < 5 {
		t.Fatalf("%d services, want at least 5", n)
	}
	m, ok := c.Method("/relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient")
	if !ok {
		t.Fatal("family quotient method missing")
	}
	for _, s := range []string{"family_quotient.value", "family_quotient.children", "family_quotient.beneficiaries", "family_quotient.address"} {
		if !m.Scopes.Has(s) {
			t.Errorf("scope %s missing", s)
		}
	}
	if f, _ := m.Field("source"); !f.NotPersonal {
		t.Error("source must be not_personal")
	}
}

func TestScopesForMask(t *testing.T) {
	t.Parallel()
	m, _ := catalog.Default().Method("/relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient")
	tests := []struct {
		name    string
		paths   []string
		want    string
		wantErr bool
	}{
		{"empty mask is everything", nil, "family_quotient.address,family_quotient.beneficiaries,family_quotient.children,family_quotient.value", false},
		{"fields sharing a scope", []string{"value", "reference_month"}, "family_quotient.value", false},
		{"two scopes", []string{"children", "address"}, "family_quotient.address,family_quotient.children", false},
		{"unknown field", []string{"income"}, "", true},
		{"not personal field", []string{"source"}, "", true},
		{"scope name is not a field name", []string{"family_quotient.value"}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := m.ScopesForMask(tt.paths)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			if err == nil && got.String() != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

// TestRefusesUnscopedField proves the catalogue fails closed: a response
// field with neither a scope nor not_personal makes the service unusable.
func TestRefusesUnscopedField(t *testing.T) {
	t.Parallel()
	fdp := protodesc.ToFileDescriptorProto(familyquotientv1.File_relais_familyquotient_v1_family_quotient_proto)
	for _, msg := range fdp.MessageType {
		if msg.GetName() == "GetFamilyQuotientResponse" {
			msg.Field[1].Options = &descriptorpb.FieldOptions{} // drop the scope of "value"
		}
	}
	fdp.Name = proto.String("test/unscoped.proto")
	fdp.Package = proto.String("relais.familyquotient.v1")
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	_, err = catalog.New(fd.Services().Get(0))
	if err == nil || !strings.Contains(err.Error(), "field value has neither a scope nor not_personal") {
		t.Fatalf("a response field without scope: err = %v", err)
	}
}
