// Command relais-bench measures, in one run on one machine, what Relais
// costs on the critical path compared with a proxy making the same hop:
// the same family-quotient call, the same mTLS, the same Go client and
// the same concurrency against
//
//	limit            a bare grpc-go server answering from memory (the physical reference)
//	nginx            Debian's nginx as an mTLS gRPC reverse proxy (grpc_pass) in front of limit
//	relais-remote    relaisd serve whose source is the remote adapter to the same limit
//	                 server (configured by a sources file): one hop, like nginx
//	relais-sandbox   relaisd serve on the in-process sandbox source (no hop)
//	relais-postgres  relaisd serve on a throwaway PostgreSQL (registry, quotas, audit in
//	                 the database), remote adapter to the same limit server (-postgres)
//	relais-ha1/ha2   replicas on PostgreSQL behind HAProxy, sandbox source (-ha, off by default)
//
// Every target first gets idle RSS read, then a soak at concurrency 64
// (which also warms nginx up) after which RSS is read again; then come
// interleaved rounds: in each round, for each concurrency level, every
// target in turn (the order rotated per round), each measurement a
// warm-up bounded by calls and time and then a measurement of fixed
// duration; the disk's fdatasync floor is probed in every round on the
// audit log's filesystem; a source answering after 20 ms is called
// directly and through relais-remote, alternately. Figures are medians
// across rounds with their ranges. It writes bench/RESULTS.md and
// bench/results.json; every server is a child process it starts and
// stops.
//
//	go run ./bench/cmd/relais-bench                 # full run, about 9 minutes
//	go run ./bench/cmd/relais-bench -quick          # 1 round of 1 s, for development
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/relais-broker/relais/internal/localserver"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "limit-server" {
		if err := runLimitServer(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	var o options
	flag.IntVar(&o.rounds, "rounds", 3, "interleaved rounds (medians and ranges are across rounds)")
	flag.DurationVar(&o.measure, "duration", 5*time.Second, "duration of each measurement, after its warm-up")
	flag.DurationVar(&o.warmup, "warmup", 500*time.Millisecond, "bound in time of each measurement's warm-up")
	flag.IntVar(&o.warmupCalls, "warmup-calls", 3000, "bound in calls of each measurement's warm-up")
	flag.IntVar(&o.maxCalls, "max-calls", 5_000_000, "bound in calls of each measurement (a safety: the duration ends it)")
	levels := flag.String("levels", "1,8,64", "client concurrency levels")
	slowLevels := flag.String("slow-levels", "1,8", "concurrency levels of the 20 ms source scenario")
	flag.DurationVar(&o.slowMeasure, "slow-duration", 8*time.Second, "duration of each measurement of the 20 ms source scenario (longer: ~50 calls/s at c=1)")
	flag.DurationVar(&o.soak, "soak", 30*time.Second, "load at concurrency 64 of each target before the rounds, after which RSS is read")
	flag.IntVar(&o.fsyncSamples, "fsync-samples", 1000, "4 KiB append + fdatasync probes per round")
	flag.BoolVar(&o.postgres, "postgres", true, "measure relais-postgres (needs Debian's postgresql server binaries, or RELAIS_PG_BINDIR)")
	flag.BoolVar(&o.ha, "ha", false, "also measure relais-ha1 and relais-ha2: replicas on PostgreSQL behind HAProxy (needs postgresql and haproxy)")
	flag.StringVar(&o.profile, "cpuprofile", "", "write a CPU profile of relaisd during relais-remote's soak at c=64 to this file, and summarise it in the results")
	flag.StringVar(&o.ghz, "ghz", "", "path of a ghz binary: also measure relais-sandbox at c=64 with ghz, next to the harness")
	flag.BoolVar(&o.quick, "quick", false, "development mode: 1 round, 1 s measurements, 2 s soak, results in /tmp unless -out/-json are given")
	flag.StringVar(&o.out, "out", "bench/RESULTS.md", "Markdown results")
	flag.StringVar(&o.json, "json", "bench/results.json", "machine-readable results")
	flag.StringVar(&o.note, "note", "", "a sentence for the results (e.g. that the machine was shared)")
	flag.BoolVar(&o.keep, "keep", false, "keep the run's directory (logs, data) instead of removing it")
	flag.Parse()
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick {
		for name, apply := range map[string]func(){
			"rounds": func() { o.rounds = 1 }, "duration": func() { o.measure = time.Second }, "slow-duration": func() { o.slowMeasure = time.Second }, "warmup": func() { o.warmup = 200 * time.Millisecond },
			"soak": func() { o.soak = 2 * time.Second }, "fsync-samples": func() { o.fsyncSamples = 200 },
			"out": func() { o.out = filepath.Join(os.TempDir(), "relais-bench-quick.md") }, "json": func() { o.json = filepath.Join(os.TempDir(), "relais-bench-quick.json") },
		} {
			if !set[name] {
				apply()
			}
		}
	}
	var err error
	if o.levels, err = parseLevels(*levels); err == nil {
		o.slowLevels, err = parseLevels(*slowLevels)
	}
	if err == nil && (o.rounds < 1 || o.measure <= 0 || o.slowMeasure <= 0 || o.soak <= 0) {
		err = errors.New("-rounds, -duration, -slow-duration and -soak must be positive")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "relais-bench:", err)
		os.Exit(2)
	}
	o.command = "go run ./bench/cmd/relais-bench"
	for _, a := range os.Args[1:] {
		o.command += " " + shellQuote(a)
	}
	if err := runBench(o); err != nil {
		fmt.Fprintln(os.Stderr, "relais-bench:", err)
		os.Exit(1)
	}
}

// options are the flags.
type options struct {
	rounds, warmupCalls, maxCalls, fsyncSamples int
	measure, slowMeasure, warmup, soak          time.Duration
	levels, slowLevels                          []int
	postgres, ha, quick, keep                   bool
	profile, ghz, out, json, note, command      string
}

// shellQuote quotes a for a POSIX shell when it needs it, so the command
// in the results can be pasted back.
func shellQuote(a string) string {
	if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./:=,@+-") == "" {
		return a
	}
	return "'" + strings.ReplaceAll(a, "'", `'"'"'`) + "'"
}

func parseLevels(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("concurrency levels %q: want positive integers separated by commas", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func runBench(o options) (err error) {
	d := &runData{Command: o.command, Started: time.Now(), Machine: thisMachine(), LoadStart: loadAverage(), Note: o.note, Quick: o.quick,
		Rounds: o.rounds, Measure: o.measure, SlowMeasure: o.slowMeasure, Warmup: o.warmup, WarmupCalls: o.warmupCalls, Soak: o.soak, Levels: o.levels, SlowLevels: o.slowLevels,
		Counted: map[string]string{}, RSS: map[string]rssPair{}}
	e, err := setup(o.keep)
	if e != nil {
		defer e.stop()
	}
	if err != nil {
		return err
	}
	logf("relaisd built; starting the targets")
	limitAddr, limitProc, err := e.startLimit("limit", 0)
	if err != nil {
		return err
	}
	nginxAddr, nginxProc, err := e.startNginx(limitAddr)
	if err != nil {
		return err
	}
	remote, err := e.startRelais("relais-remote", e.remoteSources(limitAddr))
	if err != nil {
		return err
	}
	sandbox, err := e.startRelais("relais-sandbox", sandboxSources)
	if err != nil {
		return err
	}
	own := func(p ...*exec.Cmd) map[string][]*exec.Cmd { return map[string][]*exec.Cmd{roleOwn: p} }
	targets := []target{
		{"limit", limitAddr, own(limitProc)},
		{"nginx", nginxAddr, map[string][]*exec.Cmd{roleOwn: {nginxProc}, roleUpstream: {limitProc}}},
		{"relais-remote", remote.data, map[string][]*exec.Cmd{roleOwn: {remote.cmd}, roleUpstream: {limitProc}}},
		{"relais-sandbox", sandbox.data, own(sandbox.cmd)},
	}
	d.Counted["limit"] = "own: the limit server"
	d.Counted["nginx"] = "own: nginx (master and workers); upstream: the limit server"
	d.Counted["relais-remote"] = "own: relaisd only; upstream: the limit server"
	d.Counted["relais-sandbox"] = "own: relaisd (the sandbox runs inside it)"
	if o.postgres {
		t, err := e.startRelaisPostgres(limitAddr, limitProc)
		if err != nil {
			return fmt.Errorf("relais-postgres (-postgres=false to skip it): %w", err)
		}
		targets = append(targets, t)
		d.Counted["relais-postgres"] = "own: relaisd only; upstream: the limit server; store: PostgreSQL (postmaster and backends)"
	}
	if o.ha {
		ts, err := e.startHA(2, []int{1, 2})
		if err != nil {
			return fmt.Errorf("relais-ha targets (-ha=false to skip them): %w", err)
		}
		targets = append(targets, ts...)
		d.Counted["relais-ha1"] = "own: the replica and HAProxy; store: PostgreSQL"
		d.Counted["relais-ha2"] = "own: both replicas and HAProxy; store: PostgreSQL"
	}
	slowAddr, slowProc, err := e.startLimit("limit-20ms", 20*time.Millisecond)
	if err != nil {
		return err
	}
	via, err := e.startRelais("relais-20ms", e.remoteSources(slowAddr))
	if err != nil {
		return err
	}
	slowTargets := []target{
		{slowDirect, slowAddr, own(slowProc)},
		{slowVia, via.data, map[string][]*exec.Cmd{roleOwn: {via.cmd}, roleUpstream: {slowProc}}},
	}
	for _, t := range targets {
		d.Targets = append(d.Targets, t.name)
		d.RSS[t.name] = rssPair{Idle: rssOf(t.procs[roleOwn])}
	}
	ph := phase{warmup: o.warmup, warmupCalls: o.warmupCalls, duration: o.measure, maxCalls: o.maxCalls}
	fail := func(what string, err error) {
		msg := fmt.Sprintf("%s: %v", what, err)
		d.Failures = append(d.Failures, msg)
		logf("FAILED %s", msg)
	}

	// Soak: concurrency 64 for o.soak per target (nginx's warm-up too),
	// then RSS; the profile is taken during relais-remote's.
	for _, t := range targets {
		soak := ph
		soak.duration = o.soak
		var profDone chan error
		if t.name == "relais-remote" && o.profile != "" {
			secs := max(1, int((o.soak - 2*time.Second).Seconds()))
			soak.onStart = func() {
				profDone = make(chan error, 1)
				go func() { profDone <- captureProfile(remote.ops, secs, o.profile) }()
			}
			d.Profile = &profileSummary{Target: t.name, Level: 64, Seconds: secs}
		}
		s, err := e.measure(t, 64, soak)
		if profDone != nil {
			if perr := <-profDone; perr != nil {
				fail("cpu profile", perr)
				d.Profile = nil
			}
		}
		if err != nil {
			fail(fmt.Sprintf("soak of %s", t.name), err)
			continue
		}
		d.Soaks = append(d.Soaks, s)
		p := d.RSS[t.name]
		p.After = rssOf(t.procs[roleOwn])
		d.RSS[t.name] = p
		logf("soak %-15s c=64 %8.0f calls/s  RSS %.0f → %.0f MiB", t.name, s.throughput(), p.Idle, p.After)
	}

	for r := 1; r <= o.rounds; r++ {
		if fs, err := fsyncProbe(remote.dataDir, o.fsyncSamples); err != nil {
			fail("fsync probe", err)
		} else {
			d.Fsync = append(d.Fsync, fs...)
			d.FsyncDir = remote.dataDir
		}
		for _, c := range o.levels {
			for _, t := range rotate(targets, r-1) {
				s, err := e.measure(t, c, ph)
				if err != nil {
					fail(fmt.Sprintf("round %d, %s at c=%d", r, t.name, c), err)
					continue
				}
				s.Round = r
				d.Samples = append(d.Samples, s)
				own, _ := s.cpuPerCallUS(roleOwn)
				logf("round %d %-15s c=%-3d %8.0f calls/s  p50 %6.2f ms  p99 %6.2f ms  own CPU %4.0f µs/call  errors %d", r, t.name, c, s.throughput(), msf(s.P50), msf(s.P99), own, s.Errors)
			}
		}
		slow := ph
		slow.duration = o.slowMeasure
		for _, c := range o.slowLevels {
			for _, t := range rotate(slowTargets, r-1) {
				s, err := e.measure(t, c, slow)
				if err != nil {
					fail(fmt.Sprintf("round %d, 20 ms source %s at c=%d", r, t.name, c), err)
					continue
				}
				s.Round = r
				d.Slow = append(d.Slow, s)
				logf("round %d 20ms/%-13s c=%-3d p50 %6.2f ms  p99 %6.2f ms", r, t.name, c, msf(s.P50), msf(s.P99))
			}
		}
	}

	if o.ghz != "" {
		t := targets[slices.IndexFunc(targets, func(t target) bool { return t.name == "relais-sandbox" })]
		if h, err := e.measure(t, 64, ph); err != nil {
			fail("harness next to ghz", err)
		} else if g, err := e.runGHZ(o.ghz, t, 64, o.measure); err != nil {
			fail("ghz", err)
		} else {
			g.Harness = h
			d.GHZ = g
			if v := ghzVersion(o.ghz); v != "" {
				d.Machine.Software["ghz"] = v
			}
			logf("ghz %s c=64 %.0f calls/s (harness just before: %.0f)", t.name, g.RPS, h.throughput())
		}
	}
	if d.Profile != nil {
		ps, err := summariseProfile(o.profile)
		if err != nil {
			fail("profile summary", err)
			d.Profile = nil
		} else {
			ps.Target, ps.Level, ps.Seconds = d.Profile.Target, d.Profile.Level, d.Profile.Seconds
			d.Profile = ps
		}
	}
	d.Finished, d.LoadEnd = time.Now(), loadAverage()
	rep := buildReport(d)
	raw, err := marshalReport(rep)
	if err != nil {
		return err
	}
	if err := os.WriteFile(o.json, raw, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(o.out, []byte(writeMarkdown(d, rep)), 0o644); err != nil {
		return err
	}
	logf("wrote %s and %s (%s)", o.out, o.json, time.Since(d.Started).Round(time.Second))
	if len(d.Failures) > 0 {
		return fmt.Errorf("%d measurement(s) failed, see the results", len(d.Failures))
	}
	return nil
}

// rotate is ts started at index k (mod len): each round starts with
// another target.
func rotate[T any](ts []T, k int) []T {
	k %= len(ts)
	return append(append([]T{}, ts[k:]...), ts[:k]...)
}

func thisMachine() machine {
	m := machine{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), CPUModel: "unknown CPU"}
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if strings.HasPrefix(line, "model name") {
				m.CPUModel = strings.TrimSpace(strings.SplitN(line, ":", 2)[1])
				break
			}
		}
	}
	if raw, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(raw))
	}
	if raw, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				m.MemMiB = round3(kb / 1024)
			}
		}
	}
	m.Software = map[string]string{"go": strings.TrimPrefix(runtime.Version(), "go")}
	if out, err := exec.Command("nginx", "-v").CombinedOutput(); err == nil {
		m.Software["nginx"] = strings.TrimPrefix(strings.TrimSpace(string(out)), "nginx version: nginx/")
	}
	if bin := localserver.PostgresBinDir(); bin != "" {
		if out, err := exec.Command(filepath.Join(bin, "postgres"), "--version").Output(); err == nil {
			m.Software["postgres"] = strings.TrimPrefix(strings.TrimSpace(string(out)), "postgres (PostgreSQL) ")
		}
	}
	return m
}

// ghzVersion is the module version ghz was built from.
func ghzVersion(bin string) string {
	out, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "mod" && f[1] == "github.com/bojand/ghz" {
			return f[2]
		}
	}
	return ""
}

// loadAverage is the first three fields of /proc/loadavg.
func loadAverage() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(raw))
	return strings.Join(f[:min(3, len(f))], " ")
}
