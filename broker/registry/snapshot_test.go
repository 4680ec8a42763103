package registry_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/scope"
)

// TestApplyMatchesAFullBuild applies random deltas (new and replaced
// consumers and grants, revocations of grants and serials) and checks that
// every derived snapshot answers exactly as one built from scratch from
// the same data, and that the snapshot it derived from is unchanged.
func TestApplyMatchesAFullBuild(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	services := []string{"svc.A", "svc.B"}
	consumers := map[string]registry.Consumer{}
	grants := map[string]registry.Grant{}
	revoked := map[string]bool{}
	owner := map[string]registry.Grant{} // a grant never changes consumer or service
	snap := registry.NewSnapshot(0, nil, nil, nil)
	for step := 1; step <= 300; step++ {
		var d registry.Delta
		size := 1 + rng.IntN(3)
		if step%50 == 0 {
			size = 100 // an import
		}
		for range size {
			switch rng.IntN(4) {
			case 0:
				c := registry.Consumer{SIRET: fmt.Sprintf("c%02d", rng.IntN(40)), Name: fmt.Sprint(step), Status: registry.StatusActive}
				d.Consumers = append(d.Consumers, c)
			case 1, 2:
				g := registry.Grant{ID: fmt.Sprintf("g-%03d", rng.IntN(200)), Consumer: fmt.Sprintf("c%02d", rng.IntN(40)),
					Service: services[rng.IntN(2)], Scopes: scope.Of("x"), NotAfter: now.Add(time.Duration(step) * time.Hour)}
				if old, ok := owner[g.ID]; ok {
					g.Consumer, g.Service = old.Consumer, old.Service // a change keeps the grant's owner
					if rng.IntN(2) == 0 {
						g.RevokedAt = now
					}
				}
				owner[g.ID] = g
				d.Grants = append(d.Grants, g)
			case 3:
				d.Revoked = append(d.Revoked, fmt.Sprintf("%x", rng.IntN(100)))
			}
		}
		before := describe(snap, services, now)
		next := snap.Apply(uint64(step), d)
		if after := describe(snap, services, now); !reflect.DeepEqual(before, after) {
			t.Fatalf("step %d: Apply modified the snapshot it derived from", step)
		}
		for _, c := range d.Consumers {
			consumers[c.SIRET] = c
		}
		for _, g := range d.Grants {
			grants[g.ID] = g
		}
		for _, s := range d.Revoked {
			revoked[s] = true
		}
		var cs []registry.Consumer
		for _, c := range consumers {
			cs = append(cs, c)
		}
		var gs []registry.Grant
		for _, g := range grants {
			gs = append(gs, g)
		}
		var rs []string
		for s := range revoked {
			rs = append(rs, s)
		}
		full := registry.NewSnapshot(uint64(step), cs, gs, rs)
		if got, want := describe(next, services, now), describe(full, services, now); !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: applied snapshot differs from a full build:\n got %v\nwant %v", step, got, want)
		}
		snap = next
	}
}

// describe renders everything a snapshot answers.
func describe(s *registry.Snapshot, services []string, now time.Time) []string {
	out := []string{fmt.Sprint("version ", s.Version())}
	for _, c := range s.Consumers() {
		out = append(out, fmt.Sprintf("consumer %s %s", c.SIRET, c.Name))
		for _, svc := range services {
			for _, g := range s.Grants(c.SIRET, svc) {
				out = append(out, fmt.Sprintf("live %s %s %s", c.SIRET, svc, g.ID))
			}
		}
	}
	for i := range 40 { // grants of consumers not (yet) registered too
		siret := fmt.Sprintf("c%02d", i)
		for _, svc := range services {
			out = append(out, fmt.Sprintf("live-any %s %s %d", siret, svc, len(s.Grants(siret, svc))))
		}
	}
	for _, g := range s.ListGrants(registry.GrantFilter{}, now) {
		out = append(out, fmt.Sprintf("grant %s %s %s %v %v", g.ID, g.Consumer, g.Service, g.NotAfter, g.RevokedAt))
	}
	for i := range 100 {
		if s.Revoked(fmt.Sprintf("%x", i)) {
			out = append(out, fmt.Sprintf("revoked %x", i))
		}
	}
	return out
}

// TestLiveNeverGoesBack checks that a snapshot of an older version never
// replaces a newer one (two writers finishing out of order).
func TestLiveNeverGoesBack(t *testing.T) {
	var l registry.Live
	newer := registry.NewSnapshot(5, []registry.Consumer{{SIRET: "x"}}, nil, nil)
	if !l.Swap(newer) || l.Swap(registry.NewSnapshot(4, nil, nil, nil)) || l.Version() != 5 {
		t.Fatalf("version %d after swapping 5 then 4", l.Version())
	}
	if _, err := l.Consumer(context.Background(), "x"); err != nil {
		t.Fatal(err)
	}
}
