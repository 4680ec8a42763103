// Package catalog derives, from the proto descriptors of the typed
// services, everything the broker needs to know about each method: its
// request and response types and which scope covers each response field.
// The scope options in proto/ are the single source of truth; this package
// only reads them, and refuses a service whose response has a top-level
// field with neither a scope nor the not_personal mark.
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

// Field is a top-level field of a response message.
type Field struct {
	Name        string
	Descriptor  protoreflect.FieldDescriptor
	Scope       string // empty when NotPersonal
	NotPersonal bool
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

	byName map[string]Field
}

// Field returns the response field called name.
func (m *Method) Field(name string) (Field, bool) {
	f, ok := m.byName[name]
	return f, ok
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
		byName:     make(map[string]Field),
	}
	var names []string
	fields := md.Output().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		f := Field{
			Name:        string(fd.Name()),
			Descriptor:  fd,
			Scope:       proto.GetExtension(fd.Options(), optionsv1.E_Scope).(string),
			NotPersonal: proto.GetExtension(fd.Options(), optionsv1.E_NotPersonal).(bool),
		}
		switch {
		case f.Scope == "" && !f.NotPersonal:
			return nil, fmt.Errorf("catalog: %s: field %s has neither a scope nor not_personal", md.Output().FullName(), fd.Name())
		case f.Scope != "" && f.NotPersonal:
			return nil, fmt.Errorf("catalog: %s: field %s has both a scope and not_personal", md.Output().FullName(), fd.Name())
		}
		if f.Scope != "" {
			names = append(names, f.Scope)
		}
		m.Fields = append(m.Fields, f)
		m.byName[f.Name] = f
	}
	m.Scopes = scope.Of(names...)
	return m, nil
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

// ScopesForMask returns the scopes covering the response fields named by
// mask paths. An empty mask means every scope of the method. A path that is
// not a personal-data field of the response is an error naming it.
func (m *Method) ScopesForMask(paths []string) (scope.Set, error) {
	if len(paths) == 0 {
		return m.Scopes, nil
	}
	names := make([]string, 0, len(paths))
	for _, p := range paths {
		f, ok := m.byName[p]
		if !ok || f.NotPersonal {
			return scope.Set{}, fmt.Errorf("unknown field %q", p)
		}
		names = append(names, f.Scope)
	}
	return scope.Of(names...), nil
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
