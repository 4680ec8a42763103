package fastvalid

import (
	"math/rand/v2"
	"testing"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// BenchmarkValidate compares protovalidate and fastvalid on a valid
// request and a valid response of every method, every field set (the
// valid sampler; fixed seed).
func BenchmarkValidate(b *testing.B) {
	p := newPair(b)
	ref, err := protovalidate.New()
	if err != nil {
		b.Fatal(err)
	}
	fast, err := New()
	if err != nil {
		b.Fatal(err)
	}
	for _, m := range p.set.Roots {
		mt, err := protoregistry.GlobalTypes.FindMessageByName(m.Desc.FullName())
		if err != nil {
			b.Fatal(err)
		}
		s := &sampler{r: rand.New(rand.NewPCG(7, 7)), set: p.set, valid: true, preferSubject: true}
		msg := s.message(mt, 0)
		for _, v := range []struct {
			name string
			v    protovalidate.Validator
		}{{"protovalidate", ref}, {"fastvalid", fast}} {
			b.Run(string(m.Desc.Name())+"/"+v.name, func(b *testing.B) {
				bench(b, v.v, msg)
			})
		}
	}
}

// BenchmarkValidateInvalid is the refusal path: a request breaking
// several rules.
func BenchmarkValidateInvalid(b *testing.B) {
	p := newPair(b)
	ref, _ := protovalidate.New()
	fast, _ := New()
	s := &sampler{r: rand.New(rand.NewPCG(8, 8)), set: p.set, valid: true, preferSubject: true}
	mt, _ := protoregistry.GlobalTypes.FindMessageByName("relais.familyquotient.v1.GetFamilyQuotientRequest")
	msg := s.message(mt, 0)
	edit{"access_context.recipient", str("123")}.apply(msg.ProtoReflect())
	edit{"subject.birth_date", str("1899-01-01")}.apply(msg.ProtoReflect())
	edit{"subject.sex", num(0)}.apply(msg.ProtoReflect())
	b.Run("protovalidate", func(b *testing.B) { benchInvalid(b, ref, msg) })
	b.Run("fastvalid", func(b *testing.B) { benchInvalid(b, fast, msg) })
}

func bench(b *testing.B, v protovalidate.Validator, msg proto.Message) {
	if err := v.Validate(msg); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Validate(msg); err != nil {
			b.Fatal(err)
		}
	}
}

func benchInvalid(b *testing.B, v protovalidate.Validator, msg proto.Message) {
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Validate(msg); err == nil {
			b.Fatal("valid")
		}
	}
}
