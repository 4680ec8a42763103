package callchain

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
)

func validRequest(t *testing.T) []byte {
	t.Helper()
	b, err := proto.Marshal(&familyquotientv1.GetFamilyQuotientRequest{
		AccessContext: &commonv1.AccessContext{Recipient: "21990000100005", Purpose: "cantine"},
		Subject:       &commonv1.SubjectIdentity{BirthName: "Alpha", GivenNames: []string{"Test", "Deux"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLocateWire(t *testing.T) {
	t.Parallel()
	md := (&familyquotientv1.GetFamilyQuotientRequest{}).ProtoReflect().Descriptor()
	valid := validRequest(t)
	tests := []struct {
		name, path string
		body       []byte
		problem    bool
	}{
		{"valid", "", valid, false},
		{"invalid utf-8 nested", "access_context.recipient", []byte("\x0a\x05\x0a\x03\xff\xfe\xfd"), true},
		{"invalid utf-8 in the second given name", "subject.given_names[1]", []byte("\x12\x0a\x1a\x02ok\x1a\x04\xff\xfe\xfd\xfc"), true},
		{"truncated sub-message", "subject", valid[:len(valid)-2], true},
		{"broken tag", "", []byte{0x80}, true},
		{"deep unknown groups", "", bytes.Repeat([]byte{0x7b}, 12000), true},
		{"unknown field skipped, then a bad one", "subject.birth_name", []byte("\x78\x01\x12\x03\x0a\x01\xff"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path, problem := locateWire(md, tt.body, 0)
			if path != tt.path || (problem != "") != tt.problem {
				t.Fatalf("locateWire = %q, %q; want %q (problem %v)", path, problem, tt.path, tt.problem)
			}
		})
	}
}

func TestLocateJSON(t *testing.T) {
	t.Parallel()
	md := (&familyquotientv1.GetFamilyQuotientRequest{}).ProtoReflect().Descriptor()
	tests := []struct {
		name, body, path string
		problem          bool
	}{
		{"valid", `{"subject":{"birth_name":"Alpha"}}`, "", false},
		{"json name", `{"subject":{"birthName":12}}`, "subject.birth_name", true},
		{"list element", `{"subject":{"given_names":["a",3]}}`, "subject.given_names", true},
		{"well-known type is a leaf", `{"field_mask":12}`, "field_mask", true},
		{"unknown field is not echoed", `{"DUPONT":1}`, "", true},
		{"not json", `{"subject":`, "", true},
		{"not an object", `[1]`, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path, problem := locateJSON(md, []byte(tt.body), 0)
			if path != tt.path || (problem != "") != tt.problem {
				t.Fatalf("locateJSON = %q, %q; want %q (problem %v)", path, problem, tt.path, tt.problem)
			}
			if bytes.Contains([]byte(problem), []byte("DUPONT")) {
				t.Fatal("the caller's text was echoed")
			}
		})
	}
}
