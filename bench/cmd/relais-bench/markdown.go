package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// fmtStat writes a median with its range: "2704 (2650–2790)"; with one
// round, the value alone.
func fmtStat(s stat, format string) string {
	if s.N == 0 {
		return "—"
	}
	if s.N == 1 || s.Min == s.Max {
		return fmt.Sprintf(format, s.Median)
	}
	return fmt.Sprintf(format+" ("+format+"–"+format+")", s.Median, s.Min, s.Max)
}

func metWord(c check) string {
	if c.Met {
		return "**met**"
	}
	return "**missed**"
}

// writeMarkdown is bench/RESULTS.md: the command, the machine and the
// date, the issue's targets met or missed, then the tables.
func writeMarkdown(d *runData, r report) string {
	var b strings.Builder
	b.WriteString("# Relais performance\n\n")
	fmt.Fprintf(&b, "`%s` — %s, %d cores (%s), kernel %s, %.0f MiB; %s, %.0f min; load average %s.\n\n",
		r.Command, r.Machine.OS+"/"+r.Machine.Arch, r.Machine.CPUs, r.Machine.CPUModel, r.Machine.Kernel, r.Machine.MemMiB, r.Date,
		d.Finished.Sub(d.Started).Minutes(), r.LoadAverage)
	if len(r.Machine.Software) > 0 {
		var sw []string
		for _, k := range sortedKeys(r.Machine.Software) {
			sw = append(sw, k+" "+r.Machine.Software[k])
		}
		fmt.Fprintf(&b, "Software: %s.\n\n", strings.Join(sw, ", "))
	}
	if r.Quick {
		b.WriteString("**Quick mode** (development): one short round; the figures are indicative only.\n\n")
	}
	if f := strings.Fields(d.LoadStart); len(f) > 0 && r.Machine.CPUs > 0 {
		if l, err := strconv.ParseFloat(f[0], 64); err == nil && l > 0.3*float64(r.Machine.CPUs) {
			fmt.Fprintf(&b, "The machine was not idle when the run started (1-minute load average %.2f on %d cores): other jobs shared it, so compare the rows of this run with each other rather than with other runs.\n\n", l, r.Machine.CPUs)
		}
	}
	if r.Note != "" {
		fmt.Fprintf(&b, "%s\n\n", r.Note)
	}
	b.WriteString("Every target answers the same family-quotient call (a fictitious subject) over the same mTLS (ECDSA P-256 certificates from one dev CA, TLS 1.3) from the same Go client (min(c, 8) HTTP/2 connections) on loopback, the client sharing the machine's cores with the servers: the figures compare the targets with each other, not with other hardware. ")
	b.WriteString("`limit` is a bare grpc-go server answering from memory; `nginx` proxies to it with `grpc_pass` (mTLS both sides, upstream keepalive); `relais-remote` is `relaisd serve` whose source is the remote adapter to the **same** limit server (configured in a sources file, mTLS), so nginx and relais-remote both make one hop; `relais-sandbox` is relaisd on the in-process sandbox (no hop); `relais-postgres` is relaisd on a throwaway PostgreSQL (fsync and synchronous commit on) with the remote adapter, the same hop as relais-remote. Every relaisd makes each audit record durable before answering.\n\n")
	fmt.Fprintf(&b, "Method: each target's RSS is read idle, then the target is loaded at c=64 for %.0f s (which also warms nginx up) and its RSS read again. Then %d interleaved round(s): in each, for each concurrency level, every target in turn, the order rotated per round; each measurement is a warm-up (at most %.1f s or %d calls, not counted) followed by %.0f s of load. Figures are medians across rounds with the range (min–max) in brackets; ratios are computed within each round, then their median taken. CPU per call is utime+stime from /proc/PID/stat (children included) over the measurement, divided by the successful calls.\n\n",
		r.SoakSeconds, r.Rounds, r.WarmupSeconds, r.WarmupCalls, r.MeasureSeconds)

	b.WriteString("## Against the targets of issue 15\n\n")
	if len(r.IssueTargets) == 0 {
		b.WriteString("Not enough was measured to judge any target.\n\n")
	}
	for _, c := range r.IssueTargets {
		op := "≤"
		if c.Higher {
			op = "≥"
		}
		fmt.Fprintf(&b, "- %s: %.2f %s (target %s %.2f %s) — %s\n", c.Name, c.Value, c.Unit, op, c.Limit, c.Unit, metWord(c))
	}
	if len(r.FsyncMS) > 0 {
		fmt.Fprintf(&b, "- The disk's floor in this run (4 KiB append + fdatasync on the audit log's filesystem, %d samples across the rounds): **p50 %.2f ms, p99 %.2f ms**.\n", r.FsyncSamples, r.FsyncMS["p50"], r.FsyncMS["p99"])
	}
	b.WriteString("\n## Throughput, latency and CPU per call\n\n")
	b.WriteString("| target | c | calls/s | p50 (ms) | p99 (ms) | own CPU/call (µs) | upstream CPU/call (µs) | store CPU/call (µs) | errors |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, t := range r.Targets {
		for _, c := range r.Levels {
			tp, ok := r.CallsPerSecond[t][lv(c)]
			if !ok {
				fmt.Fprintf(&b, "| %s | %d | not measured | | | | | | |\n", t, c)
				continue
			}
			l := r.LatencyMS[t][lv(c)]
			cpu := r.CPUUSPerCall[t][lv(c)]
			fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %d |\n", t, c, fmtStat(tp, "%.0f"), fmtStat(l["p50"], "%.2f"), fmtStat(l["p99"], "%.2f"),
				fmtStat(cpu[roleOwn], "%.0f"), fmtStat(cpu[roleUpstream], "%.0f"), fmtStat(cpu[roleStore], "%.0f"), r.Errors[t][lv(c)])
		}
	}
	b.WriteString("\nWhat each target's CPU counts:\n\n")
	for _, t := range r.Targets {
		fmt.Fprintf(&b, "- `%s`: %s\n", t, r.CPUCounted[t])
	}
	b.WriteString("\n## Throughput ratios (same round, then the median)\n\n| ratio |")
	for _, c := range r.Levels {
		fmt.Fprintf(&b, " c=%d |", c)
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(r.Levels)) + "\n")
	for _, p := range ratioPairs {
		key := p[0] + "/" + p[1]
		if _, ok := r.ThroughputRatioRange[key]; !ok {
			continue
		}
		fmt.Fprintf(&b, "| %s |", key)
		for _, c := range r.Levels {
			fmt.Fprintf(&b, " %s |", fmtStat(r.ThroughputRatioRange[key][lv(c)], "%.2f"))
		}
		b.WriteString("\n")
	}

	b.WriteString("\n## Memory\n\n| target | RSS idle (MiB) | RSS after the soak at c=64 (MiB) | calls/s during the soak |\n|---|---|---|---|\n")
	for _, t := range r.Targets {
		if v, ok := r.RSSMiB[t]; ok {
			fmt.Fprintf(&b, "| %s | %.1f | %.1f | %.0f |\n", t, v["idle"], v["after"], r.SoakCallsPerSecond[t])
		}
	}
	b.WriteString("\nRSS is VmRSS of the target's own processes (for relais-remote and relais-postgres: relaisd only).\n")

	fmt.Fprintf(&b, "\n## A source that takes 20 ms\n\nA limit server answering after 20 ms, called directly and through relais-remote (a relaisd of its own, remote adapter to that server), alternately in every round, %.0f s each after the warm-up:\n\n", r.SlowSeconds)
	b.WriteString("| c | path | p50 (ms) | p99 (ms) |\n|---|---|---|---|\n")
	for _, c := range sortedInts(d.SlowLevels) {
		for _, path := range []string{slowDirect, slowVia} {
			if v, ok := r.Source20msMS[path][lv(c)]; ok {
				fmt.Fprintf(&b, "| %d | %s | %s | %s |\n", c, path, fmtStat(v["p50"], "%.2f"), fmtStat(v["p99"], "%.2f"))
			}
		}
		if _, ok := r.AddedLatencyMS["p50"][lv(c)]; ok {
			fmt.Fprintf(&b, "| %d | **added by relais** | **%s** | **%s** |\n", c, fmtStat(r.AddedLatencyRangeMS["p50"][lv(c)], "%.2f"), fmtStat(r.AddedLatencyRangeMS["p99"][lv(c)], "%.2f"))
		}
	}
	b.WriteString("\nAdded latency is relais-remote minus direct, per round, then the median.\n")

	if len(r.FsyncMS) > 0 {
		fmt.Fprintf(&b, "\n## The disk's fdatasync floor\n\n4 KiB append + fdatasync, %d samples (a batch at the start of every round, while no load runs), in the data directory of relais-remote (the audit log's filesystem): p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms. No durable answer can be faster than one of these.\n",
			r.FsyncSamples, r.FsyncMS["p50"], r.FsyncMS["p90"], r.FsyncMS["p99"], r.FsyncMS["max"])
	}
	if g := r.GHZ; g != nil {
		b.WriteString("\n## Cross-check with ghz\n\n")
		fmt.Fprintf(&b, "The same row measured with [ghz](https://ghz.sh) right after the harness measured it (same request, certificates, concurrency and connections):\n\n| tool | target | c | calls/s | p50 (ms) | p99 (ms) | errors |\n|---|---|---|---|---|---|---|\n")
		fmt.Fprintf(&b, "| relais-bench | %s | %d | %.0f | %.2f | %.2f | |\n| ghz | %s | %d | %.0f | %.2f | %.2f | %d |\n\n", g.Target, g.Level, g.HarnessCallsS, g.HarnessP50MS, g.HarnessP99MS, g.Target, g.Level, g.CallsPerSecond, g.P50MS, g.P99MS, g.Errors)
		fmt.Fprintf(&b, "```\n%s\n```\n", g.Command)
	}
	if p := r.Profile; p != nil {
		fmt.Fprintf(&b, "\n## Where relaisd's CPU goes (%s, c=%d)\n\n", p.Target, p.Level)
		fmt.Fprintf(&b, "A %d s CPU profile of relaisd during its soak (`-cpuprofile`), %.2f s of CPU. Areas are inclusive (a sample counts in every area one of its frames belongs to), so they overlap.\n\n| area | share |\n|---|---|\n", p.Seconds, p.Total)
		for _, a := range p.Areas {
			fmt.Fprintf(&b, "| %s | %.1f %% |\n", a.Name, a.Percent)
		}
		b.WriteString("\nTop functions by self time:\n\n| function | self |\n|---|---|\n")
		for _, a := range p.TopFlat {
			fmt.Fprintf(&b, "| `%s` | %.1f %% |\n", a.Name, a.Percent)
		}
		b.WriteString("\nEach sample charged to its innermost frame in Relais code (that function's own work and the libraries it calls; the rest has no Relais frame: transport, GC, runtime):\n\n| Relais function | share |\n|---|---|\n")
		for _, a := range p.TopRelaisInner {
			fmt.Fprintf(&b, "| `%s` | %.1f %% |\n", strings.TrimPrefix(a.Name, relaisPkg), a.Percent)
		}
	}
	if len(r.Failures) > 0 {
		b.WriteString("\n## Not measured\n\n")
		for _, f := range r.Failures {
			fmt.Fprintf(&b, "- %s\n", f)
		}
	}
	b.WriteString("\nThe same figures, machine-readable, are in the JSON file written next to this one (bench/results.json) (`throughput_ratio`, `added_latency_ms`, `fsync_ms`, `rss_mib`, `calls_per_s`, `latency_ms`, `cpu_us_per_call`, `issue_targets`).\n")
	return b.String()
}

// sortedInts is a sorted copy.
func sortedInts(v []int) []int {
	l := slices.Clone(v)
	slices.Sort(l)
	return l
}

func sortedKeys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
