package httpjson

import (
	"bytes"
	"encoding/json"
	"testing"

	nationalservicev1 "github.com/relais-broker/relais/proto/relais/nationalservice/v1"
	rsav1 "github.com/relais-broker/relais/proto/relais/rsa/v1"
)

// FuzzParticulierMapping feeds arbitrary upstream bodies to the API
// particulier mappings (RSA, national service): they must never panic.
// Run: go test -fuzz FuzzParticulierMapping -fuzztime 30s ./adapters/httpjson/
func FuzzParticulierMapping(f *testing.F) {
	f.Add([]byte(`{"data":{"est_beneficiaire":true,"avec_majoration":true,"date_debut_droit":"1992-11-20"},"links":{},"meta":{}}`))
	f.Add([]byte(`{"data":{"statut_service_national":"en_regle","commentaires":"JDC effectuée"}}`))
	f.Add([]byte(`{"data":{"est_beneficiaire":"1","date_debut_droit":7,"statut_service_national":{"x":1}}}`))
	f.Add([]byte(`{"errors":[{"code":"37003"}]}`))
	rsaMapping, nsMapping := RsaRoute().Mapping, NationalServiceRoute().Mapping
	f.Fuzz(func(t *testing.T, body []byte) {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		var v any
		if dec.Decode(&v) != nil {
			return
		}
		_ = rsaMapping.fill(v, (&rsav1.GetRsaStatusResponse{}).ProtoReflect())
		_ = nsMapping.fill(v, (&nationalservicev1.GetNationalServiceStatusResponse{}).ProtoReflect())
	})
}
