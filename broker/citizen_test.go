package broker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/relais-broker/relais/broker"
	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/citizen"
	"github.com/relais-broker/relais/broker/citizen/citizentest"
	"github.com/relais-broker/relais/broker/errcat"
	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/source"
	"github.com/relais-broker/relais/internal/devidp/devidptest"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
	jobseekerpaymentsv1 "github.com/relais-broker/relais/proto/relais/jobseekerpayments/v1"
)

// fakeResolver is a hand-written CitizenResolver: it knows some tokens,
// counts calls and answers a set error for the others.
type fakeResolver struct {
	mu     sync.Mutex
	calls  int
	known  map[string]*commonv1.SubjectIdentity
	refuse error
}

func (f *fakeResolver) Resolve(_ context.Context, token string) (*commonv1.SubjectIdentity, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if id, ok := f.known[token]; ok {
		return proto.Clone(id).(*commonv1.SubjectIdentity), nil
	}
	if f.refuse != nil {
		return nil, f.refuse
	}
	return nil, errcat.New(errcat.CitizenTokenInvalid)
}

func (f *fakeResolver) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// The citizen of the token tests: the identity validFQ types.
func typedIdentity() *commonv1.SubjectIdentity { return validFQ().GetSubject() }

const zoeToken = "eyJ0ZXN0IjoidG9rZW4ifQ.c2VjcmV0LXRva2Vu.c2ln"

// tokenFQ is validFQ designating its subject by citizen login.
func tokenFQ(token string) *familyquotientv1.GetFamilyQuotientRequest {
	req := validFQ()
	req.Subject = nil
	req.CitizenAccessToken = token
	return req
}

func withCitizens(r broker.CitizenResolver) func(*broker.Config) {
	return func(c *broker.Config) { c.Citizens = r }
}

func TestCitizenLoginDesignation(t *testing.T) {
	resolver := &fakeResolver{known: map[string]*commonv1.SubjectIdentity{zoeToken: typedIdentity()}}
	h := newHarness(t, registry.Quota{}, withCitizens(resolver))
	ctx := context.Background()
	client := func(siret string) familyquotientv1.FamilyQuotientServiceClient {
		return familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, siret))
	}
	want := fullResponse("/" + fqService + "/GetFamilyQuotient")
	typedPseudonym := testPseudonyms.Of(validFQ())

	for _, tc := range []struct {
		name    string
		siret   string
		req     *familyquotientv1.GetFamilyQuotientRequest
		reason  string // "" for a success
		resolve int    // calls to the resolver the call makes
		origin  string
	}{
		{"login under a login-only grant", sirenLogin, tokenFQ(zoeToken), "", 1, audit.OriginCitizenLogin},
		{"typed under a login-only grant", sirenLogin, validFQ(), string(errcat.DesignationNotGranted), 0, ""},
		{"login under a typed-only grant", sirenFull, tokenFQ(zoeToken), string(errcat.DesignationNotGranted), 0, ""},
		{"login under a grant allowing both", sirenBoth, tokenFQ(zoeToken), "", 1, audit.OriginCitizenLogin},
		{"typed under a grant allowing both", sirenBoth, validFQ(), "", 0, ""},
		{"unknown token", sirenLogin, tokenFQ("not-a-known-token"), string(errcat.CitizenTokenInvalid), 1, ""},
		{"malformed token", sirenLogin, tokenFQ("bad token!"), string(errcat.CitizenTokenInvalid), 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, calls := resolver.Calls(), h.adapter.Calls()
			got, err := client(tc.siret).GetFamilyQuotient(ctx, tc.req)
			if n := resolver.Calls() - before; n != tc.resolve {
				t.Errorf("resolver called %d times, want %d", n, tc.resolve)
			}
			recs := h.audit.Records()
			rec := recs[len(recs)-1]
			if tc.reason != "" {
				if _, reason := reasonOf(t, err); reason != tc.reason {
					t.Fatalf("reason = %q, want %q (%v)", reason, tc.reason, err)
				}
				if h.adapter.Calls() != calls {
					t.Fatal("a refused call reached the adapter")
				}
				if rec.Subject != "" && tc.req.GetCitizenAccessToken() != "" {
					t.Errorf("an unresolved token call has the pseudonym %q", rec.Subject)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, want) {
				t.Errorf("answer = %v", got)
			}
			// The adapter sees exactly the typed request.
			inputs := h.adapter.Inputs()
			if in := inputs[len(inputs)-1]; !proto.Equal(in, validFQ()) {
				t.Errorf("adapter received %v, want the typed request", in)
			}
			if rec.Subject != typedPseudonym || rec.SubjectOrigin != tc.origin {
				t.Errorf("record subject %q origin %q, want %q %q", rec.Subject, rec.SubjectOrigin, typedPseudonym, tc.origin)
			}
		})
	}
}

func TestCitizenLoginNotConfigured(t *testing.T) {
	h := newHarness(t, registry.Quota{})
	client := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, sirenLogin))
	_, err := client.GetFamilyQuotient(context.Background(), tokenFQ(zoeToken))
	if code, reason := reasonOf(t, err); code != codes.Unimplemented || reason != string(errcat.CitizenLoginNotConfigured) {
		t.Fatalf("got %s/%s, want Unimplemented/citizen_login_not_configured", code, reason)
	}
	// The grants come first: a mode not granted says so, configured or not.
	full := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, sirenFull))
	_, err = full.GetFamilyQuotient(context.Background(), tokenFQ(zoeToken))
	if _, reason := reasonOf(t, err); reason != string(errcat.DesignationNotGranted) {
		t.Fatalf("got %s, want designation_not_granted", reason)
	}
	if h.adapter.Calls() != 0 {
		t.Fatal("the adapter was called")
	}
}

// A resolver error outside the catalogue may hold anything: the caller
// gets identity_provider_unavailable, never its text.
func TestCitizenResolverUncataloguedError(t *testing.T) {
	resolver := &fakeResolver{refuse: errors.New("provider said: " + zoeToken)}
	h := newHarness(t, registry.Quota{}, withCitizens(resolver))
	client := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, sirenLogin))
	_, err := client.GetFamilyQuotient(context.Background(), tokenFQ("another-token"))
	if code, reason := reasonOf(t, err); code != codes.Unavailable || reason != string(errcat.IdentityProviderUnavailable) {
		t.Fatalf("got %s/%s", code, reason)
	}
	if bytes.Contains([]byte(err.Error()+h.logs.String()), []byte(zoeToken)) {
		t.Fatal("the resolver's error text reached the caller or the log")
	}
}

// TestCitizenLoginWithTheResolver goes through the real resolver and a
// provider over TLS: the answers, the refusals with their reasons, a
// provider that is down; and the byte scan — the token is in no audit
// record, no log line, no error and no request an adapter received.
func TestCitizenLoginWithTheResolver(t *testing.T) {
	idp := citizentest.Start()
	t.Cleanup(idp.Close)
	r, err := citizen.New(citizen.Config{
		Providers:  []citizen.ProviderConfig{{Issuer: idp.Issuer(), ClientID: citizentest.Audience, AcceptedACR: []string{"eidas1"}}},
		HTTPClient: idp.Client(),
		Clock:      func() time.Time { return testNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, registry.Quota{}, withCitizens(r))
	client := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, sirenBoth))
	ctx := context.Background()
	claims := func(kv ...any) map[string]any {
		c := idp.Claims(testNow)
		for i := 0; i < len(kv); i += 2 {
			c[kv[i].(string)] = kv[i+1]
		}
		return c
	}
	zoe := &commonv1.SubjectIdentity{BirthName: "DUPONT", UsageName: "MARTIN", GivenNames: []string{"Zoé", "Marie"},
		Sex: commonv1.Sex_SEX_FEMALE, BirthDate: "1984-03-12", BirthPlaceCog: "75056", BirthCountryCog: "99100"}
	var tokens []string
	issue := func(a citizentest.Answer) string {
		tok := idp.Issue(a)
		tokens = append(tokens, tok)
		return tok
	}

	good := issue(citizentest.Answer{Claims: claims()})
	if _, err := client.GetFamilyQuotient(ctx, tokenFQ(good)); err != nil {
		t.Fatal(err)
	}
	typed := validFQ()
	typed.Subject = zoe
	inputs := h.adapter.Inputs()
	if !proto.Equal(inputs[len(inputs)-1], typed) {
		t.Fatalf("adapter received %v, want %v", inputs[len(inputs)-1], typed)
	}
	// Typed by hand, the same person gets the same pseudonym.
	if _, err := client.GetFamilyQuotient(ctx, typed); err != nil {
		t.Fatal(err)
	}
	recs := h.audit.Records()
	if a, b := recs[len(recs)-2], recs[len(recs)-1]; a.Subject == "" || a.Subject != b.Subject || a.SubjectOrigin != audit.OriginCitizenLogin || b.SubjectOrigin != "" {
		t.Fatalf("login record %q/%q, typed record %q/%q", a.Subject, a.SubjectOrigin, b.Subject, b.SubjectOrigin)
	}

	for _, tc := range []struct {
		name   string
		answer citizentest.Answer
		code   codes.Code
		reason errcat.Reason
	}{
		{"expired", citizentest.Answer{Claims: claims("exp", testNow.Add(-time.Hour).Unix())}, codes.InvalidArgument, errcat.CitizenTokenExpired},
		{"expired by the provider", citizentest.Answer{Status: 401, Challenge: `Bearer error="invalid_token", error_description="access token expired"`}, codes.InvalidArgument, errcat.CitizenTokenExpired},
		{"tampered", citizentest.Answer{Claims: claims(), Tamper: true}, codes.Internal, errcat.IdentityProviderInvalidResponse},
		{"wrong audience", citizentest.Answer{Claims: claims("aud", []string{"other-town"})}, codes.InvalidArgument, errcat.CitizenTokenWrongAudience},
		{"other issuer", citizentest.Answer{Claims: claims("iss", "https://other.example")}, codes.InvalidArgument, errcat.CitizenTokenWrongIssuer},
		{"acr too low", citizentest.Answer{Claims: claims("acr", "eidas0")}, codes.InvalidArgument, errcat.CitizenLoginTooWeak},
		{"provider error", citizentest.Answer{Status: 502}, codes.Unavailable, errcat.IdentityProviderUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := h.adapter.Calls()
			_, err := client.GetFamilyQuotient(ctx, tokenFQ(issue(tc.answer)))
			if code, reason := reasonOf(t, err); code != tc.code || reason != string(tc.reason) {
				t.Fatalf("got %s/%s, want %s/%s", code, reason, tc.code, tc.reason)
			}
			if h.adapter.Calls() != calls {
				t.Fatal("a refused call reached the adapter")
			}
		})
	}

	// Over the HTTPS gateway too.
	hc := h.httpClient(t, identity.KindConsumer, sirenBoth)
	body, _ := json.Marshal(map[string]any{"access_context": map[string]any{"recipient": sirenFull, "purpose": "cantine", "case_reference": "DOSSIER-1"},
		"citizen_access_token": good})
	resp, err := hc.Post("https://"+h.httpAddr+"/"+fqService+"/GetFamilyQuotient", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("gateway status %d", resp.StatusCode)
	}

	// The provider down: unavailable with a retry delay; nothing reaches the source.
	idp.Close()
	_, err = client.GetFamilyQuotient(ctx, tokenFQ(good))
	if code, reason := reasonOf(t, err); code != codes.Unavailable || reason != string(errcat.IdentityProviderUnavailable) || retryDelay(err) <= 0 {
		t.Fatalf("provider down: got %s/%s retry %s", code, reason, retryDelay(err))
	}
	errs := []byte(err.Error())
	st, _ := status.FromError(err)
	raw, _ := proto.Marshal(st.Proto())
	errs = append(errs, raw...)

	// The byte scan.
	var records bytes.Buffer
	for _, r := range h.audit.Records() {
		b, _ := json.Marshal(r)
		records.Write(b)
	}
	var received bytes.Buffer
	for _, in := range h.adapter.Inputs() {
		b, _ := proto.Marshal(in)
		received.Write(b)
		if d, ok := in.(*familyquotientv1.GetFamilyQuotientRequest); ok && d.GetCitizenAccessToken() != "" {
			t.Error("an adapter received a token")
		}
	}
	logs := []byte(h.logs.String())
	for _, tok := range tokens {
		for what, b := range map[string][]byte{"audit records": records.Bytes(), "logs": logs, "adapter requests": received.Bytes(), "errors": errs} {
			if bytes.Contains(b, []byte(tok)) {
				t.Errorf("the token is in the %s", what)
			}
		}
	}
	for what, b := range map[string][]byte{"audit records": records.Bytes(), "logs": logs} {
		for _, claim := range []string{"DUPONT", "MARTIN", "1984-03-12", "c0ffee-dupont"} {
			if bytes.Contains(b, []byte(claim)) {
				t.Errorf("the claim %q is in the %s", claim, what)
			}
		}
	}
}

func TestDeferredDisclosure(t *testing.T) {
	h := newHarness(t, registry.Quota{})
	ctx := context.Background()
	deferred := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, sirenDeferred))
	if _, err := deferred.GetFamilyQuotient(ctx, validFQ()); err != nil {
		t.Fatal(err)
	}
	recs := h.audit.Records()
	r := recs[len(recs)-1]
	if want := testNow.Add(90 * 24 * time.Hour); !r.DiscloseAfter.Equal(want) || r.DisclosureReference != "CSS L114-17" {
		t.Fatalf("deferred record: disclose after %s (%q), want %s (CSS L114-17)", r.DiscloseAfter, r.DisclosureReference, want)
	}
	// A refusal after the decision is deferred the same way.
	h.adapter.setAnswer(failWith(source.ErrSubjectNotFound))
	_, _ = deferred.GetFamilyQuotient(ctx, validFQ())
	recs = h.audit.Records()
	if r := recs[len(recs)-1]; r.DiscloseAfter.IsZero() || r.Code != codes.NotFound.String() {
		t.Fatalf("refused deferred record: %+v", r)
	}
	full := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, sirenFull))
	h.adapter.setAnswer(nil)
	if _, err := full.GetFamilyQuotient(ctx, validFQ()); err != nil {
		t.Fatal(err)
	}
	recs = h.audit.Records()
	if r := recs[len(recs)-1]; !r.DiscloseAfter.IsZero() || r.DisclosureReference != "" {
		t.Fatalf("a grant without deferral deferred: %+v", r)
	}
}

// TestResponseCheckedAfterMinimisation: a bad value the source answers in
// a field the consumer receives fails the call; in a field minimisation
// removes, it no longer does.
func TestResponseCheckedAfterMinimisation(t *testing.T) {
	h := newHarness(t, registry.Quota{})
	h.adapter.setAnswer(func(_ context.Context, req source.Request) (proto.Message, error) {
		resp := fullResponse(req.Method).(*familyquotientv1.GetFamilyQuotientResponse)
		resp.Children[0].BirthDate = "2015-13-45"
		return resp, nil
	})
	ctx := context.Background()
	full := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, sirenFull))
	limited := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, sirenLimited))
	masked := func(paths ...string) *familyquotientv1.GetFamilyQuotientRequest {
		req := validFQ()
		req.FieldMask = &fieldmaskpb.FieldMask{Paths: paths}
		return req
	}
	for _, tc := range []struct {
		name   string
		client familyquotientv1.FamilyQuotientServiceClient
		req    *familyquotientv1.GetFamilyQuotientRequest
		fails  bool
	}{
		{"returned whole", full, validFQ(), true},
		{"returned through a nested mask", full, masked("children.birth_date"), true},
		{"outside the grant", limited, validFQ(), false},
		{"outside the mask", full, masked("value"), false},
		{"outside a nested mask", full, masked("children.given_names"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.client.GetFamilyQuotient(ctx, tc.req)
			recs := h.audit.Records()
			rec := recs[len(recs)-1]
			if tc.fails {
				if code, reason := reasonOf(t, err); code != codes.Internal || reason != string(errcat.SourceInvalidResponse) {
					t.Fatalf("got %s/%s, want Internal/source_invalid_response", code, reason)
				}
				if len(rec.FieldsReturned) != 0 {
					t.Fatalf("a failed call records returned fields %v", rec.FieldsReturned)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range got.GetChildren() {
				if c.GetBirthDate() != "" {
					t.Fatal("the bad birth date was returned")
				}
			}
		})
	}
}

// A service that designates its subjects by a domain identifier only
// (France Travail id) cannot take a citizen login: the civil identity
// would designate nobody there. Refused before the provider is asked.
func TestCitizenLoginOnADomainIdentifierService(t *testing.T) {
	const jspService = "relais.jobseekerpayments.v1.JobSeekerPaymentsService"
	resolver := &fakeResolver{known: map[string]*commonv1.SubjectIdentity{zoeToken: typedIdentity()}}
	h := newHarness(t, registry.Quota{}, withCitizens(resolver), func(c *broker.Config) {
		scopes, _ := c.Catalog.ServiceScopes(jspService)
		c.Registry = registry.NewMemory([]registry.Consumer{{SIRET: sirenLogin, Name: "Login", Status: registry.StatusActive}},
			[]registry.Grant{{Consumer: sirenLogin, Service: jspService, Scopes: scopes, Designations: []string{registry.DesignationCitizenLogin},
				Purposes: []registry.Purpose{{Code: "cantine", LegalBasis: "CRPA L114-8"}}, NotBefore: testNow.Add(-time.Hour), NotAfter: testNow.Add(time.Hour)}})
	})
	client := jobseekerpaymentsv1.NewJobSeekerPaymentsServiceClient(h.conn(t, identity.KindConsumer, sirenLogin))
	_, err := client.GetJobSeekerPayments(context.Background(), &jobseekerpaymentsv1.GetJobSeekerPaymentsRequest{
		AccessContext: validFQ().GetAccessContext(), CitizenAccessToken: zoeToken})
	if code, reason := reasonOf(t, err); code != codes.FailedPrecondition || reason != string(errcat.SubjectNotIdentifiable) {
		t.Fatalf("got %s/%s, want FailedPrecondition/subject_not_identifiable", code, reason)
	}
	if resolver.Calls() != 0 {
		t.Fatal("the provider was asked")
	}
}

// TestCitizenLoginWithTheDevProvider: a token of the real dev provider
// (relaisd dev's), obtained through its login flow, designates the
// citizen end to end; a token issued to a client without the relais
// audience is refused.
func TestCitizenLoginWithTheDevProvider(t *testing.T) {
	// The provider and the resolver keep real time (the login flow's
	// codes expire by it); the broker's clock stays the harness's.
	s := devidptest.Start(t, devidptest.Options{})
	r, err := citizen.New(citizen.Config{
		Providers:  []citizen.ProviderConfig{{Issuer: s.Issuer, ClientID: "relais", AcceptedACR: []string{"eidas1"}}},
		HTTPClient: s.HTTPClient(),
	})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, registry.Quota{}, withCitizens(r))
	client := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, sirenLogin))
	tok := s.Token(t, "citizen-portal", "DUPONT Zoé")
	if _, err := client.GetFamilyQuotient(context.Background(), tokenFQ(tok)); err != nil {
		t.Fatal(err)
	}
	typed := validFQ()
	typed.Subject = &commonv1.SubjectIdentity{BirthName: "DUPONT", GivenNames: []string{"Zoé", "Marie"}, Sex: commonv1.Sex_SEX_FEMALE,
		BirthDate: "1984-03-12", BirthPlaceCog: "75056", BirthCountryCog: "99100"}
	inputs := h.adapter.Inputs()
	if !proto.Equal(inputs[len(inputs)-1], typed) {
		t.Fatalf("adapter received %v", inputs[len(inputs)-1])
	}
	_, err = client.GetFamilyQuotient(context.Background(), tokenFQ(s.Token(t, "other-town", "DUPONT Zoé")))
	if _, reason := reasonOf(t, err); reason != string(errcat.CitizenTokenWrongAudience) {
		t.Fatalf("other-town token: %v", err)
	}
	if bytes.Contains([]byte(h.logs.String()), []byte(tok)) {
		t.Fatal("the token is in the logs")
	}
}

// A nil *citizen.Resolver given as Config.Citizens means not configured.
func TestTypedNilResolverIsNotConfigured(t *testing.T) {
	var none *citizen.Resolver
	h := newHarness(t, registry.Quota{}, withCitizens(none))
	client := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, sirenLogin))
	_, err := client.GetFamilyQuotient(context.Background(), tokenFQ(zoeToken))
	if _, reason := reasonOf(t, err); reason != string(errcat.CitizenLoginNotConfigured) {
		t.Fatalf("got %v, want citizen_login_not_configured", err)
	}
}
