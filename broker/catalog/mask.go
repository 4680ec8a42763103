package catalog

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/relais-broker/relais/broker/scope"
)

// Limits on a field mask, so that a hostile mask costs little to refuse.
const (
	// MaxMaskPaths is the most paths a field mask may hold; the largest
	// response has fewer than 30 fields a mask can name.
	MaxMaskPaths = 100
	// MaxMaskPathBytes is the longest path accepted.
	MaxMaskPathBytes = 256
)

// Mask is a field mask resolved against one method's response: the
// fields, top-level or nested, the caller asked for. It is immutable; the
// mask of a call without field mask is built once per method.
type Mask struct {
	top    []*Selection // by top-level field index; nil: not named
	paths  []string
	scopes scope.Set
}

// Selection is what a mask keeps of one field: all of it, or only some
// of its sub-fields.
type Selection struct {
	sub []*Selection // by sub-field index; nil slice: the whole field
}

var whole = &Selection{}

// Whole reports whether the field is kept entirely.
func (s *Selection) Whole() bool { return s.sub == nil }

// Field returns the selection of the sub-field at index i, nil when the
// mask does not name it.
func (s *Selection) Field(i int) *Selection {
	if i < len(s.sub) {
		return s.sub[i]
	}
	return nil
}

// Field returns the selection of the top-level field at index i, nil when
// the mask does not name it.
func (k *Mask) Field(i int) *Selection {
	if k == nil || i >= len(k.top) {
		return nil
	}
	return k.top[i]
}

// Paths are the personal-data fields the mask names, in canonical form
// (sorted, without duplicates, without a path under another): what the
// audit record lists as requested. Every personal top-level field when the
// call had no mask; nil for a nil Mask (a call refused before its mask
// was read).
func (k *Mask) Paths() []string {
	if k == nil {
		return nil
	}
	return k.paths
}

// Scopes are the scopes of the fields the mask names: what the call asks
// authorization for.
func (k *Mask) Scopes() scope.Set {
	if k == nil {
		return scope.Set{}
	}
	return k.scopes
}

// everything is the mask of a call without field mask.
func (m *Method) everything() *Mask {
	k := &Mask{top: make([]*Selection, len(m.Fields)), scopes: m.Scopes}
	for i, f := range m.Fields {
		k.top[i] = whole
		if !f.NotPersonal {
			k.paths = append(k.paths, f.Path)
		}
	}
	slices.Sort(k.paths)
	return k
}

// Mask resolves field mask paths against the response. Paths are proto
// field names joined by dots ("value", "address.postal_code"); a path
// through a repeated message names that sub-field in every element
// ("children.birth_date"). Naming the not-personal source metadata is
// allowed and changes nothing: it is always returned (a mask naming only
// it asks for no scope, which authorization refuses). No paths means
// every field. Every path that is malformed or names no field of the
// response is reported in a *MaskError.
func (m *Method) Mask(paths []string) (*Mask, error) {
	if len(paths) == 0 {
		return m.all, nil
	}
	if len(paths) > MaxMaskPaths {
		return nil, &MaskError{Problems: []PathProblem{{Index: -1, Kind: TooManyPaths, Problem: "more than " + strconv.Itoa(MaxMaskPaths) + " paths"}}}
	}
	k := &Mask{top: make([]*Selection, len(m.Fields))}
	var problems []PathProblem
	chain := make([]int, 0, 4)
	for i, p := range paths {
		var kind ProblemKind
		var problem string
		chain, kind, problem = m.resolve(p, chain[:0])
		if problem != "" {
			pp := PathProblem{Index: i, Kind: kind, Problem: problem}
			if echoable(p) {
				pp.Path = p
			}
			problems = append(problems, pp)
			continue
		}
		k.add(chain)
	}
	if problems != nil {
		return nil, &MaskError{Problems: problems}
	}
	var names []string
	for i, s := range k.top {
		if s == nil || m.Fields[i].NotPersonal {
			continue
		}
		names = append(names, m.Fields[i].Scope)
		k.paths = appendPaths(k.paths, &m.Fields[i], s)
	}
	slices.Sort(k.paths)
	k.scopes = scope.Of(names...)
	return k, nil
}

// resolve turns a path into the field indexes it goes through, or says
// what is wrong with it.
func (m *Method) resolve(p string, chain []int) ([]int, ProblemKind, string) {
	switch {
	case p == "":
		return nil, Malformed, "empty path"
	case len(p) > MaxMaskPathBytes:
		return nil, Malformed, "path longer than " + strconv.Itoa(MaxMaskPathBytes) + " bytes"
	}
	fields, byName := m.Fields, m.byName
	var parent *Field
	for rest := p; ; {
		seg, tail, more := strings.Cut(rest, ".")
		if seg == "" {
			return nil, Malformed, "malformed path: empty segment"
		}
		if !protoreflect.Name(seg).IsValid() {
			return nil, Malformed, "malformed path: a segment is not a field name (letters, digits and underscores)"
		}
		if parent != nil && len(parent.Fields) == 0 {
			return nil, NotNarrowable, fmt.Sprintf("field %q has no sub-fields a mask can name", parent.Path)
		}
		i, ok := byName[seg]
		if parent != nil {
			i, ok = indexByName(parent.Fields, seg)
		}
		if !ok {
			return nil, UnknownField, unknown(fields, parent, seg)
		}
		chain = append(chain, i)
		parent = &fields[i]
		if !more {
			return chain, "", ""
		}
		if parent.NotPersonal {
			return nil, NotNarrowable, fmt.Sprintf("field %q is always returned whole", parent.Path)
		}
		fields, byName, rest = parent.Fields, nil, tail
	}
}

func indexByName(fields []Field, name string) (int, bool) {
	for i := range fields {
		if fields[i].Name == name {
			return i, true
		}
	}
	return 0, false
}

// unknown says that seg is not a field, with a hint when it is the JSON
// (lowerCamelCase) name of one.
func unknown(fields []Field, parent *Field, seg string) string {
	where := "the response"
	if parent != nil {
		where = fmt.Sprintf("field %q", parent.Path)
	}
	for _, f := range fields {
		if f.Descriptor.JSONName() == seg {
			return fmt.Sprintf("%s has no field %q: mask paths use proto field names (%q)", where, seg, f.Name)
		}
	}
	return fmt.Sprintf("%s has no field %q", where, seg)
}

// add selects the field at the end of chain, whole. A path under a field
// already selected whole adds nothing; a field selected whole replaces
// the paths under it.
func (k *Mask) add(chain []int) {
	slot := &k.top[chain[0]]
	for _, i := range chain[1:] {
		if *slot == whole {
			return
		}
		if *slot == nil {
			*slot = &Selection{sub: []*Selection{}}
		}
		s := *slot
		if i >= len(s.sub) {
			s.sub = append(s.sub, make([]*Selection, i+1-len(s.sub))...)
		}
		slot = &s.sub[i]
	}
	*slot = whole
}

// appendPaths appends the canonical paths of selection s of field f.
func appendPaths(out []string, f *Field, s *Selection) []string {
	if s.Whole() {
		return append(out, f.Path)
	}
	for i, sub := range s.sub {
		if sub != nil {
			out = appendPaths(out, &f.Fields[i], sub)
		}
	}
	return out
}

// echoable reports whether a refused path may be repeated in an error:
// only when it looks like a field path. A path with other characters
// (or too long) could carry anything, so it is referred to by position.
func echoable(p string) bool {
	if len(p) > MaxMaskPathBytes {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c == '.' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// MaskError lists the paths of a field mask a method refuses. Its Error
// text gives positions and problems but never the caller's paths, so it
// is safe to log; Problems carry the paths for the caller.
type MaskError struct {
	Problems []PathProblem
}

// PathProblem is one refused path.
type PathProblem struct {
	// Index is the path's position in the mask; -1 for the mask as a whole.
	Index int
	// Kind is the class of problem, fit for logs.
	Kind ProblemKind
	// Path is the refused path, empty when it is not fit to repeat.
	Path string
	// Problem says what is wrong, lower-case; it may quote a segment of
	// the path.
	Problem string
}

// ProblemKind classes a refused path without repeating it.
type ProblemKind string

// The kinds of refused paths.
const (
	Malformed     ProblemKind = "malformed path"
	UnknownField  ProblemKind = "unknown field"
	NotNarrowable ProblemKind = "field has no sub-fields to name"
	TooManyPaths  ProblemKind = "too many paths"
)

// Field is the request field the problem is about, as a BadRequest
// violation names it: "field_mask.paths[2]", or "field_mask".
func (p PathProblem) Field() string {
	if p.Index < 0 {
		return string(FieldMaskField)
	}
	return string(FieldMaskField) + ".paths[" + strconv.Itoa(p.Index) + "]"
}

// Description is the problem as the caller reads it, naming the path
// when it is fit to repeat.
func (p PathProblem) Description() string {
	if p.Path == "" {
		return p.Problem
	}
	return strconv.Quote(p.Path) + ": " + p.Problem
}

// Error implements error.
func (e *MaskError) Error() string {
	first := e.Problems[0]
	problem := "field mask: " + string(first.Kind)
	if first.Index >= 0 {
		problem = "field mask path " + strconv.Itoa(first.Index) + ": " + string(first.Kind)
	}
	if n := len(e.Problems); n > 1 {
		return fmt.Sprintf("%s (and %d more)", problem, n-1)
	}
	return problem
}
