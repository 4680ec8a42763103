package main_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestOperationsEndpoints makes a few calls, then reads /metrics in the
// exposition format, /healthz and /readyz.
func TestOperationsEndpoints(t *testing.T) {
	t.Parallel()
	d := startDev(t)
	for i := 0; i < 3; i++ {
		if out, err := shell(t, d.firstCall); err != nil {
			t.Fatalf("call: %v\n%s", err, out)
		}
	}
	resp, err := http.Get("http://" + d.opsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatalf("exposition format: %v", err)
	}
	has := func(name string, labels map[string]string) bool {
		f, ok := families[name]
		if !ok {
			return false
		}
		for _, m := range f.GetMetric() {
			if matches(m, labels) {
				return true
			}
		}
		return false
	}
	for _, want := range []struct {
		name   string
		labels map[string]string
	}{
		{"relais_requests_total", map[string]string{"consumer": "21990000100005", "method": "/relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient", "code": "OK"}},
		{"relais_request_duration_seconds", map[string]string{"method": "/relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient"}},
		{"relais_source_duration_seconds", map[string]string{"source": "sandbox"}},
		{"relais_audit_commit_duration_seconds", nil},
		{"relais_audit_queue_depth", nil},
		{"relais_source_state", map[string]string{"state": "ok"}},
		{"relais_certificate_expiry_timestamp_seconds", map[string]string{"which": "server"}},
		{"relais_certificate_expiry_timestamp_seconds", map[string]string{"which": "consumer_soonest"}},
	} {
		if !has(want.name, want.labels) {
			t.Errorf("no %s%v in /metrics", want.name, want.labels)
		}
	}
	if f := families["relais_requests_total"]; f != nil && f.GetMetric()[0].GetCounter().GetValue() < 3 {
		t.Errorf("relais_requests_total = %v, want 3", f.GetMetric()[0].GetCounter().GetValue())
	}
	if strings.Contains(string(raw), "DUPONT") {
		t.Error("a metric label holds a subject's name")
	}
	if r, err := http.Get("http://" + d.opsAddr + "/healthz"); err != nil || r.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %v %v", r, err)
	}
	r, err := http.Get("http://" + d.opsAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var ready struct {
		Ready  bool              `json:"ready"`
		Checks map[string]string `json:"checks"`
	}
	if err := json.NewDecoder(r.Body).Decode(&ready); err != nil || r.StatusCode != http.StatusOK || !ready.Ready || len(ready.Checks) != 5 || ready.Checks["draining"] != "ok" {
		t.Fatalf("/readyz: %d %+v %v", r.StatusCode, ready, err)
	}
}

func matches(m *dto.Metric, labels map[string]string) bool {
	got := map[string]string{}
	for _, l := range m.GetLabel() {
		got[l.GetName()] = l.GetValue()
	}
	for k, v := range labels {
		if got[k] != v {
			return false
		}
	}
	return true
}
