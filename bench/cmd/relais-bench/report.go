package main

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// sample is one measurement of one target at one concurrency level in
// one round.
type sample struct {
	Round         int
	Target        string
	Level         int
	Calls, Errors int
	Elapsed       time.Duration
	P50, P90, P99 time.Duration
	// CPU is the user+system time of the target's processes by role
	// (roleOwn, roleUpstream, roleStore) over the measurement.
	CPU map[string]time.Duration
}

func (s sample) throughput() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Calls) / s.Elapsed.Seconds()
}

// cpuPerCallUS is role's CPU per successful call, in µs.
func (s sample) cpuPerCallUS(role string) (float64, bool) {
	d, ok := s.CPU[role]
	if !ok || s.Calls == 0 {
		return 0, false
	}
	return float64(d) / 1e3 / float64(s.Calls), true
}

// rssPair is a target's resident memory before the load and after the
// soak at concurrency 64.
type rssPair struct{ Idle, After float64 }

// machine says where the run happened.
type machine struct {
	OS       string  `json:"os"`
	Arch     string  `json:"arch"`
	CPUs     int     `json:"cpus"`
	CPUModel string  `json:"cpu_model"`
	Kernel   string  `json:"kernel"`
	MemMiB   float64 `json:"mem_mib"`
	// Software is the version of each program measured or measuring.
	Software map[string]string `json:"software,omitempty"`
}

// runData is everything one run measured, before any aggregation: the
// JSON and Markdown writers work from it alone, so a unit test can feed
// them a fake one.
type runData struct {
	Command            string
	Started, Finished  time.Time
	Machine            machine
	LoadStart, LoadEnd string
	Note               string
	Quick              bool
	Rounds             int
	Measure, Warmup    time.Duration
	SlowMeasure        time.Duration
	WarmupCalls        int
	Soak               time.Duration
	Levels             []int
	Targets            []string          // in the order of the first round
	Counted            map[string]string // target → what its CPU counts
	Samples            []sample          // the interleaved rounds
	SlowLevels         []int
	Slow               []sample // the 20 ms source: Target slowDirect or slowVia
	Soaks              []sample
	Fsync              []time.Duration
	FsyncDir           string
	RSS                map[string]rssPair
	GHZ                *ghzRun
	Profile            *profileSummary
	// Failures are the measurements that could not be made.
	Failures []string
}

// The two paths of the 20 ms scenario.
const (
	slowDirect = "direct"
	slowVia    = "relais-remote"
)

// stat is a median with its range across rounds.
type stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

func statOf(v []float64) stat {
	if len(v) == 0 {
		return stat{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return stat{Median: round3(m), Min: round3(s[0]), Max: round3(s[len(s)-1]), N: len(s)}
}

func round3(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return math.Round(f*1000) / 1000
}

// check is one of the issue's targets, met or missed.
type check struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Limit float64 `json:"limit"`
	// Higher is true when the value must reach the limit, false when it
	// must stay under it.
	Higher bool   `json:"higher_is_better"`
	Met    bool   `json:"met"`
	Unit   string `json:"unit"`
}

// report is bench/results.json. Levels are keys as strings ("1", "8",
// "64"); every figure across rounds is a median, with its range in the
// *_range or stat fields.
type report struct {
	Command        string            `json:"command"`
	Date           string            `json:"date"`
	Machine        machine           `json:"machine"`
	LoadAverage    string            `json:"load_average"`
	Note           string            `json:"note,omitempty"`
	Quick          bool              `json:"quick"`
	Rounds         int               `json:"rounds"`
	MeasureSeconds float64           `json:"measure_seconds"`
	SlowSeconds    float64           `json:"source_20ms_measure_seconds"`
	WarmupSeconds  float64           `json:"warmup_seconds"`
	WarmupCalls    int               `json:"warmup_calls"`
	SoakSeconds    float64           `json:"soak_seconds"`
	Levels         []int             `json:"levels"`
	Targets        []string          `json:"targets"`
	CPUCounted     map[string]string `json:"cpu_counted"`

	CallsPerSecond map[string]map[string]stat            `json:"calls_per_s"`
	LatencyMS      map[string]map[string]map[string]stat `json:"latency_ms"`
	CPUUSPerCall   map[string]map[string]map[string]stat `json:"cpu_us_per_call"`
	Errors         map[string]map[string]int             `json:"errors"`

	ThroughputRatio      map[string]map[string]float64 `json:"throughput_ratio"`
	ThroughputRatioRange map[string]map[string]stat    `json:"throughput_ratio_range"`

	AddedLatencyMS      map[string]map[string]float64         `json:"added_latency_ms"`
	AddedLatencyRangeMS map[string]map[string]stat            `json:"added_latency_range_ms"`
	Source20msMS        map[string]map[string]map[string]stat `json:"source_20ms_latency_ms"`
	FsyncMS             map[string]float64                    `json:"fsync_ms"`
	FsyncSamples        int                                   `json:"fsync_samples"`
	RSSMiB              map[string]map[string]float64         `json:"rss_mib"`
	IssueTargets        []check                               `json:"issue_targets"`
	GHZ                 *ghzJSON                              `json:"ghz,omitempty"`
	SoakCallsPerSecond  map[string]float64                    `json:"soak_calls_per_s"`
	Failures            []string                              `json:"failures,omitempty"`
	Profile             *profileSummary                       `json:"profile,omitempty"`
}

// ghzJSON is the ghz cross-check in results.json.
type ghzJSON struct {
	Command        string  `json:"command"`
	Target         string  `json:"target"`
	Level          int     `json:"level"`
	CallsPerSecond float64 `json:"calls_per_s"`
	P50MS          float64 `json:"p50_ms"`
	P99MS          float64 `json:"p99_ms"`
	Errors         int     `json:"errors"`
	HarnessCallsS  float64 `json:"harness_calls_per_s"`
	HarnessP50MS   float64 `json:"harness_p50_ms"`
	HarnessP99MS   float64 `json:"harness_p99_ms"`
}

func lv(c int) string { return strconv.Itoa(c) }

func msf(d time.Duration) float64 { return float64(d) / 1e6 }

// find returns the sample of target at level c in round r.
func find(ss []sample, r int, target string, c int) (sample, bool) {
	for _, s := range ss {
		if s.Round == r && s.Target == target && s.Level == c {
			return s, true
		}
	}
	return sample{}, false
}

// ratioPairs are the throughput ratios reported, numerator first.
var ratioPairs = [][2]string{
	{"relais-remote", "nginx"}, {"relais-sandbox", "limit"}, {"nginx", "limit"}, {"relais-remote", "limit"},
	{"relais-postgres", "relais-remote"}, {"relais-sandbox", "relais-remote"},
}

// buildReport aggregates a run: medians and ranges across rounds, the
// ratios of targets measured in the same round, the issue's targets.
func buildReport(d *runData) report {
	r := report{
		Command: d.Command, Date: d.Started.UTC().Format("2006-01-02 15:04 MST"), Machine: d.Machine,
		LoadAverage: strings.TrimSpace(d.LoadStart + " → " + d.LoadEnd), Note: d.Note, Quick: d.Quick,
		Rounds: d.Rounds, MeasureSeconds: d.Measure.Seconds(), SlowSeconds: d.SlowMeasure.Seconds(), WarmupSeconds: d.Warmup.Seconds(), WarmupCalls: d.WarmupCalls, SoakSeconds: d.Soak.Seconds(),
		Levels: d.Levels, Targets: d.Targets, CPUCounted: d.Counted,
		CallsPerSecond: map[string]map[string]stat{}, LatencyMS: map[string]map[string]map[string]stat{},
		CPUUSPerCall: map[string]map[string]map[string]stat{}, Errors: map[string]map[string]int{},
		ThroughputRatio: map[string]map[string]float64{}, ThroughputRatioRange: map[string]map[string]stat{},
		AddedLatencyMS: map[string]map[string]float64{}, AddedLatencyRangeMS: map[string]map[string]stat{},
		Source20msMS: map[string]map[string]map[string]stat{}, FsyncMS: map[string]float64{},
		RSSMiB: map[string]map[string]float64{},
	}
	for _, t := range d.Targets {
		r.CallsPerSecond[t] = map[string]stat{}
		r.LatencyMS[t] = map[string]map[string]stat{}
		r.CPUUSPerCall[t] = map[string]map[string]stat{}
		r.Errors[t] = map[string]int{}
		for _, c := range d.Levels {
			var tp, p50, p90, p99 []float64
			cpu := map[string][]float64{}
			errs := 0
			for _, s := range d.Samples {
				if s.Target != t || s.Level != c {
					continue
				}
				tp = append(tp, s.throughput())
				p50, p90, p99 = append(p50, msf(s.P50)), append(p90, msf(s.P90)), append(p99, msf(s.P99))
				for role := range s.CPU {
					if v, ok := s.cpuPerCallUS(role); ok {
						cpu[role] = append(cpu[role], v)
					}
				}
				errs += s.Errors
			}
			if len(tp) == 0 {
				continue
			}
			r.CallsPerSecond[t][lv(c)] = statOf(tp)
			r.LatencyMS[t][lv(c)] = map[string]stat{"p50": statOf(p50), "p90": statOf(p90), "p99": statOf(p99)}
			r.CPUUSPerCall[t][lv(c)] = map[string]stat{}
			for role, v := range cpu {
				r.CPUUSPerCall[t][lv(c)][role] = statOf(v)
			}
			r.Errors[t][lv(c)] = errs
		}
	}
	for _, p := range ratioPairs {
		key := p[0] + "/" + p[1]
		for _, c := range d.Levels {
			var v []float64
			for round := 1; round <= d.Rounds; round++ {
				a, okA := find(d.Samples, round, p[0], c)
				b, okB := find(d.Samples, round, p[1], c)
				if okA && okB && b.throughput() > 0 {
					v = append(v, a.throughput()/b.throughput())
				}
			}
			if len(v) == 0 {
				continue
			}
			if r.ThroughputRatio[key] == nil {
				r.ThroughputRatio[key], r.ThroughputRatioRange[key] = map[string]float64{}, map[string]stat{}
			}
			st := statOf(v)
			r.ThroughputRatio[key][lv(c)], r.ThroughputRatioRange[key][lv(c)] = st.Median, st
		}
	}
	for _, path := range []string{slowDirect, slowVia} {
		r.Source20msMS[path] = map[string]map[string]stat{}
		for _, c := range d.SlowLevels {
			var p50, p99 []float64
			for _, s := range d.Slow {
				if s.Target == path && s.Level == c {
					p50, p99 = append(p50, msf(s.P50)), append(p99, msf(s.P99))
				}
			}
			if len(p50) > 0 {
				r.Source20msMS[path][lv(c)] = map[string]stat{"p50": statOf(p50), "p99": statOf(p99)}
			}
		}
	}
	for _, q := range []string{"p50", "p99"} {
		r.AddedLatencyMS[q], r.AddedLatencyRangeMS[q] = map[string]float64{}, map[string]stat{}
		for _, c := range d.SlowLevels {
			var v []float64
			for round := 1; round <= d.Rounds; round++ {
				a, okA := find(d.Slow, round, slowVia, c)
				b, okB := find(d.Slow, round, slowDirect, c)
				if !okA || !okB {
					continue
				}
				if q == "p50" {
					v = append(v, msf(a.P50-b.P50))
				} else {
					v = append(v, msf(a.P99-b.P99))
				}
			}
			if len(v) > 0 {
				st := statOf(v)
				r.AddedLatencyMS[q][lv(c)], r.AddedLatencyRangeMS[q][lv(c)] = st.Median, st
			}
		}
	}
	if len(d.Fsync) > 0 {
		f := slices.Clone(d.Fsync)
		slices.Sort(f)
		q := func(p float64) float64 { return round3(msf(f[min(len(f)-1, int(p*float64(len(f))))])) }
		r.FsyncMS = map[string]float64{"p50": q(.5), "p90": q(.9), "p99": q(.99), "max": round3(msf(f[len(f)-1]))}
		r.FsyncSamples = len(f)
	}
	for t, v := range d.RSS {
		r.RSSMiB[t] = map[string]float64{"idle": round3(v.Idle), "after": round3(v.After)}
	}
	r.IssueTargets = issueChecks(r)
	if g := d.GHZ; g != nil {
		r.GHZ = &ghzJSON{Command: g.Command, Target: g.Harness.Target, Level: g.Harness.Level, CallsPerSecond: round3(g.RPS), P50MS: round3(msf(g.P50)), P99MS: round3(msf(g.P99)),
			Errors: g.Errors, HarnessCallsS: round3(g.Harness.throughput()), HarnessP50MS: round3(msf(g.Harness.P50)), HarnessP99MS: round3(msf(g.Harness.P99))}
	}
	r.SoakCallsPerSecond = map[string]float64{}
	for _, s := range d.Soaks {
		r.SoakCallsPerSecond[s.Target] = round3(s.throughput())
	}
	r.Profile = d.Profile
	r.Failures = d.Failures
	return r
}

// issueChecks evaluates the targets of issue 15 from the aggregated
// figures; a target whose figures were not measured is left out.
func issueChecks(r report) []check {
	var out []check
	if v, ok := r.ThroughputRatio["relais-remote/nginx"]["64"]; ok {
		out = append(out, check{Name: "relais-remote / nginx throughput at c=64 (aim 1.0)", Value: v, Limit: 0.8, Higher: true, Met: v >= 0.8, Unit: "×"})
	}
	if v, ok := r.ThroughputRatio["relais-sandbox/limit"]["64"]; ok {
		out = append(out, check{Name: "relais-sandbox / limit throughput at c=64", Value: v, Limit: 0.5, Higher: true, Met: v >= 0.5, Unit: "×"})
	}
	for _, a := range []struct {
		q, c  string
		limit float64
	}{{"p50", "1", 1.0}, {"p99", "1", 2.5}, {"p99", "8", 3.0}} {
		if v, ok := r.AddedLatencyMS[a.q][a.c]; ok {
			out = append(out, check{Name: fmt.Sprintf("added latency over a 20 ms source, c=%s %s", a.c, a.q), Value: v, Limit: a.limit, Met: v <= a.limit, Unit: "ms"})
		}
	}
	if v, ok := r.RSSMiB["relais-remote"]; ok && v["after"] > 0 {
		limit := round3(1.5*v["idle"] + 50)
		out = append(out, check{Name: "relaisd (relais-remote) RSS after the soak at c=64 ≤ 1.5 × idle + 50 MiB", Value: v["after"], Limit: limit, Met: v["after"] <= limit, Unit: "MiB"})
	}
	return out
}

// marshalReport is results.json's bytes.
func marshalReport(r report) ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
