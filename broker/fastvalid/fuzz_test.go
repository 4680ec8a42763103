package fastvalid

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

var writeCorpus = flag.Bool("write-corpus", false, "rewrite testdata/fuzz/FuzzDifferential from the edge cases and samples")

var fuzzOnce = sync.OnceValues(func() (*pair, []protoreflect.MessageType) {
	t := &testing.T{}
	p := newPair(t)
	return p, checkedTypes(t, p.set)
})

// FuzzDifferential decodes bytes into a checked message type (the first
// byte picks it) and requires both validators to agree exactly.
func FuzzDifferential(f *testing.F) {
	p, types := fuzzOnce()
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

// TestWriteFuzzCorpus writes the committed seed corpus (go test
// -run TestWriteFuzzCorpus -write-corpus): every edge case on its first
// message type, and valid and random samples of every type.
func TestWriteFuzzCorpus(t *testing.T) {
	if !*writeCorpus {
		t.Skip("run with -write-corpus to rewrite the seed corpus")
	}
	p, types := fuzzOnce()
	dir := filepath.Join("testdata", "fuzz", "FuzzDifferential")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, idx int, msg proto.Message) {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
		if err != nil {
			return // invalid UTF-8 cannot go on the wire
		}
		data := append([]byte{byte(idx)}, b...)
		body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(data)) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	slug := regexp.MustCompile(`[^a-z0-9]+`)
	for _, c := range edgeCases {
		only := regexp.MustCompile(c.only)
		for idx, mt := range types {
			if !only.MatchString(string(mt.Descriptor().FullName())) {
				continue
			}
			s := &sampler{r: rand.New(rand.NewPCG(3, 3)), set: p.set, valid: true, preferSubject: true}
			msg := s.message(mt, 0)
			ok := true
			for _, e := range c.edits {
				ok = e.apply(msg.ProtoReflect()) && ok
			}
			if ok {
				write("edge-"+slug.ReplaceAllString(strings.ToLower(c.name), "-"), idx, msg)
				break
			}
		}
	}
	kp := kindsPair(t)
	kdir := filepath.Join("testdata", "fuzz", "FuzzKinds")
	if err := os.RemoveAll(kdir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(kdir, 0o755); err != nil {
		t.Fatal(err)
	}
	for idx, mt := range kindsTypes() {
		for k := 0; k < 8; k++ {
			s := &sampler{r: rand.New(rand.NewPCG(11, uint64(k))), set: kp.set, bad: []float64{0, 0.05, 0.2, 0.5}[k%4]}
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(s.message(mt, 0))
			if err != nil {
				continue
			}
			body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(append([]byte{byte(idx)}, b...))) + ")\n"
			name := fmt.Sprintf("sample-%s-%d", strings.ToLower(string(mt.Descriptor().Name())), k)
			if err := os.WriteFile(filepath.Join(kdir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for idx, mt := range types {
		for k, valid := range []bool{true, false, false} {
			s := &sampler{r: rand.New(rand.NewPCG(4, uint64(k))), set: p.set, valid: valid}
			write(fmt.Sprintf("sample-%s-%d", slug.ReplaceAllString(strings.ToLower(string(mt.Descriptor().Name())), "-"), k), idx, s.message(mt, 0))
		}
	}
}
