// Package prometheus holds the broker's Prometheus alert and SLO rules
// (relais-alerts.yml, relais-slo.yml) and their promtool unit tests
// (tests/), as files an operator loads as they are. The Go package is
// empty: its tests run promtool under `go test`, so CI checks the rules,
// runs their unit tests, and checks that every PromQL expression in the
// rules and in the Grafana dashboard (deploy/grafana) names only metrics
// the broker exports.
package prometheus
