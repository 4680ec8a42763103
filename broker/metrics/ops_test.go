package metrics_test

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/metrics"
	"github.com/relais-broker/relais/broker/registry"
)

// families scrapes the handler and returns the parsed families.
func families(t *testing.T, m *metrics.Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	raw, _ := io.ReadAll(rec.Body)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatalf("exposition format: %v", err)
	}
	return fams
}

// values is a family's samples: "k=v,k=v" → gauge or counter value.
func values(f *dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	if f == nil {
		return out
	}
	for _, s := range f.GetMetric() {
		var labels []string
		for _, l := range s.GetLabel() {
			labels = append(labels, l.GetName()+"="+l.GetValue())
		}
		v := s.GetCounter().GetValue() + s.GetGauge().GetValue()
		out[strings.Join(labels, ",")] = v
	}
	return out
}

func TestRegistryExpiriesPerConsumerAndGrant(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	creds := []registry.CredentialRecord{
		{Serial: "01", Kind: "consumer", Subject: "21990000100005", NotAfter: now.Add(48 * time.Hour), Status: registry.CredentialActive},
		// Renewed: the newest active certificate is what will stop the calls.
		{Serial: "02", Kind: "consumer", Subject: "21990000100005", NotBefore: now, NotAfter: now.Add(90 * 24 * time.Hour), Status: registry.CredentialActive},
		{Serial: "03", Kind: "consumer", Subject: "21990000200003", NotAfter: now.Add(200 * 24 * time.Hour), Status: registry.CredentialRevoked},
		{Serial: "04", Kind: "consumer", Subject: "21990000200003", NotAfter: now.Add(5 * 24 * time.Hour), Status: registry.CredentialActive},
		{Serial: "05", Kind: "consumer", Subject: "21990000300001", NotAfter: now.Add(-time.Hour), Status: registry.CredentialActive},
		{Serial: "06", Kind: "operator", Subject: "alice", NotAfter: now.Add(time.Hour), Status: registry.CredentialActive},
	}
	grants := []registry.Grant{
		{ID: "g1", Consumer: "21990000100005", Service: "s.S", NotAfter: now.Add(10 * 24 * time.Hour)},
		{ID: "g2", Consumer: "21990000100005", Service: "s.T", NotAfter: now.Add(10 * 24 * time.Hour), RevokedAt: now.Add(-time.Hour)},
		{ID: "g3", Consumer: "21990000100005", Service: "s.U", NotAfter: now.Add(-time.Minute)},
	}
	m.SetRegistryExpiries(now, creds, grants)
	fams := families(t, m)
	certs := values(fams["relais_consumer_certificate_expiry_timestamp_seconds"])
	want := map[string]float64{
		"consumer=21990000100005": float64(now.Add(90 * 24 * time.Hour).Unix()),
		"consumer=21990000200003": float64(now.Add(5 * 24 * time.Hour).Unix()),
	}
	if len(certs) != len(want) {
		t.Fatalf("certificate expiries = %v, want %v", certs, want)
	}
	for k, v := range want {
		if certs[k] != v {
			t.Errorf("%s = %v, want %v", k, certs[k], v)
		}
	}
	issued := values(fams["relais_consumer_certificate_issued_timestamp_seconds"])
	if len(issued) != 1 || issued["consumer=21990000100005"] != float64(now.Unix()) {
		t.Fatalf("issued = %v (only the records with a NotBefore, of the newest certificate)", issued)
	}
	gs := values(fams["relais_grant_expiry_timestamp_seconds"])
	if len(gs) != 1 || gs["consumer=21990000100005,grant=g1,service=s.S"] != float64(now.Add(10*24*time.Hour).Unix()) {
		t.Fatalf("grant expiries = %v", gs)
	}
	// A consumer whose certificates all ended disappears at the next refresh.
	m.SetRegistryExpiries(now, creds[:2], nil)
	if got := values(families(t, m)["relais_consumer_certificate_expiry_timestamp_seconds"]); len(got) != 1 {
		t.Fatalf("after refresh: %v", got)
	}
}

func TestSourceCallsAndBackgroundOutcomes(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	m.ObserveCall(audit.Record{Consumer: "21990000100005", Method: "/p.S/M", Code: "OK", Source: "sandbox", Latency: time.Millisecond}, time.Millisecond)
	m.ObserveCall(audit.Record{Consumer: "21990000100005", Method: "/p.S/M", Code: "Unavailable", Source: "sandbox", Latency: time.Millisecond}, time.Millisecond)
	m.ObserveCall(audit.Record{Consumer: "21990000100005", Method: "/p.S/M", Code: "PermissionDenied", Latency: time.Millisecond}, 0)
	at := time.Unix(1_800_000_000, 0)
	m.ObserveCRLRefresh(at, nil)
	m.ObserveCRLRefresh(at.Add(time.Minute), errors.New("unreachable"))
	m.ObserveTrustReload(at, nil)
	m.ObserveTrustReload(at, errors.New("unreachable"))
	m.ObserveIssuance(metrics.IssueServer, errors.New("vault sealed"))
	m.ObserveIssuance(metrics.IssueConsumer, nil)
	m.ObserveAuditFailure()
	m.SetReadiness(map[string]error{"registry": nil, "audit_log": errors.New("cannot commit")})
	m.SetReplicas(2, 3)
	m.ObserveReminder("certificate", true)
	m.ObserveReminder("grant", false)
	m.SetRemindersDue(1, at)
	fams := families(t, m)
	for name, want := range map[string]map[string]float64{
		"relais_source_requests_total":                       {"code=OK,source=sandbox": 1, "code=Unavailable,source=sandbox": 1},
		"relais_crl_last_success_timestamp_seconds":          {"": float64(at.Unix())},
		"relais_crl_refresh_failures_total":                  {"": 1},
		"relais_trust_bundle_last_success_timestamp_seconds": {"": float64(at.Unix())},
		"relais_trust_bundle_reload_failures_total":          {"": 1},
		"relais_certificate_issuances_total":                 {"kind=server,outcome=error": 1, "kind=consumer,outcome=ok": 1},
		"relais_audit_commit_failures_total":                 {"": 1},
		"relais_ready":                                       {"": 0},
		"relais_readiness_check":                             {"check=registry": 1, "check=audit_log": 0},
		"relais_cluster_replicas_live":                       {"": 2},
		"relais_cluster_replicas_expected":                   {"": 3},
		"relais_reminders_total":                             {"kind=certificate,outcome=sent": 1, "kind=grant,outcome=failed": 1},
		"relais_reminders_due":                               {"": 1},
		"relais_reminders_last_run_timestamp_seconds":        {"": float64(at.Unix())},
	} {
		got := values(fams[name])
		if len(got) != len(want) {
			t.Errorf("%s = %v, want %v", name, got, want)
			continue
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s{%s} = %v, want %v", name, k, got[k], v)
			}
		}
	}
	m.SetReadiness(map[string]error{"registry": nil, "audit_log": nil})
	if got := values(families(t, m)["relais_ready"]); got[""] != 1 {
		t.Errorf("relais_ready after recovery = %v", got)
	}
}

func TestWatchReadinessRecordsUntilCancelled(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	ctx, cancel := context.WithCancel(context.Background())
	calls := make(chan struct{}, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.WatchReadiness(ctx, time.Millisecond, func(context.Context) map[string]error {
			calls <- struct{}{}
			return map[string]error{"audit_log": errors.New("cannot commit")}
		})
	}()
	<-calls
	<-calls // the first results were recorded before the second check
	if got := values(families(t, m)["relais_ready"]); got[""] != 0 || len(got) != 1 {
		t.Errorf("relais_ready = %v, want 0", got)
	}
	cancel()
	<-done
}

// otherFamilies are exported by collectors outside Families' list (the
// change feed's), which this test does not drive.
var otherFamilies = map[string]bool{"relais_registry_version": true, "relais_registry_reload_duration_seconds": true}

// TestFamiliesListsWhatIsExported checks Families against a scrape after
// every setter ran, so the list the rule checks rely on cannot rot.
func TestFamiliesListsWhatIsExported(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	m.ObserveCall(audit.Record{Consumer: "21990000100005", Method: "/p.S/M", Code: "ResourceExhausted", Reason: "rate_limited", Source: "sandbox", Latency: time.Millisecond}, time.Millisecond)
	m.ObserveAnomaly("21990000100005", "volume")
	m.ObserveAuditCommit(time.Millisecond, 1)
	m.SetSourceState("sandbox/s.S", "ok")
	m.SetCertExpiry("server", time.Now())
	now := time.Now()
	m.SetRegistryExpiries(now, []registry.CredentialRecord{{Kind: "consumer", Subject: "21990000100005", NotBefore: now, NotAfter: now.Add(time.Hour), Status: registry.CredentialActive}},
		[]registry.Grant{{ID: "g", Consumer: "21990000100005", Service: "s.S", NotAfter: now.Add(time.Hour)}})
	m.ObserveCRLRefresh(now, nil)
	m.ObserveCRLRefresh(now, errors.New("x"))
	m.ObserveTrustReload(now, nil)
	m.ObserveTrustReload(now, errors.New("x"))
	m.ObserveIssuance(metrics.IssueRenewal, nil)
	m.ObserveAuditFailure()
	m.SetReadiness(map[string]error{"registry": nil})
	m.SetReplicas(1, 1)
	m.ObserveReminder("grant", true)
	m.SetRemindersDue(0, now)
	scraped := map[string]bool{}
	for name := range families(t, m) {
		if strings.HasPrefix(name, "relais_") {
			scraped[name] = true
		}
	}
	listed := map[string]bool{}
	for _, f := range metrics.Families() {
		listed[f.Name] = true
		if !scraped[f.Name] {
			t.Errorf("Families lists %s, which is not exported", f.Name)
		}
	}
	// Families written in other files are listed there; here every family
	// this test drove must be listed.
	for name := range scraped {
		if !listed[name] && !otherFamilies[name] {
			t.Errorf("%s is exported but missing from Families", name)
		}
	}
}
