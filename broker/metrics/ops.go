package metrics

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/relais-broker/relais/broker/registry"
)

// opsCollectors are the series the alert rules in deploy/prometheus need
// beyond the call counters: what will expire, what stopped refreshing,
// what failed in the background. Labels hold SIRETs, service names, grant
// ids, check names — never anything about a citizen or a contact.
type opsCollectors struct {
	sourceCalls     *prometheus.CounterVec
	consumerCert    *prometheus.GaugeVec
	consumerIssued  *prometheus.GaugeVec
	grantExpiry     *prometheus.GaugeVec
	crlSuccess      prometheus.Gauge
	crlFailures     prometheus.Counter
	trustSuccess    prometheus.Gauge
	trustFailures   prometheus.Counter
	issuances       *prometheus.CounterVec
	auditFailures   prometheus.Counter
	ready           prometheus.Gauge
	readinessCheck  *prometheus.GaugeVec
	replicasLive    prometheus.Gauge
	replicasWanted  prometheus.Gauge
	reminders       *prometheus.CounterVec
	remindersDue    prometheus.Gauge
	reminderLastRun prometheus.Gauge
}

func (m *Metrics) registerOps() {
	o := &m.ops
	o.sourceCalls = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "relais_source_requests_total",
		Help: "Calls that reached a source adapter, by source and gRPC code (the error ratio of a source)."}, []string{"source", "code"})
	o.consumerCert = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "relais_consumer_certificate_expiry_timestamp_seconds",
		Help: "Expiry (Unix time) of each active consumer's newest active certificate, by consumer SIRET."}, []string{"consumer"})
	o.consumerIssued = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "relais_consumer_certificate_issued_timestamp_seconds",
		Help: "Start of validity (Unix time) of the certificate relais_consumer_certificate_expiry_timestamp_seconds describes: with it, alerts judge the time left against the lifetime."}, []string{"consumer"})
	o.grantExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "relais_grant_expiry_timestamp_seconds",
		Help: "End (Unix time) of each unrevoked grant still in force, by consumer SIRET, service and grant id."}, []string{"consumer", "service", "grant"})
	o.crlSuccess = prometheus.NewGauge(prometheus.GaugeOpts{Name: "relais_crl_last_success_timestamp_seconds",
		Help: "When (Unix time) the CRL was last fetched successfully: revocations newer than it are not enforced."})
	o.crlFailures = prometheus.NewCounter(prometheus.CounterOpts{Name: "relais_crl_refresh_failures_total",
		Help: "CRL fetches that failed (the last list is kept)."})
	o.trustSuccess = prometheus.NewGauge(prometheus.GaugeOpts{Name: "relais_trust_bundle_last_success_timestamp_seconds",
		Help: "When (Unix time) the CA trust bundle was last read successfully."})
	o.trustFailures = prometheus.NewCounter(prometheus.CounterOpts{Name: "relais_trust_bundle_reload_failures_total",
		Help: "Trust bundle reads that failed or answered an unusable bundle (the current one is kept)."})
	o.issuances = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "relais_certificate_issuances_total",
		Help: "Certificates asked of the issuer (Vault PKI or the dev CA), by kind (server, consumer, operator, renewal) and outcome (ok, error)."}, []string{"kind", "outcome"})
	o.auditFailures = prometheus.NewCounter(prometheus.CounterOpts{Name: "relais_audit_commit_failures_total",
		Help: "Audit commits that failed: while the log cannot commit, every call is refused."})
	o.ready = prometheus.NewGauge(prometheus.GaugeOpts{Name: "relais_ready",
		Help: "1 while every /readyz check passes, 0 otherwise (refreshed in the background)."})
	o.readinessCheck = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "relais_readiness_check",
		Help: "1 while the /readyz check passes, 0 otherwise, by check name."}, []string{"check"})
	o.replicasLive = prometheus.NewGauge(prometheus.GaugeOpts{Name: "relais_cluster_replicas_live",
		Help: "Live replicas as this replica sees them (itself included)."})
	o.replicasWanted = prometheus.NewGauge(prometheus.GaugeOpts{Name: "relais_cluster_replicas_expected",
		Help: "Replicas the deployment is configured to run (0: not configured)."})
	o.reminders = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "relais_reminders_total",
		Help: "Expiry reminders to consumers' contacts, by what ends (certificate, grant) and outcome (sent, failed)."}, []string{"kind", "outcome"})
	o.remindersDue = prometheus.NewGauge(prometheus.GaugeOpts{Name: "relais_reminders_due",
		Help: "Reminders due but not yet sent (retried after a failure)."})
	o.reminderLastRun = prometheus.NewGauge(prometheus.GaugeOpts{Name: "relais_reminders_last_run_timestamp_seconds",
		Help: "When (Unix time) the reminder job last completed a pass (on the replica holding its lease)."})
	m.reg.MustRegister(o.sourceCalls, o.consumerCert, o.consumerIssued, o.grantExpiry, o.crlSuccess, o.crlFailures, o.trustSuccess, o.trustFailures,
		o.issuances, o.auditFailures, o.ready, o.readinessCheck, o.replicasLive, o.replicasWanted, o.reminders, o.remindersDue, o.reminderLastRun)
}

// SetRegistryExpiries replaces the per-consumer certificate and per-grant
// expiry gauges from the registry at now: a consumer's gauge is its
// newest active certificate (an older one still valid after a renewal is
// not what will stop its calls); ended or revoked grants are dropped.
func (m *Metrics) SetRegistryExpiries(now time.Time, creds []registry.CredentialRecord, grants []registry.Grant) {
	newest := map[string]registry.CredentialRecord{}
	for _, r := range creds {
		if r.Kind != "consumer" || r.Status != registry.CredentialActive || !r.NotAfter.After(now) {
			continue
		}
		if r.NotAfter.After(newest[r.Subject].NotAfter) {
			newest[r.Subject] = r
		}
	}
	m.ops.consumerCert.Reset()
	m.ops.consumerIssued.Reset()
	for siret, r := range newest {
		m.ops.consumerCert.WithLabelValues(siret).Set(float64(r.NotAfter.Unix()))
		if !r.NotBefore.IsZero() {
			m.ops.consumerIssued.WithLabelValues(siret).Set(float64(r.NotBefore.Unix()))
		}
	}
	m.ops.grantExpiry.Reset()
	for _, g := range grants {
		if !g.RevokedAt.IsZero() || g.NotAfter.IsZero() || !g.NotAfter.After(now) {
			continue
		}
		m.ops.grantExpiry.WithLabelValues(g.Consumer, g.Service, g.ID).Set(float64(g.NotAfter.Unix()))
	}
}

// ObserveCRLRefresh records one CRL fetch (nil: success at t).
func (m *Metrics) ObserveCRLRefresh(t time.Time, err error) {
	if err != nil {
		m.ops.crlFailures.Inc()
		return
	}
	m.ops.crlSuccess.Set(float64(t.Unix()))
}

// ObserveTrustReload records one trust bundle read (nil: success at t).
func (m *Metrics) ObserveTrustReload(t time.Time, err error) {
	if err != nil {
		m.ops.trustFailures.Inc()
		return
	}
	m.ops.trustSuccess.Set(float64(t.Unix()))
}

// Issuance kinds, for ObserveIssuance.
const (
	IssueServer   = "server"
	IssueConsumer = "consumer"
	IssueOperator = "operator"
	IssueRenewal  = "renewal"
)

// ObserveIssuance records one certificate asked of the issuer.
func (m *Metrics) ObserveIssuance(kind string, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.ops.issuances.WithLabelValues(kind, outcome).Inc()
}

// ObserveAuditFailure counts one audit commit that failed.
func (m *Metrics) ObserveAuditFailure() { m.ops.auditFailures.Inc() }

// SetReadiness records the outcome of every /readyz check (name → error).
func (m *Metrics) SetReadiness(results map[string]error) {
	ready := 1.0
	for name, err := range results {
		v := 1.0
		if err != nil {
			v, ready = 0, 0
		}
		m.ops.readinessCheck.WithLabelValues(name).Set(v)
	}
	m.ops.ready.Set(ready)
}

// WatchReadiness runs check every interval until ctx ends and records its
// results, so an alert sees /readyz failing without a prober.
func (m *Metrics) WatchReadiness(ctx context.Context, interval time.Duration, check func(ctx context.Context) map[string]error) {
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		results := check(cctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		m.SetReadiness(results)
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// SetReplicas records the live replicas and how many are configured.
func (m *Metrics) SetReplicas(live, expected int) {
	m.ops.replicasLive.Set(float64(live))
	m.ops.replicasWanted.Set(float64(expected))
}

// ObserveReminder counts one reminder (kind: certificate or grant; sent
// false: the mail failed and will be retried).
func (m *Metrics) ObserveReminder(kind string, sent bool) {
	outcome := "sent"
	if !sent {
		outcome = "failed"
	}
	m.ops.reminders.WithLabelValues(kind, outcome).Inc()
}

// SetRemindersDue records the reminders due and not yet sent after a
// pass of the reminder job, and when that pass ended.
func (m *Metrics) SetRemindersDue(n int, at time.Time) {
	m.ops.remindersDue.Set(float64(n))
	m.ops.reminderLastRun.Set(float64(at.Unix()))
}

// Family is one metric family the broker exports, for checking that the
// alert rules and the dashboard only name series that exist.
type Family struct {
	Name string
	// Histogram families are exported as Name_bucket, Name_sum and
	// Name_count.
	Histogram bool
}

// Families lists the broker's own families (the Go runtime and process
// ones aside), sorted by name: those with labels as listed here, those
// without as the registry gathers them.
func Families() []Family {
	m := New()
	out := []Family{
		{"relais_requests_total", false}, {"relais_request_duration_seconds", true}, {"relais_source_duration_seconds", true},
		{"relais_rate_limit_rejections_total", false}, {"relais_audit_commit_duration_seconds", true}, {"relais_source_state", false},
		{"relais_certificate_expiry_timestamp_seconds", false}, {"relais_audit_queue_depth", false}, {"relais_anomalies_total", false},
	}
	ch := make(chan *prometheus.Desc, 64)
	go func() {
		o := &m.ops
		for _, c := range []prometheus.Collector{o.sourceCalls, o.consumerCert, o.consumerIssued, o.grantExpiry, o.crlSuccess, o.crlFailures, o.trustSuccess,
			o.trustFailures, o.issuances, o.auditFailures, o.ready, o.readinessCheck, o.replicasLive, o.replicasWanted, o.reminders, o.remindersDue, o.reminderLastRun} {
			c.Describe(ch)
		}
		close(ch)
	}()
	seen := map[string]bool{}
	for _, f := range out {
		seen[f.Name] = true
	}
	for d := range ch {
		if n := descName(d); !seen[n] {
			seen[n] = true
			out = append(out, Family{Name: n})
		}
	}
	// Families without labels are gathered even before any event: this
	// picks up those registered elsewhere in the package.
	if gathered, err := m.reg.Gather(); err == nil {
		for _, f := range gathered {
			if n := f.GetName(); strings.HasPrefix(n, "relais_") && !seen[n] {
				seen[n] = true
				out = append(out, Family{Name: n, Histogram: f.GetType() == dto.MetricType_HISTOGRAM})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// descName reads the fully-qualified name out of a Desc, which exposes it
// only through String (`Desc{fqName: "name", ...}`).
func descName(d *prometheus.Desc) string {
	s := d.String()
	const key = `fqName: "`
	i := strings.Index(s, key)
	if i < 0 {
		return ""
	}
	s = s[i+len(key):]
	if j := strings.IndexByte(s, '"'); j >= 0 {
		return s[:j]
	}
	return ""
}
