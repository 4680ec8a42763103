// Package registrytest is the conformance suite of registry.Store, as
// adapters/adaptertest is for adapters: every registry backend (boltreg on
// a bbolt file, pgreg on PostgreSQL) runs the same tests, so both refuse
// the same writes with the same words, show a write at the next read,
// order their listings alike, enforce revocations, bump their version on
// every commit and stay consistent under concurrent writers and readers.
package registrytest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/scope"
)

// Opener opens a fresh, empty store on real storage whose clock is clock
// (the suite moves time itself); the store is closed by the suite, its
// storage removed by the opener's cleanup.
type Opener func(t *testing.T, clock func() time.Time) registry.Store

// Fictitious SIRETs (valid Luhn keys) and the catalogue entries the suite
// uses; the stores must be opened with the default catalogue.
const (
	// SiretA, SiretB and SiretC are three consumers.
	SiretA = "21990000100005"
	SiretB = "21990000200003"
	SiretC = "21990000300001"
	// FQ is the service of Grant.
	FQ = "relais.familyquotient.v1.FamilyQuotientService"
	// Student is a second service, for per-service lookups.
	Student = "relais.studentstatus.v1.StudentStatusService"
	// PurposeA is the purpose of Grant.
	PurposeA = "tarification_sociale"
)

// Start is the suite's initial clock reading.
var Start = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

// clock is a settable test clock.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(Start.UnixNano())
	return c
}

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// Grant returns a valid grant of consumer on the family quotient service
// at Start, for tests that need one.
func Grant(consumer string) registry.Grant {
	return registry.Grant{
		Consumer: consumer, Service: FQ, Scopes: scope.Of("family_quotient.value"),
		Purposes:  []registry.Purpose{{Code: PurposeA, Label: "Cantine", LegalBasis: "CRPA art. L114-8"}},
		NotBefore: Start.Add(-time.Hour), NotAfter: Start.AddDate(1, 0, 0),
		Quota: registry.Quota{RatePerSecond: 20, Burst: 40, DailyCap: 10000},
	}
}

// Run runs every conformance test on stores made by open.
func Run(t *testing.T, open Opener) {
	t.Run("RoundTripOfEveryField", func(t *testing.T) { testRoundTrip(t, open) })
	t.Run("RefusedWritesChangeNothing", func(t *testing.T) { testRefused(t, open) })
	t.Run("UnknownIDsAreNotFound", func(t *testing.T) { testNotFound(t, open) })
	t.Run("DuplicatesAlreadyExist", func(t *testing.T) { testDuplicates(t, open) })
	t.Run("NextReadSeesEveryWrite", func(t *testing.T) { testVisibility(t, open) })
	t.Run("ListingsAreOrdered", func(t *testing.T) { testOrdering(t, open) })
	t.Run("RevocationsAreEnforcedAndFinal", func(t *testing.T) { testRevocations(t, open) })
	t.Run("VersionBumpsOnEveryCommitOnly", func(t *testing.T) { testVersion(t, open) })
	t.Run("ReloadKeepsTheSameRegistry", func(t *testing.T) { testReload(t, open) })
	t.Run("ConcurrentWritersAndReaders", func(t *testing.T) { testConcurrency(t, open) })
	t.Run("ExportRestoreKeepsHistory", func(t *testing.T) { testTransfer(t, open) })
}

func openStore(t *testing.T, open Opener) (registry.Store, *clock) {
	t.Helper()
	c := newClock()
	s := open(t, c.now)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s, c
}

// must(call())(t) returns call's value, failing t on its error.
func must[T any](v T, err error) func(*testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// listing is everything a store shows, for before/after comparisons.
type listing struct {
	Version     uint64
	Consumers   []registry.Consumer
	Grants      []registry.Grant
	Credentials []registry.CredentialRecord
}

func list(t *testing.T, s registry.Store) listing {
	t.Helper()
	ctx := context.Background()
	return listing{
		Version:     s.Version(),
		Consumers:   must(s.ListConsumers(ctx))(t),
		Grants:      must(s.ListGrants(ctx, registry.GrantFilter{}))(t),
		Credentials: must(s.ListCredentials(ctx, ""))(t),
	}
}

func sameListing(a, b listing) bool {
	return a.Version == b.Version && reflect.DeepEqual(a.Consumers, b.Consumers) &&
		sameGrants(a.Grants, b.Grants) && reflect.DeepEqual(a.Credentials, b.Credentials)
}

// sameGrants compares grants field by field (scopes as sorted lists).
func sameGrants(a, b []registry.Grant) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !sameGrant(a[i], b[i]) {
			return false
		}
	}
	return true
}

func sameGrant(a, b registry.Grant) bool {
	as, bs := a.Scopes.Sorted(), b.Scopes.Sorted()
	a.Scopes, b.Scopes = scope.Set{}, scope.Set{}
	return slices.Equal(as, bs) && reflect.DeepEqual(a, b)
}

func testRoundTrip(t *testing.T, open Opener) {
	ctx := context.Background()
	s, _ := openStore(t, open)
	in := registry.Consumer{SIRET: SiretA, Name: "Mairie d'Exemple-sur-Loire", Status: registry.StatusSuspended,
		Contacts: []registry.Contact{{Name: "DSI", Email: "dsi@mairie-a.example", Phone: "+33 1 23 45 67 89"}, {Name: "DPO"}}}
	c := must(s.AddConsumer(ctx, in))(t)
	if c.SIRET != in.SIRET || c.Name != in.Name || c.Status != registry.StatusSuspended || !reflect.DeepEqual(c.Contacts, in.Contacts) ||
		!c.CreatedAt.Equal(Start) || !c.UpdatedAt.Equal(Start) {
		t.Fatalf("AddConsumer returned %+v", c)
	}
	if got := must(s.Consumer(ctx, SiretA))(t); !reflect.DeepEqual(got, c) {
		t.Fatalf("Consumer read back %+v, want %+v", got, c)
	}
	g := Grant(SiretA)
	g.Scopes = scope.Of("family_quotient.value", "family_quotient.children")
	g.Purposes = append(g.Purposes, registry.Purpose{Code: "aide.sociale-2", Label: "Aide sociale facultative", LegalBasis: "CASF art. L123-5"})
	g.NotBefore = time.Date(2026, 11, 1, 0, 0, 0, 123456789, time.FixedZone("CET", 3600))
	g.Quota = registry.Quota{RatePerSecond: 2.5, Burst: 5, DailyCap: 300}
	g.ExpectedDailyVolume = 120
	g.Anomaly = registry.AnomalyPolicy{MaxNotFoundRatio: 0.35, MaxDistinctSubjects: 150, Action: registry.AnomalySuspend}
	// Given out of canonical order: stored typed first.
	g.Designations = []string{registry.DesignationCitizenLogin, registry.DesignationTyped}
	g.Disclosure = registry.Disclosure{Delay: 8760 * time.Hour, LegalReference: "Code de la sécurité sociale, art. L114-9"}
	out := must(s.AddGrant(ctx, g))(t)
	if !strings.HasPrefix(out.ID, "g-") || !out.CreatedAt.Equal(Start) || !out.RevokedAt.IsZero() || out.NotBefore.Location() != time.UTC ||
		!out.NotBefore.Equal(g.NotBefore.Truncate(time.Microsecond)) || out.Anomaly != g.Anomaly || out.Quota != g.Quota || len(out.Purposes) != 2 ||
		!slices.Equal(out.Designations, []string{registry.DesignationTyped, registry.DesignationCitizenLogin}) || out.Disclosure != g.Disclosure {
		t.Fatalf("AddGrant returned %+v", out)
	}
	if g.Designations[0] != registry.DesignationCitizenLogin {
		t.Fatal("AddGrant reordered the caller's designations")
	}
	// A typed-only grant without deferral (the form of every grant before
	// citizen login) reads back with neither.
	plain := must(s.AddGrant(ctx, Grant(SiretA)))(t)
	if plain.Designations != nil || plain.Disclosure != (registry.Disclosure{}) || !plain.Allows(registry.DesignationTyped) || plain.Allows(registry.DesignationCitizenLogin) {
		t.Fatalf("AddGrant of a plain grant returned %+v", plain)
	}
	loginOnly := Grant(SiretA)
	loginOnly.Designations = []string{registry.DesignationCitizenLogin}
	loginOnly = must(s.AddGrant(ctx, loginOnly))(t)
	gs := must(s.Grants(ctx, SiretA, FQ))(t)
	want := map[string]registry.Grant{out.ID: out, plain.ID: plain, loginOnly.ID: loginOnly}
	if len(gs) != 3 {
		t.Fatalf("Grants read back %+v, want %+v", gs, want)
	}
	for _, got := range gs {
		if !sameGrant(got, want[got.ID]) {
			t.Fatalf("Grants read back %+v, want %+v", got, want[got.ID])
		}
	}
	if err := s.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	for _, got := range must(s.ListGrants(ctx, registry.GrantFilter{Consumer: SiretA}))(t) {
		if !sameGrant(got, want[got.ID]) {
			t.Fatalf("after a reload from storage: %+v, want %+v", got, want[got.ID])
		}
	}
	r := registry.CredentialRecord{Serial: "1f2e3d", Kind: "consumer", Subject: SiretA, NotBefore: Start, NotAfter: Start.Add(90 * 24 * time.Hour), IssuedBy: "alice"}
	if err := s.PutCredential(ctx, r); err != nil {
		t.Fatal(err)
	}
	r.Status = registry.CredentialActive
	if got := must(s.Credential(ctx, "1f2e3d"))(t); !reflect.DeepEqual(got, r) {
		t.Fatalf("Credential read back %+v, want %+v", got, r)
	}
}

func testRefused(t *testing.T, open Opener) {
	ctx := context.Background()
	s, clk := openStore(t, open)
	must(s.AddConsumer(ctx, registry.Consumer{SIRET: SiretA, Name: "A"}))(t)
	live := must(s.AddGrant(ctx, Grant(SiretA)))(t)
	revoked := must(s.AddGrant(ctx, Grant(SiretA)))(t)
	must(s.RevokeGrant(ctx, revoked.ID))(t)
	if err := s.PutCredential(ctx, registry.CredentialRecord{Serial: "aa01", Kind: "consumer", Subject: SiretA, NotBefore: Start, NotAfter: Start.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	must(s.RevokeCredentials(ctx, "aa02"))(t)
	mod := func(f func(*registry.Grant)) registry.Grant { g := Grant(SiretA); f(&g); return g }
	before := list(t, s)
	stored := must(s.Export(ctx))(t)

	refusals := []struct {
		name  string
		write func() error
		want  string
	}{
		{"bad SIRET checksum", consumer(s, registry.Consumer{SIRET: "21990000100006", Name: "x"}), "siret"},
		{"SIRET too short", consumer(s, registry.Consumer{SIRET: "123", Name: "x"}), "siret"},
		{"no name", consumer(s, registry.Consumer{SIRET: SiretB}), "name: is required"},
		{"name too long", consumer(s, registry.Consumer{SIRET: SiretB, Name: strings.Repeat("é", 201)}), "name: must be valid text"},
		{"bad status", consumer(s, registry.Consumer{SIRET: SiretB, Name: "x", Status: "closed"}), "status"},
		{"bad contact e-mail", consumer(s, registry.Consumer{SIRET: SiretB, Name: "x", Contacts: []registry.Contact{{Name: "DSI", Email: "not-an-email"}}}), "contacts[0].email"},
		{"contact without name", consumer(s, registry.Consumer{SIRET: SiretB, Name: "x", Contacts: []registry.Contact{{Email: "a@b.example"}}}), "contacts[0].name"},
		{"unknown service", grant(s, mod(func(g *registry.Grant) { g.Service = "relais.pension.v1.PensionService" })), "service"},
		{"scope of another service", grant(s, mod(func(g *registry.Grant) { g.Scopes = scope.Of("student_status.admissions") })), "scopes"},
		{"unknown scope", grant(s, mod(func(g *registry.Grant) { g.Scopes = scope.Of("family_quotient.income") })), "scopes"},
		{"no scope", grant(s, mod(func(g *registry.Grant) { g.Scopes = scope.Set{} })), "scopes"},
		{"no purpose", grant(s, mod(func(g *registry.Grant) { g.Purposes = nil })), "purposes"},
		{"purpose without legal basis", grant(s, mod(func(g *registry.Grant) { g.Purposes[0].LegalBasis = " " })), "no legal basis"},
		{"bad purpose code", grant(s, mod(func(g *registry.Grant) { g.Purposes[0].Code = "Cantine!" })), "purposes[0].code"},
		{"purpose twice", grant(s, mod(func(g *registry.Grant) { g.Purposes = append(g.Purposes, g.Purposes[0]) })), "listed twice"},
		{"window in the past", grant(s, mod(func(g *registry.Grant) { g.NotBefore, g.NotAfter = Start.AddDate(-2, 0, 0), Start.AddDate(-1, 0, 0) })), "in the past"},
		{"end before start", grant(s, mod(func(g *registry.Grant) { g.NotAfter = g.NotBefore.Add(-time.Hour) })), "not after not_before"},
		{"no window", grant(s, mod(func(g *registry.Grant) { g.NotBefore = time.Time{} })), "validity"},
		{"negative rate", grant(s, mod(func(g *registry.Grant) { g.Quota.RatePerSecond = -1 })), "quota.rate_per_second"},
		{"rate without burst", grant(s, mod(func(g *registry.Grant) { g.Quota.Burst = 0 })), "quota.burst"},
		{"negative daily cap", grant(s, mod(func(g *registry.Grant) { g.Quota.DailyCap = -1 })), "quota"},
		{"negative expected volume", grant(s, mod(func(g *registry.Grant) { g.ExpectedDailyVolume = -1 })), "expected_daily_volume"},
		{"anomaly ratio above 1", grant(s, mod(func(g *registry.Grant) { g.Anomaly.MaxNotFoundRatio = 1.5 })), "anomaly.max_not_found_ratio"},
		{"anomaly negative subjects", grant(s, mod(func(g *registry.Grant) { g.Anomaly.MaxDistinctSubjects = -1 })), "anomaly.max_distinct_subjects"},
		{"anomaly unknown action", grant(s, mod(func(g *registry.Grant) { g.Anomaly.Action = "ban" })), "anomaly.action"},
		{"unknown designation", grant(s, mod(func(g *registry.Grant) { g.Designations = []string{"typed", "franceconnect"} })), `designations[1]: "franceconnect" is not a designation`},
		{"designation twice", grant(s, mod(func(g *registry.Grant) { g.Designations = []string{"citizen_login", "citizen_login"} })), `designations[1]: "citizen_login" is listed twice`},
		{"negative disclosure delay", grant(s, mod(func(g *registry.Grant) { g.Disclosure = registry.Disclosure{Delay: -time.Hour, LegalReference: "x"} })), "disclosure.delay"},
		{"disclosure delay over ten years", grant(s, mod(func(g *registry.Grant) {
			g.Disclosure = registry.Disclosure{Delay: registry.MaxDisclosureDelay + time.Second, LegalReference: "x"}
		})), "disclosure.delay"},
		{"disclosure delay not whole seconds", grant(s, mod(func(g *registry.Grant) {
			g.Disclosure = registry.Disclosure{Delay: 1500 * time.Millisecond, LegalReference: "x"}
		})), "whole number of seconds"},
		{"disclosure delay without reference", grant(s, mod(func(g *registry.Grant) { g.Disclosure = registry.Disclosure{Delay: time.Hour, LegalReference: " "} })), "disclosure.legal_reference: a deferred disclosure needs its legal reference"},
		{"disclosure reference without delay", grant(s, mod(func(g *registry.Grant) { g.Disclosure = registry.Disclosure{LegalReference: "CSS art. L114-9"} })), "disclosure.legal_reference: is set without a delay"},
		{"disclosure reference too long", grant(s, mod(func(g *registry.Grant) {
			g.Disclosure = registry.Disclosure{Delay: time.Hour, LegalReference: strings.Repeat("é", 257)}
		})), "disclosure.legal_reference: must be valid text of at most 256 characters"},
		{"unregistered consumer", grant(s, mod(func(g *registry.Grant) { g.Consumer = SiretB })), "not registered"},
		{"status unknown", func() error { _, err := s.SetConsumerStatus(ctx, SiretA, "closed"); return err }, "status"},
		{"extend into the past", func() error { _, err := s.ExtendGrant(ctx, live.ID, Start.Add(-time.Minute)); return err }, "in the past"},
		{"extend before start", func() error { _, err := s.ExtendGrant(ctx, live.ID, live.NotBefore.Add(-time.Minute)); return err }, "not after not_before"},
		{"extend a revoked grant", func() error { _, err := s.ExtendGrant(ctx, revoked.ID, Start.AddDate(2, 0, 0)); return err }, "is revoked"},
		{"revoke twice", func() error { _, err := s.RevokeGrant(ctx, revoked.ID); return err }, "already revoked"},
		{"credential without serial", credential(s, registry.CredentialRecord{Kind: "consumer", Subject: SiretA}), "serial"},
		{"credential serial not hex", credential(s, registry.CredentialRecord{Serial: "zz:01", Kind: "consumer", Subject: SiretA}), "serial"},
		{"credential serial upper case", credential(s, registry.CredentialRecord{Serial: "AB01", Kind: "consumer", Subject: SiretA}), "serial"},
		{"credential unknown kind", credential(s, registry.CredentialRecord{Serial: "ab01", Kind: "robot", Subject: SiretA}), "kind"},
		{"credential without subject", credential(s, registry.CredentialRecord{Serial: "ab01", Kind: "operator"}), "subject"},
		{"credential consumer not a SIRET", credential(s, registry.CredentialRecord{Serial: "ab01", Kind: "consumer", Subject: "alice"}), "subject"},
		{"credential unknown status", credential(s, registry.CredentialRecord{Serial: "ab01", Kind: "operator", Subject: "alice", Status: "paused"}), "status"},
		{"credential active with a revocation date", credential(s, registry.CredentialRecord{Serial: "ab01", Kind: "operator", Subject: "alice", Status: registry.CredentialActive, RevokedAt: Start}), "revoked_at"},
		{"credential revoked back to active", credential(s, registry.CredentialRecord{Serial: "aa02", Kind: "consumer", Subject: SiretA}), "a revocation is final"},
		{"revoke no serial", func() error { _, err := s.RevokeCredentials(ctx); return err }, "serials"},
		{"revoke a bad serial among good ones", func() error { _, err := s.RevokeCredentials(ctx, "aa01", "nope"); return err }, "serial"},
		{"import with one bad grant", importing(s, []registry.Consumer{{SIRET: SiretB, Name: "B"}}, []registry.Grant{Grant(SiretB), mod(func(g *registry.Grant) { g.Consumer = SiretB; g.Purposes = nil })}), "grant 1"},
		{"import with a bad consumer", importing(s, []registry.Consumer{{SIRET: SiretB, Name: "B"}, {SIRET: SiretC}}, nil), "consumer 1"},
		{"import of a grant for nobody", importing(s, []registry.Consumer{{SIRET: SiretB, Name: "B"}}, []registry.Grant{Grant(SiretC)}), "not registered"},
	}
	for _, tc := range refusals {
		clk.advance(time.Second)
		err := tc.write()
		if !errors.Is(err, registry.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an invalid error naming %q", tc.name, err, tc.want)
		}
		if after := list(t, s); !sameListing(before, after) {
			t.Fatalf("%s: a refused write changed the registry:\nbefore %+v\nafter  %+v", tc.name, before, after)
		}
	}
	if s.Revoked("aa01") || !s.Revoked("aa02") {
		t.Error("a refused revocation changed the revoked set")
	}
	// Storage itself, not only the snapshot, is unchanged.
	if err := s.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if after := list(t, s); !sameListing(before, after) {
		t.Fatal("refused writes changed the stored registry")
	}
	if after := must(s.Export(ctx))(t); !SameContents(stored, after) {
		t.Fatal("refused writes changed the stored registry")
	}
	if _, err := s.Consumer(ctx, SiretB); !errors.Is(err, registry.ErrNotFound) {
		t.Error("a refused import left a consumer behind")
	}
}

func consumer(s registry.Store, c registry.Consumer) func() error {
	return func() error { _, err := s.AddConsumer(context.Background(), c); return err }
}

func grant(s registry.Store, g registry.Grant) func() error {
	return func() error { _, err := s.AddGrant(context.Background(), g); return err }
}

func credential(s registry.Store, r registry.CredentialRecord) func() error {
	return func() error { return s.PutCredential(context.Background(), r) }
}

func importing(s registry.Store, cs []registry.Consumer, gs []registry.Grant) func() error {
	return func() error { _, err := s.Import(context.Background(), cs, gs); return err }
}

func testNotFound(t *testing.T, open Opener) {
	ctx := context.Background()
	s, _ := openStore(t, open)
	must(s.AddConsumer(ctx, registry.Consumer{SIRET: SiretA, Name: "A"}))(t)
	before := list(t, s)
	checks := map[string]error{}
	_, checks["Consumer"] = s.Consumer(ctx, SiretB)
	_, checks["SetConsumerStatus"] = s.SetConsumerStatus(ctx, SiretB, registry.StatusSuspended)
	_, checks["RevokeGrant"] = s.RevokeGrant(ctx, "g-0000000000000000")
	_, checks["ExtendGrant"] = s.ExtendGrant(ctx, "g-0000000000000000", Start.AddDate(1, 0, 0))
	_, checks["Credential"] = s.Credential(ctx, "abcdef")
	for name, err := range checks {
		if !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("%s of an unknown id: %v, want ErrNotFound", name, err)
		}
	}
	if gs := must(s.Grants(ctx, SiretB, FQ))(t); len(gs) != 0 {
		t.Errorf("Grants of an unknown consumer: %v", gs)
	}
	if cs := must(s.ListCredentials(ctx, SiretB))(t); len(cs) != 0 {
		t.Errorf("ListCredentials of an unknown subject: %v", cs)
	}
	if s.Revoked("abcdef") {
		t.Error("an unknown serial is revoked")
	}
	if after := list(t, s); !sameListing(before, after) {
		t.Fatal("lookups of unknown ids changed the registry")
	}
}

func testDuplicates(t *testing.T, open Opener) {
	ctx := context.Background()
	s, _ := openStore(t, open)
	must(s.AddConsumer(ctx, registry.Consumer{SIRET: SiretA, Name: "A"}))(t)
	before := list(t, s)
	for _, tc := range []struct {
		name  string
		write func() error
		siret string
	}{
		{"AddConsumer twice", consumer(s, registry.Consumer{SIRET: SiretA, Name: "again"}), SiretA},
		{"Import of an existing consumer", importing(s, []registry.Consumer{{SIRET: SiretB, Name: "B"}, {SIRET: SiretA, Name: "A again"}}, []registry.Grant{Grant(SiretB)}), SiretA},
		{"Import listing a consumer twice", importing(s, []registry.Consumer{{SIRET: SiretB, Name: "B"}, {SIRET: SiretB, Name: "B again"}}, nil), SiretB},
	} {
		err := tc.write()
		if !errors.Is(err, registry.ErrExists) || !strings.Contains(err.Error(), tc.siret) {
			t.Errorf("%s: %v, want ErrExists naming %s", tc.name, err, tc.siret)
		}
		if after := list(t, s); !sameListing(before, after) {
			t.Fatalf("%s changed the registry", tc.name)
		}
	}
	if c := must(s.Consumer(ctx, SiretA))(t); c.Name != "A" {
		t.Errorf("a duplicate replaced the consumer: %+v", c)
	}
}

func testVisibility(t *testing.T, open Opener) {
	ctx := context.Background()
	s, clk := openStore(t, open)
	must(s.AddConsumer(ctx, registry.Consumer{SIRET: SiretA, Name: "A"}))(t)
	if c, err := s.Consumer(ctx, SiretA); err != nil || c.Status != registry.StatusActive {
		t.Fatalf("new consumer not visible at once: %+v %v", c, err)
	}
	clk.advance(time.Minute)
	sus := must(s.SetConsumerStatus(ctx, SiretA, registry.StatusSuspended))(t)
	if c := must(s.Consumer(ctx, SiretA))(t); c.Status != registry.StatusSuspended || !c.UpdatedAt.Equal(Start.Add(time.Minute)) || !reflect.DeepEqual(c, sus) {
		t.Fatalf("suspension not visible at once: %+v", c)
	}
	must(s.SetConsumerStatus(ctx, SiretA, registry.StatusActive))(t)
	if c := must(s.Consumer(ctx, SiretA))(t); c.Status != registry.StatusActive {
		t.Fatal("resumption not visible at once")
	}
	g := must(s.AddGrant(ctx, Grant(SiretA)))(t)
	if gs := must(s.Grants(ctx, SiretA, FQ))(t); len(gs) != 1 || gs[0].ID != g.ID {
		t.Fatalf("grant not visible at once: %v", gs)
	}
	if gs := must(s.Grants(ctx, SiretA, Student))(t); len(gs) != 0 {
		t.Fatalf("grant visible on another service: %v", gs)
	}
	end := Start.AddDate(0, 3, 0)
	ext := must(s.ExtendGrant(ctx, g.ID, end))(t)
	if gs := must(s.Grants(ctx, SiretA, FQ))(t); len(gs) != 1 || !gs[0].NotAfter.Equal(end) || !sameGrant(gs[0], ext) {
		t.Fatalf("extension not visible at once: %v", gs)
	}
	clk.advance(time.Minute)
	rev := must(s.RevokeGrant(ctx, g.ID))(t)
	if !rev.RevokedAt.Equal(Start.Add(2 * time.Minute)) {
		t.Fatalf("revoked at %v", rev.RevokedAt)
	}
	if gs := must(s.Grants(ctx, SiretA, FQ))(t); len(gs) != 0 {
		t.Fatalf("revoked grant still authorises: %v", gs)
	}
	if all := must(s.ListGrants(ctx, registry.GrantFilter{Consumer: SiretA}))(t); len(all) != 1 || !sameGrant(all[0], rev) {
		t.Fatalf("revoked grant not kept for history: %v", all)
	}
	imported := must(s.Import(ctx, []registry.Consumer{{SIRET: SiretB, Name: "B"}}, []registry.Grant{Grant(SiretB), Grant(SiretA)}))(t)
	if len(imported) != 2 || imported[0].ID == "" || imported[0].ID == imported[1].ID {
		t.Fatalf("Import returned %v", imported)
	}
	if gs := must(s.Grants(ctx, SiretB, FQ))(t); len(gs) != 1 || gs[0].ID != imported[0].ID {
		t.Fatalf("imported grant not visible at once: %v", gs)
	}
	if gs := must(s.Grants(ctx, SiretA, FQ))(t); len(gs) != 1 || gs[0].ID != imported[1].ID {
		t.Fatalf("imported grant of an existing consumer not visible at once: %v", gs)
	}
	if err := s.PutCredential(ctx, registry.CredentialRecord{Serial: "c0ffee", Kind: "operator", Subject: "alice", NotBefore: Start, NotAfter: Start.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if rs := must(s.ListCredentials(ctx, "alice"))(t); len(rs) != 1 || rs[0].Serial != "c0ffee" {
		t.Fatalf("credential not visible at once: %v", rs)
	}
}

func testOrdering(t *testing.T, open Opener) {
	ctx := context.Background()
	s, _ := openStore(t, open)
	for _, siret := range []string{SiretC, SiretA, SiretB} {
		must(s.AddConsumer(ctx, registry.Consumer{SIRET: siret, Name: "x"}))(t)
	}
	for range 4 {
		for _, siret := range []string{SiretB, SiretA} {
			must(s.AddGrant(ctx, Grant(siret)))(t)
		}
	}
	var sirets []string
	for _, c := range must(s.ListConsumers(ctx))(t) {
		sirets = append(sirets, c.SIRET)
	}
	if !slices.Equal(sirets, []string{SiretA, SiretB, SiretC}) {
		t.Errorf("consumers in order %v, want by SIRET", sirets)
	}
	gs := must(s.ListGrants(ctx, registry.GrantFilter{}))(t)
	if len(gs) != 8 || !slices.IsSortedFunc(gs, func(a, b registry.Grant) int {
		if c := strings.Compare(a.Consumer, b.Consumer); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	}) {
		t.Errorf("grants not by consumer then id: %v", gs)
	}
	for i, serial := range []string{"b1", "a1", "c1", "d1"} {
		nb := Start.Add(time.Duration(i%3) * time.Hour) // b1 and d1 start together
		if err := s.PutCredential(ctx, registry.CredentialRecord{Serial: serial, Kind: "consumer", Subject: SiretA, NotBefore: nb, NotAfter: nb.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	var serials []string
	for _, r := range must(s.ListCredentials(ctx, SiretA))(t) {
		serials = append(serials, r.Serial)
	}
	if !slices.Equal(serials, []string{"c1", "a1", "b1", "d1"}) {
		t.Errorf("credentials in order %v, want newest first then by serial", serials)
	}
	// Grants expiring within 30 days: unrevoked, still valid, ending before.
	soon := Grant(SiretA)
	soon.NotAfter = Start.Add(10 * 24 * time.Hour)
	gSoon := must(s.AddGrant(ctx, soon))(t)
	gGone := must(s.AddGrant(ctx, soon))(t)
	must(s.RevokeGrant(ctx, gGone.ID))(t)
	exp := must(s.ListGrants(ctx, registry.GrantFilter{ExpiringBefore: Start.Add(30 * 24 * time.Hour)}))(t)
	if len(exp) != 1 || exp[0].ID != gSoon.ID {
		t.Errorf("expiring within 30 days: %v, want only %s", exp, gSoon.ID)
	}
	if byService := must(s.ListGrants(ctx, registry.GrantFilter{Consumer: SiretB, Service: FQ}))(t); len(byService) != 4 {
		t.Errorf("filter by consumer and service: %d grants, want 4", len(byService))
	}
}

func testRevocations(t *testing.T, open Opener) {
	ctx := context.Background()
	s, clk := openStore(t, open)
	rec := registry.CredentialRecord{Serial: "a1b2", Kind: "consumer", Subject: SiretA, NotBefore: Start, NotAfter: Start.Add(time.Hour), IssuedBy: "alice"}
	if err := s.PutCredential(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if s.Revoked("a1b2") {
		t.Fatal("an active credential is revoked")
	}
	clk.advance(time.Minute)
	rec.Status = registry.CredentialRevoked
	if err := s.PutCredential(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if !s.Revoked("a1b2") {
		t.Fatal("a revocation through PutCredential is not enforced at once")
	}
	got := must(s.Credential(ctx, "a1b2"))(t)
	if got.Status != registry.CredentialRevoked || !got.RevokedAt.Equal(Start.Add(time.Minute)) || got.IssuedBy != "alice" {
		t.Fatalf("revoked record %+v", got)
	}
	clk.advance(time.Minute)
	rs := must(s.RevokeCredentials(ctx, "a1b2", "ffee01", "ffee01"))(t)
	if len(rs) != 2 || !rs[0].RevokedAt.Equal(Start.Add(time.Minute)) || rs[1].Serial != "ffee01" || rs[1].Kind != "" ||
		rs[1].Status != registry.CredentialRevoked || !rs[1].RevokedAt.Equal(Start.Add(2*time.Minute)) {
		t.Fatalf("RevokeCredentials returned %+v", rs)
	}
	if !s.Revoked("ffee01") {
		t.Fatal("a revocation of an unrecorded serial is not enforced")
	}
	if bare := must(s.Credential(ctx, "ffee01"))(t); !reflect.DeepEqual(bare, rs[1]) {
		t.Fatalf("bare record read back %+v, want %+v", bare, rs[1])
	}
	rec.Status = ""
	if err := s.PutCredential(ctx, rec); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("re-activating a revoked credential: %v", err)
	}
	if !s.Revoked("a1b2") {
		t.Fatal("a refused re-activation lifted the revocation")
	}
	if rs := must(s.ListCredentials(ctx, SiretA))(t); len(rs) != 1 || rs[0].Status != registry.CredentialRevoked {
		t.Fatalf("listing after revocation: %+v", rs)
	}
}

func testVersion(t *testing.T, open Opener) {
	ctx := context.Background()
	s, _ := openStore(t, open)
	v := s.Version()
	step := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := s.Version(); got != v+1 {
			t.Fatalf("after %s: version %d, want %d", what, got, v+1)
		}
		v++
	}
	_, err := s.AddConsumer(ctx, registry.Consumer{SIRET: SiretA, Name: "A"})
	step("AddConsumer", err)
	_, err = s.SetConsumerStatus(ctx, SiretA, registry.StatusSuspended)
	step("SetConsumerStatus", err)
	g, err := s.AddGrant(ctx, Grant(SiretA))
	step("AddGrant", err)
	_, err = s.ExtendGrant(ctx, g.ID, Start.AddDate(0, 6, 0))
	step("ExtendGrant", err)
	_, err = s.RevokeGrant(ctx, g.ID)
	step("RevokeGrant", err)
	step("PutCredential", s.PutCredential(ctx, registry.CredentialRecord{Serial: "1", Kind: "consumer", Subject: SiretA}))
	_, err = s.RevokeCredentials(ctx, "1", "2")
	step("RevokeCredentials", err)
	_, err = s.Import(ctx, []registry.Consumer{{SIRET: SiretB, Name: "B"}}, []registry.Grant{Grant(SiretB)})
	step("Import", err)
	if _, err := s.AddConsumer(ctx, registry.Consumer{SIRET: SiretA, Name: "A"}); err == nil {
		t.Fatal("duplicate accepted")
	}
	if _, err := s.RevokeGrant(ctx, g.ID); err == nil {
		t.Fatal("second revocation accepted")
	}
	if got := s.Version(); got != v {
		t.Fatalf("refused writes moved the version to %d, want %d", got, v)
	}
}

func testReload(t *testing.T, open Opener) {
	ctx := context.Background()
	s, clk := openStore(t, open)
	// Every kind of write, so that the snapshot each write derived is
	// compared with one read back from storage in full.
	gs := must(s.Import(ctx, []registry.Consumer{{SIRET: SiretA, Name: "A"}, {SIRET: SiretB, Name: "B"}}, []registry.Grant{Grant(SiretA), Grant(SiretB), Grant(SiretB)}))(t)
	clk.advance(time.Minute)
	must(s.AddConsumer(ctx, registry.Consumer{SIRET: SiretC, Name: "C", Contacts: []registry.Contact{{Name: "DSI"}}}))(t)
	must(s.SetConsumerStatus(ctx, SiretB, registry.StatusSuspended))(t)
	g := Grant(SiretC)
	g.Service, g.Scopes = Student, scope.Of("student_status.admissions")
	must(s.AddGrant(ctx, g))(t)
	must(s.RevokeGrant(ctx, gs[1].ID))(t)
	must(s.ExtendGrant(ctx, gs[2].ID, Start.AddDate(0, 2, 0)))(t)
	if err := s.PutCredential(ctx, registry.CredentialRecord{Serial: "beef", Kind: "consumer", Subject: SiretA, Status: registry.CredentialRevoked}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutCredential(ctx, registry.CredentialRecord{Serial: "cafe", Kind: "operator", Subject: "alice"}); err != nil {
		t.Fatal(err)
	}
	must(s.RevokeCredentials(ctx, "dead01", "cafe"))(t)
	before := list(t, s)
	live := map[string][]registry.Grant{}
	for _, siret := range []string{SiretA, SiretB, SiretC} {
		for _, svc := range []string{FQ, Student} {
			live[siret+svc] = must(s.Grants(ctx, siret, svc))(t)
		}
	}
	for range 2 {
		if err := s.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		if after := list(t, s); !sameListing(before, after) {
			t.Fatalf("Reload changed the registry:\nbefore %+v\nafter  %+v", before, after)
		}
	}
	for _, siret := range []string{SiretA, SiretB, SiretC} {
		for _, svc := range []string{FQ, Student} {
			if got := must(s.Grants(ctx, siret, svc))(t); !sameGrants(got, live[siret+svc]) {
				t.Errorf("Grants(%s, %s) after Reload: %v, before %v", siret, svc, got, live[siret+svc])
			}
		}
	}
	for serial, want := range map[string]bool{"dead01": true, "cafe": true, "beef": true, "abc": false} {
		if s.Revoked(serial) != want {
			t.Errorf("Revoked(%s) after Reload: %v", serial, !want)
		}
	}
}

func testConcurrency(t *testing.T, open Opener) {
	ctx := context.Background()
	s, _ := openStore(t, open)
	must(s.AddConsumer(ctx, registry.Consumer{SIRET: SiretA, Name: "A"}))(t)
	v0 := s.Version()
	const writers, each = 4, 8
	var (
		wg       sync.WaitGroup
		readErrs atomic.Int64
		stop     = make(chan struct{})
	)
	for range 4 {
		wg.Go(func() {
			last := 0
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := s.Consumer(ctx, SiretA)
				gs, _ := s.Grants(ctx, SiretA, FQ)
				if err != nil || c.SIRET != SiretA || len(gs) < last {
					readErrs.Add(1)
				}
				last = len(gs)
				runtime.Gosched() // leave the writers a core on small machines
			}
		})
	}
	var writing sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		writing.Go(func() {
			for i := range each {
				if _, err := s.AddGrant(ctx, Grant(SiretA)); err != nil {
					errs <- err
				}
				if err := s.PutCredential(ctx, registry.CredentialRecord{Serial: fmt.Sprintf("%x", 0x100+w*each+i), Kind: "consumer", Subject: SiretA}); err != nil {
					errs <- err
				}
			}
		})
	}
	writing.Wait()
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := readErrs.Load(); n > 0 {
		t.Errorf("%d reads failed or went back in time during writes", n)
	}
	if gs := must(s.Grants(ctx, SiretA, FQ))(t); len(gs) != writers*each {
		t.Errorf("%d grants, want %d", len(gs), writers*each)
	}
	if rs := must(s.ListCredentials(ctx, SiretA))(t); len(rs) != writers*each {
		t.Errorf("%d credentials, want %d", len(rs), writers*each)
	}
	if got, want := s.Version(), v0+2*writers*each; got != want {
		t.Errorf("version %d after %d writes from %d, want %d", got, 2*writers*each, v0, want)
	}
}

// Fill makes every kind of write on s, whose clock starts at Start and
// is moved by advance: suspended and active consumers; live, extended,
// revoked and ended grants; active, revoked and bare revoked credentials.
// The transfer tests use it, here and across stores.
func Fill(t *testing.T, s registry.Store, advance func(time.Duration)) {
	t.Helper()
	ctx := context.Background()
	both := Grant(SiretB)
	both.Designations = []string{registry.DesignationCitizenLogin, registry.DesignationTyped}
	both.Disclosure = registry.Disclosure{Delay: 8760 * time.Hour, LegalReference: "Code de la sécurité sociale, art. L114-9"}
	gs := must(s.Import(ctx, []registry.Consumer{{SIRET: SiretA, Name: "A", Contacts: []registry.Contact{{Name: "DSI", Email: "dsi@a.example"}}}, {SIRET: SiretB, Name: "B"}},
		[]registry.Grant{Grant(SiretA), Grant(SiretB), both}))(t)
	if !slices.Equal(gs[2].Designations, []string{registry.DesignationTyped, registry.DesignationCitizenLogin}) || gs[2].Disclosure != both.Disclosure {
		t.Fatalf("Import returned %+v", gs[2])
	}
	short := Grant(SiretA)
	short.NotAfter = Start.Add(time.Hour)
	short.Anomaly = registry.AnomalyPolicy{MaxNotFoundRatio: 0.5, Action: registry.AnomalyThrottle}
	short.Designations = []string{registry.DesignationCitizenLogin}
	short.Disclosure = registry.Disclosure{Delay: 90 * 24 * time.Hour, LegalReference: "CSS art. L114-9"}
	must(s.AddGrant(ctx, short))(t)
	advance(2 * time.Hour) // short has ended: history now
	must(s.AddConsumer(ctx, registry.Consumer{SIRET: SiretC, Name: "C", Status: registry.StatusSuspended}))(t)
	must(s.RevokeGrant(ctx, gs[1].ID))(t)
	must(s.ExtendGrant(ctx, gs[2].ID, Start.AddDate(0, 2, 0)))(t)
	for _, r := range []registry.CredentialRecord{
		{Serial: "a1", Kind: "consumer", Subject: SiretA, NotBefore: Start, NotAfter: Start.Add(time.Hour), IssuedBy: "alice"},
		{Serial: "a2", Kind: "consumer", Subject: SiretA, NotBefore: Start.Add(time.Minute), NotAfter: Start.Add(time.Hour), IssuedBy: "renewal"},
		{Serial: "b1", Kind: "operator", Subject: "alice", NotBefore: Start, NotAfter: Start.Add(time.Hour)},
	} {
		if err := s.PutCredential(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	must(s.RevokeCredentials(ctx, "a1", "f00d"))(t)
}

// SameContents reports whether two exports hold the same registry.
func SameContents(a, b registry.Contents) bool {
	return reflect.DeepEqual(a.Consumers, b.Consumers) && sameGrants(a.Grants, b.Grants) && reflect.DeepEqual(a.Credentials, b.Credentials)
}

func testTransfer(t *testing.T, open Opener) {
	ctx := context.Background()
	src, clk := openStore(t, open)
	Fill(t, src, clk.advance)
	exported := must(src.Export(ctx))(t)
	if len(exported.Consumers) != 3 || len(exported.Grants) != 4 || len(exported.Credentials) != 4 {
		t.Fatalf("export holds %d consumers, %d grants, %d credentials", len(exported.Consumers), len(exported.Grants), len(exported.Credentials))
	}
	dst, _ := openStore(t, open)
	if err := dst.Restore(ctx, exported); err != nil {
		t.Fatal(err)
	}
	if got := must(dst.Export(ctx))(t); !SameContents(got, exported) {
		t.Fatalf("restored registry differs:\n got %+v\nwant %+v", got, exported)
	}
	a, b := list(t, src), list(t, dst)
	a.Version, b.Version = 0, 0
	if !sameListing(a, b) {
		t.Fatal("restored snapshot answers differently")
	}
	for _, serial := range []string{"a1", "f00d", "a2"} {
		if src.Revoked(serial) != dst.Revoked(serial) {
			t.Errorf("Revoked(%s) differs after restore", serial)
		}
	}
	before := list(t, dst)
	if err := dst.Restore(ctx, exported); !errors.Is(err, registry.ErrExists) || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("restore into a non-empty registry: %v", err)
	}
	if !sameListing(before, list(t, dst)) {
		t.Fatal("a refused restore changed the registry")
	}
	bad := []struct {
		name string
		mod  func(*registry.Contents)
		want string
	}{
		{"grant of a missing consumer", func(c *registry.Contents) { c.Consumers = c.Consumers[1:] }, "not registered"},
		{"serial twice", func(c *registry.Contents) { c.Credentials = append(c.Credentials, c.Credentials[0]) }, "listed twice"},
		{"bad consumer", func(c *registry.Contents) { c.Consumers[0].Name = "" }, "name"},
		{"bad grant id", func(c *registry.Contents) { c.Grants[0].ID = "x" }, "id"},
		{"live grant out of the catalogue", func(c *registry.Contents) { c.Grants[0].Service = "relais.pension.v1.PensionService" }, "service"},
		{"unknown designation", func(c *registry.Contents) { c.Grants[0].Designations = []string{"eidas"} }, "designations[0]"},
		{"deferral without reference", func(c *registry.Contents) { c.Grants[0].Disclosure = registry.Disclosure{Delay: time.Hour} }, "disclosure.legal_reference"},
		{"revoked without a date", func(c *registry.Contents) {
			for i := range c.Credentials {
				if c.Credentials[i].Status == registry.CredentialRevoked {
					c.Credentials[i].RevokedAt = time.Time{}
				}
			}
		}, "revoked_at"},
	}
	empty, _ := openStore(t, open)
	for _, tc := range bad {
		c := must(src.Export(ctx))(t)
		tc.mod(&c)
		err := empty.Restore(ctx, c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("restore with %s: %v, want an error naming %q", tc.name, err, tc.want)
		}
		if got := must(empty.Export(ctx))(t); len(got.Consumers)+len(got.Grants)+len(got.Credentials) != 0 || empty.Version() != 0 {
			t.Fatalf("a refused restore (%s) wrote something", tc.name)
		}
	}
}
