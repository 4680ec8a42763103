package admin_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/relais-broker/relais/broker/admin"
	"github.com/relais-broker/relais/broker/anomaly"
	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/registry/boltreg"
	"github.com/relais-broker/relais/certs"
	"github.com/relais-broker/relais/internal/tlstest"
	adminv1 "github.com/relais-broker/relais/proto/relais/admin/v1"
)

const fqService = "relais.familyquotient.v1.FamilyQuotientService"

// anomalyEnv is an admin API over real TLS with a real detector and a
// real registry file.
type anomalyEnv struct {
	addr  string
	pki   *tlstest.PKI
	audit *audit.Memory
	det   *anomaly.Detector
	reg   *boltreg.Store
}

func startWithAnomalies(t *testing.T) *anomalyEnv {
	t.Helper()
	e := &anomalyEnv{pki: tlstest.New(t), audit: &audit.Memory{}}
	reg, err := boltreg.Open(filepath.Join(t.TempDir(), "registry.db"), boltreg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	e.reg = reg
	if e.det, err = anomaly.New(anomaly.Config{}, anomaly.Deps{Registry: reg}); err != nil {
		t.Fatal(err)
	}
	revoked := certs.NewRevocations()
	s, err := admin.New(admin.Config{Issuer: e.pki.CA, Revocations: revoked, Audit: e.audit, Registry: reg, Anomalies: e.det})
	if err != nil {
		t.Fatal(err)
	}
	e.addr = tlstest.Serve(t, s.NewGRPCServer(e.pki.ServerCreds(certs.RejectRevoked(revoked))))
	return e
}

// enumerate feeds the detector the records of an enumeration by consumer.
func (e *anomalyEnv) enumerate(consumer string) {
	for i := range 30 {
		e.det.ObserveCall(audit.Record{Consumer: consumer, Method: "/" + fqService + "/GetFamilyQuotient", Subject: fmt.Sprintf("p%d", i),
			Code: "NotFound", Reason: "subject_not_found", Source: "sandbox"}, time.Millisecond)
	}
}

func TestListAnomalies(t *testing.T) {
	t.Parallel()
	e := startWithAnomalies(t)
	conn := e.pki.Dial(t, e.addr, e.pki.Issue(t, identity.KindOperator, "alice"))
	client := adminv1.NewAnomalyAdminServiceClient(conn)
	ctx := context.Background()
	resp, err := client.ListAnomalies(ctx, &adminv1.ListAnomaliesRequest{})
	if err != nil || len(resp.GetAnomalies()) != 0 {
		t.Fatalf("before any anomaly: %v %v", resp, err)
	}
	e.enumerate(siretA)
	e.enumerate("21990000200003")
	resp, err = client.ListAnomalies(ctx, &adminv1.ListAnomaliesRequest{ConsumerSiret: siretA})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetAnomalies()) != 1 {
		t.Fatalf("filtered listing: %v", resp)
	}
	a := resp.GetAnomalies()[0]
	if a.GetConsumerSiret() != siretA || a.GetService() != fqService || a.GetKind() != "enumeration" || a.GetTrigger() != "not_found_ratio" ||
		a.GetCalls() != 20 || a.GetNotFound() != 20 || a.GetNotFoundRatio() != 1 || a.GetDistinctSubjects() != 20 || a.GetAction() != "alert" ||
		a.GetThresholds().GetMaxNotFoundRatio() != 0.5 || a.GetThresholds().GetMinSample() != 20 || a.GetThresholds().GetMaxDistinctSubjects() != 300 ||
		a.GetWindowEnd().AsTime().Sub(a.GetWindowStart().AsTime()) != 10*time.Minute {
		t.Errorf("anomaly %v", a)
	}
	if all, err := client.ListAnomalies(ctx, &adminv1.ListAnomaliesRequest{}); err != nil || len(all.GetAnomalies()) != 2 {
		t.Fatalf("full listing: %v %v", all, err)
	}
	_, err = client.ListAnomalies(ctx, &adminv1.ListAnomaliesRequest{ConsumerSiret: "123"})
	if code, reason, fv := reasonOf(err); code != codes.InvalidArgument || reason != "invalid_request" || len(fv) != 1 || fv[0].GetField() != "consumer_siret" {
		t.Fatalf("bad filter: %v %s %v", code, reason, fv)
	}
	// A consumer certificate cannot read the anomalies.
	consumer := adminv1.NewAnomalyAdminServiceClient(e.pki.Dial(t, e.addr, e.pki.Issue(t, identity.KindConsumer, siretA)))
	if _, err := consumer.ListAnomalies(ctx, &adminv1.ListAnomaliesRequest{}); err == nil {
		t.Fatal("a consumer listed the anomalies")
	} else if code, reason, _ := reasonOf(err); code != codes.Unauthenticated || reason != "credential_invalid" {
		t.Fatalf("consumer: %v %s", code, reason)
	}
	// Every listing is traced with the operator.
	n := 0
	for _, r := range e.audit.Records() {
		if r.Method == "/relais.admin.v1.AnomalyAdminService/ListAnomalies" && r.Operator == "alice" {
			n++
		}
	}
	if n != 4 {
		t.Errorf("%d traced listings by alice, want 4", n)
	}
}

func TestGrantAnomalyPolicy(t *testing.T) {
	t.Parallel()
	e := startWithAnomalies(t)
	ctx := context.Background()
	if _, err := e.reg.AddConsumer(ctx, registry.Consumer{SIRET: siretA, Name: "Mairie", Status: registry.StatusActive}); err != nil {
		t.Fatal(err)
	}
	grants := adminv1.NewGrantAdminServiceClient(e.pki.Dial(t, e.addr, e.pki.Issue(t, identity.KindOperator, "alice")))
	add := func(p *adminv1.AnomalyPolicy) (*adminv1.AddGrantResponse, error) {
		return grants.AddGrant(ctx, &adminv1.AddGrantRequest{
			ConsumerSiret: siretA, Service: fqService, Scopes: []string{"family_quotient.value"},
			Purposes:  []*adminv1.Purpose{{Code: "tarification_sociale", Label: "Tarification sociale", LegalBasis: "CRPA art. L114-8"}},
			NotBefore: timestamppb.New(time.Now().Add(-time.Hour)), NotAfter: timestamppb.New(time.Now().AddDate(1, 0, 0)),
			Quota: &adminv1.Quota{RatePerSecond: 5, Burst: 10}, ExpectedDailyVolume: 100, Anomaly: p,
		})
	}
	for _, bad := range []*adminv1.AnomalyPolicy{{Action: "ban"}, {MaxNotFoundRatio: 1.5}, {MaxDistinctSubjects: -1}} {
		if _, err := add(bad); err == nil {
			t.Fatalf("policy %v accepted", bad)
		} else if code, _, _ := reasonOf(err); code != codes.InvalidArgument {
			t.Fatalf("policy %v: %v", bad, err)
		}
	}
	if list, _ := e.reg.ListGrants(ctx, registry.GrantFilter{}); len(list) != 0 {
		t.Fatalf("a refused grant was stored: %v", list)
	}
	resp, err := add(&adminv1.AnomalyPolicy{MaxNotFoundRatio: 0.2, MaxDistinctSubjects: 40, Action: "suspend"})
	if err != nil {
		t.Fatal(err)
	}
	if p := resp.GetGrant().GetAnomaly(); p.GetMaxNotFoundRatio() != 0.2 || p.GetMaxDistinctSubjects() != 40 || p.GetAction() != "suspend" {
		t.Fatalf("answered policy %v", p)
	}
	stored, err := e.reg.Grants(ctx, siretA, fqService)
	if err != nil || len(stored) != 1 || stored[0].Anomaly != (registry.AnomalyPolicy{MaxNotFoundRatio: 0.2, MaxDistinctSubjects: 40, Action: "suspend"}) {
		t.Fatalf("stored %+v %v", stored, err)
	}
	list, err := grants.ListGrants(ctx, &adminv1.ListGrantsRequest{ConsumerSiret: siretA})
	if err != nil || len(list.GetGrants()) != 1 || list.GetGrants()[0].GetAnomaly().GetAction() != "suspend" {
		t.Fatalf("listed %v %v", list, err)
	}
	// A grant without a policy lists none.
	plain, err := add(nil)
	if err != nil || plain.GetGrant().GetAnomaly() != nil {
		t.Fatalf("grant without policy: %v %v", plain, err)
	}
}
