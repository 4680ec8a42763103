package model

import (
	"strings"
	"testing"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// build compiles a one-message proto3 file whose field "f" (a string, or
// a map when mapField) carries fr and whose message carries mr.
func build(t *testing.T, fr *validate.FieldRules, mr *validate.MessageRules, mapField bool) protoreflect.MessageDescriptor {
	t.Helper()
	fopts := &descriptorpb.FieldOptions{}
	if fr != nil {
		proto.SetExtension(fopts, validate.E_Field, fr)
	}
	mopts := &descriptorpb.MessageOptions{}
	if mr != nil {
		proto.SetExtension(mopts, validate.E_Message, mr)
	}
	field := &descriptorpb.FieldDescriptorProto{
		Name: proto.String("f"), Number: proto.Int32(1), JsonName: proto.String("f"),
		Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
		Type:  descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(), Options: fopts,
	}
	msg := &descriptorpb.DescriptorProto{Name: proto.String("M"), Field: []*descriptorpb.FieldDescriptorProto{field}, Options: mopts}
	if mapField {
		field.Label = descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()
		field.Type = descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum()
		field.TypeName = proto.String(".fvtest.M.FEntry")
		msg.NestedType = []*descriptorpb.DescriptorProto{{
			Name: proto.String("FEntry"),
			Field: []*descriptorpb.FieldDescriptorProto{
				{Name: proto.String("key"), Number: proto.Int32(1), JsonName: proto.String("key"), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()},
				{Name: proto.String("value"), Number: proto.Int32(2), JsonName: proto.String("value"), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()},
			},
			Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)},
		}}
	}
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name: proto.String("fvtest/m.proto"), Package: proto.String("fvtest"), Syntax: proto.String("proto3"),
		Dependency:  []string{"buf/validate/validate.proto"},
		MessageType: []*descriptorpb.DescriptorProto{msg},
	}, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	return fd.Messages().Get(0)
}

// TestLoadRefusesWhatItDoesNotKnow: a rule fastvalid has no Go check for
// fails the generator instead of being skipped.
func TestLoadRefusesWhatItDoesNotKnow(t *testing.T) {
	cases := []struct {
		name string
		fr   *validate.FieldRules
		mr   *validate.MessageRules
		map_ bool
		want string
	}{
		{"well-known string format", validate.FieldRules_builder{String: validate.StringRules_builder{Email: proto.Bool(true)}.Build()}.Build(), nil, false, "not supported by fastvalid"},
		{"field cel", validate.FieldRules_builder{Cel: []*validate.Rule{validate.Rule_builder{Id: proto.String("x"), Expression: proto.String("this != ''")}.Build()}}.Build(), nil, false, "FieldRules.cel is not supported"},
		{"unknown message cel", nil, validate.MessageRules_builder{Cel: []*validate.Rule{validate.Rule_builder{Id: proto.String("m.new_rule"), Expression: proto.String("true")}.Build()}}.Build(), false, "has no Go implementation"},
		{"changed message cel", nil, validate.MessageRules_builder{Cel: []*validate.Rule{validate.Rule_builder{Id: proto.String("subject.birth_place_required"), Expression: proto.String("true")}.Build()}}.Build(), false, "changed"},
		{"rule of another type", validate.FieldRules_builder{Int32: validate.Int32Rules_builder{Gt: proto.Int32(1)}.Build()}.Build(), nil, false, "rule int32 on a string field"},
		{"map key format", validate.FieldRules_builder{Map: validate.MapRules_builder{Keys: validate.FieldRules_builder{String: validate.StringRules_builder{Email: proto.Bool(true)}.Build()}.Build()}.Build()}.Build(), nil, true, "keys: string: rule StringRules.email is not supported"},
		{"string rule on a map", validate.FieldRules_builder{String: validate.StringRules_builder{MinLen: proto.Uint64(1)}.Build()}.Build(), nil, true, "rule string on a map field"},
		{"message oneof on unknown field", nil, validate.MessageRules_builder{Oneof: []*validate.MessageOneofRule{validate.MessageOneofRule_builder{Fields: []string{"nope"}}.Build()}}.Build(), false, "unknown field"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadMessages(build(t, c.fr, c.mr, c.map_))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("LoadMessages: %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// TestLoadSupported: supported rules on an unlinked message load, and only
// fail for want of a Go type (the control for the refusals above).
func TestLoadSupported(t *testing.T) {
	fr := validate.FieldRules_builder{String: validate.StringRules_builder{MinLen: proto.Uint64(1), Pattern: proto.String("^a")}.Build()}.Build()
	_, err := LoadMessages(build(t, fr, nil, false))
	if err == nil || !strings.Contains(err.Error(), "no generated Go type") {
		t.Fatalf("LoadMessages: %v", err)
	}
}

// TestLoadDataAPI: the data API loads, every request and response is
// checked, and every CEL rule the protos use is bound.
func TestLoadDataAPI(t *testing.T) {
	s, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Roots) != 28 {
		t.Fatalf("%d roots, want 28 (14 services)", len(s.Roots))
	}
	for _, r := range s.Roots {
		if !r.Checked {
			t.Errorf("%s has no checks", r.Desc.FullName())
		}
	}
	used := map[string]bool{}
	for _, m := range s.Messages {
		for _, c := range m.CEL {
			used[c.Rule.GetId()] = true
		}
		for _, f := range m.Fields {
			for _, v := range []*Value{f.Value, f.Items} {
				if v != nil {
					for _, c := range v.CEL {
						used[c.Rule.GetId()] = true
					}
				}
			}
		}
	}
	for _, k := range KnownCEL {
		if !used[k.ID] {
			t.Errorf("KnownCEL %s is used by no data message", k.ID)
		}
	}
}
