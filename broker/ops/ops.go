// Package ops serves the broker's operations endpoints on their own HTTP
// listener (loopback or an operations network, never the data API's):
// /metrics (Prometheus), /healthz (the process answers) and /readyz (the
// dependencies really work: registry, audit log, trust bundle,
// certificates — the X-Road lesson, readiness must check).
package ops

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// Check is one readiness condition.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// Handler serves /metrics, /healthz and /readyz.
func Handler(metrics http.Handler, checks []Check) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		results, ready := map[string]string{}, true
		for _, c := range checks {
			if err := c.Fn(ctx); err != nil {
				results[c.Name], ready = err.Error(), false
			} else {
				results[c.Name] = "ok"
			}
		}
		w.Header().Set("Content-Type", "application/json")
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"ready": ready, "checks": results})
	})
	return mux
}
