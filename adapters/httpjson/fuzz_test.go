package httpjson

import (
	"bytes"
	"encoding/json"
	"testing"

	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
	jobseekerv1 "github.com/relais-broker/relais/proto/relais/jobseeker/v1"
)

// FuzzMapping feeds arbitrary upstream bodies to the two realistic
// mappings: they must never panic, whatever the JSON. The seed corpus is
// in testdata/fuzz/FuzzMapping. Run: go test -fuzz FuzzMapping -fuzztime 30s ./adapters/httpjson/
func FuzzMapping(f *testing.F) {
	f.Add([]byte(`{"regime":"CNAF","quotientFamilial":755,"annee":2026,"mois":10,"allocataires":[{"nomNaissance":"A","prenoms":"B C","dateDeNaissance":"12/03/1984","sexe":"F"}]}`))
	f.Add([]byte(`{"identite":{"prenoms":["A"]},"inscription":{"inscrit":true,"codeCategorie":"1"}}`))
	f.Add([]byte(`{"quotientFamilial":"99999999999","enfants":{"x":1},"adresse":[1,2]}`))
	fqMapping, jsMapping := FamilyQuotientRoute().Mapping, JobSeekerRoute().Mapping
	f.Fuzz(func(t *testing.T, body []byte) {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		var v any
		if dec.Decode(&v) != nil {
			return
		}
		_ = fqMapping.fill(v, (&familyquotientv1.GetFamilyQuotientResponse{}).ProtoReflect())
		_ = jsMapping.fill(v, (&jobseekerv1.GetJobSeekerStatusResponse{}).ProtoReflect())
	})
}
