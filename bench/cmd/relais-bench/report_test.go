package main

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

// fakeRun is a result set shaped like a full run: 3 rounds, the four
// core targets at three levels, the 20 ms scenario, the fsync probe, RSS.
// Throughputs are calls/elapsed with elapsed 1 s, so a target's calls are
// its calls/s.
func fakeRun() *runData {
	d := &runData{Command: "go run ./bench/cmd/relais-bench", Started: time.Date(2026, 12, 1, 13, 20, 0, 0, time.UTC), Rounds: 3,
		Measure: 5 * time.Second, Warmup: time.Second, Soak: 30 * time.Second, Levels: []int{1, 8, 64}, SlowLevels: []int{1, 8},
		Targets: []string{"limit", "nginx", "relais-remote", "relais-sandbox"}, Counted: map[string]string{"relais-remote": "own: relaisd only"},
		RSS: map[string]rssPair{"relais-remote": {Idle: 30, After: 60}, "limit": {Idle: 10, After: 12}}}
	d.Finished = d.Started.Add(9 * time.Minute)
	calls := map[string]int{"limit": 20000, "nginx": 8000, "relais-remote": 4000, "relais-sandbox": 5000}
	for r := 1; r <= 3; r++ {
		for _, c := range d.Levels {
			for _, t := range d.Targets {
				n := calls[t] + (r-2)*100 // rounds 1, 2, 3: -100, 0, +100
				d.Samples = append(d.Samples, sample{Round: r, Target: t, Level: c, Calls: n, Elapsed: time.Second,
					P50: time.Duration(r) * time.Millisecond, P90: 2 * time.Millisecond, P99: 3 * time.Millisecond,
					CPU: map[string]time.Duration{roleOwn: time.Duration(n) * 100 * time.Microsecond}})
			}
		}
		for _, c := range d.SlowLevels {
			d.Slow = append(d.Slow,
				sample{Round: r, Target: slowDirect, Level: c, Calls: 100, Elapsed: time.Second, P50: 21 * time.Millisecond, P99: 23 * time.Millisecond},
				sample{Round: r, Target: slowVia, Level: c, Calls: 100, Elapsed: time.Second, P50: 21*time.Millisecond + time.Duration(r)*500*time.Microsecond, P99: 26 * time.Millisecond})
		}
	}
	for i := 1; i <= 100; i++ {
		d.Fsync = append(d.Fsync, time.Duration(i)*10*time.Microsecond)
	}
	return d
}

// number follows path through decoded JSON objects and returns the
// number found there.
func number(t *testing.T, v any, path ...string) float64 {
	t.Helper()
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%v: %q is not under an object", path, p)
		}
		if v, ok = m[p]; !ok {
			t.Fatalf("%v: no key %q (have %v)", path, p, keys(m))
		}
	}
	f, ok := v.(float64)
	if !ok {
		t.Fatalf("%v: %v is not a number", path, v)
	}
	return f
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestResultsJSONShape(t *testing.T) {
	raw, err := marshalReport(buildReport(fakeRun()))
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("results.json is not JSON: %v", err)
	}
	for _, tc := range []struct {
		path []string
		want float64
	}{
		// the keys
		{[]string{"throughput_ratio", "relais-remote/nginx", "64"}, 0.5},   // 3900/7900, 4000/8000, 4100/8100 → median 0.5
		{[]string{"throughput_ratio", "relais-sandbox/limit", "64"}, 0.25}, // 5000/20000
		{[]string{"added_latency_ms", "p50", "1"}, 1.0},                    // 0.5, 1.0, 1.5 ms
		{[]string{"added_latency_ms", "p99", "1"}, 3},
		{[]string{"added_latency_ms", "p50", "8"}, 1.0},
		{[]string{"added_latency_ms", "p99", "8"}, 3},
		{[]string{"fsync_ms", "p50"}, 0.51}, // the 51st of 100 sorted samples of 10 µs steps
		{[]string{"fsync_ms", "p99"}, 1.0},
		{[]string{"rss_mib", "relais-remote", "idle"}, 30},
		{[]string{"rss_mib", "relais-remote", "after"}, 60},
		// the rest
		{[]string{"calls_per_s", "relais-remote", "64", "median"}, 4000},
		{[]string{"calls_per_s", "relais-remote", "64", "min"}, 3900},
		{[]string{"calls_per_s", "relais-remote", "64", "max"}, 4100},
		{[]string{"latency_ms", "nginx", "8", "p50", "median"}, 2},
		{[]string{"cpu_us_per_call", "relais-sandbox", "1", "own", "median"}, 100},
		{[]string{"throughput_ratio_range", "relais-remote/nginx", "64", "min"}, 0.494},
		{[]string{"added_latency_range_ms", "p50", "1", "max"}, 1.5},
		{[]string{"source_20ms_latency_ms", "direct", "8", "p99", "median"}, 23},
	} {
		if got := number(t, v, tc.path...); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s = %v, want %v", strings.Join(tc.path, "."), got, tc.want)
		}
	}
	checks := v.(map[string]any)["issue_targets"].([]any)
	if len(checks) != 6 {
		t.Fatalf("issue_targets: %d checks, want 6: %v", len(checks), checks)
	}
	met := map[string]bool{}
	for _, c := range checks {
		c := c.(map[string]any)
		met[c["name"].(string)] = c["met"].(bool)
	}
	for name, want := range map[string]bool{
		"relais-remote / nginx throughput at c=64 (aim 1.0)":                       false, // 0.5 < 0.8
		"relais-sandbox / limit throughput at c=64":                                false, // 0.25 < 0.5
		"added latency over a 20 ms source, c=1 p50":                               true,  // 1.0 ≤ 1.0
		"added latency over a 20 ms source, c=1 p99":                               false, // 3 > 2.5
		"added latency over a 20 ms source, c=8 p99":                               true,  // 3 ≤ 3
		"relaisd (relais-remote) RSS after the soak at c=64 ≤ 1.5 × idle + 50 MiB": true,  // 60 ≤ 95
	} {
		if got, ok := met[name]; !ok || got != want {
			t.Errorf("check %q: met=%v (present %v), want %v", name, got, ok, want)
		}
	}
}

func TestResultsWithoutSomeTargets(t *testing.T) {
	d := fakeRun()
	// nginx answered nothing in round 2 at c=64 (zero throughput) and
	// relais-sandbox was never measured: no NaN, no Inf, no key for it.
	var kept []sample
	for _, s := range d.Samples {
		switch {
		case s.Target == "relais-sandbox":
		case s.Target == "nginx" && s.Round == 2 && s.Level == 64:
			s.Calls = 0
			kept = append(kept, s)
		default:
			kept = append(kept, s)
		}
	}
	d.Samples = kept
	d.Failures = []string{"round 2, nginx at c=64: no successful call (12 errors)"}
	rep := buildReport(d)
	raw, err := marshalReport(rep)
	if err != nil {
		t.Fatalf("marshal with missing figures: %v", err)
	}
	if _, ok := rep.ThroughputRatio["relais-sandbox/limit"]; ok {
		t.Errorf("a ratio for a target never measured: %v", rep.ThroughputRatio["relais-sandbox/limit"])
	}
	if got := rep.ThroughputRatioRange["relais-remote/nginx"]["64"].N; got != 2 {
		t.Errorf("relais-remote/nginx at 64 over %d rounds, want 2 (the round without nginx calls left out)", got)
	}
	if !strings.Contains(string(raw), "no successful call") {
		t.Error("the failure is not in results.json")
	}
	md := writeMarkdown(d, rep)
	for _, want := range []string{"| relais-sandbox | 64 | not measured |", "## Not measured", "**missed**", "**met**"} {
		if !strings.Contains(md, want) {
			t.Errorf("RESULTS.md lacks %q", want)
		}
	}
}

func TestMarkdownNamesCommandAndTargets(t *testing.T) {
	d := fakeRun()
	if md := writeMarkdown(d, buildReport(d)); strings.Contains(md, "not idle") {
		t.Error("an idle machine said shared")
	}
	d.LoadStart, d.Machine.CPUs = "3.50 2.00 1.00", 2
	md := writeMarkdown(d, buildReport(d))
	for _, want := range []string{
		"`go run ./bench/cmd/relais-bench`",
		"relais-remote / nginx throughput at c=64 (aim 1.0): 0.50 × (target ≥ 0.80 ×) — **missed**",
		"| relais-remote | 64 | 4000 (3900–4100) |",
		"| 1 | **added by relais** | **1.00 (0.50–1.50)** |",
		"p50 0.51 ms, p99 1.00 ms",
		"not idle when the run started (1-minute load average 3.50 on 2 cores)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("RESULTS.md lacks %q:\n%s", want, md)
		}
	}
}

func TestParseTraces(t *testing.T) {
	out := []byte(`File: relaisd
Type: cpu
Duration: 1s, Total samples = 60ms (6.00%)
-----------+-------------------------------------------------------
      15ms   regexp.(*Regexp).doOnePass
             buf.build/go/protovalidate.(*validator).Validate
             github.com/relais-broker/relais/broker.(*Broker).validate
             github.com/relais-broker/relais/broker/callchain.Run[go.shape.*uint8]
-----------+-------------------------------------------------------
      15ms   cel.dev/cel-go/interpreter.(*absoluteAttribute).Resolve
             buf.build/go/protovalidate.(*validator).Validate
             github.com/relais-broker/relais/broker.(*Broker).fetch
             github.com/relais-broker/relais/broker.(*Broker).validate
             github.com/relais-broker/relais/broker/callchain.Run[go.shape.*uint8]
-----------+-------------------------------------------------------
     bytes:  64
      20ms   syscall.Syscall
             syscall.Fdatasync
             go.etcd.io/bbolt.(*Tx).Commit
             github.com/relais-broker/relais/broker/audit/boltlog.(*Log).commit
-----------+-------------------------------------------------------
      10ms   runtime.mallocgc
             io.ReadFull (inline)
             google.golang.org/grpc/internal/transport.(*http2Server).HandleStreams
`)
	traces, err := parseTraces(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(traces) != 4 || traces[2].value != 20*time.Millisecond || traces[3].frames[1] != "io.ReadFull" {
		t.Fatalf("traces: %+v", traces)
	}
	s := summarise(traces)
	got := map[string]float64{}
	for _, a := range s.Areas {
		got[a.Name] = a.Percent
	}
	for name, want := range map[string]float64{
		"validation (protovalidate, CEL, or generated checks)":               50,
		"  of which the request's (nearest stage broker.(*Broker).validate)": 25,
		"  of which the response's (nearest stage broker.(*Broker).fetch)":   25,
		"audit (broker/audit: seal, storage, commit)":                        33.333,
		"  of which fdatasync/fsync":                                         33.333,
		"gRPC and HTTP/2, outside Relais code (transport)":                   16.667,
		"malloc and GC (runtime.mallocgc, GC workers and assists)":           16.667,
	} {
		if math.Abs(got[name]-want) > 1e-9 {
			t.Errorf("area %q: %v %%, want %v", name, got[name], want)
		}
	}
	if len(s.TopRelaisInner) != 3 || s.TopRelaisInner[0].Name != "github.com/relais-broker/relais/broker/audit/boltlog.(*Log).commit" {
		t.Errorf("innermost Relais frames: %+v", s.TopRelaisInner)
	}
	if _, err := parseTraces([]byte("File: x\n")); err == nil {
		t.Error("a profile without samples parsed")
	}
}

func TestRotate(t *testing.T) {
	ts := []string{"a", "b", "c"}
	for k, want := range []string{"abc", "bca", "cab", "abc"} {
		if got := strings.Join(rotate(ts, k), ""); got != want {
			t.Errorf("rotate(%d) = %s, want %s", k, got, want)
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"-quick":             "-quick",
		"/tmp/gobin/ghz":     "/tmp/gobin/ghz",
		"agents' builds, ok": `'agents'"'"' builds, ok'`,
		"":                   "''",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
