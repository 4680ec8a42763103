package catalog_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/internal/golden"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
	optionsv1 "github.com/relais-broker/relais/proto/relais/options/v1"
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

func TestMask(t *testing.T) {
	t.Parallel()
	c := catalog.Default()
	fq, _ := c.Method("/relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient")
	js, _ := c.Method("/relais.jobseeker.v1.JobSeekerStatusService/GetJobSeekerStatus")
	ss, _ := c.Method("/relais.studentstatus.v1.StudentStatusService/GetStudentStatus")
	tests := []struct {
		name   string
		m      *catalog.Method
		paths  []string
		want   string // canonical paths
		scopes string
	}{
		{"no mask is every personal field", fq, nil, "address,beneficiaries,children,reference_month,reference_year,regime,value",
			"family_quotient.address,family_quotient.beneficiaries,family_quotient.children,family_quotient.value"},
		{"top-level", fq, []string{"value"}, "value", "family_quotient.value"},
		{"fields sharing a scope", fq, []string{"value", "reference_month"}, "reference_month,value", "family_quotient.value"},
		{"two scopes", fq, []string{"children", "address"}, "address,children", "family_quotient.address,family_quotient.children"},
		{"nested", fq, []string{"address.postal_code"}, "address.postal_code", "family_quotient.address"},
		{"repeated message", fq, []string{"children.birth_date", "children.given_names"}, "children.birth_date,children.given_names", "family_quotient.children"},
		{"whole field covers a nested path", fq, []string{"address.city", "address", "address.postal_code"}, "address", "family_quotient.address"},
		{"duplicates", fq, []string{"value", "value"}, "value", "family_quotient.value"},
		{"source is allowed and always returned", fq, []string{"source", "value"}, "value", "family_quotient.value"},
		{"source alone asks no scope", fq, []string{"source"}, "", ""},
		{"nested in another service", js, []string{"identity.birth_date", "category_code"}, "category_code,identity.birth_date", "job_seeker.category,job_seeker.identity"},
		{"repeated in another service", ss, []string{"admissions.establishment_uai"}, "admissions.establishment_uai", "student_status.admissions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := tt.m.Mask(tt.paths)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(k.Paths(), ","); got != tt.want {
				t.Errorf("paths = %s, want %s", got, tt.want)
			}
			if got := k.Scopes().String(); got != tt.scopes {
				t.Errorf("scopes = %s, want %s", got, tt.scopes)
			}
		})
	}
}

func TestMaskRefusesBadPaths(t *testing.T) {
	t.Parallel()
	fq, _ := catalog.Default().Method("/relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient")
	tests := []struct {
		name  string
		paths []string
		kind  catalog.ProblemKind
		field string
		desc  string // the whole description
	}{
		{"unknown top-level", []string{"value", "income"}, catalog.UnknownField, "field_mask.paths[1]", `"income": the response has no field "income"`},
		{"unknown nested", []string{"address.zip"}, catalog.UnknownField, "field_mask.paths[0]", `"address.zip": field "address" has no field "zip"`},
		{"scope name is not a path", []string{"family_quotient.value"}, catalog.UnknownField, "field_mask.paths[0]", `"family_quotient.value": the response has no field "family_quotient"`},
		{"json name", []string{"referenceYear"}, catalog.UnknownField, "field_mask.paths[0]", `"referenceYear": the response has no field "referenceYear": mask paths use proto field names ("reference_year")`},
		{"nested json name", []string{"address.postalCode"}, catalog.UnknownField, "field_mask.paths[0]", `"address.postalCode": field "address" has no field "postalCode": mask paths use proto field names ("postal_code")`},
		{"scalar has no sub-field", []string{"value.units"}, catalog.NotNarrowable, "field_mask.paths[0]", `"value.units": field "value" has no sub-fields a mask can name`},
		{"nested scalar has no sub-field", []string{"children.birth_date.year"}, catalog.NotNarrowable, "field_mask.paths[0]", `"children.birth_date.year": field "children.birth_date" has no sub-fields a mask can name`},
		{"source is whole", []string{"source.provider"}, catalog.NotNarrowable, "field_mask.paths[0]", `"source.provider": field "source" is always returned whole`},
		{"empty path", []string{""}, catalog.Malformed, "field_mask.paths[0]", "empty path"},
		{"leading dot", []string{".value"}, catalog.Malformed, "field_mask.paths[0]", `".value": malformed path: empty segment`},
		{"trailing dot", []string{"address."}, catalog.Malformed, "field_mask.paths[0]", `"address.": malformed path: empty segment`},
		{"empty segment", []string{"address..city"}, catalog.Malformed, "field_mask.paths[0]", `"address..city": malformed path: empty segment`},
		{"segment starting with a digit", []string{"1value"}, catalog.Malformed, "field_mask.paths[0]", `"1value": malformed path: a segment is not a field name (letters, digits and underscores)`},
		{"space is not echoed", []string{"val ue"}, catalog.Malformed, "field_mask.paths[0]", "malformed path: a segment is not a field name (letters, digits and underscores)"},
		{"comma list in one path", []string{"value,children"}, catalog.Malformed, "field_mask.paths[0]", "malformed path: a segment is not a field name (letters, digits and underscores)"},
		{"too long is not echoed", []string{strings.Repeat("a", 300)}, catalog.Malformed, "field_mask.paths[0]", "path longer than 256 bytes"},
		{"too many paths", slices.Repeat([]string{"value"}, catalog.MaxMaskPaths+1), catalog.TooManyPaths, "field_mask", "more than 100 paths"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := fq.Mask(tt.paths)
			var merr *catalog.MaskError
			if !errors.As(err, &merr) || k != nil {
				t.Fatalf("mask = %v, err = %v", k, err)
			}
			if len(merr.Problems) != 1 {
				t.Fatalf("problems = %+v", merr.Problems)
			}
			p := merr.Problems[0]
			if p.Kind != tt.kind || p.Field() != tt.field || p.Description() != tt.desc {
				t.Errorf("problem = %s / %s / %s", p.Kind, p.Field(), p.Description())
			}
			for _, path := range tt.paths {
				if path != "" && strings.Contains(err.Error(), path) {
					t.Errorf("error text %q repeats the path", err)
				}
			}
		})
	}
	t.Run("every bad path is reported", func(t *testing.T) {
		_, err := fq.Mask([]string{"income", "value", "a..b", "children.age"})
		var merr *catalog.MaskError
		if !errors.As(err, &merr) {
			t.Fatal(err)
		}
		var fields []string
		for _, p := range merr.Problems {
			fields = append(fields, p.Field())
		}
		if got := strings.Join(fields, " "); got != "field_mask.paths[0] field_mask.paths[2] field_mask.paths[3]" {
			t.Errorf("fields = %s", got)
		}
		if got := err.Error(); got != "field mask path 0: unknown field (and 2 more)" {
			t.Errorf("error = %q", got)
		}
	})
}

func TestFieldTree(t *testing.T) {
	t.Parallel()
	fq, _ := catalog.Default().Method("/relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient")
	children, _ := fq.Field("children")
	var paths []string
	for _, f := range children.Fields {
		if f.Scope != "family_quotient.children" {
			t.Errorf("%s has scope %q, want its top-level field's", f.Path, f.Scope)
		}
		paths = append(paths, f.Path)
	}
	if got := strings.Join(paths, ","); got != "children.birth_name,children.usage_name,children.given_names,children.birth_date,children.sex" {
		t.Errorf("children sub-fields = %s", got)
	}
	if src, _ := fq.Field("source"); len(src.Fields) != 0 {
		t.Error("the not-personal source must not be narrowable")
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

// TestRefusesScopeOnNestedField: the scope options are read on top-level
// fields only, so a nested one (a finer grant nobody would enforce) makes
// the service unusable rather than being ignored.
func TestRefusesScopeOnNestedField(t *testing.T) {
	t.Parallel()
	fdp := protodesc.ToFileDescriptorProto(familyquotientv1.File_relais_familyquotient_v1_family_quotient_proto)
	opts := &descriptorpb.FieldOptions{}
	proto.SetExtension(opts, optionsv1.E_Scope, "family_quotient.postal_code")
	fdp.MessageType = append(fdp.MessageType, &descriptorpb.DescriptorProto{
		Name: proto.String("Address"),
		Field: []*descriptorpb.FieldDescriptorProto{{
			Name: proto.String("postal_code"), JsonName: proto.String("postalCode"), Number: proto.Int32(1),
			Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(), Options: opts,
		}},
	})
	for _, msg := range fdp.MessageType {
		if msg.GetName() == "GetFamilyQuotientResponse" {
			msg.Field[7].TypeName = proto.String(".relais.familyquotient.v1.Address")
		}
	}
	fdp.Name = proto.String("test/nested.proto")
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	_, err = catalog.New(fd.Services().Get(0))
	if err == nil || !strings.Contains(err.Error(), "nested field relais.familyquotient.v1.Address.postal_code carries a scope option") {
		t.Fatalf("a nested scope option: err = %v", err)
	}
}
