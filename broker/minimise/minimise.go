// Package minimise strips from a response every field the caller is not
// entitled to. It works on any typed response through protobuf reflection
// and the scope options read by package catalog, so no service has its own
// copy of this logic. It fails closed: a field with no known scope is
// cleared.
package minimise

import (
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/scope"
)

// Apply clears, in place, every populated top-level field of resp whose
// scope is not in allowed. Fields marked not personal are kept. It returns
// the scopes of the fields left populated, for the audit record.
func Apply(m *catalog.Method, resp proto.Message, allowed scope.Set) scope.Set {
	msg := resp.ProtoReflect()
	var kept []string
	var clear []protoreflect.FieldDescriptor
	msg.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		f, known := m.Field(string(fd.Name()))
		switch {
		case known && f.NotPersonal:
		case known && allowed.Has(f.Scope):
			kept = append(kept, f.Scope)
		default:
			clear = append(clear, fd)
		}
		return true
	})
	for _, fd := range clear {
		msg.Clear(fd)
	}
	// Unknown fields (from a newer source schema) are never forwarded.
	msg.SetUnknown(nil)
	return scope.Of(kept...)
}
