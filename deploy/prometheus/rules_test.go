package prometheus_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/relais-broker/relais/broker/metrics"
)

var (
	ruleFiles = []string{"relais-alerts.yml", "relais-slo.yml"}
	dashboard = "../grafana/relais-dashboard.json"
)

// promtool finds the promtool binary (Debian's prometheus package). CI
// sets RELAIS_REQUIRE_PROMETHEUS=1: there a missing promtool fails.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("RELAIS_REQUIRE_PROMETHEUS") == "1" {
			t.Fatal("promtool not found and RELAIS_REQUIRE_PROMETHEUS=1: install Debian's prometheus package")
		}
		t.Skip("promtool not found (install Debian's prometheus package)")
	}
	return p
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestPromtoolCheckAndTestRules(t *testing.T) {
	t.Parallel()
	pt := promtool(t)
	run(t, pt, append([]string{"check", "rules"}, ruleFiles...)...)
	tests, err := filepath.Glob("tests/*.test.yml")
	if err != nil || len(tests) == 0 {
		t.Fatalf("no rule tests: %v", err)
	}
	out := run(t, pt, append([]string{"test", "rules"}, tests...)...)
	if strings.Count(out, "SUCCESS") != len(tests) {
		t.Fatalf("promtool test rules:\n%s", out)
	}
}

// ruleFile is the part of a Prometheus rule file these tests read.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func readRules(t *testing.T) ruleFile {
	t.Helper()
	var all ruleFile
	for _, f := range ruleFiles {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var rf ruleFile
		if err := yaml.Unmarshal(raw, &rf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		all.Groups = append(all.Groups, rf.Groups...)
	}
	return all
}

// TestEveryAlertIsTestedAndDocumented: each alert fires in at least one
// promtool test case and has a runbook section in docs/alerts.md.
func TestEveryAlertIsTestedAndDocumented(t *testing.T) {
	t.Parallel()
	fired := map[string]bool{}
	tests, _ := filepath.Glob("tests/*.test.yml")
	for _, f := range tests {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var tf struct {
			Tests []struct {
				AlertRuleTest []struct {
					Alertname string           `yaml:"alertname"`
					ExpAlerts []map[string]any `yaml:"exp_alerts"`
				} `yaml:"alert_rule_test"`
			} `yaml:"tests"`
		}
		if err := yaml.Unmarshal(raw, &tf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, tc := range tf.Tests {
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) > 0 {
					fired[a.Alertname] = true
				}
			}
		}
	}
	runbook, err := os.ReadFile("../../docs/alerts.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			if !fired[r.Alert] {
				t.Errorf("alert %s: no promtool test expects it to fire", r.Alert)
			}
			if want := "docs/alerts.md#" + strings.ToLower(r.Alert); r.Annotations["runbook"] != want {
				t.Errorf("alert %s: runbook annotation %q, want %q", r.Alert, r.Annotations["runbook"], want)
			}
			if !strings.Contains(string(runbook), "\n## "+r.Alert+"\n") {
				t.Errorf("alert %s: no \"## %s\" section in docs/alerts.md", r.Alert, r.Alert)
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("alert %s: no summary", r.Alert)
			}
		}
	}
	if n < 20 {
		t.Fatalf("%d alerts, want the issue's list (at least 20)", n)
	}
}

// dashboardExprs returns every target expression of the dashboard, with
// Grafana's variables replaced by values PromQL accepts.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(dashboard)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	vars := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1d", "$job", "relais")
	var out []string
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			e := vars.Replace(tg.Expr)
			if strings.Contains(e, "$") && !strings.Contains(e, `"$1"`) {
				t.Errorf("panel %q: unknown variable in %s", p.Title, tg.Expr)
			}
			out = append(out, e)
		}
	}
	return out
}

// TestDashboardExpressionsParse has promtool parse every dashboard
// query, written as recording rules into a temporary rule file.
func TestDashboardExpressionsParse(t *testing.T) {
	t.Parallel()
	pt := promtool(t)
	exprs := dashboardExprs(t)
	var rf struct {
		Groups []map[string]any `yaml:"groups"`
	}
	var rules []map[string]string
	for i, e := range exprs {
		rules = append(rules, map[string]string{"record": fmt.Sprintf("dashboard:query_%d", i), "expr": e})
	}
	rf.Groups = append(rf.Groups, map[string]any{"name": "dashboard", "rules": rules})
	raw, err := yaml.Marshal(rf)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "dashboard.rules.yml")
	if err := os.WriteFile(f, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	out := run(t, pt, "check", "rules", f)
	if want := fmt.Sprintf("SUCCESS: %d rules found", len(exprs)); !strings.Contains(out, want) {
		t.Fatalf("promtool check rules on the dashboard: want %q in\n%s", want, out)
	}
}

// prometheusOwn are series Prometheus itself writes.
var prometheusOwn = map[string]bool{"up": true, "ALERTS": true, "ALERTS_FOR_STATE": true, "scrape_duration_seconds": true}

// TestExpressionsNameExportedMetrics: every metric an alert, a recording
// rule or a dashboard query names is exported by the broker, or recorded
// by these rules.
func TestExpressionsNameExportedMetrics(t *testing.T) {
	t.Parallel()
	known := map[string]bool{}
	for _, f := range metrics.Families() {
		known[f.Name] = true
		if f.Histogram {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				known[f.Name+s] = true
			}
		}
	}
	rules := readRules(t)
	type expr struct{ where, text string }
	var exprs []expr
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				known[r.Record] = true
			}
			exprs = append(exprs, expr{g.Name + "/" + r.Alert + r.Record, r.Expr})
		}
	}
	for i, e := range dashboardExprs(t) {
		exprs = append(exprs, expr{fmt.Sprintf("dashboard query %d", i), e})
	}
	used := map[string]bool{}
	for _, e := range exprs {
		names := metricNames(e.text)
		if len(names) == 0 {
			t.Errorf("%s: names no metric: %s", e.where, e.text)
		}
		for _, n := range names {
			used[n] = true
			if !known[n] && !prometheusOwn[n] {
				t.Errorf("%s: %s is not a metric the broker exports (%s)", e.where, n, e.text)
			}
		}
	}
	// The rules exist for the metrics the issue asks to watch.
	for _, n := range []string{"relais_consumer_certificate_expiry_timestamp_seconds", "relais_grant_expiry_timestamp_seconds",
		"relais_crl_last_success_timestamp_seconds", "relais_source_state", "relais_audit_commit_failures_total", "relais_ready"} {
		if !used[n] {
			t.Errorf("no rule or panel uses %s", n)
		}
	}
}

var (
	stringLit  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	braces     = regexp.MustCompile(`\{[^}]*\}`)
	brackets   = regexp.MustCompile(`\[[^\]]*\]`)
	grouping   = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	offset     = regexp.MustCompile(`\boffset\s+-?[0-9a-z]+`)
	token      = regexp.MustCompile(`[0-9][0-9A-Za-z_.]*|[A-Za-z_:][A-Za-z0-9_:]*\s*\(?`)
	keywords   = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true, "Inf": true, "NaN": true}
	identifier = regexp.MustCompile(`^[A-Za-z_:][A-Za-z0-9_:]*$`)
)

// metricNames returns the metric names a PromQL expression selects: the
// identifiers left once strings, label matchers, ranges, grouping
// clauses, functions, keywords and numbers are set aside. PromQL's own
// parser (github.com/prometheus/prometheus) is a heavy dependency for
// this one question.
func metricNames(expr string) []string {
	e := stringLit.ReplaceAllString(expr, `""`)
	e = braces.ReplaceAllString(e, " ")
	e = brackets.ReplaceAllString(e, " ")
	e = grouping.ReplaceAllString(e, " ")
	e = offset.ReplaceAllString(e, " ")
	seen := map[string]bool{}
	for _, tok := range token.FindAllString(e, -1) {
		if tok[0] >= '0' && tok[0] <= '9' || strings.HasSuffix(tok, "(") {
			continue
		}
		tok = strings.TrimSpace(tok)
		if keywords[tok] || !identifier.MatchString(tok) {
			continue
		}
		seen[tok] = true
	}
	var out []string
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func TestMetricNames(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		expr string
		want []string
	}{
		{`up{job="relais"} == 0`, []string{"up"}},
		{`sum by (service) (label_replace(rate(relais_requests_total{code=~"Unavailable|x"}[5m]), "service", "$1", "method", "/([^/]+)/.*"))`, []string{"relais_requests_total"}},
		{`histogram_quantile(0.99, sum by (instance, le) (rate(relais_audit_commit_duration_seconds_bucket[5m]))) > 0.25`, []string{"relais_audit_commit_duration_seconds_bucket"}},
		{`(a:b:rate5m > (14.4 * 0.005) and c offset 1h > 1e3) or on (service) d_total unless ignoring(x) e`, []string{"a:b:rate5m", "c", "d_total", "e"}},
		{`(relais_x - time()) < 14 * 86400 >= 2 * 86400`, []string{"relais_x"}},
		{`sum(rate(foo[5m])) by (le)`, []string{"foo"}},
	} {
		if got := metricNames(tt.expr); strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("metricNames(%s) = %v, want %v", tt.expr, got, tt.want)
		}
	}
}
