package transparency_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/audit/audittest"
	"github.com/relais-broker/relais/broker/audit/boltlog"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/registry/boltreg"
	"github.com/relais-broker/relais/broker/scope"
	"github.com/relais-broker/relais/broker/transparency"
)

// TestOverRealStorages reads the accesses of a pseudonym from a real
// audit log file through its subject index, joined with a real registry
// file, deferred ones hidden until their date.
func TestOverRealStorages(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	start := time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)
	reg, err := boltreg.Open(filepath.Join(dir, "registry.db"), boltreg.Options{Clock: func() time.Time { return start }})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	const town, caf = "21690123100011", "26690123400010"
	grant := func(consumer, label string, d registry.Disclosure) registry.Grant {
		return registry.Grant{Consumer: consumer, Service: "relais.familyquotient.v1.FamilyQuotientService", Scopes: scope.Of("family_quotient.value", "family_quotient.children"),
			Purposes:  []registry.Purpose{{Code: "p1", Label: label, LegalBasis: "base " + label}},
			NotBefore: start.Add(-time.Hour), NotAfter: start.AddDate(1, 0, 0), Quota: registry.Quota{RatePerSecond: 10, Burst: 10}, Disclosure: d}
	}
	if _, err := reg.Import(ctx, []registry.Consumer{
		{SIRET: town, Name: "Mairie de Villeurbanne", Status: registry.StatusActive, Contacts: []registry.Contact{{Name: "DPO", Email: "dpo@villeurbanne.example"}}},
		{SIRET: caf, Name: "Contrôle CAF", Status: registry.StatusActive},
	}, []registry.Grant{
		grant(town, "Cantine", registry.Disclosure{}),
		grant(caf, "Contrôle des fraudes", registry.Disclosure{Delay: 90 * 24 * time.Hour, LegalReference: "CSS art. L114-9"}),
	}); err != nil {
		t.Fatal(err)
	}

	log, err := boltlog.Open(filepath.Join(dir, "audit.db"), boltlog.Options{SigningKey: []byte(audittest.NewSigner(t)), Clock: func() time.Time { return start }})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	const me, other = "1111111111111111111111111111111111111111111111111111111111111111", "2222222222222222222222222222222222222222222222222222222222222222"
	base := audit.Record{Recipient: town, Consumer: town, Method: "/relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient", Purpose: "p1",
		FieldsReturned: []string{"value", "children.birth_date"}, Code: "OK", Source: "sandbox"}
	recs := []audit.Record{base, base, base, base}
	recs[0].Time, recs[0].Subject, recs[0].RequestID = start, me, "r0"
	recs[1].Time, recs[1].Subject, recs[1].RequestID = start.Add(time.Minute), other, "r1"
	recs[2].Time, recs[2].Subject, recs[2].RequestID, recs[2].Consumer, recs[2].Recipient = start.Add(2*time.Minute), me, "r2", caf, caf
	recs[2].DiscloseAfter, recs[2].DisclosureReference = start.Add(90*24*time.Hour+2*time.Minute), "CSS art. L114-9"
	recs[3].Time, recs[3].Subject, recs[3].RequestID, recs[3].Code, recs[3].Reason, recs[3].FieldsReturned = start.Add(3*time.Minute), me, "r3", "NotFound", "subject_not_found", nil
	for _, r := range recs {
		if err := log.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}

	var now time.Time
	svc, err := transparency.New(transparency.Config{Audit: log, Registry: reg, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	refs := func(view transparency.View) []string {
		t.Helper()
		as, err := svc.Accesses(ctx, me, view)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, a := range as {
			out = append(out, a.Reference+":"+string(a.Outcome))
		}
		return out
	}
	now = start.Add(time.Hour)
	if got := refs(transparency.CitizenView); !equal(got, "r3:nothing_found", "r0:data_given") {
		t.Errorf("before the disclosure date: %v", got)
	}
	if got := refs(transparency.OperatorView); !equal(got, "r3:nothing_found", "r2:data_given", "r0:data_given") {
		t.Errorf("operator view: %v", got)
	}
	now = recs[2].DiscloseAfter
	as, err := svc.Accesses(ctx, me, transparency.CitizenView)
	if err != nil || len(as) != 3 {
		t.Fatalf("at the disclosure date: %d accesses, %v", len(as), err)
	}
	d := as[1]
	if d.Reference != "r2" || d.Body.Name != "Contrôle CAF" || d.Purpose.Label != "Contrôle des fraudes" || d.Purpose.LegalBasis != "base Contrôle des fraudes" ||
		d.DisclosureReference != "CSS art. L114-9" || len(d.Categories) != 2 {
		t.Errorf("disclosed access %+v", d)
	}
	if c := as[2].Body.Contacts; len(c) != 1 || c[0].Email != "dpo@villeurbanne.example" {
		t.Errorf("contacts %+v", c)
	}
}

func equal(got []string, want ...string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}
