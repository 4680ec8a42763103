package main

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/relais-broker/relais/adapters/adaptertest"
	"github.com/relais-broker/relais/adapters/remote"
	"github.com/relais-broker/relais/broker"
	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/scope"
	"github.com/relais-broker/relais/broker/source"
	"github.com/relais-broker/relais/certs"
	"github.com/relais-broker/relais/internal/tlstest"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
)

const fqMethod = "/relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient"

func request(name, given, date string) *familyquotientv1.GetFamilyQuotientRequest {
	return &familyquotientv1.GetFamilyQuotientRequest{
		AccessContext: &commonv1.AccessContext{Recipient: "21990000100005", Purpose: "tarification_sociale", CaseReference: "REMOTE-1"},
		Subject: &commonv1.SubjectIdentity{BirthName: name, GivenNames: []string{given}, Sex: commonv1.Sex_SEX_FEMALE, BirthDate: date,
			BirthPlaceCog: "33063", BirthCountryCog: "99100"},
	}
}

// startSource serves the example source over mTLS and returns a remote
// adapter that reaches it as the broker would.
func startSource(t testing.TB) (*tlstest.PKI, string, *remote.Adapter) {
	t.Helper()
	pki := tlstest.New(t)
	addr := tlstest.Serve(t, newServer(certs.ServerConfig(pki.Server, pki.Trust)))
	brokerCred := pki.Issue(t, identity.KindOperator, "broker")
	src := certs.NewCertSource()
	if err := src.Set(brokerCred.FullChainPEM(), brokerCred.KeyPEM); err != nil {
		t.Fatal(err)
	}
	a, err := remote.New(remote.Config{Addr: addr, TLS: certs.ClientConfig(src, pki.Roots, "localhost")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return pki, addr, a
}

func TestRemoteAdapterConformance(t *testing.T) {
	_, _, a := startSource(t)
	adaptertest.Run(t, adaptertest.Suite{Adapter: a, Cases: []adaptertest.Case{{
		Method:          fqMethod,
		Found:           request("Leblanc", "Camille", "1985-06-01"),
		NotFound:        request("Inconnue", "Personne", "2000-01-01"),
		NotIdentifiable: request("Homonyme", "Marie", "1990-01-01"),
		Unavailable:     request("Panne", "Marie", "1990-01-01"),
		Hang:            request("Lent", "Marie", "1990-01-01"),
	}}})
}

func TestRemoteErrorsKeepTheRetryTime(t *testing.T) {
	_, _, a := startSource(t)
	_, err := a.Fetch(context.Background(), source.Request{Method: fqMethod, Input: request("Panne", "Marie", "1990-01-01"), Scopes: scope.Of("family_quotient.value")})
	var retry *source.RetryableError
	if !errors.As(err, &retry) || retry.RetryAfter != 10*time.Second {
		t.Fatalf("unavailable source: %v", err)
	}
}

// BenchmarkRemoteAdapter measures, in one run, the example source called
// directly and through the broker (mTLS, authn, validation, authz, rate
// limit off, remote adapter, minimisation, in-memory audit), and reports
// latency percentiles:
//
//	go test -run XXX -bench RemoteAdapter -benchtime 2000x ./examples/remote-source/
func BenchmarkRemoteAdapter(b *testing.B) {
	pki, sourceAddr, a := startSource(b)
	now := time.Now()
	fqScopes := scope.Of("family_quotient.value", "family_quotient.beneficiaries", "family_quotient.children", "family_quotient.address")
	reg := registry.NewMemory([]registry.Consumer{{SIRET: "21990000100005", Name: "Mairie", Status: registry.StatusActive}},
		[]registry.Grant{{Consumer: "21990000100005", Service: "relais.familyquotient.v1.FamilyQuotientService", Scopes: fqScopes,
			Purposes: []registry.Purpose{{Code: "tarification_sociale"}}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}})
	br, err := broker.New(broker.Config{Registry: reg, Audit: &audit.Memory{}, Sources: map[string]broker.Source{
		"relais.familyquotient.v1.FamilyQuotientService": {ID: "remote", Adapter: a, Timeout: 5 * time.Second}}})
	if err != nil {
		b.Fatal(err)
	}
	srv, _ := br.NewGRPCServer(pki.ServerCreds())
	brokerAddr := tlstest.Serve(b, srv)
	consumer := pki.Issue(b, identity.KindConsumer, "21990000100005")
	direct := familyquotientv1.NewFamilyQuotientServiceClient(pki.Dial(b, sourceAddr, pki.Issue(b, identity.KindOperator, "bench")))
	viaBroker := familyquotientv1.NewFamilyQuotientServiceClient(pki.Dial(b, brokerAddr, consumer))
	req := request("Leblanc", "Camille", "1985-06-01")
	for _, tc := range []struct {
		name   string
		client familyquotientv1.FamilyQuotientServiceClient
	}{{"direct", direct}, {"through-broker", viaBroker}} {
		b.Run(tc.name, func(b *testing.B) {
			if _, err := tc.client.GetFamilyQuotient(context.Background(), req); err != nil { // warm the connection
				b.Fatal(err)
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for b.Loop() {
				start := time.Now()
				if _, err := tc.client.GetFamilyQuotient(context.Background(), req); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}
