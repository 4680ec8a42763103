package portal

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the portal's counters; none carries a label about a person.
type metrics struct {
	pages    *prometheus.CounterVec
	logins   *prometheus.CounterVec
	logouts  prometheus.Counter
	exports  *prometheus.CounterVec
	refusals *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		pages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "relais_portal_pages_total",
			Help: "Pages served by the transparency portal, by page (home, accesses, error, not_found)."}, []string{"page"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "relais_portal_logins_total",
			Help: "Citizen logins on the transparency portal, by result (started, succeeded, failed, cancelled, provider_unavailable)."}, []string{"result"}),
		logouts: prometheus.NewCounter(prometheus.CounterOpts{Name: "relais_portal_logouts_total",
			Help: "Logouts from the transparency portal."}),
		exports: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "relais_portal_exports_total",
			Help: "Exports of the accesses list, by format (csv, json)."}, []string{"format"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "relais_portal_refusals_total",
			Help: "Requests the transparency portal refused, by reason (rate_limited, csrf, login_state, store_full, bad_filter)."}, []string{"reason"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.pages, m.logins, m.logouts, m.exports, m.refusals} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
