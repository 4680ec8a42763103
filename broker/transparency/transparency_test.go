package transparency

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/scope"
)

const (
	fq        = "relais.familyquotient.v1.FamilyQuotientService"
	fqMethod  = "/" + fq + "/GetFamilyQuotient"
	townHall  = "21690123100011"
	ccas      = "26690123400010"
	pseudoA   = "aaaa"
	pseudoB   = "bbbb"
	purpose   = "tarification_sociale"
	legalText = "CASF art. L123-5"
)

var t0 = time.Date(2026, 3, 10, 9, 30, 0, 0, time.UTC)

// fakeAudit answers Subject from a fixed list, as the index would.
type fakeAudit struct {
	recs []audit.Record
	err  error
	asks []string
}

func (f *fakeAudit) Subject(_ context.Context, p string) ([]audit.Record, error) {
	f.asks = append(f.asks, p)
	if f.err != nil {
		return nil, f.err
	}
	var out []audit.Record
	for _, r := range f.recs {
		if r.Subject == p {
			out = append(out, r)
		}
	}
	return out, nil
}

// fakeRegistry holds consumers and grants.
type fakeRegistry struct {
	consumers map[string]registry.Consumer
	grants    []registry.Grant
	err       error
}

func (f *fakeRegistry) Consumer(_ context.Context, siret string) (registry.Consumer, error) {
	if f.err != nil {
		return registry.Consumer{}, f.err
	}
	c, ok := f.consumers[siret]
	if !ok {
		return registry.Consumer{}, registry.ErrNotFound
	}
	return c, nil
}

func (f *fakeRegistry) ListGrants(_ context.Context, gf registry.GrantFilter) ([]registry.Grant, error) {
	var out []registry.Grant
	for _, g := range f.grants {
		if gf.Consumer == "" || g.Consumer == gf.Consumer {
			out = append(out, g)
		}
	}
	return out, nil
}

func record(i int, mod func(*audit.Record)) audit.Record {
	r := audit.Record{
		Time: t0.Add(time.Duration(i) * time.Hour), RequestID: "req-" + string(rune('a'+i)), Consumer: townHall, Recipient: townHall,
		Method: fqMethod, Purpose: purpose, Subject: pseudoA, FieldsRequested: []string{"value"}, FieldsReturned: []string{"value", "reference_year"},
		Source: "sandbox", Code: "OK",
	}
	if mod != nil {
		mod(&r)
	}
	return r
}

func testRegistry() *fakeRegistry {
	return &fakeRegistry{
		consumers: map[string]registry.Consumer{
			townHall: {SIRET: townHall, Name: "Mairie de Lyon", Contacts: []registry.Contact{{Name: "DPO", Email: "dpo@lyon.example"}}},
			ccas:     {SIRET: ccas, Name: "CCAS de Lyon"},
		},
		grants: []registry.Grant{
			{ID: "old", Consumer: townHall, Service: fq, Scopes: scope.Of("family_quotient.value"), CreatedAt: t0.AddDate(-2, 0, 0),
				NotBefore: t0.AddDate(-2, 0, 0), NotAfter: t0.AddDate(-1, 0, 0), Purposes: []registry.Purpose{{Code: purpose, Label: "Ancien libellé", LegalBasis: "ancienne base"}}},
			{ID: "now", Consumer: townHall, Service: fq, Scopes: scope.Of("family_quotient.value"), CreatedAt: t0.AddDate(-1, 0, 0),
				NotBefore: t0.AddDate(-1, 0, 0), NotAfter: t0.AddDate(1, 0, 0), Purposes: []registry.Purpose{{Code: purpose, Label: "Tarification sociale de la cantine", LegalBasis: legalText}}},
			{ID: "later-revoked", Consumer: townHall, Service: fq, CreatedAt: t0.AddDate(0, -1, 0), RevokedAt: t0.AddDate(0, 0, -1),
				NotBefore: t0.AddDate(0, -1, 0), NotAfter: t0.AddDate(1, 0, 0), Purposes: []registry.Purpose{{Code: purpose, Label: "Révoqué", LegalBasis: "révoquée"}}},
		},
	}
}

func newService(t *testing.T, a AuditReader, reg Registry, now time.Time) *Service {
	t.Helper()
	s, err := New(Config{Audit: a, Registry: reg, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewRequiresItsParts(t *testing.T) {
	if _, err := New(Config{Registry: testRegistry()}); err == nil || !strings.Contains(err.Error(), "audit") {
		t.Errorf("no audit reader: %v", err)
	}
	if _, err := New(Config{Audit: &fakeAudit{}}); err == nil || !strings.Contains(err.Error(), "registry") {
		t.Errorf("no registry: %v", err)
	}
}

func TestJoinTellsTheAccess(t *testing.T) {
	fa := &fakeAudit{recs: []audit.Record{
		record(0, nil),
		record(1, func(r *audit.Record) { r.SubjectOrigin = audit.OriginCitizenLogin; r.Recipient = ccas }),
		record(2, func(r *audit.Record) { r.Subject = pseudoB }),
	}}
	s := newService(t, fa, testRegistry(), t0.AddDate(0, 1, 0))
	got, err := s.Accesses(context.Background(), pseudoA, CitizenView)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d accesses, want the 2 of pseudonym A: %+v", len(got), got)
	}
	if !slices.Equal(fa.asks, []string{pseudoA}) {
		t.Errorf("asked the index for %v", fa.asks)
	}
	newest, oldest := got[0], got[1]
	if !newest.Time.After(oldest.Time) {
		t.Errorf("not newest first: %v then %v", newest.Time, oldest.Time)
	}
	if oldest.Body.Name != "Mairie de Lyon" || oldest.Body.SIRET != townHall || len(oldest.Body.Contacts) != 1 {
		t.Errorf("body %+v", oldest.Body)
	}
	if oldest.Purpose != (Purpose{Code: purpose, Label: "Tarification sociale de la cantine", LegalBasis: legalText}) {
		t.Errorf("purpose %+v: want the grant in force at the call (not the expired nor the revoked one)", oldest.Purpose)
	}
	if oldest.Service.FR != "Quotient familial (CAF / MSA)" || oldest.Reference != "req-a" || oldest.Outcome != OutcomeGiven {
		t.Errorf("access %+v", oldest)
	}
	if len(oldest.Categories) != 1 || oldest.Categories[0].Scope != "family_quotient.value" || oldest.Categories[0].Label.FR == "" {
		t.Errorf("categories %+v: value and reference_year are one scope", oldest.Categories)
	}
	if oldest.CitizenInitiated || !newest.CitizenInitiated {
		t.Errorf("citizen initiated: %v %v", oldest.CitizenInitiated, newest.CitizenInitiated)
	}
	if newest.OnBehalfOf.Name != "CCAS de Lyon" || oldest.OnBehalfOf.SIRET != "" {
		t.Errorf("on behalf of: %+v / %+v", newest.OnBehalfOf, oldest.OnBehalfOf)
	}
}

func TestDeferredDisclosure(t *testing.T) {
	disclose := t0.AddDate(1, 0, 0)
	fa := &fakeAudit{recs: []audit.Record{
		record(0, nil),
		record(1, func(r *audit.Record) { r.DiscloseAfter, r.DisclosureReference = disclose, "CSS art. L114-9" }),
	}}
	for _, tc := range []struct {
		name     string
		now      time.Time
		view     View
		want     int
		deferred bool
	}{
		{"citizen before the date", disclose.Add(-time.Second), CitizenView, 1, false},
		{"citizen at the date", disclose, CitizenView, 2, false},
		{"citizen after the date", disclose.Add(time.Hour), CitizenView, 2, false},
		{"operator before the date", disclose.Add(-time.Second), OperatorView, 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := newService(t, fa, testRegistry(), tc.now).Accesses(context.Background(), pseudoA, tc.view)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.want {
				t.Fatalf("%d accesses, want %d", len(got), tc.want)
			}
			if tc.want == 2 {
				d := got[0]
				if d.DiscloseAfter != disclose || d.DisclosureReference != "CSS art. L114-9" || d.Deferred != tc.deferred {
					t.Errorf("deferred access %+v", d)
				}
			}
		})
	}
}

func TestOutcomes(t *testing.T) {
	for _, tc := range []struct {
		code, reason string
		want         Outcome
	}{
		{"OK", "", OutcomeGiven},
		{"NotFound", "subject_not_found", OutcomeNotFound},
		{"FailedPrecondition", "subject_not_identifiable", OutcomeNotFound},
		{"PermissionDenied", "no_grant", OutcomeRefused},
		{"PermissionDenied", "designation_not_granted", OutcomeRefused},
		{"InvalidArgument", "invalid_subject", OutcomeRefused},
		{"ResourceExhausted", "rate_limited", OutcomeRefused},
		{"Unauthenticated", "credential_revoked", OutcomeRefused},
		{"Unavailable", "source_unavailable", OutcomeFailed},
		{"DeadlineExceeded", "source_timeout", OutcomeFailed},
		{"Internal", "internal", OutcomeFailed},
		{"Canceled", "cancelled", OutcomeFailed},
	} {
		if got := OutcomeOf(tc.code, tc.reason); got != tc.want {
			t.Errorf("OutcomeOf(%s, %s) = %s, want %s", tc.code, tc.reason, got, tc.want)
		}
	}
	// A refused call tells no category, even if the record named fields.
	fa := &fakeAudit{recs: []audit.Record{record(0, func(r *audit.Record) { r.Code, r.Reason = "PermissionDenied", "no_grant" })}}
	got, err := newService(t, fa, testRegistry(), t0).Accesses(context.Background(), pseudoA, CitizenView)
	if err != nil || len(got) != 1 || got[0].Outcome != OutcomeRefused || got[0].Categories != nil {
		t.Fatalf("refused access: %+v, %v", got, err)
	}
}

func TestCategories(t *testing.T) {
	s := newService(t, &fakeAudit{}, testRegistry(), t0)
	for _, tc := range []struct {
		name   string
		method string
		fields []string
		want   []string
	}{
		{"mask paths", fqMethod, []string{"children.birth_date", "value", "children.given_names", "address.postal_code"},
			[]string{"family_quotient.children", "family_quotient.value", "family_quotient.address"}},
		{"scope names of old records", fqMethod, []string{"family_quotient.value", "family_quotient.children"}, []string{"family_quotient.value", "family_quotient.children"}},
		{"unknown field is other data", fqMethod, []string{"value", "shoe_size"}, []string{"family_quotient.value", OtherScope}},
		{"unknown method", "/gone.v1.Gone/Get", []string{"value"}, []string{OtherScope}},
		{"nothing returned", fqMethod, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, c := range s.categories(tc.method, tc.fields) {
				got = append(got, c.Scope)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	// Source metadata fields are not the person's data.
	m, _ := catalog.Default().Method(fqMethod)
	for _, f := range m.Fields {
		if f.NotPersonal {
			if c := s.categories(fqMethod, []string{f.Path}); len(c) != 0 {
				t.Errorf("not-personal field %s told as %v", f.Path, c)
			}
		}
	}
}

func TestEveryScopeAndServiceHasALabel(t *testing.T) {
	cat := catalog.Default()
	for _, svc := range cat.Services() {
		if _, ok := serviceLabels[svc]; !ok {
			t.Errorf("service %s has no label", svc)
		}
		scopes, _ := cat.ServiceScopes(svc)
		for _, sc := range scopes.Sorted() {
			l, ok := scopeLabels[sc]
			if !ok || l.FR == "" || l.EN == "" {
				t.Errorf("scope %s has no label in both languages", sc)
			}
		}
	}
	if got := ScopeLabel("x.unknown"); got.FR != "x.unknown" {
		t.Errorf("unknown scope label %+v", got)
	}
	if ScopeLabel("family_quotient.value").In("en") == ScopeLabel("family_quotient.value").In("fr") {
		t.Error("In does not switch language")
	}
}

func TestErrorsAndBadInput(t *testing.T) {
	fa := &fakeAudit{recs: []audit.Record{record(0, nil)}}
	s := newService(t, fa, testRegistry(), t0)
	if _, err := s.Accesses(context.Background(), "", CitizenView); err == nil {
		t.Error("empty pseudonym accepted")
	}
	if len(fa.asks) != 0 {
		t.Errorf("empty pseudonym reached the index: %v", fa.asks)
	}
	boom := errors.New("disk on fire")
	if _, err := newService(t, &fakeAudit{err: boom}, testRegistry(), t0).Accesses(context.Background(), pseudoA, CitizenView); !errors.Is(err, boom) {
		t.Errorf("audit error: %v", err)
	}
	reg := testRegistry()
	reg.err = boom
	if _, err := newService(t, fa, reg, t0).Accesses(context.Background(), pseudoA, CitizenView); !errors.Is(err, boom) {
		t.Errorf("registry error: %v", err)
	}
	// A body gone from the registry is told by its SIRET.
	reg = testRegistry()
	delete(reg.consumers, townHall)
	got, err := newService(t, fa, reg, t0).Accesses(context.Background(), pseudoA, CitizenView)
	if err != nil || len(got) != 1 || got[0].Body.SIRET != townHall || got[0].Body.Name != "" {
		t.Errorf("body gone: %+v, %v", got, err)
	}
}

func TestFilterAndBodies(t *testing.T) {
	as := []Access{
		{Time: t0, Body: Body{SIRET: townHall, Name: "Mairie de Lyon"}},
		{Time: t0.Add(24 * time.Hour), Body: Body{SIRET: ccas, Name: "CCAS de Lyon"}},
		{Time: t0.Add(48 * time.Hour), Body: Body{SIRET: townHall, Name: "Mairie de Lyon"}, OnBehalfOf: Body{SIRET: ccas, Name: "CCAS de Lyon"}},
	}
	for _, tc := range []struct {
		name string
		f    Filter
		want int
	}{
		{"none", Filter{}, 3},
		{"from inclusive", Filter{From: t0.Add(24 * time.Hour)}, 2},
		{"to exclusive", Filter{To: t0.Add(24 * time.Hour)}, 1},
		{"body as caller or recipient", Filter{Body: ccas}, 2},
		{"body and period", Filter{Body: townHall, From: t0.Add(time.Hour)}, 1},
		{"unknown body", Filter{Body: "00000000000000"}, 0},
	} {
		if got := tc.f.Apply(as); len(got) != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, len(got), tc.want)
		}
	}
	b := Bodies(as)
	if len(b) != 2 || b[0].Name != "CCAS de Lyon" || b[1].Name != "Mairie de Lyon" {
		t.Errorf("bodies %+v", b)
	}
}
