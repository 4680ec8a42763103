// Package metrics exposes what operators watch, in the Prometheus format,
// on the broker's operations listener: calls by consumer, method and code;
// latency per method and per source; source states; audit commit latency
// and queue depth; certificate expiry; rate-limit rejections; abnormal
// use raised by broker/anomaly. Labels hold
// SIRETs of public bodies, method and source names — never anything about
// a citizen.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/relais-broker/relais/broker/audit"
)

// Metrics holds the collectors of one broker.
type Metrics struct {
	reg            *prometheus.Registry
	calls          *prometheus.CounterVec
	callLatency    *prometheus.HistogramVec
	sourceLatency  *prometheus.HistogramVec
	rejections     *prometheus.CounterVec
	auditCommit    prometheus.Histogram
	sourceState    *prometheus.GaugeVec
	certExpiry     *prometheus.GaugeVec
	auditQueue     prometheus.GaugeFunc
	auditQueueFunc func() float64
	anomalies      *prometheus.CounterVec
	// ops holds the collectors of what tells operators to act (ops.go).
	ops opsCollectors
	// registry holds the change feed's collectors (registry.go).
	registry registryCollectors
}

// States a source can be in, for relais_source_state.
var States = []string{"ok", "degraded", "down", "maintenance"}

// New registers the collectors, plus the Go runtime and process ones.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), auditQueueFunc: func() float64 { return 0 }}
	buckets := []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	m.calls = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "relais_requests_total",
		Help: "Calls to the data API, by consumer SIRET, method and gRPC code."}, []string{"consumer", "method", "code"})
	m.callLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "relais_request_duration_seconds",
		Help: "Latency of data API calls as the broker sees them, by method.", Buckets: buckets}, []string{"method"})
	m.sourceLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "relais_source_duration_seconds",
		Help: "Latency of source adapter calls, by source.", Buckets: buckets}, []string{"source"})
	m.rejections = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "relais_rate_limit_rejections_total",
		Help: "Calls refused by rate limits, quotas and the anomaly throttle, by consumer and reason."}, []string{"consumer", "reason"})
	m.auditCommit = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "relais_audit_commit_duration_seconds",
		Help: "Duration of durable audit commits (one fsync for a group of records).", Buckets: buckets})
	m.sourceState = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "relais_source_state",
		Help: "1 for the current state of each source (ok, degraded, down, maintenance)."}, []string{"source", "state"})
	m.certExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "relais_certificate_expiry_timestamp_seconds",
		Help: "Expiry (Unix time) of the broker's own certificate (which=server) and of the soonest-expiring consumer certificate (which=consumer_soonest)."}, []string{"which"})
	m.auditQueue = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "relais_audit_queue_depth",
		Help: "Audit records waiting for the next commit."}, func() float64 { return m.auditQueueFunc() })
	m.anomalies = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "relais_anomalies_total",
		Help: "Abnormal use raised by the anomaly detector (at most once per window), by consumer SIRET and kind (enumeration, volume)."}, []string{"consumer", "kind"})
	m.reg.MustRegister(m.calls, m.callLatency, m.sourceLatency, m.rejections, m.auditCommit, m.sourceState, m.certExpiry, m.auditQueue, m.anomalies,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.registerOps()
	m.registerRegistry()
	return m
}

// ObserveCall implements broker.Observer.
func (m *Metrics) ObserveCall(r audit.Record, sourceLatency time.Duration) {
	m.calls.WithLabelValues(r.Consumer, r.Method, r.Code).Inc()
	m.callLatency.WithLabelValues(r.Method).Observe(r.Latency.Seconds())
	if r.Source != "" && sourceLatency > 0 {
		m.sourceLatency.WithLabelValues(r.Source).Observe(sourceLatency.Seconds())
	}
	if r.Source != "" {
		m.ops.sourceCalls.WithLabelValues(r.Source, r.Code).Inc()
	}
	switch r.Reason {
	case "rate_limited", "daily_quota_exceeded", "duplicate_in_flight", "throttled":
		m.rejections.WithLabelValues(r.Consumer, r.Reason).Inc()
	}
}

// ObserveAnomaly counts one anomaly raised (anomaly.Counter).
func (m *Metrics) ObserveAnomaly(consumer, kind string) {
	m.anomalies.WithLabelValues(consumer, kind).Inc()
}

// ObserveAuditCommit records one audit commit (boltlog's OnCommit).
func (m *Metrics) ObserveAuditCommit(d time.Duration, _ int) { m.auditCommit.Observe(d.Seconds()) }

// SetAuditQueue sets how the audit queue depth is read.
func (m *Metrics) SetAuditQueue(f func() int) {
	m.auditQueueFunc = func() float64 { return float64(f()) }
}

// SetSourceState marks state as the current one of source.
func (m *Metrics) SetSourceState(source, state string) {
	for _, s := range States {
		v := 0.0
		if s == state {
			v = 1
		}
		m.sourceState.WithLabelValues(source, s).Set(v)
	}
}

// SetCertExpiry records a certificate expiry (which: server or consumer_soonest).
func (m *Metrics) SetCertExpiry(which string, t time.Time) {
	m.certExpiry.WithLabelValues(which).Set(float64(t.Unix()))
}

// Handler serves the exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registerer lets another component of the process (the transparency
// portal) export its own collectors on the same /metrics.
func (m *Metrics) Registerer() prometheus.Registerer { return m.reg }
