package fastvalid

import (
	"slices"
	"time"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// field is a checked field: its descriptor and the path element naming it,
// built once and shared by violations as protovalidate shares its own.
type field struct {
	desc protoreflect.FieldDescriptor
	elem *validate.FieldPathElement
}

// newField describes field number n of the message m.
func newField(m proto.Message, n protoreflect.FieldNumber) *field {
	fd := m.ProtoReflect().Descriptor().Fields().ByNumber(n)
	if fd == nil {
		panic("fastvalid: stale rules_gen.go: no field " + string(m.ProtoReflect().Descriptor().FullName()))
	}
	return &field{desc: fd, elem: pathElement(fd)}
}

// site is where a rule lives in buf.validate.FieldRules: the rule path of
// its violations and the leaf rule descriptor.
type site struct {
	path []*validate.FieldPathElement
	desc protoreflect.FieldDescriptor
}

// newSite builds the rule path through descs (FieldRules.string,
// StringRules.min_len…); the last one is the rule.
func newSite(descs ...protoreflect.FieldDescriptor) *site {
	s := &site{desc: descs[len(descs)-1]}
	for _, d := range descs {
		s.path = append(s.path, pathElement(d))
	}
	return s
}

// rule returns the field name of a rules message's descriptor.
func rule(m proto.Message, name protoreflect.Name) protoreflect.FieldDescriptor {
	fd := m.ProtoReflect().Descriptor().Fields().ByName(name)
	if fd == nil {
		panic("fastvalid: unknown rule " + string(name))
	}
	return fd
}

var (
	fieldRules    = (*validate.FieldRules)(nil)
	stringRules   = (*validate.StringRules)(nil)
	enumRules     = (*validate.EnumRules)(nil)
	repeatedRules = (*validate.RepeatedRules)(nil)
	mapRules      = (*validate.MapRules)(nil)

	requiredSite = newSite(rule(fieldRules, "required"))
	ruleTrue     = protoreflect.ValueOfBool(true)
)

// pathElement is protovalidate's path element for a field or a rule.
func pathElement(fd protoreflect.FieldDescriptor) *validate.FieldPathElement {
	name := string(fd.Name())
	if fd.IsExtension() {
		name = fd.TextName()
	}
	return validate.FieldPathElement_builder{
		FieldNumber: proto.Int32(int32(fd.Number())),
		FieldType:   descriptorpb.FieldDescriptorProto_Type(fd.Kind()).Enum(),
		FieldName:   proto.String(name),
	}.Build()
}

// state collects the violations of one Validate call. Field paths are
// built leaf first as the checks unwind and reversed by result, as
// protovalidate does.
type state struct {
	vs    []*protovalidate.Violation
	nowFn func() time.Time
}

// now is the validation's clock (CEL's now).
func (s *state) now() time.Time {
	if s.nowFn != nil {
		return s.nowFn()
	}
	return time.Now()
}

// add records a standard or predefined rule violation on f (nil for a list
// element, whose path the list adds).
func (s *state) add(f *field, st *site, id, msg string, fv, rv protoreflect.Value) {
	var fp *validate.FieldPath
	var fd protoreflect.FieldDescriptor
	if f != nil {
		fp = validate.FieldPath_builder{Elements: []*validate.FieldPathElement{f.elem}}.Build()
		fd = f.desc
	}
	s.vs = append(s.vs, &protovalidate.Violation{
		Proto: validate.Violation_builder{
			Field:   fp,
			Rule:    validate.FieldPath_builder{Elements: st.path}.Build(),
			RuleId:  proto.String(id),
			Message: proto.String(msg),
		}.Build(),
		FieldValue:      fv,
		FieldDescriptor: fd,
		RuleValue:       rv,
		RuleDescriptor:  st.desc,
	})
}

// required records a missing required field.
func (s *state) required(f *field) {
	s.vs = append(s.vs, &protovalidate.Violation{
		Proto: validate.Violation_builder{
			Field:   validate.FieldPath_builder{Elements: []*validate.FieldPathElement{f.elem}}.Build(),
			Rule:    validate.FieldPath_builder{Elements: requiredSite.path}.Build(),
			RuleId:  proto.String("required"),
			Message: proto.String("value is required"),
		}.Build(),
		FieldDescriptor: f.desc,
		RuleValue:       ruleTrue,
		RuleDescriptor:  requiredSite.desc,
	})
}

// oneofRequired records an unset (buf.validate.oneof).required oneof.
func (s *state) oneofRequired(name string) {
	s.vs = append(s.vs, &protovalidate.Violation{
		Proto: validate.Violation_builder{
			Field: validate.FieldPath_builder{Elements: []*validate.FieldPathElement{
				validate.FieldPathElement_builder{FieldName: proto.String(name)}.Build(),
			}}.Build(),
			RuleId:  proto.String("required"),
			Message: proto.String("exactly one field is required in oneof"),
		}.Build(),
	})
}

// message records a message-level violation: a (buf.validate.message).oneof
// rule or a message CEL rule, which have neither field nor rule path.
func (s *state) message(id, msg string) {
	s.vs = append(s.vs, &protovalidate.Violation{
		Proto: validate.Violation_builder{
			RuleId:  proto.String(id),
			Message: proto.String(msg),
		}.Build(),
	})
}

// nest prefixes f to the paths of the violations recorded since mark (the
// violations of the message f holds).
func (s *state) nest(mark int, f *field) {
	for _, v := range s.vs[mark:] {
		appendElem(v, f.elem)
	}
}

// nestIndex prefixes element i of the list f to the paths of the
// violations recorded since mark.
func (s *state) nestIndex(mark int, f *field, i int) {
	if len(s.vs) == mark {
		return
	}
	e := validate.FieldPathElement_builder{
		FieldNumber: proto.Int32(f.elem.GetFieldNumber()),
		FieldType:   f.elem.GetFieldType().Enum(),
		FieldName:   proto.String(f.elem.GetFieldName()),
		Index:       proto.Uint64(uint64(i)),
	}.Build()
	for _, v := range s.vs[mark:] {
		appendElem(v, e)
	}
}

// forKey marks the violations recorded since mark as being about a map key.
func (s *state) forKey(mark int) {
	for _, v := range s.vs[mark:] {
		v.Proto.SetForKey(true)
	}
}

// nestKey prefixes the entry key of the map f to the paths of the
// violations recorded since mark.
func (s *state) nestKey(mark int, f *field, key protoreflect.MapKey) {
	if len(s.vs) == mark {
		return
	}
	b := validate.FieldPathElement_builder{
		FieldNumber: proto.Int32(f.elem.GetFieldNumber()),
		FieldType:   f.elem.GetFieldType().Enum(),
		FieldName:   proto.String(f.elem.GetFieldName()),
		KeyType:     descriptorpb.FieldDescriptorProto_Type(f.desc.MapKey().Kind()).Enum(),
		ValueType:   descriptorpb.FieldDescriptorProto_Type(f.desc.MapValue().Kind()).Enum(),
	}
	switch f.desc.MapKey().Kind() {
	case protoreflect.BoolKind:
		b.BoolKey = proto.Bool(key.Bool())
	case protoreflect.StringKind:
		b.StringKey = proto.String(key.String())
	case protoreflect.Uint32Kind, protoreflect.Uint64Kind, protoreflect.Fixed32Kind, protoreflect.Fixed64Kind:
		b.UintKey = proto.Uint64(key.Uint())
	default:
		b.IntKey = proto.Int64(key.Int())
	}
	e := b.Build()
	for _, v := range s.vs[mark:] {
		appendElem(v, e)
	}
}

func appendElem(v *protovalidate.Violation, e *validate.FieldPathElement) {
	if v.Proto.GetField() == nil {
		v.Proto.SetField(&validate.FieldPath{})
	}
	v.Proto.GetField().SetElements(append(v.Proto.GetField().GetElements(), e))
}

// result is the call's error: nil, or the violations with their field
// paths root first.
func (s *state) result() error {
	if len(s.vs) == 0 {
		return nil
	}
	for _, v := range s.vs {
		if fp := v.Proto.GetField(); fp != nil {
			slices.Reverse(fp.GetElements())
		}
	}
	return &protovalidate.ValidationError{Violations: s.vs}
}

// listValue builds the rule value of an in/not_in rule as protovalidate
// does: the list field of a fresh rules message.
func listValue(m proto.Message, fd protoreflect.FieldDescriptor, vals ...protoreflect.Value) protoreflect.Value {
	l := m.ProtoReflect().Mutable(fd).List()
	for _, v := range vals {
		l.Append(v)
	}
	return protoreflect.ValueOfList(l)
}

// orEmpty reads a nil message (a nil list element or oneof member) as the
// empty message, as protoreflect does.
func orEmpty[T any](p *T) *T {
	if p == nil {
		return new(T)
	}
	return p
}

// unique says whether a list has no repeated element (== as
// protovalidate's native check: NaNs are distinct).
func unique[T comparable](l []T) bool {
	for i := 1; i < len(l); i++ {
		for j := 0; j < i; j++ {
			if l[i] == l[j] {
				return false
			}
		}
	}
	return true
}
