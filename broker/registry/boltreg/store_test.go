package boltreg_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/registry/boltreg"
	"github.com/relais-broker/relais/broker/registry/registrytest"
	"github.com/relais-broker/relais/broker/scope"
)

const (
	siretA   = "21990000100005"
	siretB   = "21990000200003"
	fq       = "relais.familyquotient.v1.FamilyQuotientService"
	purposeA = "tarification_sociale"
)

var now = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func open(t testing.TB, path string) *boltreg.Store {
	t.Helper()
	s, err := boltreg.Open(path, boltreg.Options{Clock: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func grant(consumer string) registry.Grant {
	return registry.Grant{
		Consumer: consumer, Service: fq, Scopes: scope.Of("family_quotient.value"),
		Purposes:  []registry.Purpose{{Code: purposeA, Label: "Cantine", LegalBasis: "CRPA art. L114-8"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0), Quota: registry.Quota{RatePerSecond: 20, Burst: 40, DailyCap: 10000},
	}
}

func TestRoundTripAcrossReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "registry.db")
	s := open(t, path)
	if _, err := s.AddConsumer(ctx, registry.Consumer{SIRET: siretA, Name: "Mairie A", Contacts: []registry.Contact{{Name: "DSI", Email: "dsi@mairie-a.example"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddConsumer(ctx, registry.Consumer{SIRET: siretA, Name: "again"}); !errors.Is(err, registry.ErrExists) {
		t.Fatalf("duplicate consumer: %v", err)
	}
	g, err := s.AddGrant(ctx, grant(siretA))
	if err != nil {
		t.Fatal(err)
	}
	// Seen at once by the read path the broker uses.
	if gs, _ := s.Grants(ctx, siretA, fq); len(gs) != 1 || gs[0].ID != g.ID {
		t.Fatalf("grant not visible at once: %v", gs)
	}
	if err := s.PutCredential(ctx, registry.CredentialRecord{Serial: "abc1", Kind: "consumer", Subject: siretA, NotBefore: now, NotAfter: now.Add(time.Hour), IssuedBy: "alice"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, path)
	defer s.Close()
	c, err := s.Consumer(ctx, siretA)
	if err != nil || c.Name != "Mairie A" || c.Status != registry.StatusActive || len(c.Contacts) != 1 || !c.CreatedAt.Equal(now) {
		t.Fatalf("consumer after reopen: %+v, %v", c, err)
	}
	gs, _ := s.Grants(ctx, siretA, fq)
	if len(gs) != 1 || !gs[0].Scopes.Has("family_quotient.value") || gs[0].Quota.DailyCap != 10000 || gs[0].Purposes[0].LegalBasis != "CRPA art. L114-8" {
		t.Fatalf("grant after reopen: %+v", gs)
	}
	creds, _ := s.ListCredentials(ctx, siretA)
	if len(creds) != 1 || creds[0].Status != registry.CredentialActive {
		t.Fatalf("credentials after reopen: %+v", creds)
	}
}

func TestSuspendRevokeExtendExpiring(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "r.db"))
	defer s.Close()
	if _, err := s.AddConsumer(ctx, registry.Consumer{SIRET: siretA, Name: "A"}); err != nil {
		t.Fatal(err)
	}
	if c, err := s.SetConsumerStatus(ctx, siretA, registry.StatusSuspended); err != nil || c.Status != registry.StatusSuspended {
		t.Fatalf("suspend: %v %v", c, err)
	}
	if c, _ := s.Consumer(ctx, siretA); c.Status != registry.StatusSuspended {
		t.Fatal("suspension not visible at once")
	}
	if _, err := s.SetConsumerStatus(ctx, siretB, registry.StatusActive); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("unknown consumer: %v", err)
	}
	soon := grant(siretA)
	soon.NotAfter = now.Add(10 * 24 * time.Hour)
	gSoon, _ := s.AddGrant(ctx, soon)
	gLate, _ := s.AddGrant(ctx, grant(siretA))
	expiring, _ := s.ListGrants(ctx, registry.GrantFilter{ExpiringBefore: now.Add(30 * 24 * time.Hour)})
	if len(expiring) != 1 || expiring[0].ID != gSoon.ID {
		t.Fatalf("expiring within 30 days: %v", expiring)
	}
	if _, err := s.ExtendGrant(ctx, gSoon.ID, now.AddDate(0, 6, 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ExtendGrant(ctx, gSoon.ID, now.Add(-time.Hour)); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("extend into the past: %v", err)
	}
	if _, err := s.RevokeGrant(ctx, gLate.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeGrant(ctx, gLate.ID); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("second revocation: %v", err)
	}
	live, _ := s.Grants(ctx, siretA, fq)
	all, _ := s.ListGrants(ctx, registry.GrantFilter{Consumer: siretA})
	if len(live) != 1 || live[0].ID != gSoon.ID || len(all) != 2 {
		t.Fatalf("after revocation: live %v, history %d", live, len(all))
	}
}

// TestRefusedWritesChangeNothing checks every validation rule: each is
// refused with a message naming the field, and the file is unchanged.
func TestRefusedWritesChangeNothing(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "r.db")
	s := open(t, path)
	if _, err := s.AddConsumer(ctx, registry.Consumer{SIRET: siretA, Name: "A"}); err != nil {
		t.Fatal(err)
	}
	mod := func(f func(*registry.Grant)) registry.Grant { g := grant(siretA); f(&g); return g }
	consumerCases := []struct {
		name string
		c    registry.Consumer
		want string
	}{
		{"bad SIRET checksum", registry.Consumer{SIRET: "21990000100006", Name: "x"}, "siret"},
		{"SIRET too short", registry.Consumer{SIRET: "123", Name: "x"}, "siret"},
		{"no name", registry.Consumer{SIRET: siretB}, "name: is required"},
		{"bad status", registry.Consumer{SIRET: siretB, Name: "x", Status: "closed"}, "status"},
		{"bad contact e-mail", registry.Consumer{SIRET: siretB, Name: "x", Contacts: []registry.Contact{{Name: "DSI", Email: "not-an-email"}}}, "contacts[0].email"},
	}
	grantCases := []struct {
		name string
		g    registry.Grant
		want string
	}{
		{"unknown service", mod(func(g *registry.Grant) { g.Service = "relais.pension.v1.PensionService" }), "service"},
		{"scope of another service", mod(func(g *registry.Grant) { g.Scopes = scope.Of("student_status.admissions") }), "scopes"},
		{"unknown scope", mod(func(g *registry.Grant) { g.Scopes = scope.Of("family_quotient.income") }), "scopes"},
		{"no scope", mod(func(g *registry.Grant) { g.Scopes = scope.Set{} }), "scopes"},
		{"no purpose", mod(func(g *registry.Grant) { g.Purposes = nil }), "purposes"},
		{"purpose without legal basis", mod(func(g *registry.Grant) { g.Purposes[0].LegalBasis = " " }), "no legal basis"},
		{"bad purpose code", mod(func(g *registry.Grant) { g.Purposes[0].Code = "Cantine!" }), "purposes[0].code"},
		{"window in the past", mod(func(g *registry.Grant) { g.NotBefore, g.NotAfter = now.AddDate(-2, 0, 0), now.AddDate(-1, 0, 0) }), "in the past"},
		{"end before start", mod(func(g *registry.Grant) { g.NotAfter = g.NotBefore.Add(-time.Hour) }), "not after not_before"},
		{"negative rate", mod(func(g *registry.Grant) { g.Quota.RatePerSecond = -1 }), "quota.rate_per_second"},
		{"rate without burst", mod(func(g *registry.Grant) { g.Quota.Burst = 0 }), "quota.burst"},
		{"unregistered consumer", mod(func(g *registry.Grant) { g.Consumer = siretB }), "not registered"},
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	s = open(t, path)
	for _, tc := range consumerCases {
		_, err := s.AddConsumer(ctx, tc.c)
		if !errors.Is(err, registry.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an invalid error naming %q", tc.name, err, tc.want)
		}
	}
	for _, tc := range grantCases {
		_, err := s.AddGrant(ctx, tc.g)
		if !errors.Is(err, registry.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an invalid error naming %q", tc.name, err, tc.want)
		}
	}
	if _, err := s.Import(ctx, []registry.Consumer{{SIRET: siretB, Name: "B"}}, []registry.Grant{grant(siretB), mod(func(g *registry.Grant) { g.Consumer = siretB; g.Purposes = nil })}); err == nil {
		t.Error("an import with one bad grant went through")
	}
	if _, err := s.Consumer(ctx, siretB); !errors.Is(err, registry.ErrNotFound) {
		t.Error("a refused import left a consumer behind")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("refused writes changed the registry file")
	}
}

func TestForeignFilesAreRefusedAndUntouched(t *testing.T) {
	dir := t.TempDir()
	random := make([]byte, 64<<10)
	_, _ = rand.Read(random)
	otherBolt := filepath.Join(dir, "other.db")
	db, err := bolt.Open(otherBolt, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("users")); return err })
	db.Close()
	newer := filepath.Join(dir, "newer.db")
	s := open(t, newer)
	s.Close()
	db, _ = bolt.Open(newer, 0o600, nil)
	_ = db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("meta")).Put([]byte("schema_version"), []byte("99")) })
	db.Close()
	files := map[string]string{
		"random bytes":           writeFile(t, dir, "random.db", random),
		"a text file":            writeFile(t, dir, "notes.db", []byte("consumers:\n  - 21990000100005\n")),
		"another bbolt database": otherBolt,
		"a newer schema":         newer,
	}
	wants := map[string]string{"random bytes": "not a readable registry", "a text file": "not a readable registry",
		"another bbolt database": "not a Relais registry", "a newer schema": "newer than this relaisd"}
	for name, path := range files {
		before, _ := os.ReadFile(path)
		_, err := boltreg.Open(path, boltreg.Options{})
		if err == nil || !strings.Contains(err.Error(), wants[name]) {
			t.Errorf("%s: %v, want %q", name, err, wants[name])
		}
		after, _ := os.ReadFile(path)
		if !bytes.Equal(before, after) {
			t.Errorf("%s: the file was modified", name)
		}
	}
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSecondOpenFailsFastWhenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.db")
	s := open(t, path)
	defer s.Close()
	start := time.Now()
	_, err := boltreg.Open(path, boltreg.Options{})
	if err == nil || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("second open: %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("second open hung for %s", time.Since(start))
	}
}

func TestConcurrentReadsDuringWrites(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "r.db"))
	defer s.Close()
	if _, err := s.AddConsumer(ctx, registry.Consumer{SIRET: siretA, Name: "A"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := s.Consumer(ctx, siretA)
				gs, _ := s.Grants(ctx, siretA, fq)
				if err != nil || c.SIRET != siretA {
					t.Error("read failed during writes")
				}
				_ = len(gs)
			}
		})
	}
	for i := 0; i < 30; i++ {
		if _, err := s.AddGrant(ctx, grant(siretA)); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if gs, _ := s.Grants(ctx, siretA, fq); len(gs) != 30 {
		t.Fatalf("%d grants, want 30", len(gs))
	}
}

// BenchmarkAuthorizationDecision measures what the broker does on every
// call with 10,000 consumers and 50,000 grants, with the body shared with
// pgreg's benchmark (which runs both stores side by side).
func BenchmarkAuthorizationDecision(b *testing.B) {
	s, err := boltreg.Open(filepath.Join(b.TempDir(), "r.db"), boltreg.Options{Clock: func() time.Time { return registrytest.Start }})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	registrytest.BenchAuthorization(b, s, registrytest.Populate(b, s))
}

// TestVersionPersistsAcrossReopen checks that the registry version lives
// in the file (registry.Versioned), and that a file written before the
// version existed opens at version 0 and counts on from there.
func TestVersionPersistsAcrossReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "r.db")
	s := open(t, path)
	if _, err := s.AddConsumer(ctx, registry.Consumer{SIRET: siretA, Name: "A"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeCredentials(ctx, "abc"); err != nil {
		t.Fatal(err)
	}
	if s.Version() != 2 {
		t.Fatalf("version %d after two writes", s.Version())
	}
	s.Close()
	s = open(t, path)
	if s.Version() != 2 || !s.Revoked("abc") {
		t.Fatalf("after reopen: version %d, revoked %v", s.Version(), s.Revoked("abc"))
	}
	s.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("meta")).Delete([]byte("registry_version")) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s = open(t, path)
	defer s.Close()
	if s.Version() != 0 {
		t.Fatalf("a file without a version opens at %d", s.Version())
	}
	if _, err := s.SetConsumerStatus(ctx, siretA, registry.StatusSuspended); err != nil || s.Version() != 1 {
		t.Fatalf("first write on an old file: %v, version %d", err, s.Version())
	}
}
