package broker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/registry"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
)

// TestFieldMaskNarrowsPerField calls GetFamilyQuotient over real mTLS
// with field masks: the answer holds exactly the named fields the grant
// covers plus the source metadata, and the audit record names the fields
// asked and returned.
func TestFieldMaskNarrowsPerField(t *testing.T) {
	h := newHarness(t, registry.Quota{})
	full := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, sirenFull))
	limited := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, sirenLimited))
	fq := fullResponse("/" + fqService + "/GetFamilyQuotient").(*familyquotientv1.GetFamilyQuotientResponse)
	tests := []struct {
		name      string
		client    familyquotientv1.FamilyQuotientServiceClient
		paths     []string
		want      *familyquotientv1.GetFamilyQuotientResponse
		requested []string
		returned  []string
	}{
		{"value only", full, []string{"value"},
			&familyquotientv1.GetFamilyQuotientResponse{Source: fq.Source, Value: fq.Value},
			[]string{"value"}, []string{"value"}},
		{"nested and repeated", full, []string{"address.postal_code", "children.birth_date"},
			&familyquotientv1.GetFamilyQuotientResponse{Source: fq.Source,
				Address:  &commonv1.PostalAddress{PostalCode: fq.Address.PostalCode},
				Children: []*commonv1.Person{{BirthDate: fq.Children[0].BirthDate}}},
			[]string{"address.postal_code", "children.birth_date"}, []string{"address.postal_code", "children.birth_date"}},
		{"mask outside the grant is silently absent", limited, []string{"regime", "children.birth_date"},
			&familyquotientv1.GetFamilyQuotientResponse{Source: fq.Source, Regime: fq.Regime},
			[]string{"children.birth_date", "regime"}, []string{"regime"}},
		{"no mask is everything granted", limited, nil,
			&familyquotientv1.GetFamilyQuotientResponse{Source: fq.Source, Value: fq.Value, ReferenceYear: fq.ReferenceYear, ReferenceMonth: fq.ReferenceMonth, Regime: fq.Regime},
			[]string{"address", "beneficiaries", "children", "reference_month", "reference_year", "regime", "value"},
			[]string{"reference_month", "reference_year", "regime", "value"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := validFQ()
			if tt.paths != nil {
				req.FieldMask = &fieldmaskpb.FieldMask{Paths: tt.paths}
			}
			got, err := tt.client.GetFamilyQuotient(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tt.want) {
				t.Errorf("answer:\n got %v\nwant %v", got, tt.want)
			}
			recs := h.audit.Records()
			last := recs[len(recs)-1]
			if last.Code != "OK" || !slices.Equal(last.FieldsRequested, tt.requested) || !slices.Equal(last.FieldsReturned, tt.returned) {
				t.Errorf("audit record: code %s, requested %v, returned %v; want requested %v, returned %v",
					last.Code, last.FieldsRequested, last.FieldsReturned, tt.requested, tt.returned)
			}
		})
	}
}

// TestFieldMaskRefusesBadPaths: every malformed or unknown path is named
// in a BadRequest violation, nothing reaches the source, the refusal is
// traced, and a path that could carry anything is not echoed.
func TestFieldMaskRefusesBadPaths(t *testing.T) {
	h := newHarness(t, registry.Quota{})
	client := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(t, identity.KindConsumer, sirenFull))
	req := validFQ()
	req.FieldMask = &fieldmaskpb.FieldMask{Paths: []string{"value", "address.postalCode", "children..birth_date", "Zoé Dupont", "income"}}
	_, err := client.GetFamilyQuotient(context.Background(), req)
	if code, reason := reasonOf(t, err); code != codes.InvalidArgument || reason != "invalid_field_mask" {
		t.Fatalf("got %s/%s (%v)", code, reason, err)
	}
	want := map[string]string{
		"field_mask.paths[1]": `"address.postalCode": field "address" has no field "postalCode": mask paths use proto field names ("postal_code")`,
		"field_mask.paths[2]": `"children..birth_date": malformed path: empty segment`,
		"field_mask.paths[3]": "malformed path: a segment is not a field name (letters, digits and underscores)",
		"field_mask.paths[4]": `"income": the response has no field "income"`,
	}
	got := violations(err)
	if len(got) != len(want) {
		t.Fatalf("violations = %v", got)
	}
	for _, v := range got {
		if want[v.GetField()] != v.GetDescription() {
			t.Errorf("violation on %s: %q, want %q", v.GetField(), v.GetDescription(), want[v.GetField()])
		}
	}
	if strings.Contains(err.Error(), "Zoé") {
		t.Errorf("the refused path was echoed: %v", err)
	}
	// The log line names the reason, never the caller's paths.
	logs := h.logs.String()
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs, "invalid_field_mask"); logs = h.logs.String() {
		if time.Now().After(deadline) {
			t.Fatalf("no log line for the refusal: %s", logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, p := range req.FieldMask.Paths[1:] {
		if strings.Contains(logs, p) {
			t.Errorf("the log repeats the path %q: %s", p, logs)
		}
	}
	if h.adapter.Calls() != 0 {
		t.Fatal("a refused mask reached the source")
	}
	recs := h.audit.Records()
	if len(recs) != 1 || recs[0].Reason != "invalid_field_mask" || len(recs[0].FieldsReturned) != 0 {
		t.Fatalf("audit records = %+v", recs)
	}
}

// TestFieldMaskOverHTTPS: in JSON a field mask is one string of
// lowerCamelCase paths, which the gateway turns into proto names; the
// answer (in proto names) holds exactly the named fields and the source.
func TestFieldMaskOverHTTPS(t *testing.T) {
	h := newHarness(t, registry.Quota{})
	req := validFQ()
	req.FieldMask = &fieldmaskpb.FieldMask{Paths: []string{"value", "address.postal_code"}}
	body, err := protojson.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(body, []byte(`"value,address.postalCode"`)) {
		t.Fatalf("the JSON form of the mask is not what the docs say: %s", body)
	}
	resp, err := h.httpClient(t, identity.KindConsumer, sirenFull).Post("https://"+h.httpAddr+"/"+fqService+"/GetFamilyQuotient", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, %v", resp.StatusCode, err)
	}
	keys := slices.Sorted(maps.Keys(got))
	if strings.Join(keys, ",") != "address,source,value" || string(got["address"]) != `{"postal_code":"75001"}` || string(got["value"]) != "612" {
		t.Errorf("answer = %v", got)
	}
	recs := h.audit.Records()
	if last := recs[len(recs)-1]; strings.Join(last.FieldsReturned, ",") != "address.postal_code,value" {
		t.Errorf("audit returned = %v", last.FieldsReturned)
	}
}
