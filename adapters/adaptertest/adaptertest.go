// Package adaptertest is the conformance suite of the source adapter
// contract (broker/source). A source administration's adapter calls Run
// from its own tests; every adapter in this repository does. It checks
// that the adapter answers the method's own type, within the rules of the
// proto; returns only the fields of the scopes it is given; maps not
// found, not identifiable and unavailable to the contract's errors;
// honours deadlines and cancellation; never puts personal data in an
// error message; is safe for concurrent use; and answers a subject
// designated by the citizen's login exactly as the same subject typed.
package adaptertest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/scope"
	"github.com/relais-broker/relais/broker/source"
	"github.com/relais-broker/relais/broker/subject"
)

// Case is one method's requests for the suite. Found must exist at the
// source with data in at least two scopes; the others are optional (nil
// skips that check, which the suite reports).
type Case struct {
	// Method is the full gRPC method, "/pkg.Service/Method".
	Method string
	// Found designates a subject the source knows.
	Found proto.Message
	// NotFound, NotIdentifiable and Unavailable designate subjects for
	// which the source answers that way.
	NotFound, NotIdentifiable, Unavailable proto.Message
	// Hang designates a subject for which the source does not answer
	// (a slow upstream), to test deadlines and cancellation.
	Hang proto.Message
}

// Suite describes the adapter under test.
type Suite struct {
	Adapter source.Adapter
	// Catalog defaults to catalog.Default().
	Catalog *catalog.Catalog
	Cases   []Case
	// MaxOverrun is how long after its deadline the adapter may return
	// (default 500 ms).
	MaxOverrun time.Duration
}

// Run checks the contract; each check is a subtest.
func Run(t *testing.T, s Suite) {
	t.Helper()
	if s.Catalog == nil {
		s.Catalog = catalog.Default()
	}
	if s.MaxOverrun == 0 {
		s.MaxOverrun = 500 * time.Millisecond
	}
	v, err := protovalidate.New()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range s.Cases {
		m, ok := s.Catalog.Method(c.Method)
		if !ok {
			t.Fatalf("adaptertest: unknown method %s", c.Method)
		}
		t.Run(strings.TrimPrefix(c.Method, "/"), func(t *testing.T) {
			t.Run("answers the method's type, valid", func(t *testing.T) { checkFound(t, s, m, c, v) })
			t.Run("returns only the allowed fields", func(t *testing.T) { checkScopes(t, s, m, c) })
			t.Run("maps source errors", func(t *testing.T) { checkErrors(t, s, m, c) })
			t.Run("honours deadlines and cancellation", func(t *testing.T) { checkDeadlines(t, s, m, c) })
			t.Run("is safe for concurrent use", func(t *testing.T) { checkConcurrency(t, s, m, c) })
			t.Run("gets the same identity whatever the designation mode", func(t *testing.T) { checkDesignationModes(t, s, m, c) })
		})
	}
}

func fetch(ctx context.Context, s Suite, m *catalog.Method, in proto.Message, scopes scope.Set) (proto.Message, error) {
	return s.Adapter.Fetch(ctx, source.Request{Method: m.FullMethod, Input: in, Scopes: scopes})
}

func checkFound(t *testing.T, s Suite, m *catalog.Method, c Case, v protovalidate.Validator) {
	resp, err := fetch(context.Background(), s, m, c.Found, m.Scopes)
	if err != nil {
		t.Fatalf("found subject: %v", err)
	}
	if resp == nil || resp.ProtoReflect().Descriptor().FullName() != m.Output.Descriptor().FullName() {
		t.Fatalf("answered %T, want %s", resp, m.Output.Descriptor().FullName())
	}
	if err := v.Validate(resp); err != nil {
		t.Fatalf("answer breaks the proto rules: %v", err)
	}
}

// checkScopes asks for each scope alone: no field of another scope may
// come back.
func checkScopes(t *testing.T, s Suite, m *catalog.Method, c Case) {
	withData := 0
	for _, sc := range m.Scopes.Sorted() {
		resp, err := fetch(context.Background(), s, m, c.Found, scope.Of(sc))
		if err != nil {
			t.Fatalf("scope %s: %v", sc, err)
		}
		set := false
		resp.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
			f, _ := m.Field(string(fd.Name()))
			if f.NotPersonal {
				return true
			}
			if f.Scope != sc {
				t.Errorf("asked for %s only, got field %s (scope %q)", sc, fd.Name(), f.Scope)
			}
			set = true
			return true
		})
		if set {
			withData++
		}
	}
	if withData < 2 && m.Scopes.Len() >= 2 {
		t.Errorf("the found subject has data in %d scope(s); the suite needs one with at least two", withData)
	}
}

func checkErrors(t *testing.T, s Suite, m *catalog.Method, c Case) {
	for _, tc := range []struct {
		name string
		in   proto.Message
		want error
	}{
		{"not found", c.NotFound, source.ErrSubjectNotFound},
		{"not identifiable", c.NotIdentifiable, source.ErrNotIdentifiable},
		{"unavailable", c.Unavailable, source.ErrUnavailable},
	} {
		if tc.in == nil {
			t.Logf("%s: no case given, not checked", tc.name)
			continue
		}
		_, err := fetch(context.Background(), s, m, tc.in, m.Scopes)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want an error wrapping %v", tc.name, err, tc.want)
			continue
		}
		noPersonalData(t, tc.name, err, tc.in)
	}
}

// noPersonalData fails when an error message repeats any string the
// request carries about its subject (names, dates, identifiers).
func noPersonalData(t *testing.T, what string, err error, in proto.Message) {
	t.Helper()
	msg := strings.ToUpper(err.Error())
	for _, v := range subjectStrings(in.ProtoReflect(), "") {
		if len(v) >= 4 && strings.Contains(msg, strings.ToUpper(v)) {
			t.Errorf("%s: the error message repeats the subject's %q", what, v)
		}
	}
}

// subjectStrings lists the request's string values outside the access
// context (which describes the caller, not the subject).
func subjectStrings(m protoreflect.Message, path string) []string {
	var out []string
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Name() == "access_context" || fd.Name() == "field_mask" {
			return true
		}
		switch {
		case fd.IsList() && fd.Kind() == protoreflect.StringKind:
			for i := 0; i < v.List().Len(); i++ {
				out = append(out, v.List().Get(i).String())
			}
		case fd.Kind() == protoreflect.StringKind:
			out = append(out, v.String())
		case fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap():
			out = append(out, subjectStrings(v.Message(), path+string(fd.Name())+".")...)
		}
		return true
	})
	return out
}

func checkDeadlines(t *testing.T, s Suite, m *catalog.Method, c Case) {
	if c.Hang == nil {
		t.Skip("no hanging subject given: deadlines not checked")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := fetch(ctx, s, m, c.Hang, m.Scopes)
	if err == nil {
		t.Fatal("a hanging source answered")
	}
	if over := time.Since(start) - 100*time.Millisecond; over > s.MaxOverrun {
		t.Errorf("returned %s after its deadline (allowed %s)", over, s.MaxOverrun)
	}
	if !errors.Is(err, source.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("deadline: got %v, want ErrTimeout or context.DeadlineExceeded", err)
	}
	noPersonalData(t, "deadline", err, c.Hang)
	ctx, cancel = context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	start = time.Now()
	if _, err := fetch(ctx, s, m, c.Hang, m.Scopes); err == nil {
		t.Fatal("a cancelled call answered")
	}
	if over := time.Since(start) - 50*time.Millisecond; over > s.MaxOverrun {
		t.Errorf("returned %s after cancellation (allowed %s)", over, s.MaxOverrun)
	}
}

func checkConcurrency(t *testing.T, s Suite, m *catalog.Method, c Case) {
	want, err := fetch(context.Background(), s, m, c.Found, m.Scopes)
	if err != nil {
		t.Fatal(err)
	}
	clearSource(want)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Go(func() {
			for i := 0; i < 20; i++ {
				got, err := fetch(context.Background(), s, m, proto.Clone(c.Found), m.Scopes)
				if err != nil {
					t.Errorf("concurrent call: %v", err)
					return
				}
				clearSource(got)
				if !proto.Equal(got, want) {
					t.Errorf("concurrent calls answered differently")
					return
				}
			}
		})
	}
	wg.Wait()
}

// checkDesignationModes builds the request of the found subject as a
// citizen login designates it (citizen_access_token), rewrites it as the
// broker does once the identity provider answered (subject.SetIdentity),
// and checks that the adapter receives the typed request byte for byte
// and answers the same. Methods whose found subject is not a civil
// identity, or without the token field, are skipped.
func checkDesignationModes(t *testing.T, s Suite, m *catalog.Method, c Case) {
	d := subject.Designate(c.Found)
	tf := c.Found.ProtoReflect().Descriptor().Fields().ByName(subject.CitizenAccessToken)
	if d.Identity == nil || tf == nil {
		t.Skip("the found subject is not designated by a civil identity, or the method has no citizen_access_token")
	}
	login := proto.Clone(c.Found)
	login.ProtoReflect().Set(tf, protoreflect.ValueOfString("conformance-token"))
	if des := subject.Designate(login); des.Token == "" {
		t.Fatal("a request carrying citizen_access_token is not designated by it")
	}
	if err := subject.SetIdentity(login, d.Identity); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(login, c.Found) {
		t.Fatalf("the rewritten login request differs from the typed one")
	}
	want, err := fetch(context.Background(), s, m, c.Found, m.Scopes)
	if err != nil {
		t.Fatal(err)
	}
	got, err := fetch(context.Background(), s, m, login, m.Scopes)
	if err != nil {
		t.Fatalf("login-designated subject: %v", err)
	}
	clearSource(want)
	clearSource(got)
	if !proto.Equal(got, want) {
		t.Errorf("the login-designated subject got another answer than the typed one")
	}
}

// clearSource drops the source metadata (its timestamps differ per call).
func clearSource(m proto.Message) {
	r := m.ProtoReflect()
	if f := r.Descriptor().Fields().ByName("source"); f != nil {
		r.Clear(f)
	}
}
