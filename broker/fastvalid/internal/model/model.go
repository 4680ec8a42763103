// Package model reads the protovalidate annotations of the data API's
// messages into a plain model that the fastvalid generator turns into Go
// checks and the differential tests use to bias their inputs. It is strict:
// an annotation or a CEL rule it does not know is an error, so a rule added
// to a proto can never be silently left unchecked by the generated code.
package model

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/relais-broker/relais/broker/catalog"
)

// Sig is the Go signature of the hand-written function replacing a CEL rule.
type Sig int

const (
	// SigString is func(v string) string: the violation message or "".
	SigString Sig = iota + 1
	// SigStringNow is func(v string, s *state) string: like SigString, with
	// the validation's clock (CEL's now).
	SigStringNow
	// SigMessageBool is func(m *T) bool: false is a violation carrying the
	// rule's message.
	SigMessageBool
)

// CELImpl binds one CEL rule, by id and by the SHA-256 of its exact
// expression, to its hand-written Go replacement in package fastvalid.
// Changing the expression in the proto changes the hash and makes the
// generator fail until the Go function (and this hash) follow.
type CELImpl struct {
	ID         string
	ExprSHA256 string
	Func       string
	Sig        Sig
}

// KnownCEL lists every CEL rule the data API uses.
var KnownCEL = []CELImpl{
	{ID: "string.siret", ExprSHA256: "2b688359b2052277a3fb7f5773db6ce9ab8a5eb5057f76ca348f114590453608", Func: "celSiret", Sig: SigString},
	{ID: "string.birth_date", ExprSHA256: "3f40f0e10f0113bfe7647bad7d13a075b3d514ba16de6f659fb5ef81ab532f33", Func: "celBirthDate", Sig: SigStringNow},
	{ID: "string.calendar_date", ExprSHA256: "a485e848cdfe8767df0d6cfa8d4566b74e03052de6cae452a122209bb01b3940", Func: "celCalendarDate", Sig: SigString},
	{ID: "subject.birth_place_required", ExprSHA256: "e3b80772ff410d1f6ad259b753c37dec98da81d7c43fa4cb9236273184182d86", Func: "celBirthPlaceRequired", Sig: SigMessageBool},
}

// ExprHash is the hash KnownCEL records for an expression.
func ExprHash(expr string) string {
	h := sha256.Sum256([]byte(expr))
	return hex.EncodeToString(h[:])
}

func lookupCEL(r *validate.Rule) (CELImpl, error) {
	for _, k := range KnownCEL {
		if k.ID != r.GetId() {
			continue
		}
		if got := ExprHash(r.GetExpression()); got != k.ExprSHA256 {
			return CELImpl{}, fmt.Errorf("cel rule %q changed (expression sha256 %s, fastvalid knows %s): update its Go function and model.KnownCEL", r.GetId(), got, k.ExprSHA256)
		}
		return k, nil
	}
	return CELImpl{}, fmt.Errorf("cel rule %q has no Go implementation in fastvalid: write one and add it to model.KnownCEL", r.GetId())
}

// Set is the model of every message reachable from the data API.
type Set struct {
	// Messages in a stable order (by full name).
	Messages []*Message
	// Roots are the request and response messages of the typed services.
	Roots  []*Message
	byName map[protoreflect.FullName]*Message
}

// Message is one message type and its rules.
type Message struct {
	Desc   protoreflect.MessageDescriptor
	GoType reflect.Type // the generated struct type (not the pointer)
	// PkgPath and PkgName locate the generated Go package.
	PkgPath, PkgName string
	CEL              []CELRule
	MsgOneofs        []MsgOneof
	Oneofs           []Oneof
	Fields           []*Field
	// Checked says whether the message or a message under it has a rule:
	// only checked messages get a generated function.
	Checked bool
}

// CELRule is a CEL rule bound to its Go replacement.
type CELRule struct {
	Rule *validate.Rule
	Impl CELImpl
	// Ext is the predefined rule's extension, nil for message rules.
	Ext protoreflect.ExtensionTypeDescriptor
}

// MsgOneof is a (buf.validate.message).oneof rule.
type MsgOneof struct {
	Fields   []*Field
	Required bool
}

// Oneof is a proto oneof with (buf.validate.oneof).required.
type Oneof struct {
	Desc   protoreflect.OneofDescriptor
	GoName string
}

// Field is one field and its rules.
type Field struct {
	Desc     protoreflect.FieldDescriptor
	GoName   string
	Required bool
	// Ignore is the effective ignore setting (fields named by a message
	// oneof rule ignore their zero value, as protovalidate does).
	Ignore validate.Ignore
	// Value are the rules of a singular field or of the list itself.
	Value *Value
	// Items are the rules of each element of a repeated field.
	Items *Value
	// ItemsIgnore is the ignore setting of the elements' rules.
	ItemsIgnore validate.Ignore
	// Map are the pair-count rules of a map; Keys and Vals the rules of
	// its keys and values, with their ignore settings.
	Map                    *validate.MapRules
	Keys, Vals             *Value
	KeysIgnore, ValsIgnore validate.Ignore
	// Msg is the message of a message-typed field (or of its elements).
	Msg *Message
}

// Value is the rules on one value (a field, or a list element).
type Value struct {
	String   *validate.StringRules
	Numeric  protoreflect.Message // Int32Rules, DoubleRules…
	NumKind  string               // "int32", "double"… (the FieldRules field name)
	Enum     *validate.EnumRules
	Repeated *validate.RepeatedRules
	CEL      []CELRule // predefined rules, by extension number
}

// Empty says whether v checks nothing.
func (v *Value) Empty() bool {
	return v == nil || (v.String == nil && v.Numeric == nil && v.Enum == nil && v.Repeated == nil && len(v.CEL) == 0)
}

// Load builds the model of the typed services' requests and responses and
// every message under them.
func Load() (*Set, error) {
	c, err := catalog.New(catalog.SourceServices()...)
	if err != nil {
		return nil, err
	}
	var roots []protoreflect.MessageDescriptor
	for _, m := range c.Methods() {
		roots = append(roots, m.Input.Descriptor(), m.Output.Descriptor())
	}
	return LoadMessages(roots...)
}

// LoadMessages builds the model of the given messages and every message
// under them.
func LoadMessages(roots ...protoreflect.MessageDescriptor) (*Set, error) {
	s := &Set{byName: map[protoreflect.FullName]*Message{}}
	for _, d := range roots {
		m, err := s.message(d)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(s.Roots, m) {
			s.Roots = append(s.Roots, m)
		}
	}
	// A message is checked if it or a message under it has a rule
	// (a fixed point, so that recursive messages are handled).
	for changed := true; changed; {
		changed = false
		for _, m := range s.Messages {
			if m.Checked {
				continue
			}
			if m.ownRules() {
				m.Checked, changed = true, true
				continue
			}
			for _, f := range m.Fields {
				if f.Msg != nil && f.Msg.Checked && f.Ignore != validate.Ignore_IGNORE_ALWAYS {
					m.Checked, changed = true, true
					break
				}
			}
		}
	}
	sort.Slice(s.Messages, func(i, j int) bool { return s.Messages[i].Desc.FullName() < s.Messages[j].Desc.FullName() })
	for _, m := range s.Messages {
		if m.Checked && m.GoType == nil {
			return nil, fmt.Errorf("%s: no generated Go type is linked", m.Desc.FullName())
		}
	}
	return s, nil
}

func (m *Message) ownRules() bool {
	if len(m.CEL) > 0 || len(m.MsgOneofs) > 0 || len(m.Oneofs) > 0 {
		return true
	}
	for _, f := range m.Fields {
		if f.Ignore == validate.Ignore_IGNORE_ALWAYS {
			continue
		}
		if f.Required || !f.Value.Empty() || !f.Items.Empty() || f.Map != nil || !f.Keys.Empty() || !f.Vals.Empty() {
			return true
		}
	}
	return false
}

// ByName returns the model of a message.
func (s *Set) ByName(n protoreflect.FullName) *Message { return s.byName[n] }

func (s *Set) message(d protoreflect.MessageDescriptor) (*Message, error) {
	if m, ok := s.byName[d.FullName()]; ok {
		return m, nil
	}
	m := &Message{Desc: d}
	s.byName[d.FullName()] = m
	s.Messages = append(s.Messages, m)
	if mt, err := protoregistry.GlobalTypes.FindMessageByName(d.FullName()); err == nil {
		t := reflect.TypeOf(mt.Zero().Interface())
		if t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct {
			m.GoType = t.Elem()
			m.PkgPath = m.GoType.PkgPath()
			m.PkgName = goPackageName(d.ParentFile())
		}
	}
	if err := s.fill(m); err != nil {
		return nil, fmt.Errorf("%s: %w", d.FullName(), err)
	}
	return m, nil
}

func goPackageName(f protoreflect.FileDescriptor) string {
	gp := f.Options().(*descriptorpb.FileOptions).GetGoPackage()
	if i := strings.LastIndexByte(gp, ';'); i >= 0 {
		return gp[i+1:]
	}
	return gp[strings.LastIndexByte(gp, '/')+1:]
}

func (s *Set) fill(m *Message) error {
	d := m.Desc
	var mr *validate.MessageRules
	if opts := d.Options(); opts != nil && proto.HasExtension(opts, validate.E_Message) {
		mr = proto.GetExtension(opts, validate.E_Message).(*validate.MessageRules)
		if err := strict(mr, "cel", "oneof"); err != nil {
			return fmt.Errorf("message rules: %w", err)
		}
		for _, r := range mr.GetCel() {
			impl, err := lookupCEL(r)
			if err != nil {
				return err
			}
			if impl.Sig != SigMessageBool {
				return fmt.Errorf("cel rule %q: %s is not a message rule function", r.GetId(), impl.Func)
			}
			m.CEL = append(m.CEL, CELRule{Rule: r, Impl: impl})
		}
	}
	for i := 0; i < d.Oneofs().Len(); i++ {
		od := d.Oneofs().Get(i)
		opts := od.Options()
		if opts == nil || !proto.HasExtension(opts, validate.E_Oneof) {
			continue
		}
		or := proto.GetExtension(opts, validate.E_Oneof).(*validate.OneofRules)
		if err := strict(or, "required"); err != nil {
			return fmt.Errorf("oneof %s: %w", od.Name(), err)
		}
		if or.GetRequired() {
			m.Oneofs = append(m.Oneofs, Oneof{Desc: od, GoName: goCamelCase(string(od.Name()))})
		}
	}
	inMsgOneof := map[protoreflect.Name]bool{}
	for _, r := range mr.GetOneof() {
		for _, n := range r.GetFields() {
			inMsgOneof[protoreflect.Name(n)] = true
		}
	}
	for i := 0; i < d.Fields().Len(); i++ {
		fd := d.Fields().Get(i)
		f, err := s.field(m, fd, inMsgOneof[fd.Name()])
		if err != nil {
			return fmt.Errorf("field %s: %w", fd.Name(), err)
		}
		m.Fields = append(m.Fields, f)
	}
	for _, r := range mr.GetOneof() {
		if len(r.GetFields()) == 0 {
			return fmt.Errorf("message oneof rule without fields")
		}
		mo := MsgOneof{Required: r.GetRequired()}
		for _, n := range r.GetFields() {
			fd := d.Fields().ByName(protoreflect.Name(n))
			if fd == nil {
				return fmt.Errorf("message oneof rule names unknown field %q", n)
			}
			for _, prev := range mo.Fields {
				if prev.Desc == fd {
					return fmt.Errorf("message oneof rule names %q twice", n)
				}
			}
			mo.Fields = append(mo.Fields, m.Fields[fd.Index()])
		}
		m.MsgOneofs = append(m.MsgOneofs, mo)
	}
	return nil
}

// elemMessage is the message a field holds: its type, its elements' or
// its map values'; nil for scalars.
func elemMessage(fd protoreflect.FieldDescriptor) protoreflect.MessageDescriptor {
	if fd.IsMap() {
		return fd.MapValue().Message()
	}
	return fd.Message()
}

func (s *Set) field(m *Message, fd protoreflect.FieldDescriptor, inMsgOneof bool) (*Field, error) {
	f := &Field{Desc: fd}
	if m.GoType != nil {
		name, err := goFieldName(m.GoType, fd)
		if err != nil {
			return nil, err
		}
		f.GoName = name
	}
	if fd.Kind() == protoreflect.GroupKind {
		return nil, fmt.Errorf("group fields are not supported by fastvalid")
	}
	var fr *validate.FieldRules
	if opts := fd.Options(); opts != nil && proto.HasExtension(opts, validate.E_Field) {
		fr = proto.GetExtension(opts, validate.E_Field).(*validate.FieldRules)
	}
	if fr != nil {
		if err := strict(fr, "required", "ignore", "string", "enum", "repeated", "map",
			"int32", "int64", "uint32", "uint64", "sint32", "sint64", "fixed32", "fixed64",
			"sfixed32", "sfixed64", "float", "double"); err != nil {
			return nil, err
		}
		f.Required = fr.GetRequired()
		f.Ignore = fr.GetIgnore()
		if inMsgOneof && !fr.HasIgnore() {
			f.Ignore = validate.Ignore_IGNORE_IF_ZERO_VALUE
		}
	}
	if md := elemMessage(fd); md != nil {
		sub, err := s.message(md)
		if err != nil {
			return nil, err
		}
		f.Msg = sub
	}
	if f.Ignore == validate.Ignore_IGNORE_ALWAYS {
		return f, nil
	}
	if fd.IsMap() {
		if fr.GetMap() == nil && fr.GetType() != nil {
			return nil, fmt.Errorf("rule %s on a map field", typeName(fr))
		}
		mr := fr.GetMap()
		if mr == nil {
			return f, nil
		}
		if err := strict(mr, "min_pairs", "max_pairs", "keys", "values"); err != nil {
			return nil, err
		}
		if mr.HasMinPairs() || mr.HasMaxPairs() {
			f.Map = mr
		}
		for _, side := range []struct {
			name  string
			rules *validate.FieldRules
			desc  protoreflect.FieldDescriptor
			out   **Value
			ign   *validate.Ignore
		}{{"keys", mr.GetKeys(), fd.MapKey(), &f.Keys, &f.KeysIgnore}, {"values", mr.GetValues(), fd.MapValue(), &f.Vals, &f.ValsIgnore}} {
			if side.rules == nil {
				continue
			}
			if err := strict(side.rules, "ignore", "string", "enum",
				"int32", "int64", "uint32", "uint64", "sint32", "sint64", "fixed32", "fixed64",
				"sfixed32", "sfixed64", "float", "double"); err != nil {
				return nil, fmt.Errorf("%s: %w", side.name, err)
			}
			*side.ign = side.rules.GetIgnore()
			if k := side.desc.Kind(); *side.ign != validate.Ignore_IGNORE_UNSPECIFIED && (k == protoreflect.MessageKind || k == protoreflect.FloatKind || k == protoreflect.DoubleKind || k == protoreflect.BoolKind || k == protoreflect.BytesKind) {
				return nil, fmt.Errorf("%s: ignore on %s is not supported by fastvalid", side.name, k)
			}
			if *side.ign == validate.Ignore_IGNORE_ALWAYS {
				return nil, fmt.Errorf("%s: ignore always is not supported by fastvalid", side.name)
			}
			v, err := value(side.desc, side.rules)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", side.name, err)
			}
			if !v.Empty() {
				*side.out = v
			}
		}
		return f, nil
	}
	if fd.IsList() {
		if fr.GetRepeated() == nil && fr.GetType() != nil {
			return nil, fmt.Errorf("rule %s on a repeated field", typeName(fr))
		}
		rr := fr.GetRepeated()
		if rr != nil {
			if err := strict(rr, "min_items", "max_items", "unique", "items"); err != nil {
				return nil, err
			}
			if rr.GetUnique() && (fd.Message() != nil || fd.Kind() == protoreflect.BytesKind) {
				return nil, fmt.Errorf("repeated.unique on %s elements is not supported by fastvalid", fd.Kind())
			}
			if rr.HasMinItems() || rr.HasMaxItems() || rr.GetUnique() {
				f.Value = &Value{Repeated: rr}
			}
			if items := rr.GetItems(); items != nil {
				if err := strict(items, "ignore", "string", "enum",
					"int32", "int64", "uint32", "uint64", "sint32", "sint64", "fixed32", "fixed64",
					"sfixed32", "sfixed64", "float", "double"); err != nil {
					return nil, fmt.Errorf("items: %w", err)
				}
				f.ItemsIgnore = items.GetIgnore()
				if k := fd.Kind(); f.ItemsIgnore != validate.Ignore_IGNORE_UNSPECIFIED && k != protoreflect.StringKind && k != protoreflect.EnumKind && numericKinds[k] == "" || f.ItemsIgnore != validate.Ignore_IGNORE_UNSPECIFIED && (k == protoreflect.FloatKind || k == protoreflect.DoubleKind) {
					return nil, fmt.Errorf("items: ignore on %s elements is not supported by fastvalid", k)
				}
				if items.GetIgnore() == validate.Ignore_IGNORE_ALWAYS {
					return nil, fmt.Errorf("items: ignore always is not supported by fastvalid")
				}
				if items.GetIgnore() == validate.Ignore_IGNORE_IF_ZERO_VALUE && fd.Message() != nil {
					return nil, fmt.Errorf("items: ignore on message elements is not supported by fastvalid")
				}
				v, err := value(fd, items)
				if err != nil {
					return nil, fmt.Errorf("items: %w", err)
				}
				if !v.Empty() {
					f.Items = v
				}
			}
		}
		return f, nil
	}
	v, err := value(fd, fr)
	if err != nil {
		return nil, err
	}
	if !v.Empty() {
		f.Value = v
	}
	return f, nil
}

var numericKinds = map[protoreflect.Kind]string{
	protoreflect.Int32Kind: "int32", protoreflect.Int64Kind: "int64",
	protoreflect.Uint32Kind: "uint32", protoreflect.Uint64Kind: "uint64",
	protoreflect.Sint32Kind: "sint32", protoreflect.Sint64Kind: "sint64",
	protoreflect.Fixed32Kind: "fixed32", protoreflect.Fixed64Kind: "fixed64",
	protoreflect.Sfixed32Kind: "sfixed32", protoreflect.Sfixed64Kind: "sfixed64",
	protoreflect.FloatKind: "float", protoreflect.DoubleKind: "double",
}

func typeName(fr *validate.FieldRules) string {
	if od := fr.ProtoReflect().WhichOneof(fr.ProtoReflect().Descriptor().Oneofs().ByName("type")); od != nil {
		return string(od.Name())
	}
	return ""
}

// value reads the type rules of fd's value (or element) from fr.
func value(fd protoreflect.FieldDescriptor, fr *validate.FieldRules) (*Value, error) {
	v := &Value{}
	tn := typeName(fr)
	if tn == "" {
		return v, nil
	}
	want := ""
	switch {
	case fd.Kind() == protoreflect.StringKind:
		want = "string"
	case fd.Kind() == protoreflect.EnumKind:
		want = "enum"
	case numericKinds[fd.Kind()] != "":
		want = numericKinds[fd.Kind()]
	}
	if tn != want {
		return nil, fmt.Errorf("rule %s on a %s field is not supported by fastvalid", tn, fd.Kind())
	}
	switch want {
	case "string":
		sr := fr.GetString()
		if err := strict(sr, "const", "len", "min_len", "max_len", "len_bytes", "min_bytes", "max_bytes",
			"pattern", "prefix", "suffix", "contains", "not_contains", "in", "not_in"); err != nil {
			return nil, fmt.Errorf("string: %w", err)
		}
		cels, err := predefined(sr)
		if err != nil {
			return nil, err
		}
		v.CEL = cels
		if hasAny(sr) {
			v.String = sr
		}
	case "enum":
		er := fr.GetEnum()
		if err := strict(er, "const", "defined_only", "in", "not_in"); err != nil {
			return nil, fmt.Errorf("enum: %w", err)
		}
		if hasAny(er) {
			v.Enum = er
		}
	default:
		nr := fr.ProtoReflect().Get(fr.ProtoReflect().Descriptor().Fields().ByName(protoreflect.Name(want))).Message()
		allowed := []string{"const", "lt", "lte", "gt", "gte", "in", "not_in"}
		if want == "float" || want == "double" {
			allowed = append(allowed, "finite")
		}
		if err := strict(nr.Interface(), allowed...); err != nil {
			return nil, fmt.Errorf("%s: %w", want, err)
		}
		if hasAny(nr.Interface()) {
			v.Numeric, v.NumKind = nr, want
		}
	}
	return v, nil
}

// hasAny says whether a rules message has a standard (non-extension) field set.
func hasAny(m proto.Message) bool {
	any := false
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if !fd.IsExtension() {
			any = true
		}
		return !any
	})
	return any
}

// predefined binds the predefined-rule extensions set on a rules message.
func predefined(m proto.Message) ([]CELRule, error) {
	var out []CELRule
	var err error
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, val protoreflect.Value) bool {
		if !fd.IsExtension() {
			return true
		}
		xd, ok := fd.(protoreflect.ExtensionTypeDescriptor)
		if !ok {
			err = fmt.Errorf("extension %s has no type", fd.FullName())
			return false
		}
		if fd.Kind() != protoreflect.BoolKind || fd.IsList() {
			err = fmt.Errorf("predefined rule %s: only bool predefined rules are supported by fastvalid", fd.FullName())
			return false
		}
		var pr *validate.PredefinedRules
		if opts := fd.Options(); opts != nil && proto.HasExtension(opts, validate.E_Predefined) {
			pr = proto.GetExtension(opts, validate.E_Predefined).(*validate.PredefinedRules)
		}
		if pr == nil || len(pr.GetCel()) == 0 {
			err = fmt.Errorf("extension %s is not a predefined rule", fd.FullName())
			return false
		}
		if !val.Bool() {
			// The rules all start with "!rule ? ''": false checks nothing,
			// but say so rather than guess for a new one.
			err = fmt.Errorf("predefined rule %s set to false is not supported by fastvalid", fd.FullName())
			return false
		}
		for _, r := range pr.GetCel() {
			impl, e := lookupCEL(r)
			if e != nil {
				err = e
				return false
			}
			if impl.Sig == SigMessageBool {
				err = fmt.Errorf("cel rule %q: %s is not a string rule function", r.GetId(), impl.Func)
				return false
			}
			out = append(out, CELRule{Rule: r, Impl: impl, Ext: xd})
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	if len(out) > 1 {
		// protovalidate ranges over extensions in no fixed order.
		return nil, fmt.Errorf("more than one predefined rule on one field is not supported by fastvalid")
	}
	return out, nil
}

// strict fails on any field of a rules message outside allowed, on
// unresolved (unknown) bytes, and on extensions that are not predefined
// rules (those are checked by predefined).
func strict(m proto.Message, allowed ...string) error {
	if m == nil {
		return nil
	}
	r := m.ProtoReflect()
	if !r.IsValid() {
		return nil
	}
	if len(r.GetUnknown()) > 0 {
		return fmt.Errorf("%s carries unknown fields (an unlinked predefined rule?)", r.Descriptor().FullName())
	}
	var err error
	r.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if fd.IsExtension() {
			return true
		}
		if !slices.Contains(allowed, string(fd.Name())) {
			err = fmt.Errorf("rule %s.%s is not supported by fastvalid", r.Descriptor().Name(), fd.Name())
			return false
		}
		return true
	})
	return err
}

// goFieldName finds the Go name of fd in the generated struct t: from
// the struct tags for plain fields, from the oneof's getter for oneof
// members (protoc-gen-go's GoCamelCase).
func goFieldName(t reflect.Type, fd protoreflect.FieldDescriptor) (string, error) {
	if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
		name := goCamelCase(string(fd.Name()))
		if _, ok := reflect.PointerTo(t).MethodByName("Get" + name); !ok {
			return "", fmt.Errorf("no getter Get%s on %s", name, t)
		}
		return name, nil
	}
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag := sf.Tag.Get("protobuf")
		for _, part := range strings.Split(tag, ",") {
			if part == "name="+string(fd.Name()) {
				return sf.Name, nil
			}
		}
	}
	return "", fmt.Errorf("no Go field for %s in %s", fd.Name(), t)
}

// GoCamelCase is protoc-gen-go's name mangling (internal/strs.GoCamelCase).
func goCamelCase(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.' && i+1 < len(s) && isASCIILower(s[i+1]):
		case c == '.':
			b = append(b, '_')
		case c == '_' && (i == 0 || s[i-1] == '.'):
			b = append(b, 'X')
		case c == '_' && i+1 < len(s) && isASCIILower(s[i+1]):
		case isASCIIDigit(c):
			b = append(b, c)
		default:
			if isASCIILower(c) {
				c -= 'a' - 'A'
			}
			b = append(b, c)
			for ; i+1 < len(s) && isASCIILower(s[i+1]); i++ {
				b = append(b, s[i+1])
			}
		}
	}
	return string(b)
}

// GoCamelCase exports the name mangling for the generator (oneof wrappers).
func GoCamelCase(s string) string { return goCamelCase(s) }

func isASCIILower(c byte) bool { return 'a' <= c && c <= 'z' }
func isASCIIDigit(c byte) bool { return '0' <= c && c <= '9' }
