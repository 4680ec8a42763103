package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// captureProfile fetches a CPU profile of seconds from a relaisd's
// operations listener (pprof is on with RELAIS_PPROF=1) into path.
func captureProfile(opsAddr string, seconds int, path string) error {
	client := &http.Client{Timeout: time.Duration(seconds+30) * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", opsAddr, seconds))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// share is a part of the profile's samples.
type share struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
	Percent float64 `json:"percent"`
}

// profileSummary is what the harness reads from a CPU profile: where
// relaisd's CPU goes, by area (inclusive: a sample counts in every area
// one of its frames belongs to), the top functions by self time, the
// broker's own functions by cumulative time and by innermost frame.
type profileSummary struct {
	Path       string  `json:"path"`
	Target     string  `json:"target"`
	Level      int     `json:"level"`
	Seconds    int     `json:"seconds"`
	Total      float64 `json:"total_cpu_seconds"`
	Areas      []share `json:"areas"`
	TopFlat    []share `json:"top_self"`
	TopRelaisC []share `json:"top_relais_cumulative"`
	// TopRelaisInner charges every sample to its innermost frame in
	// Relais code: which broker function's own work, libraries included,
	// the CPU goes to.
	TopRelaisInner []share `json:"top_relais_innermost"`
}

// trace is one distinct stack of the profile with its CPU time.
type trace struct {
	value  time.Duration
	frames []string // leaf first
}

// area is a part of the code, matched on function names.
type area struct {
	name string
	re   *regexp.Regexp
	// nearest, when set, must be the first of near's patterns met going
	// up the stack from the leaf (which stage called the code).
	nearest int
	near    []*regexp.Regexp
	// not, when set, excludes the samples that also match it.
	not *regexp.Regexp
}

const relaisPkg = "github.com/relais-broker/relais/"

var validationRE = regexp.MustCompile(`buf\.build/go/protovalidate|cel\.dev/|github\.com/google/cel-go|broker/fastvalid`)

// stages are the broker's request-validation and fetch stages: the
// nearest of them above a validation frame says whose validation it is
// (the fetch stage runs inside the validate stage's call).
var stages = []*regexp.Regexp{regexp.MustCompile(`relais/broker\.\(\*Broker\)\.validate$`), regexp.MustCompile(`relais/broker\.\(\*Broker\)\.fetch$`)}

var areas = []area{
	{name: "validation (protovalidate, CEL, or generated checks)", re: validationRE},
	{name: "  of which the request's (nearest stage broker.(*Broker).validate)", re: validationRE, nearest: 0, near: stages},
	{name: "  of which the response's (nearest stage broker.(*Broker).fetch)", re: validationRE, nearest: 1, near: stages},
	{name: "gRPC and HTTP/2, outside Relais code (transport)", re: regexp.MustCompile(`google\.golang\.org/grpc|golang\.org/x/net/http2`), not: regexp.MustCompile(regexp.QuoteMeta(relaisPkg))},
	{name: "TLS (crypto/tls: handshakes, record encryption)", re: regexp.MustCompile(`^crypto/tls\.`)},
	{name: "malloc and GC (runtime.mallocgc, GC workers and assists)", re: regexp.MustCompile(`^runtime\.(mallocgc|gcBgMarkWorker|gcAssistAlloc|bgsweep|bgscavenge)`)},
	{name: "audit (broker/audit: seal, storage, commit)", re: regexp.MustCompile(`relais/broker/audit`)},
	{name: "  of which bbolt", re: regexp.MustCompile(`go\.etcd\.io/bbolt`)},
	{name: "  of which fdatasync/fsync", re: regexp.MustCompile(`(syscall|unix)\.(Fdatasync|Fsync)`)},
	{name: "remote adapter (adapters/remote)", re: regexp.MustCompile(`relais/adapters/remote`)},
	{name: "sandbox adapter (adapters/sandbox)", re: regexp.MustCompile(`relais/adapters/sandbox`)},
	{name: "subject pseudonym (broker/subject)", re: regexp.MustCompile(`relais/broker/subject`)},
	{name: "minimisation (broker/minimise)", re: regexp.MustCompile(`relais/broker/minimise`)},
	{name: "logging (log/slog)", re: regexp.MustCompile(`^log/slog\.`)},
	{name: "encoding/json", re: regexp.MustCompile(`^encoding/json\.`)},
	{name: "protobuf marshal/unmarshal", re: regexp.MustCompile(`google\.golang\.org/protobuf/internal/impl\.|google\.golang\.org/protobuf/proto\.`)},
	{name: "PostgreSQL driver (pgx)", re: regexp.MustCompile(`github\.com/jackc/pgx`)},
}

// summariseProfile reads the profile with `go tool pprof -traces`.
func summariseProfile(path string) (*profileSummary, error) {
	out, err := exec.Command("go", "tool", "pprof", "-traces", path).Output()
	if err != nil {
		return nil, fmt.Errorf("go tool pprof -traces: %w", err)
	}
	traces, err := parseTraces(out)
	if err != nil {
		return nil, err
	}
	s := summarise(traces)
	s.Path = path
	return s, nil
}

// parseTraces reads pprof's -traces text: blocks between separator
// lines, each a value then the frames, leaf first; the value is in the
// first 10 columns of the block's first frame line.
func parseTraces(out []byte) ([]trace, error) {
	var traces []trace
	var cur *trace
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "-----------+") {
			if cur != nil && len(cur.frames) > 0 {
				traces = append(traces, *cur)
			}
			cur = &trace{}
			continue
		}
		if cur == nil || len(line) < 13 {
			continue
		}
		head, name := line[:10], strings.TrimSpace(line[13:])
		if strings.Contains(line[:12], ":") { // a label line
			continue
		}
		name = strings.TrimSuffix(name, " (inline)")
		if v := strings.TrimSpace(head); v != "" {
			d, err := parseValue(v)
			if err != nil {
				return nil, err
			}
			cur.value = d
		}
		cur.frames = append(cur.frames, name)
	}
	if cur != nil && len(cur.frames) > 0 {
		traces = append(traces, *cur)
	}
	if len(traces) == 0 {
		return nil, fmt.Errorf("no sample in the profile")
	}
	return traces, sc.Err()
}

// parseValue reads pprof's scaled durations: 10ms, 1.20s, 2.50mins, 1hrs.
func parseValue(v string) (time.Duration, error) {
	for suffix, unit := range map[string]time.Duration{"mins": time.Minute, "hrs": time.Hour} {
		if f, ok := strings.CutSuffix(v, suffix); ok {
			x, err := strconv.ParseFloat(f, 64)
			return time.Duration(x * float64(unit)), err
		}
	}
	return time.ParseDuration(v)
}

// nearestOf is the index of the first pattern matched going up frames
// from the leaf, or -1.
func nearestOf(frames []string, res []*regexp.Regexp) int {
	for _, f := range frames {
		for i, re := range res {
			if re.MatchString(f) {
				return i
			}
		}
	}
	return -1
}

func summarise(traces []trace) *profileSummary {
	var total time.Duration
	flat, cum, inner := map[string]time.Duration{}, map[string]time.Duration{}, map[string]time.Duration{}
	byArea := make([]time.Duration, len(areas))
	for _, t := range traces {
		total += t.value
		flat[t.frames[0]] += t.value
		if i := slices.IndexFunc(t.frames, func(f string) bool { return strings.HasPrefix(f, relaisPkg) }); i >= 0 {
			inner[t.frames[i]] += t.value
		}
		seen := map[string]bool{}
		for _, f := range t.frames {
			if !seen[f] {
				seen[f] = true
				cum[f] += t.value
			}
		}
		for i, a := range areas {
			match, excluded := false, false
			for _, f := range t.frames {
				match = match || a.re.MatchString(f)
				excluded = excluded || (a.not != nil && a.not.MatchString(f))
			}
			if a.near != nil && match {
				match = nearestOf(t.frames, a.near) == a.nearest
			}
			if match && !excluded {
				byArea[i] += t.value
			}
		}
	}
	pct := func(d time.Duration) float64 { return round3(100 * float64(d) / float64(total)) }
	s := &profileSummary{Total: round3(total.Seconds())}
	for i, a := range areas {
		s.Areas = append(s.Areas, share{Name: a.name, Seconds: round3(byArea[i].Seconds()), Percent: pct(byArea[i])})
	}
	top := func(m map[string]time.Duration, keep func(string) bool, n int) []share {
		var out []share
		for name, d := range m {
			if keep(name) {
				out = append(out, share{Name: name, Seconds: round3(d.Seconds()), Percent: pct(d)})
			}
		}
		slices.SortFunc(out, func(a, b share) int {
			if a.Seconds != b.Seconds {
				if a.Seconds > b.Seconds {
					return -1
				}
				return 1
			}
			return strings.Compare(a.Name, b.Name)
		})
		return out[:min(n, len(out))]
	}
	s.TopFlat = top(flat, func(string) bool { return true }, 15)
	s.TopRelaisC = top(cum, func(n string) bool { return strings.HasPrefix(n, relaisPkg) }, 10)
	s.TopRelaisInner = top(inner, func(string) bool { return true }, 15)
	return s
}
