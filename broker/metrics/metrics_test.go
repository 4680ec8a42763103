package metrics_test

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/metrics"
)

// scrape reads the exposition the handler serves: name → "k=v,k=v" → value.
func scrape(t *testing.T, m *metrics.Metrics) map[string]map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	raw, _ := io.ReadAll(rec.Body)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatalf("exposition format: %v", err)
	}
	out := map[string]map[string]float64{}
	for name, f := range families {
		out[name] = map[string]float64{}
		for _, s := range f.GetMetric() {
			var labels []string
			for _, l := range s.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			out[name][strings.Join(labels, ",")] = s.GetCounter().GetValue()
		}
	}
	return out
}

func TestAnomaliesAreCountedByConsumerAndKind(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	if _, ok := scrape(t, m)["relais_anomalies_total"]; ok {
		t.Fatal("relais_anomalies_total has samples before any anomaly")
	}
	m.ObserveAnomaly("21990000100005", "enumeration")
	m.ObserveAnomaly("21990000100005", "enumeration")
	m.ObserveAnomaly("21990000100005", "volume")
	got := scrape(t, m)["relais_anomalies_total"]
	if got["consumer=21990000100005,kind=enumeration"] != 2 || got["consumer=21990000100005,kind=volume"] != 1 || len(got) != 2 {
		t.Fatalf("relais_anomalies_total = %v", got)
	}
}

func TestThrottledCallsAreRejections(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	for _, reason := range []string{"throttled", "rate_limited", "subject_not_found"} {
		m.ObserveCall(audit.Record{Consumer: "21990000100005", Method: "/p.S/M", Code: "ResourceExhausted", Reason: reason, Latency: time.Millisecond}, 0)
	}
	got := scrape(t, m)["relais_rate_limit_rejections_total"]
	if got["consumer=21990000100005,reason=throttled"] != 1 || got["consumer=21990000100005,reason=rate_limited"] != 1 || len(got) != 2 {
		t.Fatalf("relais_rate_limit_rejections_total = %v", got)
	}
}
