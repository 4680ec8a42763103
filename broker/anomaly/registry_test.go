package anomaly_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/anomaly"
	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/registry/boltreg"
	"github.com/relais-broker/relais/broker/scope"
)

// TestSuspendInARealRegistry runs the suspend policy against a real
// registry file: the grant's policy is read from it, the consumer is
// suspended in it, and the suspension is traced.
func TestSuspendInARealRegistry(t *testing.T) {
	t.Parallel()
	c := newClock()
	reg, err := boltreg.Open(filepath.Join(t.TempDir(), "registry.db"), boltreg.Options{Clock: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	ctx := context.Background()
	for _, s := range []string{siret, other} {
		if _, err := reg.AddConsumer(ctx, registry.Consumer{SIRET: s, Name: "Commune " + s, Status: registry.StatusActive}); err != nil {
			t.Fatal(err)
		}
		g := registry.Grant{Consumer: s, Service: service, Scopes: scope.Of("family_quotient.value"),
			Purposes:  []registry.Purpose{{Code: "tarification_sociale", Label: "Tarification sociale", LegalBasis: "CRPA art. L114-8"}},
			NotBefore: c.Now().Add(-time.Hour), NotAfter: c.Now().AddDate(1, 0, 0), Quota: registry.Quota{RatePerSecond: 20, Burst: 40}}
		if s == siret {
			g.Anomaly = registry.AnomalyPolicy{MaxNotFoundRatio: 0.3, Action: anomaly.ActionSuspend}
		}
		if _, err := reg.AddGrant(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	log := &audit.Memory{}
	d, err := anomaly.New(anomaly.Config{}, anomaly.Deps{Registry: reg, Suspender: reg, Audit: log, Clock: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	// 40 % unknown: fine by the defaults, not by this grant's 30 %.
	for i := range 40 {
		for _, s := range []string{siret, other} {
			r := audit.Record{Consumer: s, Method: method, Subject: pseudonym(i), Code: "OK", Source: "sandbox"}
			if i%5 < 2 {
				r.Code, r.Reason = "NotFound", "subject_not_found"
			}
			d.ObserveCall(r, time.Millisecond)
		}
		c.Advance(time.Second)
	}
	if got, err := reg.Consumer(ctx, siret); err != nil || got.Status != registry.StatusSuspended {
		t.Fatalf("consumer %s after the anomaly: %+v %v", siret, got, err)
	}
	if got, _ := reg.Consumer(ctx, other); got.Status != registry.StatusActive {
		t.Fatalf("the other consumer was suspended: %+v", got)
	}
	recs := log.Records()
	if len(recs) != 1 || recs[0].Target != siret || recs[0].Operator != anomaly.Operator || recs[0].Code != "OK" {
		t.Fatalf("audit %+v", recs)
	}
	if list := d.Anomalies(""); len(list) != 1 || list[0].Consumer != siret || list[0].Thresholds.MaxNotFoundRatio != 0.3 || list[0].Action != anomaly.ActionSuspend {
		t.Fatalf("anomalies %+v", list)
	}
}
