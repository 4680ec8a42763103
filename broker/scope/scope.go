// Package scope is the set type for habilitation scopes such as
// "family_quotient.children": the unit operators grant, consumers ask for
// and the broker minimises responses on.
package scope

import (
	"slices"
	"strings"
)

// Set is an immutable-by-convention set of scope names. The zero value is
// the empty set.
type Set struct {
	names map[string]struct{}
}

// Of returns the set holding names.
func Of(names ...string) Set {
	s := Set{names: make(map[string]struct{}, len(names))}
	for _, n := range names {
		s.names[n] = struct{}{}
	}
	return s
}

// Has reports whether name is in s.
func (s Set) Has(name string) bool {
	_, ok := s.names[name]
	return ok
}

// Len is the number of scopes in s.
func (s Set) Len() int { return len(s.names) }

// Intersect returns the scopes in both s and o.
func (s Set) Intersect(o Set) Set {
	out := Set{names: make(map[string]struct{})}
	for n := range s.names {
		if o.Has(n) {
			out.names[n] = struct{}{}
		}
	}
	return out
}

// Union returns the scopes in s or o.
func (s Set) Union(o Set) Set {
	out := Set{names: make(map[string]struct{}, len(s.names)+len(o.names))}
	for n := range s.names {
		out.names[n] = struct{}{}
	}
	for n := range o.names {
		out.names[n] = struct{}{}
	}
	return out
}

// Sorted returns the names in s in lexical order.
func (s Set) Sorted() []string {
	out := make([]string, 0, len(s.names))
	for n := range s.names {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// String renders s as a comma-separated sorted list.
func (s Set) String() string { return strings.Join(s.Sorted(), ",") }
