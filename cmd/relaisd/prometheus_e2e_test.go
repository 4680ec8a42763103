package main_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// prometheusBin finds Debian's prometheus; CI sets
// RELAIS_REQUIRE_PROMETHEUS=1, where a missing binary fails.
func prometheusBin(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("RELAIS_REQUIRE_PROMETHEUS") == "1" {
			t.Fatal("prometheus not found and RELAIS_REQUIRE_PROMETHEUS=1: install Debian's prometheus package")
		}
		t.Skip("prometheus not found (install Debian's prometheus package)")
	}
	return p
}

// TestSourceDownAlertFiresAndResolves runs a real Prometheus on loopback
// scraping a real `relaisd dev` with the production alert rules (only
// RelaisSourceDown's `for` shortened), makes the sandbox source fail until
// its breaker opens, sees the alert firing through Prometheus's HTTP API,
// then lets the breaker close and sees the alert resolve.
func TestSourceDownAlertFiresAndResolves(t *testing.T) {
	t.Parallel()
	prom := prometheusBin(t)
	dir := t.TempDir()
	const service = "relais.familyquotient.v1.FamilyQuotientService"
	sourcesFile := filepath.Join(dir, "sources.yaml")
	// Two failures open the breaker, for 3 s; then a success closes it.
	if err := os.WriteFile(sourcesFile, []byte("sources:\n  - {service: "+service+", id: sandbox, kind: sandbox, failure_threshold: 2, open_for: 3s}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDevIn(t, t.TempDir(), "--sources", sourcesFile)

	rulesFile := filepath.Join(dir, "relais-alerts.yml")
	writeRulesWithFor(t, "../../deploy/prometheus/relais-alerts.yml", rulesFile, "RelaisSourceDown", "2s")
	api := startPrometheus(t, prom, dir, d.opsAddr, rulesFile, "../../deploy/prometheus/relais-slo.yml")

	// Every production rule loads and evaluates without error.
	promWaitFor(t, 30*time.Second, "every rule evaluated healthy", func() (bool, string) {
		var rules struct {
			Data struct {
				Groups []struct {
					Rules []struct {
						Name, Health, LastError string
					} `json:"rules"`
				} `json:"groups"`
			} `json:"data"`
		}
		if err := promGetJSON(api+"/api/v1/rules", &rules); err != nil {
			return false, err.Error()
		}
		n, bad := 0, []string{}
		for _, g := range rules.Data.Groups {
			for _, r := range g.Rules {
				n++
				if r.Health != "ok" {
					bad = append(bad, r.Name+": "+r.Health+" "+r.LastError)
				}
			}
		}
		return n > 40 && len(bad) == 0, fmt.Sprintf("%d rules, not ok: %v", n, bad)
	})
	promWaitFor(t, 30*time.Second, "the source scraped as ok", func() (bool, string) {
		v, err := promQuery(api, `relais_source_state{state="ok",source="sandbox/`+service+`"}`)
		return err == nil && v == "1", fmt.Sprintf("%q %v", v, err)
	})
	if state := alertState(t, api, "RelaisSourceDown"); state != "" {
		t.Fatalf("RelaisSourceDown is %s before any failure", state)
	}

	// Paul's calls fail at the sandbox (source unavailable): the breaker opens.
	paul := strings.NewReplacer(`"birth_name":"DUPONT"`, `"birth_name":"MERCIER"`, `"given_names":["Zoé"]`, `"given_names":["Paul"]`,
		`"sex":"SEX_FEMALE"`, `"sex":"SEX_MALE"`, `"birth_date":"1984-03-12"`, `"birth_date":"1965-01-01"`).Replace(d.firstCall)
	if paul == d.firstCall {
		t.Fatalf("the first call no longer names Zoé DUPONT: %s", d.firstCall)
	}
	for i := 0; i < 3; i++ {
		out, err := shell(t, paul+" 2>&1; true")
		if err != nil || !strings.Contains(out, "Unavailable") {
			t.Fatalf("call %d for the unavailable subject: %v\n%s", i, err, out)
		}
	}
	promWaitFor(t, 60*time.Second, "RelaisSourceDown firing", func() (bool, string) {
		s := alertState(t, api, "RelaisSourceDown")
		return s == "firing", s
	})

	// The breaker lets a probe through after 3 s: Zoé's call succeeds and closes it.
	promWaitFor(t, 30*time.Second, "a call through the half-open breaker", func() (bool, string) {
		out, err := shell(t, d.firstCall)
		return err == nil, out
	})
	promWaitFor(t, 60*time.Second, "RelaisSourceDown resolved", func() (bool, string) {
		s := alertState(t, api, "RelaisSourceDown")
		return s == "", s
	})
}

// writeRulesWithFor copies a rule file, setting alert's `for` to forDur
// (the production 3 minutes would make the test slow, nothing else).
func writeRulesWithFor(t *testing.T, from, to, alert, forDur string) {
	t.Helper()
	raw, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	var rf map[string]any
	if err := yaml.Unmarshal(raw, &rf); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, g := range rf["groups"].([]any) {
		for _, r := range g.(map[string]any)["rules"].([]any) {
			if rule := r.(map[string]any); rule["alert"] == alert {
				rule["for"], found = forDur, true
			}
		}
	}
	if !found {
		t.Fatalf("no alert %s in %s", alert, from)
	}
	out, err := yaml.Marshal(rf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

// startPrometheus runs prometheus on a free loopback port, scraping
// target every second and evaluating the rules every second, and returns
// its base URL once it is ready.
func startPrometheus(t *testing.T, bin, dir, target string, rules ...string) string {
	t.Helper()
	var abs []string
	for _, r := range rules {
		a, err := filepath.Abs(r)
		if err != nil {
			t.Fatal(err)
		}
		abs = append(abs, a)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [%s]
scrape_configs:
  - job_name: relais
    static_configs:
      - targets: [%q]
`, strings.Join(promQuoteAll(abs), ", "), target)
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := promFreeAddr(t)
	logFile, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+cfgFile, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			logs, _ := os.ReadFile(logFile.Name())
			t.Logf("prometheus log:\n%s", logs)
		}
	})
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("prometheus exited: %v", err)
		default:
		}
		if r, err := http.Get(base + "/-/ready"); err == nil {
			r.Body.Close()
			if r.StatusCode == http.StatusOK {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("prometheus not ready within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func promQuoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

// promFreeAddr returns a loopback address no one listens on now.
func promFreeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

func promGetJSON(u string, v any) error {
	r, err := http.Get(u)
	if err != nil {
		return err
	}
	defer r.Body.Close()
	if r.StatusCode != http.StatusOK {
		sc := bufio.NewScanner(r.Body)
		sc.Scan()
		return fmt.Errorf("%s: %s %s", u, r.Status, sc.Text())
	}
	return json.NewDecoder(r.Body).Decode(v)
}

// promQuery runs an instant query and returns the value of its single sample
// ("" when there is none).
func promQuery(api, q string) (string, error) {
	var res struct {
		Data struct {
			Result []struct {
				Value []any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := promGetJSON(api+"/api/v1/query?query="+url.QueryEscape(q), &res); err != nil {
		return "", err
	}
	if len(res.Data.Result) != 1 || len(res.Data.Result[0].Value) != 2 {
		return "", nil
	}
	v, _ := res.Data.Result[0].Value[1].(string)
	return v, nil
}

// alertState is the state (pending, firing) of the named alert through
// /api/v1/alerts, "" when it is not active.
func alertState(t *testing.T, api, name string) string {
	t.Helper()
	var res struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		} `json:"data"`
	}
	if err := promGetJSON(api+"/api/v1/alerts", &res); err != nil {
		t.Fatal(err)
	}
	state := ""
	for _, a := range res.Data.Alerts {
		if a.Labels["alertname"] == name {
			if a.Labels["source"] != "sandbox/relais.familyquotient.v1.FamilyQuotientService" || a.Labels["severity"] != "critical" {
				t.Errorf("alert %s with labels %v", name, a.Labels)
			}
			state = a.State
		}
	}
	return state
}

// promWaitFor polls cond every 200 ms until it holds or the deadline passes.
func promWaitFor(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (last: %s)", what, within, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
