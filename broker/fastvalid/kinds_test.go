package fastvalid

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/relais-broker/relais/broker/fastvalid/internal/emit"
	"github.com/relais-broker/relais/broker/fastvalid/internal/model"
	"github.com/relais-broker/relais/broker/fastvalid/internal/testpb"
)

// kindsPair compares protovalidate with the generated checks of the
// test-only messages (rules_testkinds_gen_test.go).
func kindsPair(t testing.TB) *pair {
	p := newPair(t)
	set, err := model.LoadMessages((*testpb.Kinds)(nil).ProtoReflect().Descriptor())
	if err != nil {
		t.Fatal(err)
	}
	p.set = set
	p.check = func(msg proto.Message) error {
		s := state{nowFn: p.fast.nowFn}
		if !checkTestKinds(msg, &s) {
			panic(fmt.Sprintf("%T has no test checks", msg))
		}
		return s.result()
	}
	return p
}

// TestKindsDifferential runs the differential test on every rule kind the
// generator supports, and requires each rule to have been broken at least
// once (so none is only assumed to work).
func TestKindsDifferential(t *testing.T) {
	p := kindsPair(t)
	want := []string{
		"message.oneof", "string.len", "int32.const", "string.in", "string.not_in", "string.const",
		"string.prefix", "string.suffix", "string.contains", "string.not_contains", "string.min_bytes",
		"string.max_bytes", "string.len_bytes", "string.pattern", "string.min_len", "string.max_len", "required",
		"int64.gte_lte", "int64.gt_lt_exclusive", "int64.gt_lt", "uint32.in", "uint64.not_in", "uint64.lt",
		"sint32.gt", "sint64.lte", "fixed32.gte", "fixed64.const", "sfixed32.lt", "sfixed64.gte_lt",
		"double.gt_lte", "double.finite", "float.gte", "float.not_in", "int32.lt", "int32.gt", "enum.const",
		"enum.in", "enum.defined_only", "repeated.unique", "repeated.max_items", "repeated.min_items",
		"map.min_pairs", "map.max_pairs", "uint64.lte",
	}
	seen := map[string]int{}
	n := 20000
	switch {
	case testing.Short():
		n = 2000
	case raceEnabled:
		n = 6000 // as in TestDifferentialRandom
	}
	forKey := 0
	for _, mt := range []protoreflect.MessageType{(*testpb.Kinds)(nil).ProtoReflect().Type(), (*testpb.Leaf)(nil).ProtoReflect().Type(), (*testpb.Maps)(nil).ProtoReflect().Type()} {
		s := &sampler{r: rand.New(rand.NewPCG(9, 9)), set: p.set}
		valid := 0
		for i := 0; i < n; i++ {
			msg := s.message(mt, 0)
			if d, nv := p.diff(msg); d != "" {
				t.Fatalf("%s: %s\n%v", mt.Descriptor().FullName(), d, msg)
			} else if nv == 0 {
				valid++
			}
			var verr *protovalidate.ValidationError
			if errors.As(p.ref.Validate(msg), &verr) {
				for _, v := range verr.Violations {
					seen[v.Proto.GetRuleId()]++
					if v.Proto.GetForKey() {
						forKey++
					}
				}
			}
		}
		if mt.Descriptor().Name() == "Leaf" && valid == 0 {
			t.Fatal("no valid Leaf")
		}
	}
	if forKey == 0 {
		t.Fatal("no map key violation")
	}
	var missing []string
	for _, id := range want {
		if seen[id] == 0 {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		var got []string
		for id := range seen {
			got = append(got, id)
		}
		sort.Strings(got)
		t.Fatalf("rules never broken: %v (broken: %v)", missing, got)
	}
	for id := range seen {
		if !slices.Contains(want, id) && id != "exactly one field is required in oneof" {
			t.Logf("also broken: %s", id)
		}
	}
}

// TestKindsGeneratedInStep: the test checks are what the generator writes.
func TestKindsGeneratedInStep(t *testing.T) {
	set, err := model.LoadMessages((*testpb.Kinds)(nil).ProtoReflect().Descriptor())
	if err != nil {
		t.Fatal(err)
	}
	want, err := emit.GenerateWith(set, emit.Options{Dispatch: "checkTestKinds", Prefix: "t", Source: "go run ./internal/gen -test"})
	if err != nil {
		t.Fatal(err)
	}
	assertFile(t, "rules_testkinds_gen_test.go", want)
}

func kindsTypes() []protoreflect.MessageType {
	return []protoreflect.MessageType{(*testpb.Kinds)(nil).ProtoReflect().Type(), (*testpb.Leaf)(nil).ProtoReflect().Type(), (*testpb.Maps)(nil).ProtoReflect().Type()}
}

// FuzzKinds is FuzzDifferential on the test-only messages of every rule
// kind (maps, floating point, unsigned…).
func FuzzKinds(f *testing.F) {
	p := kindsPair(f)
	types := kindsTypes()
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		mt := types[int(data[0])%len(types)]
		msg := mt.New().Interface()
		if err := proto.Unmarshal(data[1:], msg); err != nil {
			return
		}
		if d, _ := p.diff(msg); d != "" {
			t.Fatalf("%s: %s\n%v", mt.Descriptor().FullName(), d, msg)
		}
	})
}
