// Package minimise strips from a response every field the caller is not
// entitled to or did not ask for. It works on any typed response through
// protobuf reflection and the scope options read by package catalog, so no
// service has its own copy of this logic. It fails closed: a field with no
// known scope is cleared, and so are unknown fields at every depth (a
// newer source schema could carry anything there).
package minimise

import (
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/scope"
)

// Apply clears, in place, every populated field of resp whose scope is not
// in allowed, whatever the field mask: it is how an adapter drops what its
// source sent beyond the scopes asked (the broker narrows per field
// afterwards with ApplyMask). Fields marked not personal are kept. It
// returns the scopes of the fields left populated.
func Apply(m *catalog.Method, resp proto.Message, allowed scope.Set) scope.Set {
	var kept []string
	for _, p := range ApplyMask(m, resp, allowed, nil) {
		f, _ := m.Field(topName(p))
		kept = append(kept, f.Scope)
	}
	return scope.Of(kept...)
}

// topName is the top-level field name of a mask path.
func topName(path string) string {
	for i := 0; i < len(path); i++ {
		if path[i] == '.' {
			return path[:i]
		}
	}
	return path
}

// ApplyMask clears, in place, every populated field of resp outside
// allowed scopes ∩ mask (a nil mask selects everything). A nested mask
// keeps, in a message or in every element of a repeated message, only the
// named sub-fields; a message left with none of them is cleared, and so is
// a repeated field whose elements are all left empty. Not-personal fields
// are kept whole. It returns the mask paths of the personal-data fields
// left populated, sorted: what the audit record lists as returned, itself
// a field mask that would select exactly this answer.
func ApplyMask(m *catalog.Method, resp proto.Message, allowed scope.Set, mask *catalog.Mask) []string {
	if mask == nil {
		mask, _ = m.Mask(nil)
	}
	msg := resp.ProtoReflect()
	returned := make([]string, 0, len(m.Fields))
	// Range allows clearing the field it is visiting.
	msg.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		f, known := m.TopField(fd)
		switch {
		case !known:
			msg.Clear(fd)
		case f.NotPersonal:
			scrub(fd, v)
		case !allowed.Has(f.Scope):
			msg.Clear(fd)
		default:
			returned = keep(msg, fd, v, f, mask.Field(f.Index()), returned)
		}
		return true
	})
	msg.SetUnknown(nil)
	slices.Sort(returned)
	return slices.Compact(returned)
}

// keep applies selection s to field fd of msg, holding v, and appends the
// paths left populated.
func keep(msg protoreflect.Message, fd protoreflect.FieldDescriptor, v protoreflect.Value, f *catalog.Field, s *catalog.Selection, out []string) []string {
	switch {
	case s == nil:
		msg.Clear(fd)
		return out
	case s.Whole():
		scrub(fd, v)
		return append(out, f.Path)
	case fd.IsList():
		list := v.List()
		before, empty := len(out), true
		for i := 0; i < list.Len(); i++ {
			var left bool
			out, left = narrow(list.Get(i).Message(), f, s, out)
			empty = empty && !left
		}
		if empty {
			msg.Clear(fd)
			out = out[:before]
		}
		return out
	default:
		before := len(out)
		out, left := narrow(v.Message(), f, s, out)
		if !left {
			msg.Clear(fd)
			out = out[:before]
		}
		return out
	}
}

// narrow keeps in sub, the message held by field f, only the sub-fields
// selection s names, and reports whether any is left.
func narrow(sub protoreflect.Message, f *catalog.Field, s *catalog.Selection, out []string) ([]string, bool) {
	left := false
	sub.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		cf, known := f.Sub(fd)
		if !known {
			sub.Clear(fd)
			return true
		}
		out = keep(sub, fd, v, cf, s.Field(cf.Index()), out)
		left = left || sub.Has(fd)
		return true
	})
	sub.SetUnknown(nil)
	return out, left
}

// scrub drops the unknown fields of every message under v, the value of
// fd, which is kept whole.
func scrub(fd protoreflect.FieldDescriptor, v protoreflect.Value) {
	switch {
	case fd.IsMap():
		if fd.MapValue().Message() == nil {
			return
		}
		v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
			scrubMessage(mv.Message())
			return true
		})
	case fd.Message() == nil:
	case fd.IsList():
		list := v.List()
		for i := 0; i < list.Len(); i++ {
			scrubMessage(list.Get(i).Message())
		}
	default:
		scrubMessage(v.Message())
	}
}

// scrubMessage visits only the message-typed fields, which is cheaper
// than ranging over every populated one (Person and PostalAddress have
// none).
func scrubMessage(msg protoreflect.Message) {
	if len(msg.GetUnknown()) > 0 {
		msg.SetUnknown(nil)
	}
	fields := msg.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		if fd := fields.Get(i); fd.Message() != nil && msg.Has(fd) {
			scrub(fd, msg.Get(fd))
		}
	}
}
