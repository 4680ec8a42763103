package fastvalid

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp/syntax"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/relais-broker/relais/broker/fastvalid/internal/model"
)

// fixedNow is the clock of every differential test: the birth-date rule
// compares with the present.
var fixedNow = time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)

func nowTS() *timestamppb.Timestamp { return timestamppb.New(fixedNow) }

// pair is the reference (protovalidate) and the validator under test.
type pair struct {
	ref  protovalidate.Validator
	fast *Validator
	set  *model.Set
	// check replaces fast.Validate when set (the test-only messages).
	check func(proto.Message) error
}

func newPair(tb testing.TB) *pair {
	tb.Helper()
	ref, err := protovalidate.New(protovalidate.WithNowFunc(nowTS))
	if err != nil {
		tb.Fatal(err)
	}
	fast, err := New(WithNowFunc(nowTS))
	if err != nil {
		tb.Fatal(err)
	}
	set, err := model.Load()
	if err != nil {
		tb.Fatal(err)
	}
	return &pair{ref: ref, fast: fast, set: set}
}

// diff runs both validators on msg and describes any difference in
// verdict or violations (field path, rule path, rule id, message, for_key,
// in order, and the descriptors and values the Go struct carries). It also
// returns protovalidate's violation count.
func (p *pair) diff(msg proto.Message) (string, int) {
	// Each validator gets its own copy: neither may depend on the other.
	a := p.ref.Validate(proto.Clone(msg))
	var b error
	if p.check != nil {
		b = p.check(msg)
	} else {
		b = p.fast.Validate(msg)
	}
	var va, vb *protovalidate.ValidationError
	okA, okB := errors.As(a, &va), errors.As(b, &vb)
	switch {
	case a == nil && b == nil:
		return "", 0
	case a == nil || b == nil || !okA || !okB:
		return fmt.Sprintf("verdicts differ: protovalidate %v, fastvalid %v", a, b), 0
	}
	if bigMap(msg.ProtoReflect()) {
		// Both range over Go maps: entry order is random in each.
		sortViolations(va.Violations)
		sortViolations(vb.Violations)
	}
	if len(va.Violations) != len(vb.Violations) {
		return fmt.Sprintf("%d violations from protovalidate, %d from fastvalid:\n%v\n---\n%v", len(va.Violations), len(vb.Violations), a, b), len(va.Violations)
	}
	for i := range va.Violations {
		x, y := va.Violations[i], vb.Violations[i]
		if !proto.Equal(x.Proto, y.Proto) {
			return fmt.Sprintf("violation %d differs:\nprotovalidate %v\nfastvalid     %v", i, x.Proto, y.Proto), len(va.Violations)
		}
		if descName(x.FieldDescriptor) != descName(y.FieldDescriptor) || descName(x.RuleDescriptor) != descName(y.RuleDescriptor) {
			return fmt.Sprintf("violation %d (%v): descriptors differ: field %s/%s rule %s/%s", i, x.Proto, descName(x.FieldDescriptor), descName(y.FieldDescriptor), descName(x.RuleDescriptor), descName(y.RuleDescriptor)), len(va.Violations)
		}
		if !valueEqual(x.FieldValue, y.FieldValue) || !valueEqual(x.RuleValue, y.RuleValue) {
			return fmt.Sprintf("violation %d (%v): values differ: field %v/%v rule %v/%v", i, x.Proto, x.FieldValue, y.FieldValue, x.RuleValue, y.RuleValue), len(va.Violations)
		}
	}
	return "", len(va.Violations)
}

// bigMap says whether a map with two entries or more is set anywhere in m.
func bigMap(m protoreflect.Message) bool {
	found := false
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			found = v.Map().Len() > 1
			if !found && fd.MapValue().Message() != nil {
				v.Map().Range(func(_ protoreflect.MapKey, e protoreflect.Value) bool {
					found = bigMap(e.Message())
					return !found
				})
			}
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len() && !found; i++ {
				found = bigMap(v.List().Get(i).Message())
			}
		case fd.Message() != nil && !fd.IsList():
			found = bigMap(v.Message())
		}
		return !found
	})
	return found
}

func sortViolations(vs []*protovalidate.Violation) {
	key := func(v *protovalidate.Violation) string {
		return protovalidate.FieldPathString(v.Proto.GetField()) + "\x00" + v.Proto.GetRuleId() + "\x00" + v.Proto.GetMessage() + fmt.Sprint(v.Proto.GetForKey())
	}
	sort.SliceStable(vs, func(i, j int) bool { return key(vs[i]) < key(vs[j]) })
}

func descName(d protoreflect.FieldDescriptor) protoreflect.FullName {
	if d == nil {
		return ""
	}
	return d.FullName()
}

func valueEqual(a, b protoreflect.Value) bool {
	if !a.IsValid() || !b.IsValid() {
		return a.IsValid() == b.IsValid()
	}
	return a.Equal(b)
}

// sampler builds messages through protoreflect, biased by the rules of
// the model: valid values, values at and beyond each bound, pattern edges,
// undefined enums, lists at their limits, oneofs with none or one member.
type sampler struct {
	r     *rand.Rand
	set   *model.Set
	valid bool // only valid values (benchmarks, edge-case bases)
	// preferSubject picks the first member of oneofs (the subject).
	preferSubject bool
	// bad, when set (random mode), is the chance that a field, oneof or
	// list gets an edge value rather than a valid one: low values build
	// near-valid messages breaking one or two rules.
	bad    float64
	strict bool
}

func (s *sampler) message(md protoreflect.MessageType, depth int) proto.Message {
	s.strict = s.valid || s.bad == 0
	m := md.New()
	s.fill(m, depth)
	return m.Interface()
}

func (s *sampler) chance(p float64) bool { return s.r.Float64() < p }

// toggle picks, in near-valid random mode, whether what comes next is
// valid.
func (s *sampler) toggle() {
	if !s.strict {
		s.valid = !s.chance(s.bad)
	}
}

func (s *sampler) fill(m protoreflect.Message, depth int) {
	s.toggle()
	mm := s.set.ByName(m.Descriptor().FullName())
	if mm == nil {
		s.fillPlain(m, depth)
		return
	}
	// Oneofs: none or one member.
	chosen := map[protoreflect.FieldDescriptor]bool{}
	skip := map[protoreflect.FieldDescriptor]bool{}
	for i := 0; i < m.Descriptor().Oneofs().Len(); i++ {
		od := m.Descriptor().Oneofs().Get(i)
		if od.IsSynthetic() {
			continue
		}
		for j := 0; j < od.Fields().Len(); j++ {
			skip[od.Fields().Get(j)] = true
		}
		if !s.valid && s.chance(0.1) {
			continue
		}
		pick := od.Fields().Get(s.r.IntN(od.Fields().Len()))
		if s.preferSubject {
			pick = od.Fields().Get(0)
		}
		chosen[pick] = true
	}
	// Message oneof rules: in valid mode exactly one member.
	for _, mo := range mm.MsgOneofs {
		pick := mo.Fields[s.r.IntN(len(mo.Fields))]
		if s.preferSubject {
			pick = mo.Fields[0]
		}
		if s.valid {
			chosen[pick.Desc] = true
		}
		for _, f := range mo.Fields {
			if s.valid && f != pick {
				skip[f.Desc] = true
			}
			if !s.valid && s.chance(0.3) {
				skip[f.Desc] = true
			}
		}
	}
	for _, f := range mm.Fields {
		fd := f.Desc
		if skip[fd] && !chosen[fd] {
			continue
		}
		if !chosen[fd] {
			if s.valid && !f.Required && (fd.Message() != nil || fd.HasPresence()) && s.chance(0.1) {
				continue
			}
			if !s.valid && s.chance(0.15) {
				continue
			}
		}
		s.toggle()
		s.setField(m, f, depth)
	}
	// The message CEL rule: born in France needs a birth place.
	if s.valid && m.Descriptor().FullName() == "relais.common.v1.SubjectIdentity" {
		c := m.Descriptor().Fields().ByName("birth_country_cog")
		p := m.Descriptor().Fields().ByName("birth_place_cog")
		if m.Get(c).String() == "99100" && m.Get(p).String() == "" {
			m.Set(p, protoreflect.ValueOfString("2A004"))
		}
	}
}

// fillPlain fills a message outside the model (well-known types).
func (s *sampler) fillPlain(m protoreflect.Message, depth int) {
	switch m.Descriptor().FullName() {
	case "google.protobuf.Timestamp":
		m.Set(m.Descriptor().Fields().ByName("seconds"), protoreflect.ValueOfInt64(s.r.Int64N(4e9)))
	case "google.protobuf.FieldMask":
		l := m.Mutable(m.Descriptor().Fields().ByName("paths")).List()
		for i := s.r.IntN(3); i > 0; i-- {
			l.Append(protoreflect.ValueOfString(s.plain()))
		}
	}
}

func (s *sampler) setField(m protoreflect.Message, f *model.Field, depth int) {
	fd := f.Desc
	if fd.IsMap() {
		mp := m.Mutable(fd).Map()
		lo, hi := 0, 3
		if f.Map != nil && f.Map.HasMinPairs() {
			lo = int(f.Map.GetMinPairs())
		}
		if f.Map != nil && f.Map.HasMaxPairs() {
			hi = int(f.Map.GetMaxPairs())
			if !s.valid && s.chance(0.2) {
				hi++
			}
		}
		if !s.valid && s.chance(0.2) {
			lo = 0
		}
		for n := lo + s.r.IntN(hi-lo+1); n > 0; n-- {
			k := s.scalar(fd.MapKey(), f.Keys)
			var v protoreflect.Value
			if fd.MapValue().Message() != nil {
				v = mp.NewValue()
				if depth < 4 {
					s.fill(v.Message(), depth+1)
				}
			} else {
				v = s.scalar(fd.MapValue(), f.Vals)
			}
			mp.Set(k.MapKey(), v)
		}
		return
	}
	if fd.IsList() {
		n := s.listLen(f)
		l := m.Mutable(fd).List()
		for i := 0; i < n; i++ {
			l.Append(s.value(m, f, f.Items, depth, l))
		}
		return
	}
	m.Set(fd, s.value(m, f, f.Value, depth, nil))
}

func (s *sampler) listLen(f *model.Field) int {
	lo, hi := 0, 3
	if f.Value != nil && f.Value.Repeated != nil {
		rr := f.Value.Repeated
		if rr.HasMinItems() {
			lo = int(rr.GetMinItems())
		}
		if rr.HasMaxItems() && !s.valid && s.chance(0.05) {
			return int(rr.GetMaxItems()) + s.r.IntN(2)
		}
		if rr.HasMaxItems() && int(rr.GetMaxItems()) < hi {
			hi = int(rr.GetMaxItems())
		}
	}
	if hi < lo {
		hi = lo
	}
	if s.valid && lo == 0 && hi > 0 {
		lo = 1
	}
	if !s.valid && s.chance(0.15) {
		edges := []int{0, 1, lo - 1, lo, hi, hi + 1}
		n := edges[s.r.IntN(len(edges))]
		if n < 0 {
			n = 0
		}
		return n
	}
	return lo + s.r.IntN(hi-lo+1)
}

func (s *sampler) value(m protoreflect.Message, f *model.Field, rules *model.Value, depth int, list protoreflect.List) protoreflect.Value {
	fd := f.Desc
	switch {
	case fd.Message() != nil:
		var sub protoreflect.Message
		if list != nil {
			sub = list.NewElement().Message()
		} else {
			sub = m.NewField(fd).Message()
		}
		if depth < 4 && (s.valid || s.chance(0.9)) {
			s.fill(sub, depth+1)
		}
		return protoreflect.ValueOfMessage(sub)
	}
	return s.scalar(fd, rules)
}

// scalar returns a value of a scalar kind for rules.
func (s *sampler) scalar(fd protoreflect.FieldDescriptor, rules *model.Value) protoreflect.Value {
	switch {
	case fd.Kind() == protoreflect.StringKind:
		return protoreflect.ValueOfString(s.str(rules))
	case fd.Kind() == protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(s.enum(fd, rules))
	case fd.Kind() == protoreflect.BoolKind:
		return protoreflect.ValueOfBool(s.chance(0.5))
	case fd.Kind() == protoreflect.Int32Kind, fd.Kind() == protoreflect.Sint32Kind, fd.Kind() == protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(s.num(rules, math32)))
	case fd.Kind() == protoreflect.Int64Kind, fd.Kind() == protoreflect.Sint64Kind, fd.Kind() == protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(s.num(rules, 1<<62))
	case fd.Kind() == protoreflect.Uint32Kind, fd.Kind() == protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(s.num(rules, math32)))
	case fd.Kind() == protoreflect.Uint64Kind, fd.Kind() == protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(uint64(s.num(rules, 1<<62)))
	case fd.Kind() == protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(s.float(rules))
	case fd.Kind() == protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(s.float(rules)))
	}
	return fd.Default()
}

const math32 = 1<<31 - 1

func (s *sampler) num(rules *model.Value, limit int64) int64 {
	lo, hi := int64(-1000), int64(1000)
	var edges []int64
	if rules != nil && rules.Numeric != nil {
		d := rules.Numeric.Descriptor()
		for _, n := range []string{"gte", "gt", "lte", "lt", "const"} {
			fd := d.Fields().ByName(protoreflect.Name(n))
			if fd != nil && rules.Numeric.Has(fd) {
				v := asInt(rules.Numeric.Get(fd))
				edges = append(edges, v-1, v, v+1)
				switch n {
				case "gte":
					lo = v
				case "gt":
					lo = v + 1
				case "lte":
					hi = v
				case "lt":
					hi = v - 1
				}
			}
		}
		if lo > hi-0 && hi < lo {
			hi = lo
		}
		if lo == -1000 && hi != 1000 {
			lo = hi - 1000
		}
		if hi == 1000 && lo != -1000 {
			hi = lo + 1000
		}
	}
	if rules != nil && rules.Numeric != nil {
		for _, n := range []string{"in", "not_in"} {
			if fd := rules.Numeric.Descriptor().Fields().ByName(protoreflect.Name(n)); fd != nil {
				l := rules.Numeric.Get(fd).List()
				for i := 0; i < l.Len(); i++ {
					edges = append(edges, asInt(l.Get(i)))
				}
			}
		}
	}
	if !s.valid && s.chance(0.3) {
		edges = append(edges, 0, -1, -limit-1, limit)
		return edges[s.r.IntN(len(edges))]
	}
	return lo + s.r.Int64N(hi-lo+1)
}

func asInt(v protoreflect.Value) int64 {
	switch x := v.Interface().(type) {
	case int32:
		return int64(x)
	case int64:
		return x
	case uint32:
		return int64(x)
	case uint64:
		return int64(x)
	}
	return 0
}

// float returns a float near the rules' bounds, or an odd one (NaN, ±Inf, -0).
func (s *sampler) float(rules *model.Value) float64 {
	edges := []float64{0, math.Copysign(0, -1), math.NaN(), math.Inf(1), math.Inf(-1), 0.25, 1, -1}
	if rules != nil && rules.Numeric != nil {
		d := rules.Numeric.Descriptor()
		for i := 0; i < d.Fields().Len(); i++ {
			fd := d.Fields().Get(i)
			if fd.Kind() != protoreflect.DoubleKind && fd.Kind() != protoreflect.FloatKind {
				continue
			}
			if fd.IsList() {
				l := rules.Numeric.Get(fd).List()
				for j := 0; j < l.Len(); j++ {
					edges = append(edges, l.Get(j).Float())
				}
			} else if rules.Numeric.Has(fd) {
				v := rules.Numeric.Get(fd).Float()
				edges = append(edges, v, math.Nextafter(v, math.Inf(1)), math.Nextafter(v, math.Inf(-1)))
			}
		}
	}
	if s.chance(0.5) {
		return edges[s.r.IntN(len(edges))]
	}
	return s.r.Float64()*6 - 3
}

func (s *sampler) enum(fd protoreflect.FieldDescriptor, rules *model.Value) protoreflect.EnumNumber {
	vals := fd.Enum().Values()
	if !s.valid && s.chance(0.25) {
		edges := []protoreflect.EnumNumber{0, -1, protoreflect.EnumNumber(vals.Len()), 1 << 20, -1 << 31}
		return edges[s.r.IntN(len(edges))]
	}
	for {
		n := vals.Get(s.r.IntN(vals.Len())).Number()
		if s.valid && rules != nil && rules.Enum != nil {
			bad := false
			for _, x := range rules.Enum.GetNotIn() {
				bad = bad || protoreflect.EnumNumber(x) == n
			}
			if bad {
				continue
			}
		}
		return n
	}
}

func (s *sampler) plain() string {
	const letters = "abcdefghijklmnopqrstuvwxyzéÉ -'"
	rs := []rune(letters)
	n := s.r.IntN(12)
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteRune(rs[s.r.IntN(len(rs))])
	}
	return b.String()
}

// str returns a string for rules: valid, at a length bound, a pattern
// edge, or a CEL rule's edge.
func (s *sampler) str(rules *model.Value) string {
	if rules == nil || (rules.String == nil && len(rules.CEL) == 0) {
		return s.plain()
	}
	for _, c := range rules.CEL {
		switch c.Rule.GetId() {
		case "string.siret":
			return s.siret()
		case "string.birth_date", "string.calendar_date":
			return s.date(c.Rule.GetId() == "string.birth_date")
		}
	}
	sr := rules.String
	good := s.matching(sr)
	if !s.valid && s.chance(0.3) {
		var cands []string
		cands = append(cands, sr.GetIn()...)
		cands = append(cands, sr.GetNotIn()...)
		for _, c := range []string{sr.GetConst(), sr.GetPrefix(), sr.GetSuffix(), sr.GetContains(), sr.GetNotContains()} {
			if c != "" {
				cands = append(cands, c, sr.GetPrefix()+c+sr.GetSuffix())
			}
		}
		if sr.HasPrefix() {
			cands = append(cands, sr.GetPrefix()+sr.GetContains()+sr.GetSuffix(), sr.GetPrefix()+"m"+sr.GetNotContains()+sr.GetSuffix())
		}
		cands = append(cands, "é", "éé", "aé", "ééé", "abcd", "abcdefg")
		return cands[s.r.IntN(len(cands))]
	}
	if s.valid {
		return good
	}
	switch s.r.IntN(6) {
	case 0, 1:
		return good
	case 2:
		return s.mutate(good)
	case 3:
		return ""
	default:
		var bounds []int
		for _, b := range []uint64{sr.GetMinLen(), sr.GetMaxLen(), sr.GetLen()} {
			if b > 0 {
				bounds = append(bounds, int(b)-1, int(b), int(b)+1)
			}
		}
		if len(bounds) == 0 {
			return s.mutate(good)
		}
		n := bounds[s.r.IntN(len(bounds))]
		unit := []string{"a", "é", "𝔸", "A", "0"}[s.r.IntN(5)]
		if g := []rune(good); len(g) > 0 && s.chance(0.5) {
			unit = string(g[0])
		}
		return strings.Repeat(unit, max(n, 0))
	}
}

// matching generates a string matching the pattern and lengths of sr.
func (s *sampler) matching(sr *validate.StringRules) string {
	for try := 0; try < 200; try++ {
		v := s.plain()
		if sr.HasPattern() {
			re, err := syntax.Parse(sr.GetPattern(), syntax.Perl)
			if err != nil {
				panic(err)
			}
			var b strings.Builder
			s.gen(&b, re.Simplify())
			v = b.String()
		}
		n := uint64(len([]rune(v)))
		if (sr.HasMinLen() && n < sr.GetMinLen()) || (sr.HasMaxLen() && n > sr.GetMaxLen()) {
			continue
		}
		return v
	}
	return "a"
}

// gen writes a random string matched by re.
func (s *sampler) gen(b *strings.Builder, re *syntax.Regexp) {
	switch re.Op {
	case syntax.OpLiteral:
		b.WriteString(string(re.Rune))
	case syntax.OpCharClass:
		i := s.r.IntN(len(re.Rune) / 2)
		lo, hi := re.Rune[2*i], re.Rune[2*i+1]
		if hi > lo+2000 {
			hi = lo + 2000
		}
		for {
			r := lo + rune(s.r.IntN(int(hi-lo+1)))
			if r < unicode.MaxRune && (r < 0xD800 || r > 0xDFFF) {
				b.WriteRune(r)
				return
			}
		}
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		b.WriteRune('x')
	case syntax.OpCapture:
		s.gen(b, re.Sub[0])
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			s.gen(b, sub)
		}
	case syntax.OpAlternate:
		s.gen(b, re.Sub[s.r.IntN(len(re.Sub))])
	case syntax.OpStar, syntax.OpPlus, syntax.OpQuest, syntax.OpRepeat:
		lo, hi := 0, 6
		switch re.Op {
		case syntax.OpPlus:
			lo = 1
		case syntax.OpQuest:
			hi = 1
		case syntax.OpRepeat:
			lo, hi = re.Min, re.Max
			if hi < 0 {
				hi = lo + 6
			}
		}
		for n := lo + s.r.IntN(hi-lo+1); n > 0; n-- {
			s.gen(b, re.Sub[0])
		}
	}
}

func (s *sampler) mutate(v string) string {
	rs := []rune(v)
	odd := []rune{'!', ' ', 'é', '\n', 'A', 'z', '0', '-', '𝔸', '=', '.', '\u0301', '\u00a0', '_'}
	c := odd[s.r.IntN(len(odd))]
	switch {
	case s.chance(0.05):
		// Invalid UTF-8: Unmarshal refuses it, a Go caller may not.
		return v + "\xff"
	case len(rs) == 0 || s.chance(0.25):
		return v + string(c)
	case s.chance(0.33):
		i := s.r.IntN(len(rs))
		return string(rs[:i]) + string(rs[i+1:])
	case s.chance(0.5):
		i := s.r.IntN(len(rs))
		return string(rs[:i]) + string(c) + string(rs[i:])
	default:
		rs[s.r.IntN(len(rs))] = c
		return string(rs)
	}
}

// siret returns a SIRET candidate: valid, La Poste, bad checksum, bad shape.
func (s *sampler) siret() string {
	digits := func(n int) string {
		var b strings.Builder
		for i := 0; i < n; i++ {
			b.WriteByte(byte('0' + s.r.IntN(10)))
		}
		return b.String()
	}
	body := digits(13)
	if s.chance(0.3) {
		body = "356000000" + digits(4)
	}
	var valid string
	for d := 0; d < 10; d++ {
		if c := body + strconv.Itoa(d); celSiret(c) == "" {
			valid = c
			break
		}
	}
	if s.valid {
		return valid
	}
	switch s.r.IntN(6) {
	case 0, 1:
		return valid
	case 2:
		return body + strconv.Itoa(s.r.IntN(10))
	case 3:
		return body
	case 4:
		return s.mutate(valid)
	default:
		return ""
	}
}

// date returns a date candidate around the rules' edges: leap years,
// month and day bounds, 1900, today and tomorrow (fixedNow), bad shapes.
func (s *sampler) date(birth bool) string {
	if s.valid {
		y := 1950 + s.r.IntN(70)
		return fmt.Sprintf("%04d-%02d-%02d", y, 1+s.r.IntN(12), 1+s.r.IntN(28))
	}
	switch s.r.IntN(8) {
	case 0:
		return ""
	case 1:
		return fixedNow.Format(time.DateOnly)
	case 2:
		return fixedNow.AddDate(0, 0, 1).Format(time.DateOnly)
	case 3:
		return s.mutate(fmt.Sprintf("%04d-%02d-%02d", 1990, 1+s.r.IntN(12), 1+s.r.IntN(28)))
	default:
		ys := []int{1899, 1900, 1904, 2000, 2001, 2024, 2100, 2026, 2027, 9999, 0}
		ms := []int{0, 1, 2, 4, 12, 13}
		ds := []int{0, 1, 28, 29, 30, 31, 32}
		return fmt.Sprintf("%04d-%02d-%02d", ys[s.r.IntN(len(ys))], ms[s.r.IntN(len(ms))], ds[s.r.IntN(len(ds))])
	}
}
