package fastvalid

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"sync"
	"testing"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"

	"github.com/relais-broker/relais/broker/errcat"
	"github.com/relais-broker/relais/broker/fastvalid/internal/emit"
	"github.com/relais-broker/relais/broker/fastvalid/internal/model"
	adminv1 "github.com/relais-broker/relais/proto/relais/admin/v1"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
)

// TestGeneratedInStep: rules_gen.go is what the generator writes from the
// linked descriptors (make check-generated runs the same comparison).
func TestGeneratedInStep(t *testing.T) {
	set, err := model.Load()
	if err != nil {
		t.Fatal(err)
	}
	want, err := emit.Generate(set)
	if err != nil {
		t.Fatal(err)
	}
	assertFile(t, "rules_gen.go", want)
}

func assertFile(t *testing.T, name string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale: run go generate ./broker/fastvalid", name)
	}
}

// TestFallback: messages without generated checks (the admin API) and
// calls with options get protovalidate's own answer.
func TestFallback(t *testing.T) {
	p := newPair(t)
	bad := &adminv1.AddConsumerRequest{Siret: "123", Name: ""}
	if d, n := p.diff(bad); d != "" || n == 0 {
		t.Fatalf("admin request: %q, %d violations", d, n)
	}
	if !checkGenerated(&commonv1.AccessContext{}, &state{}) {
		t.Fatal("AccessContext has generated checks")
	}
	if checkGenerated(bad, &state{}) {
		t.Fatal("the admin API must go to the fallback")
	}
	req := &familyquotientv1.GetFamilyQuotientRequest{}
	err := p.fast.Validate(req, protovalidate.WithFailFast())
	var verr *protovalidate.ValidationError
	if !errors.As(err, &verr) || len(verr.Violations) != 1 {
		t.Fatalf("fail fast through the fallback: %v", err)
	}
	if err := p.fast.Validate(nil); err != nil {
		t.Fatalf("nil message: %v", err)
	}
	if d, _ := p.diff((*familyquotientv1.GetFamilyQuotientRequest)(nil)); d != "" {
		t.Fatalf("typed nil: %s", d)
	}
}

// TestErrcatDropIn: the BadRequest the broker sends is the same with
// either validator.
func TestErrcatDropIn(t *testing.T) {
	p := newPair(t)
	s := &sampler{r: rand.New(rand.NewPCG(5, 5)), set: p.set}
	for _, mt := range checkedTypes(t, p.set) {
		for i := 0; i < 50; i++ {
			msg := s.message(mt, 0)
			a, b := errcat.Validate(p.ref, proto.Clone(msg)), errcat.Validate(p.fast, msg)
			if (a == nil) != (b == nil) {
				t.Fatalf("%s: %v / %v", mt.Descriptor().FullName(), a, b)
			}
			if a != nil && !proto.Equal(a.Status().Proto(), b.Status().Proto()) {
				t.Fatalf("%s: statuses differ:\n%v\n%v", mt.Descriptor().FullName(), a.Status().Proto(), b.Status().Proto())
			}
		}
	}
}

// TestNoAllocationWhenValid: a valid request or response costs no
// allocation (deterministic, not a timing assertion). The validator uses
// the default clock: the test's WithNowFunc allocates a Timestamp per call.
func TestNoAllocationWhenValid(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	p := newPair(t)
	fast, err := New()
	if err != nil {
		t.Fatal(err)
	}
	for _, mt := range checkedTypes(t, p.set) {
		s := &sampler{r: rand.New(rand.NewPCG(6, 6)), set: p.set, valid: true}
		msg := s.message(mt, 0)
		if n := testing.AllocsPerRun(20, func() {
			if err := fast.Validate(msg); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%s: %v allocations per valid call", mt.Descriptor().FullName(), n)
		}
	}
}

// TestConcurrent: one Validator serves every call of the broker; its
// answers do not depend on other goroutines (run with -race).
func TestConcurrent(t *testing.T) {
	p := newPair(t)
	s := &sampler{r: rand.New(rand.NewPCG(10, 10)), set: p.set, bad: 0.1}
	var msgs []proto.Message
	var want []string
	for _, mt := range checkedTypes(t, p.set) {
		for i := 0; i < 5; i++ {
			m := s.message(mt, 0)
			msgs = append(msgs, m)
			want = append(want, errString(p.fast.Validate(m)))
		}
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, m := range msgs {
				if got := errString(p.fast.Validate(m)); got != want[i] {
					errs <- got + " != " + want[i]
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
