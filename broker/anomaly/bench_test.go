package anomaly_test

import (
	"context"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/anomaly"
	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/registry"
)

// snapshot answers Grants from memory without copying, as the stores'
// snapshots do (registry.Memory copies, which would dominate here).
type snapshot []registry.Grant

func (s snapshot) Consumer(context.Context, string) (registry.Consumer, error) {
	return registry.Consumer{}, registry.ErrNotFound
}

func (s snapshot) Grants(context.Context, string, string) ([]registry.Grant, error) { return s, nil }

// BenchmarkObserveCall is the detector's cost on every call: ordinary
// calls of one consumer on a few subjects, a window of DefaultMaxEvents.
func BenchmarkObserveCall(b *testing.B) {
	c := newClock()
	reg := snapshot{grant(siret, 1<<30, registry.AnomalyPolicy{}, c.Now())}
	d, err := anomaly.New(anomaly.Config{}, anomaly.Deps{Registry: reg, Clock: c.Now})
	if err != nil {
		b.Fatal(err)
	}
	subjects := []string{pseudonym(1), pseudonym(2), pseudonym(3)}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c.Advance(10 * time.Millisecond)
		d.ObserveCall(audit.Record{Consumer: siret, Method: method, Subject: subjects[i%3], Code: "OK", Source: "sandbox"}, time.Millisecond)
		i++
	}
}

// BenchmarkThrottled is the chain's question on every call when no
// consumer is throttled.
func BenchmarkThrottled(b *testing.B) {
	d, err := anomaly.New(anomaly.Config{}, anomaly.Deps{})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		d.Throttled(siret, now)
	}
}
