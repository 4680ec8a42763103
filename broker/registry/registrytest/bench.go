package registrytest

import (
	"context"
	"fmt"
	"testing"

	"github.com/relais-broker/relais/broker/authz"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/scope"
)

// The size of the authorization benchmark: a national registry.
const (
	// BenchConsumers is the number of consumers Populate registers.
	BenchConsumers = 10000
	// BenchGrantsEach is the number of grants of each (one per service).
	BenchGrantsEach = 5
)

// benchServices are the five services each benchmark consumer holds a
// grant on, with one scope each.
var benchServices = []struct{ service, scope string }{
	{FQ, "family_quotient.value"},
	{Student, "student_status.admissions"},
	{"relais.studentscholarship.v1.StudentScholarshipService", "student_scholarship.status"},
	{"relais.jobseeker.v1.JobSeekerStatusService", "job_seeker.registration"},
	{"relais.healthcover.v1.SolidarityHealthCoverService", "solidarity_health_cover.status"},
}

// Populate imports BenchConsumers consumers with BenchGrantsEach grants
// each into s (a store whose clock reads Start) and returns the SIRETs.
func Populate(tb testing.TB, s registry.Store) []string {
	tb.Helper()
	consumers := make([]registry.Consumer, 0, BenchConsumers)
	grants := make([]registry.Grant, 0, BenchConsumers*BenchGrantsEach)
	sirets := make([]string, 0, BenchConsumers)
	for i := range BenchConsumers {
		siret := SIRET(i)
		sirets = append(sirets, siret)
		consumers = append(consumers, registry.Consumer{SIRET: siret, Name: "Commune " + siret})
		for _, svc := range benchServices[:BenchGrantsEach] {
			g := Grant(siret)
			g.Service, g.Scopes = svc.service, scope.Of(svc.scope)
			grants = append(grants, g)
		}
	}
	if _, err := s.Import(context.Background(), consumers, grants); err != nil {
		tb.Fatal(err)
	}
	return sirets
}

// BenchAuthorization measures what the broker does on every call —
// consumer and grants lookups, then the decision — over the consumers of
// Populate. Both stores run this one body, so their figures compare.
func BenchAuthorization(b *testing.B, r registry.Reader, sirets []string) {
	ctx := context.Background()
	requested := scope.Of("family_quotient.value", "family_quotient.children")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		siret := sirets[i%len(sirets)]
		c, err := r.Consumer(ctx, siret)
		if err != nil {
			b.Fatal(err)
		}
		gs, _ := r.Grants(ctx, siret, FQ)
		if _, err := authz.Decide(c, gs, PurposeA, requested, Start); err != nil {
			b.Fatal(err)
		}
	}
}

// SIRET makes the i-th fictitious SIRET (prefix 2199) with a valid Luhn
// key.
func SIRET(i int) string {
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

// BenchWrite measures one admin write (a suspension or a resumption) on
// the registry of Populate: validation, the transaction and the next
// snapshot.
func BenchWrite(b *testing.B, s registry.Store, sirets []string) {
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		st := registry.StatusSuspended
		if (i/len(sirets))%2 == 1 {
			st = registry.StatusActive
		}
		if _, err := s.SetConsumerStatus(ctx, sirets[i%len(sirets)], st); err != nil {
			b.Fatal(err)
		}
	}
}
