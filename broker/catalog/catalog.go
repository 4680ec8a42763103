// Package catalog derives, from the proto descriptors of the typed
// services, everything the broker needs to know about each method: its
// request and response types, which scope covers each response field, and
// the tree of fields a field mask may name (nested fields share the scope
// of their top-level field). The scope options in proto/ are the single
// source of truth; this package only reads them, and refuses a service
// whose response has a top-level field with neither a scope nor the
// not_personal mark, or a nested field with one. Field masks are resolved
// here against that tree, built once per method, so a call pays only for
// the paths it names.
package catalog

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/relais-broker/relais/broker/scope"
	optionsv1 "github.com/relais-broker/relais/proto/relais/options/v1"
)

// Field is a field of a response message that a field mask may name:
// a top-level field, or a field nested in a message-typed one.
type Field struct {
	// Name is the proto field name.
	Name string
	// Path is the field mask path naming the field from the response
	// root, "value" or "address.postal_code"; it is also how the audit
	// record names the field.
	Path       string
	Descriptor protoreflect.FieldDescriptor
	// Scope covers the field; a nested field has the scope of its
	// top-level field, as grants are per scope. Empty when NotPersonal.
	Scope       string
	NotPersonal bool
	// Fields are the sub-fields a mask may name, in declaration order.
	// Empty for scalars, enums, maps, well-known types, recursive
	// messages and not-personal fields: those are only named whole.
	Fields []Field

	index    int
	byNumber map[protoreflect.FieldNumber]int
}

// Index is the field's position among its siblings.
func (f *Field) Index() int { return f.index }

// Sub returns the sub-field for fd, a field of the message f holds; false
// when fd is not one f may carry (an unknown schema fails closed).
func (f *Field) Sub(fd protoreflect.FieldDescriptor) (*Field, bool) {
	return lookup(f.Fields, f.byNumber, fd)
}

// lookup finds fd among fields: by identity at its index (the generated
// types are the catalogue's descriptors), else by number with the same
// name and shape, so that a message built from an equal descriptor is
// still understood.
func lookup(fields []Field, byNumber map[protoreflect.FieldNumber]int, fd protoreflect.FieldDescriptor) (*Field, bool) {
	if i := fd.Index(); i < len(fields) && fields[i].Descriptor == fd {
		return &fields[i], true
	}
	i, ok := byNumber[fd.Number()]
	if !ok {
		return nil, false
	}
	d := fields[i].Descriptor
	if d.Name() != fd.Name() || d.Kind() != fd.Kind() || d.Cardinality() != fd.Cardinality() || d.IsMap() != fd.IsMap() ||
		(d.Message() != nil && d.Message().FullName() != fd.Message().FullName()) {
		return nil, false
	}
	return &fields[i], true
}

// Method is one typed method of a source service.
type Method struct {
	// FullMethod is the gRPC method path, "/pkg.Service/Method".
	FullMethod string
	// Service is the full service name, "pkg.Service".
	Service string
	// Input and Output are the request and response message types.
	Input, Output protoreflect.MessageType
	// Fields are the response's top-level fields in declaration order.
	Fields []Field
	// Scopes are all scopes the response can carry.
	Scopes scope.Set

	byName   map[string]int
	byNumber map[protoreflect.FieldNumber]int
	// all is the mask of a call without field mask, built once.
	all *Mask
}

// Field returns the top-level response field called name.
func (m *Method) Field(name string) (Field, bool) {
	i, ok := m.byName[name]
	if !ok {
		return Field{}, false
	}
	return m.Fields[i], true
}

// TopField returns the top-level field for fd, a field of a response
// message; false when fd is not one the response may carry.
func (m *Method) TopField(fd protoreflect.FieldDescriptor) (*Field, bool) {
	return lookup(m.Fields, m.byNumber, fd)
}

// Catalog indexes the methods of the typed services.
type Catalog struct {
	methods  map[string]*Method
	services []string
}

// New builds the catalogue of the given services, whose Go types must be
// linked into the binary (the generated packages register them).
func New(services ...protoreflect.ServiceDescriptor) (*Catalog, error) {
	c := &Catalog{methods: make(map[string]*Method)}
	for _, sd := range services {
		c.services = append(c.services, string(sd.FullName()))
		for i := 0; i < sd.Methods().Len(); i++ {
			md := sd.Methods().Get(i)
			if md.IsStreamingClient() || md.IsStreamingServer() {
				return nil, fmt.Errorf("catalog: %s: streaming methods are not supported", md.FullName())
			}
			m, err := newMethod(sd, md)
			if err != nil {
				return nil, err
			}
			c.methods[m.FullMethod] = m
		}
	}
	slices.Sort(c.services)
	return c, nil
}

func newMethod(sd protoreflect.ServiceDescriptor, md protoreflect.MethodDescriptor) (*Method, error) {
	in, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
	if err != nil {
		return nil, fmt.Errorf("catalog: %s: request type not linked: %w", md.FullName(), err)
	}
	out, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		return nil, fmt.Errorf("catalog: %s: response type not linked: %w", md.FullName(), err)
	}
	if err := checkInput(md.Input()); err != nil {
		return nil, fmt.Errorf("catalog: %s: %w", md.FullName(), err)
	}
	m := &Method{
		FullMethod: "/" + string(sd.FullName()) + "/" + string(md.Name()),
		Service:    string(sd.FullName()),
		Input:      in,
		Output:     out,
		byName:     make(map[string]int),
		byNumber:   make(map[protoreflect.FieldNumber]int),
	}
	var names []string
	fields := md.Output().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		f := Field{
			Name:        string(fd.Name()),
			Path:        string(fd.Name()),
			Descriptor:  fd,
			Scope:       proto.GetExtension(fd.Options(), optionsv1.E_Scope).(string),
			NotPersonal: proto.GetExtension(fd.Options(), optionsv1.E_NotPersonal).(bool),
			index:       i,
		}
		switch {
		case f.Scope == "" && !f.NotPersonal:
			return nil, fmt.Errorf("catalog: %s: field %s has neither a scope nor not_personal", md.Output().FullName(), fd.Name())
		case f.Scope != "" && f.NotPersonal:
			return nil, fmt.Errorf("catalog: %s: field %s has both a scope and not_personal", md.Output().FullName(), fd.Name())
		}
		if f.Scope != "" {
			names = append(names, f.Scope)
			var err error
			if f.Fields, f.byNumber, err = subFields(fd, f.Path, f.Scope, []protoreflect.FullName{md.Output().FullName()}); err != nil {
				return nil, fmt.Errorf("catalog: %s: %w", md.Output().FullName(), err)
			}
		}
		m.Fields = append(m.Fields, f)
		m.byName[f.Name] = i
		m.byNumber[fd.Number()] = i
	}
	m.Scopes = scope.Of(names...)
	m.all = m.everything()
	return m, nil
}

// subFields lists the fields a mask may name under fd. The scope options
// are read on top-level fields only: one set on a nested field would be a
// finer grant the broker does not enforce, so it is refused.
func subFields(fd protoreflect.FieldDescriptor, path, sc string, stack []protoreflect.FullName) ([]Field, map[protoreflect.FieldNumber]int, error) {
	md := fd.Message()
	if md == nil || fd.IsMap() || strings.HasPrefix(string(md.FullName()), "google.protobuf.") || slices.Contains(stack, md.FullName()) {
		return nil, nil, nil
	}
	stack = append(stack, md.FullName())
	var out []Field
	byNumber := make(map[protoreflect.FieldNumber]int)
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		sub := fields.Get(i)
		if proto.GetExtension(sub.Options(), optionsv1.E_Scope).(string) != "" || proto.GetExtension(sub.Options(), optionsv1.E_NotPersonal).(bool) {
			return nil, nil, fmt.Errorf("nested field %s carries a scope option: scopes are set on top-level response fields only", sub.FullName())
		}
		f := Field{Name: string(sub.Name()), Path: path + "." + string(sub.Name()), Descriptor: sub, Scope: sc, index: i}
		var err error
		if f.Fields, f.byNumber, err = subFields(sub, f.Path, sc, stack); err != nil {
			return nil, nil, err
		}
		out = append(out, f)
		byNumber[sub.Number()] = i
	}
	return out, byNumber, nil
}

// Method returns the method for a gRPC path.
func (c *Catalog) Method(fullMethod string) (*Method, bool) {
	m, ok := c.methods[fullMethod]
	return m, ok
}

// Methods returns every method, sorted by path.
func (c *Catalog) Methods() []*Method {
	out := make([]*Method, 0, len(c.methods))
	for _, m := range c.methods {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b *Method) int { return strings.Compare(a.FullMethod, b.FullMethod) })
	return out
}

// Services returns the full names of the services, sorted.
func (c *Catalog) Services() []string { return append([]string(nil), c.services...) }

// ServiceScopes returns every scope of every method of service, or false
// when the service is unknown. Operators grant scopes per service.
func (c *Catalog) ServiceScopes(service string) (scope.Set, bool) {
	var s scope.Set
	found := false
	for _, m := range c.methods {
		if m.Service == service {
			s = s.Union(m.Scopes)
			found = true
		}
	}
	return s, found
}

// checkInput requires the request fields the broker reads generically.
func checkInput(in protoreflect.MessageDescriptor) error {
	want := map[protoreflect.Name]protoreflect.FullName{
		AccessContextField: "relais.common.v1.AccessContext",
		FieldMaskField:     "google.protobuf.FieldMask",
	}
	for name, typ := range want {
		fd := in.Fields().ByName(name)
		if fd == nil || fd.Message() == nil || fd.Message().FullName() != typ || fd.IsList() {
			return fmt.Errorf("request %s must have a field %s of type %s", in.FullName(), name, typ)
		}
	}
	return nil
}

// Names of the request fields every typed method has.
const (
	AccessContextField protoreflect.Name = "access_context"
	FieldMaskField     protoreflect.Name = "field_mask"
)
