package resilience_test

import (
	"testing"

	"github.com/relais-broker/relais/adapters/adaptertest"
	"github.com/relais-broker/relais/adapters/resilience"
	"github.com/relais-broker/relais/adapters/sandbox"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
)

// TestGuardKeepsTheContract runs the conformance suite on the sandbox
// behind a Guard: the protections change nothing an adapter promises.
func TestGuardKeepsTheContract(t *testing.T) {
	id := func(name, given string, sex commonv1.Sex, date, place, country string) *familyquotientv1.GetFamilyQuotientRequest {
		return &familyquotientv1.GetFamilyQuotientRequest{Subject: &commonv1.SubjectIdentity{BirthName: name, GivenNames: []string{given}, Sex: sex, BirthDate: date, BirthPlaceCog: place, BirthCountryCog: country}}
	}
	f, m := commonv1.Sex_SEX_FEMALE, commonv1.Sex_SEX_MALE
	adaptertest.Run(t, adaptertest.Suite{
		Adapter: resilience.New(sandbox.New(sandbox.Default(), sandbox.Options{SourceID: "sandbox"}), resilience.Config{}),
		Cases: []adaptertest.Case{{
			Method:          "/relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient",
			Found:           id("DUPONT", "Zoé", f, "1984-03-12", "75056", "99100"),
			NotFound:        id("INCONNU", "Personne", f, "2000-01-01", "75056", "99100"),
			NotIdentifiable: id("NGUYEN", "Minh", m, "1990-05-05", "", "99243"),
			Unavailable:     id("MERCIER", "Paul", m, "1965-01-01", "75056", "99100"),
			Hang:            id("BLANC", "Emma", f, "1972-02-14", "69123", "99100"),
		}},
	})
}
