package boltreg_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/relais-broker/relais/broker/authz"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/registry/boltreg"
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
// call — consumer and grants lookups, then the decision — with 10,000
// consumers and 50,000 grants.
func BenchmarkAuthorizationDecision(b *testing.B) {
	ctx := context.Background()
	s := open(b, filepath.Join(b.TempDir(), "r.db"))
	defer s.Close()
	const nConsumers, grantsEach = 10000, 5
	services := []string{fq, "relais.studentstatus.v1.StudentStatusService", "relais.studentscholarship.v1.StudentScholarshipService",
		"relais.jobseeker.v1.JobSeekerStatusService", "relais.healthcover.v1.SolidarityHealthCoverService"}
	scopesOf := map[string]string{services[0]: "family_quotient.value", services[1]: "student_status.admissions", services[2]: "student_scholarship.status",
		services[3]: "job_seeker.registration", services[4]: "solidarity_health_cover.status"}
	var consumers []registry.Consumer
	var grants []registry.Grant
	for i := 0; i < nConsumers; i++ {
		siret := validSIRET(i)
		consumers = append(consumers, registry.Consumer{SIRET: siret, Name: "Commune " + siret})
		for j := 0; j < grantsEach; j++ {
			g := grant(siret)
			g.Service, g.Scopes = services[j], scope.Of(scopesOf[services[j]])
			grants = append(grants, g)
		}
	}
	if _, err := s.Import(ctx, consumers, grants); err != nil {
		b.Fatal(err)
	}
	requested := scope.Of("family_quotient.value", "family_quotient.children")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		siret := consumers[i%nConsumers].SIRET
		c, err := s.Consumer(ctx, siret)
		if err != nil {
			b.Fatal(err)
		}
		gs, _ := s.Grants(ctx, siret, fq)
		if _, err := authz.Decide(c, gs, purposeA, requested, now); err != nil {
			b.Fatal(err)
		}
	}
}

// validSIRET makes the i-th fictitious SIRET with a valid Luhn key.
func validSIRET(i int) string {
	base := fmt.Sprintf("2199%09d", i)
	for d := 0; d <= 9; d++ {
		s := base + fmt.Sprint(d)
		if luhn(s) {
			return s
		}
	}
	panic("no Luhn digit")
}

func luhn(s string) bool {
	sum := 0
	for i := range s {
		d := int(s[len(s)-1-i] - '0')
		if i%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}
