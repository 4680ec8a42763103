package fastvalid

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/relais-broker/relais/broker/fastvalid/internal/model"
)

// checkedTypes are the message types with generated checks: every request
// and response and the messages under them.
func checkedTypes(tb testing.TB, set *model.Set) []protoreflect.MessageType {
	tb.Helper()
	var out []protoreflect.MessageType
	for _, m := range set.Messages {
		if !m.Checked {
			continue
		}
		mt, err := protoregistry.GlobalTypes.FindMessageByName(m.Desc.FullName())
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, mt)
	}
	if len(out) < 28 {
		tb.Fatalf("only %d checked message types", len(out))
	}
	return out
}

// TestDifferentialRandom compares both validators on thousands of biased
// random messages of every checked type, and requires each type to have
// produced both verdicts (a generator that only builds valid messages
// would prove nothing).
func TestDifferentialRandom(t *testing.T) {
	p := newPair(t)
	n := 3000
	switch {
	case testing.Short():
		n = 300
	case raceEnabled:
		// The same seeds, a third of the messages: the race detector makes
		// each ten times slower, and races are the concurrency test's job.
		n = 1000
	}
	for _, mt := range checkedTypes(t, p.set) {
		name := string(mt.Descriptor().FullName())
		t.Run(name, func(t *testing.T) {
			s := &sampler{r: rand.New(rand.NewPCG(1, uint64(len(name)))), set: p.set}
			valid, invalid, fails := 0, 0, 0
			for i := 0; i < n; i++ {
				s.valid, s.bad = false, []float64{0.02, 0.08, 0.3, 0}[i%4]
				msg := s.message(mt, 0)
				d, nv := p.diff(msg)
				if d != "" {
					fails++
					if fails <= 3 {
						t.Errorf("message %d %v:\n%s", i, msg, d)
					}
					continue
				}
				if nv == 0 {
					valid++
				} else {
					invalid++
				}
			}
			if fails > 0 {
				t.Fatalf("%d of %d messages differ", fails, n)
			}
			if valid == 0 || invalid == 0 {
				t.Fatalf("one-sided sample: %d valid, %d invalid", valid, invalid)
			}
			t.Logf("%d valid, %d invalid", valid, invalid)
		})
	}
}

// TestValidSamples: the valid-mode sampler builds valid messages, which the
// edge cases and benchmarks start from.
func TestValidSamples(t *testing.T) {
	p := newPair(t)
	for _, mt := range checkedTypes(t, p.set) {
		s := &sampler{r: rand.New(rand.NewPCG(2, 2)), set: p.set, valid: true}
		for i := 0; i < 200; i++ {
			msg := s.message(mt, 0)
			if err := p.ref.Validate(msg); err != nil {
				t.Fatalf("%s: valid sample refused by protovalidate: %v\n%v", mt.Descriptor().FullName(), err, msg)
			}
			if err := p.fast.Validate(msg); err != nil {
				t.Fatalf("%s: valid sample refused by fastvalid: %v", mt.Descriptor().FullName(), err)
			}
		}
	}
}

// edit changes one value on a path of field names ("access_context.purpose");
// a leading "subject" also tries "identity" (the oneof variant). It reports
// whether the message has the path.
type edit struct {
	path string
	// set receives the leaf message and field.
	set func(m protoreflect.Message, fd protoreflect.FieldDescriptor)
}

func (e edit) apply(m protoreflect.Message) bool {
	paths := []string{e.path}
	if strings.HasPrefix(e.path, "subject.") && strings.HasSuffix(string(m.Descriptor().Name()), "Request") {
		paths = append(paths, "identity"+strings.TrimPrefix(e.path, "subject"))
	}
	for _, p := range paths {
		if apply(m, strings.Split(p, "."), e.set) {
			return true
		}
	}
	return false
}

func apply(m protoreflect.Message, names []string, set func(protoreflect.Message, protoreflect.FieldDescriptor)) bool {
	fd := m.Descriptor().Fields().ByName(protoreflect.Name(names[0]))
	if fd == nil {
		return false
	}
	if len(names) == 1 {
		set(m, fd)
		return true
	}
	if fd.Message() == nil {
		return false
	}
	if fd.IsList() {
		l := m.Mutable(fd).List()
		if l.Len() == 0 {
			l.Append(l.NewElement())
		}
		return apply(l.Get(l.Len()-1).Message(), names[1:], set)
	}
	if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() && m.WhichOneof(od) != fd {
		return false
	}
	return apply(m.Mutable(fd).Message(), names[1:], set)
}

func str(v string) func(protoreflect.Message, protoreflect.FieldDescriptor) {
	return func(m protoreflect.Message, fd protoreflect.FieldDescriptor) {
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() && m.WhichOneof(od) != nil && m.WhichOneof(od) != fd {
			m.Clear(m.WhichOneof(od))
		}
		m.Set(fd, protoreflect.ValueOfString(v))
	}
}

func num(v int64) func(protoreflect.Message, protoreflect.FieldDescriptor) {
	return func(m protoreflect.Message, fd protoreflect.FieldDescriptor) {
		switch fd.Kind() {
		case protoreflect.EnumKind:
			m.Set(fd, protoreflect.ValueOfEnum(protoreflect.EnumNumber(v)))
		case protoreflect.Int64Kind:
			m.Set(fd, protoreflect.ValueOfInt64(v))
		default:
			m.Set(fd, protoreflect.ValueOfInt32(int32(v)))
		}
	}
}

func clear(m protoreflect.Message, fd protoreflect.FieldDescriptor) { m.Clear(fd) }

// items sets a list to n elements: copies of the first (a valid one) or
// of v for strings.
func items(n int, v string) func(protoreflect.Message, protoreflect.FieldDescriptor) {
	return func(m protoreflect.Message, fd protoreflect.FieldDescriptor) {
		l := m.Mutable(fd).List()
		var first protoreflect.Value
		if l.Len() > 0 {
			first = l.Get(0)
		}
		m.Clear(fd)
		l = m.Mutable(fd).List()
		for i := 0; i < n; i++ {
			switch {
			case fd.Kind() == protoreflect.StringKind:
				l.Append(protoreflect.ValueOfString(v))
			case first.IsValid():
				l.Append(protoreflect.ValueOfMessage(proto.Clone(first.Message().Interface()).ProtoReflect()))
			default:
				l.Append(l.NewElement())
			}
		}
	}
}

func setItem(i int, v string) func(protoreflect.Message, protoreflect.FieldDescriptor) {
	return func(m protoreflect.Message, fd protoreflect.FieldDescriptor) {
		l := m.Mutable(fd).List()
		for l.Len() <= i {
			l.Append(protoreflect.ValueOfString("Jean"))
		}
		l.Set(i, protoreflect.ValueOfString(v))
	}
}

// edgeCases are hand-written edge cases for each rule kind; each applies to
// every message having its path, and all of them but the "valid" ones
// must be refused.
var edgeCases = []struct {
	name  string
	edits []edit
	valid bool
	only  string // a regexp the message's full name must match, if set
}{
	{"siret bad checksum", []edit{{"access_context.recipient", str("73282932000075")}}, false, ""},
	{"siret valid", []edit{{"access_context.recipient", str("73282932000074")}}, true, ""},
	{"siret la poste", []edit{{"access_context.recipient", str("35600000000048")}}, true, ""},
	{"siret la poste bad", []edit{{"access_context.recipient", str("35600000000049")}}, false, ""},
	{"siret 13 digits", []edit{{"access_context.recipient", str("7328293200007")}}, false, ""},
	{"siret letters", []edit{{"access_context.recipient", str("7328293200007A")}}, false, ""},
	{"siret trailing newline", []edit{{"access_context.recipient", str("73282932000074\n")}}, false, ""},
	{"purpose empty", []edit{{"access_context.purpose", str("")}}, false, ""},
	{"purpose 64", []edit{{"access_context.purpose", str("a" + strings.Repeat("b", 63))}}, true, ""},
	{"purpose 65", []edit{{"access_context.purpose", str("a" + strings.Repeat("b", 64))}}, false, ""},
	{"purpose upper", []edit{{"access_context.purpose", str("Cantine")}}, false, ""},
	{"case reference 128 runes", []edit{{"access_context.case_reference", str("A" + strings.Repeat("9", 127))}}, true, ""},
	{"case reference 129", []edit{{"access_context.case_reference", str("A" + strings.Repeat("9", 128))}}, false, ""},
	{"case reference leading space", []edit{{"access_context.case_reference", str(" A1")}}, false, ""},
	{"agent email", []edit{{"access_context.agent", str("jean@example.org")}}, false, ""},
	{"access context missing", []edit{{"access_context", clear}}, false, ""},
	{"every access context rule", []edit{{"access_context.recipient", str("")}, {"access_context.purpose", str("")}, {"access_context.case_reference", str("")}, {"access_context.agent", str("é")}}, false, ""},
	{"birth name empty", []edit{{"subject.birth_name", str("")}}, false, ""},
	{"birth name 100 accented", []edit{{"subject.birth_name", str(strings.Repeat("é", 100))}}, true, ""},
	{"birth name 101 accented", []edit{{"subject.birth_name", str(strings.Repeat("é", 101))}}, false, ""},
	{"birth name digit", []edit{{"subject.birth_name", str("Dupont2")}}, false, ""},
	{"birth name combining mark", []edit{{"subject.birth_name", str("e\u0301")}}, false, ""},
	{"usage name empty", []edit{{"subject.usage_name", str("")}}, true, ""},
	{"given names none", []edit{{"subject.given_names", items(0, "")}}, false, ""},
	{"given names 10", []edit{{"subject.given_names", items(10, "Marie")}}, true, ""},
	{"given names 11", []edit{{"subject.given_names", items(11, "Marie")}}, false, ""},
	{"given name empty at 2", []edit{{"subject.given_names", setItem(2, "")}}, false, ""},
	{"given name 61 runes at 1", []edit{{"subject.given_names", setItem(1, strings.Repeat("𝔸", 61))}}, false, ""},
	{"sex unspecified", []edit{{"subject.sex", num(0)}}, false, ""},
	{"sex undefined", []edit{{"subject.sex", num(7)}}, false, ""},
	{"sex negative", []edit{{"subject.sex", num(-1)}}, false, ""},
	{"birth date today", []edit{{"subject.birth_date", str("2026-06-15")}}, true, ""},
	{"birth date tomorrow", []edit{{"subject.birth_date", str("2026-06-16")}}, false, ""},
	{"birth date 1899", []edit{{"subject.birth_date", str("1899-12-31")}}, false, ""},
	{"birth date 1900", []edit{{"subject.birth_date", str("1900-01-01")}}, true, ""},
	{"birth date feb 29 leap", []edit{{"subject.birth_date", str("2000-02-29")}}, true, ""},
	{"birth date feb 29 not leap", []edit{{"subject.birth_date", str("1900-02-29")}}, false, ""},
	{"birth date month 13", []edit{{"subject.birth_date", str("1990-13-01")}}, false, ""},
	{"birth date day 0", []edit{{"subject.birth_date", str("1990-01-00")}}, false, ""},
	{"birth date shape", []edit{{"subject.birth_date", str("15/06/1990")}}, false, ""},
	{"birth date empty", []edit{{"subject.birth_date", str("")}}, false, ""},
	{"born in France without place", []edit{{"subject.birth_country_cog", str("99100")}, {"subject.birth_place_cog", str("")}}, false, ""},
	{"born in Corsica", []edit{{"subject.birth_country_cog", str("99100")}, {"subject.birth_place_cog", str("2B033")}}, true, ""},
	{"born abroad without place", []edit{{"subject.birth_country_cog", str("99134")}, {"subject.birth_place_cog", str("")}}, true, ""},
	{"birth place bad", []edit{{"subject.birth_place_cog", str("2C004")}}, false, ""},
	{"birth country bad", []edit{{"subject.birth_country_cog", str("98100")}}, false, ""},
	{"subject missing", []edit{{"subject", clear}, {"citizen_access_token", clear}}, false, ""},
	{"subject and token", []edit{{"citizen_access_token", str("abc")}, {"subject.birth_name", str("Dupont")}}, false, ""},
	{"token only", []edit{{"subject", clear}, {"citizen_access_token", str("eyJhbGciOi.J9-_~+/==")}}, true, ""},
	{"token bad", []edit{{"subject", clear}, {"citizen_access_token", str("abc def")}}, false, ""},
	{"token padding inside", []edit{{"subject", clear}, {"citizen_access_token", str("a=b")}}, false, ""},
	{"token 4096", []edit{{"subject", clear}, {"citizen_access_token", str(strings.Repeat("a", 4096))}}, true, ""},
	{"token 4097", []edit{{"subject", clear}, {"citizen_access_token", str(strings.Repeat("a", 4097))}}, false, ""},
	{"oneof token empty", []edit{{"citizen_access_token", str("")}}, false, `jobseeker\.v1|schooling|student`},
	{"message oneof token empty", []edit{{"citizen_access_token", str("")}}, true, `aah|family|rsa|asf|aeeh|health|civic|national|activity`},
	{"france travail id bad", []edit{{"france_travail_id", str("abc")}}, false, ""},
	{"france travail id and token", []edit{{"france_travail_id", str("ABC12345")}, {"citizen_access_token", str("abc")}}, false, "jobseekerpayments"},
	{"oneof switch to token", []edit{{"france_travail_id", str("ABC12345")}, {"citizen_access_token", str("abc")}}, true, `jobseeker\.v1`},
	{"ine bad", []edit{{"ine", str("1234567890")}}, false, ""},
	{"ine good", []edit{{"ine", str("1234567890A")}}, true, ""},
	// Responses.
	{"source missing", []edit{{"source", clear}}, false, ""},
	{"source empty ids", []edit{{"source.source_id", str("")}, {"source.provider", str("")}}, false, ""},
	{"produced at missing", []edit{{"source.produced_at", clear}}, false, ""},
	{"quotient negative", []edit{{"value", num(-1)}}, false, ""},
	{"quotient max", []edit{{"value", num(100000)}}, true, ""},
	{"quotient over", []edit{{"value", num(100001)}}, false, ""},
	{"reference month 13", []edit{{"reference_month", num(13)}}, false, ""},
	{"reference year 1999", []edit{{"reference_year", num(1999)}}, false, ""},
	{"scholarship echelon 8", []edit{{"echelon", num(8)}}, false, ""},
	{"status undefined", []edit{{"status", num(99)}}, false, "aeeh|nationalservice"},
	{"scholarship status undefined", []edit{{"status", num(99)}}, true, "studentscholarship"},
	{"pupil status undefined", []edit{{"pupil_status", num(-5)}}, false, ""},
	{"boarding undefined", []edit{{"boarding_regime", num(42)}}, false, ""},
	{"comment 1000", []edit{{"comment", str(strings.Repeat("é", 1000))}}, true, ""},
	{"comment 1001", []edit{{"comment", str(strings.Repeat("é", 1001))}}, false, ""},
	{"child birth date bad", []edit{{"children.birth_date", str("2020-02-30")}}, false, ""},
	{"child birth date empty", []edit{{"children.birth_date", str("")}}, true, ""},
	{"postal code bad", []edit{{"address.postal_code", str("7500")}}, false, ""},
	{"monthly totals 30", []edit{{"monthly_totals", items(30, "")}}, true, ""},
	{"monthly totals 31", []edit{{"monthly_totals", items(31, "")}}, false, ""},
	{"payments 501", []edit{{"payments", items(501, "")}}, false, ""},
	{"payment negative", []edit{{"payments.total_cents", num(-1)}}, false, ""},
	{"month bad", []edit{{"monthly_totals.month", str("2024-13")}}, false, ""},
	{"uai bad", []edit{{"establishment.uai", str("0751234")}}, false, ""},
	{"uai empty", []edit{{"establishment.uai", str("")}}, true, ""},
	{"host siret bad", []edit{{"current.host_siret", str("123")}}, false, ""},
	{"admission uai bad", []edit{{"admissions.establishment_uai", str("")}}, false, ""},
	{"school year bad", []edit{{"school_year", str("2024-25")}}, false, ""},
	{"rights start date bad", []edit{{"rights_start_date", str("2024-00-10")}}, false, ""},
	{"identity birth date bad", []edit{{"identity.birth_date", str("1990-1-1")}}, false, ""},
}

// TestDifferentialEdgeCases runs every edge case on every message type it
// applies to, from valid samples.
func TestDifferentialEdgeCases(t *testing.T) {
	p := newPair(t)
	types := checkedTypes(t, p.set)
	for _, c := range edgeCases {
		t.Run(c.name, func(t *testing.T) {
			applied := 0
			only := regexp.MustCompile(c.only)
			for _, mt := range types {
				if !only.MatchString(string(mt.Descriptor().FullName())) {
					continue
				}
				s := &sampler{r: rand.New(rand.NewPCG(3, 3)), set: p.set, valid: true, preferSubject: true}
				for k := 0; k < 3; k++ {
					msg := s.message(mt, 0)
					ok := true
					for _, e := range c.edits {
						ok = e.apply(msg.ProtoReflect()) && ok
					}
					if !ok {
						break
					}
					applied++
					d, nv := p.diff(msg)
					if d != "" {
						t.Fatalf("%s: %s\n%v", mt.Descriptor().FullName(), d, msg)
					}
					if c.valid != (nv == 0) {
						t.Fatalf("%s: %d violations, want valid=%v: %v", mt.Descriptor().FullName(), nv, c.valid, p.fast.Validate(msg))
					}
				}
			}
			if applied == 0 {
				t.Fatal("applies to no message")
			}
		})
	}
}
