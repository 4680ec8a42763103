package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// registryCollectors follow the registry snapshot a replica enforces:
// how far it is and how long its reloads take (the change feed).
type registryCollectors struct {
	version prometheus.Gauge
	reload  prometheus.Histogram
}

func (m *Metrics) registerRegistry() {
	m.registry.version = prometheus.NewGauge(prometheus.GaugeOpts{Name: "relais_registry_version",
		Help: "Version of the registry snapshot this replica enforces (compare across replicas: they converge within a second)."})
	m.registry.reload = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "relais_registry_reload_duration_seconds",
		Help:    "Full reloads of the registry snapshot after a change made by another replica, a reconnect or the periodic check.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}})
	m.reg.MustRegister(m.registry.version, m.registry.reload)
}

// ObserveRegistryReload records a reload of the snapshot to version.
func (m *Metrics) ObserveRegistryReload(version uint64, took time.Duration) {
	m.registry.version.Set(float64(version))
	m.registry.reload.Observe(took.Seconds())
}
