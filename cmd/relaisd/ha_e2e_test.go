package main_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/relais-broker/relais/internal/haproxytest"
	"github.com/relais-broker/relais/internal/pgtest"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
)

// These tests are the acceptance of issue 14 with real processes: a real
// PostgreSQL cluster (internal/pgtest), three `relaisd dev --postgres`
// replicas on one database, HAProxy in TCP mode in front of them
// (internal/haproxytest), relaisctl as the operator runs it, and a Go
// gRPC client with the demo CA's credentials. The audit records are read
// back from PostgreSQL as its admin, by the request id each response
// carries (x-request-id).

// haProxyOpts are HAProxy's checks in these tests: a replica is DOWN
// after fall×inter = 400 ms of failed /readyz, UP after two good ones.
var haProxyOpts = haproxytest.Options{Inter: 200 * time.Millisecond, Fall: 2, Rise: 2}

// haDrain is the replicas' --drain-period in the rolling restart: longer
// than HAProxy's fall×inter, so HAProxy stops routing to a replica before
// it stops serving.
const haDrain = 1500 * time.Millisecond

// TestHAThreeReplicasShareOneInstallation runs what needs three quiet
// replicas and no balancer: the citizen report across replicas, the
// propagation of registry changes, and a daily cap shared by all.
func TestHAThreeReplicasShareOneInstallation(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Shared(t).NewDatabase(t)
	start := time.Now()
	var prop, capped haConsumer
	rs := haStartReplicas(t, dsn, 3, 0, func(a *haReplica) {
		prop = haAddConsumer(t, a, haSIRET(t, "2199000030000"), 0)
		capped = haAddConsumer(t, a, haSIRET(t, "2199000040000"), 100)
	})
	t.Logf("3 replicas up in %s", time.Since(start).Round(time.Millisecond))
	t.Run("SubjectReportSeesEveryReplica", func(t *testing.T) { haSubjectReport(t, dsn, rs) })
	t.Run("ChangesEnforcedEverywhere", func(t *testing.T) { haPropagation(t, rs, prop) })
	t.Run("DailyCapExactAcrossReplicas", func(t *testing.T) { haDailyCap(t, dsn, rs, capped) })
}

// haSubjectReport: Zoé is served 1, 2 and 3 times by replicas A, B and
// C; the citizen report asked of any replica lists the 6 accesses (a
// replica's records missing would make it 5, 4 or 3).
func haSubjectReport(t *testing.T, dsn string, rs []*haReplica) {
	demo := rs[0].consumerDir("mairie-exemple")
	var ids []string
	for i, r := range rs {
		conn := haDial(t, r.data, demo, rs[0].caFile())
		for n := 0; n <= i; n++ {
			res := haCall(conn, zoeIdentity(), fmt.Sprintf("HA-SUBJECT-%d", n), 10*time.Second)
			if !res.ok() {
				t.Fatalf("call %d to %s: %s %s", n, r.id, res.code, res.reason)
			}
			ids = append(ids, res.requestID)
		}
	}
	recs := haAuditByRequest(t, dsn)
	perChain := map[string]int{}
	for _, id := range ids {
		perChain[recs[id].chain]++
	}
	if perChain["dev-1"] != 1 || perChain["dev-2"] != 2 || perChain["dev-3"] != 3 {
		t.Fatalf("the calls are not recorded 1, 2, 3 in the chains of dev-1, dev-2, dev-3: %v", perChain)
	}
	for _, r := range rs {
		out := haMustCtl(t, r, "audit", "subject", "--birth-name", "DUPONT", "--given-names", "Zoé", "--sex", "F",
			"--birth-date", "1984-03-12", "--birth-place", "75056", "-o", "json")
		var resp struct {
			Accesses []struct {
				ConsumerSiret string `json:"consumer_siret"`
				Code          string `json:"code"`
			} `json:"accesses"`
		}
		if err := json.Unmarshal([]byte(out), &resp); err != nil {
			t.Fatalf("audit subject on %s: %v\n%s", r.id, err, out)
		}
		ok := 0
		for _, a := range resp.Accesses {
			if a.ConsumerSiret == haRecipient && a.Code == "OK" {
				ok++
			}
		}
		if ok != len(ids) {
			t.Errorf("audit subject asked of %s lists %d OK accesses, want %d (1 on dev-1, 2 on dev-2, 3 on dev-3):\n%s", r.id, ok, len(ids), out)
		}
	}
	t.Logf("relaisctl audit subject on each replica lists the %d accesses served by dev-1, dev-2 and dev-3 (%v)", len(ids), perChain)
}

// haChange is one registry change made through replica A's admin API and
// the answer that shows it enforced.
type haChange struct {
	name  string
	run   func() // the relaisctl command(s); fails t
	conns func() (b, c *grpc.ClientConn)
	// before and after recognise the answer before and after the change.
	before, after func(haResult) bool
}

// haPropagation makes ≥ 20 changes through replica A (suspend, resume,
// grant revoke, grant add, credential revoke) and after each calls B and
// C directly until they enforce it. The delay runs from the start of the
// relaisctl command (before the commit, so the delay is an upper bound)
// to the first answer showing the change; p99 must stay under 1 s.
func haPropagation(t *testing.T, rs []*haReplica, p haConsumer) {
	a, b, c := rs[0], rs[1], rs[2]
	subjects := haSubjects()
	ca := a.caFile()
	conns := map[string][2]*grpc.ClientConn{}
	connsOf := func(dir string) (*grpc.ClientConn, *grpc.ClientConn) {
		if cc, ok := conns[dir]; ok {
			return cc[0], cc[1]
		}
		cc := [2]*grpc.ClientConn{haDial(t, b.data, dir, ca), haDial(t, c.data, dir, ca)}
		conns[dir] = cc
		return cc[0], cc[1]
	}
	ofP := func() (*grpc.ClientConn, *grpc.ClientConn) { return connsOf(p.dir) }
	ok := func(r haResult) bool { return r.ok() }
	refused := func(reason string) func(haResult) bool {
		return func(r haResult) bool { return r.reason == reason }
	}
	grant := p.grant
	var changes []haChange
	for round := 0; round < 5; round++ {
		changes = append(changes,
			haChange{name: "consumer suspend", conns: ofP, before: ok, after: refused("consumer_suspended"),
				run: func() { haMustCtl(t, a, "consumers", "suspend", p.siret, "--reason", "ha test") }},
			haChange{name: "consumer resume", conns: ofP, before: refused("consumer_suspended"), after: ok,
				run: func() { haMustCtl(t, a, "consumers", "resume", p.siret, "--reason", "ha test") }},
			haChange{name: "grant revoke", conns: ofP, before: ok, after: refused("no_grant"),
				run: func() { haMustCtl(t, a, "grants", "revoke", grant, "--reason", "ha test") }},
			haChange{name: "grant add", conns: ofP, before: refused("no_grant"), after: ok,
				run: func() { grant = haAddGrant(t, a, p.siret, 0) }},
		)
		var cred string
		changes = append(changes, haChange{name: "credential revoke", before: ok, after: refused("credential_revoked"),
			conns: func() (*grpc.ClientConn, *grpc.ClientConn) {
				cred = haIssueCredential(t, a, p.siret)
				return connsOf(cred)
			},
			run: func() {
				serial, err := os.ReadFile(filepath.Join(cred, "serial"))
				if err != nil {
					t.Fatal(err)
				}
				haMustCtl(t, a, "credentials", "revoke", string(serial), "--reason", "ha test")
			}})
	}
	var fromStart, fromExit, ctlTook []time.Duration
	for i, ch := range changes {
		connB, connC := ch.conns()
		for j, conn := range []*grpc.ClientConn{connB, connC} {
			if res := haCall(conn, subjects[j], "HA-PROP", 10*time.Second); !ch.before(res) {
				t.Fatalf("change %d (%s): before it, %s answers %s %s", i, ch.name, rs[j+1].id, res.code, res.reason)
			}
		}
		t0 := time.Now()
		type seen struct {
			at   time.Time
			last haResult
			ok   bool
		}
		var wg sync.WaitGroup
		got := make([]seen, 2)
		for j, conn := range []*grpc.ClientConn{connB, connC} {
			wg.Go(func() {
				deadline := t0.Add(10 * time.Second)
				for time.Now().Before(deadline) {
					res := haCall(conn, subjects[j], "HA-PROP", 5*time.Second)
					got[j].last = res
					if ch.after(res) {
						got[j].at, got[j].ok = res.at, true
						return
					}
					time.Sleep(2 * time.Millisecond) // pacing the probe calls
				}
			})
		}
		ch.run()
		t1 := time.Now()
		wg.Wait()
		ctlTook = append(ctlTook, t1.Sub(t0))
		for j, s := range got {
			if !s.ok {
				t.Fatalf("change %d (%s) through %s not enforced by %s within 10 s: last answer %s %s", i, ch.name, a.id, rs[j+1].id, s.last.code, s.last.reason)
			}
			fromStart = append(fromStart, s.at.Sub(t0))
			fromExit = append(fromExit, max(0, s.at.Sub(t1)))
		}
	}
	p50, p99 := haPercentile(fromStart, 50), haPercentile(fromStart, 99)
	t.Logf("%d changes through %s, %d enforcements on %s and %s: delay from relaisctl start p50 %s p99 %s max %s; from relaisctl exit p50 %s p99 %s; relaisctl itself p50 %s",
		len(changes), a.id, len(fromStart), b.id, c.id, p50.Round(time.Millisecond), p99.Round(time.Millisecond), haPercentile(fromStart, 100).Round(time.Millisecond),
		haPercentile(fromExit, 50).Round(time.Millisecond), haPercentile(fromExit, 99).Round(time.Millisecond), haPercentile(ctlTook, 50).Round(time.Millisecond))
	if p99 >= time.Second {
		t.Errorf("propagation p99 %s, want < 1 s", p99)
	}
}

// haDailyCap: a grant capped at 100 calls a day, and six workers calling
// the three replicas directly (two each) up to 240 times: exactly 100
// succeed, the others are refused with daily_quota_exceeded.
func haDailyCap(t *testing.T, dsn string, rs []*haReplica, q haConsumer) {
	var conns []*grpc.ClientConn
	for w := 0; w < 6; w++ {
		conns = append(conns, haDial(t, rs[w%3].data, q.dir, rs[0].caFile()))
	}
	results := haStartLoad(t, conns, "HA-CAP", 40, 10*time.Second).Wait()
	counts := haTally(results)
	if counts["OK"] != 100 || counts["OK"]+counts["ResourceExhausted/daily_quota_exceeded"] != len(results) {
		t.Fatalf("daily cap 100 over 3 replicas: %d calls, %v; want exactly 100 OK, the rest daily_quota_exceeded", len(results), counts)
	}
	perChain := haCheckOKsRecorded(t, dsn, results)
	recorded := 0
	for _, rec := range haAuditByRequest(t, dsn) {
		if rec.consumer == q.siret && rec.code == "OK" {
			recorded++
		}
	}
	if recorded != 100 {
		t.Errorf("%d OK records for the capped consumer, want 100", recorded)
	}
	if len(perChain) != 3 {
		t.Errorf("the 100 calls were not served by the 3 replicas: %v", perChain)
	}
	t.Logf("daily cap 100: %d calls over 3 replicas, %v; OK per chain %v", len(results), counts, perChain)
}

// haCluster is three replicas behind HAProxy and the load consumer.
type haCluster struct {
	dsn   string
	rs    []*haReplica
	proxy *haproxytest.Proxy
	load  haConsumer
}

// haStartCluster starts 3 replicas on dsn, HAProxy in front, waits until
// HAProxy sees them UP, and adds a consumer without per-second limit.
func haStartCluster(t *testing.T, dsn string, drain time.Duration) *haCluster {
	t.Helper()
	haproxytest.Require(t)
	hc := &haCluster{dsn: dsn}
	hc.rs = haStartReplicas(t, dsn, 3, drain, func(a *haReplica) { hc.load = haAddConsumer(t, a, haSIRET(t, "2199000050000"), 0) })
	var backends []haproxytest.Backend
	for _, r := range hc.rs {
		backends = append(backends, r.backend())
	}
	hc.proxy = haproxytest.Start(t, backends, haProxyOpts)
	for _, r := range hc.rs {
		hc.proxy.WaitState(t, r.id, "UP", 30*time.Second)
	}
	return hc
}

// proxyConns opens n connections through HAProxy as the load consumer.
func (hc *haCluster) proxyConns(t *testing.T, n int) []*grpc.ClientConn {
	t.Helper()
	var conns []*grpc.ClientConn
	for i := 0; i < n; i++ {
		conns = append(conns, haDial(t, hc.proxy.Addr(), hc.load.dir, hc.rs[0].caFile()))
	}
	return conns
}

// verifyOnline runs relaisctl audit verify --online on replica r and
// fails t unless every chain of wantChains verifies.
func (hc *haCluster) verifyOnline(t *testing.T, r *haReplica, wantChains ...string) string {
	t.Helper()
	out := haMustCtl(t, r, "audit", "verify", "--online", "--public-key", filepath.Join(r.dataDir, "keys", "audit-signing.pub"))
	if !strings.HasPrefix(out, "OK:") {
		t.Fatalf("audit verify --online on %s:\n%s", r.id, out)
	}
	for _, ch := range wantChains {
		if !strings.Contains(out, fmt.Sprintf("chain %q", ch)) {
			t.Errorf("audit verify --online on %s does not name chain %s:\n%s", r.id, ch, out)
		}
	}
	return out
}

// TestHASIGKILLOneReplicaUnderLoad kills one replica with SIGKILL during
// a load through HAProxy: calls go on through the others, every OK
// response has its record, every chain verifies, and the replica
// restarted with the same --replica-id rejoins and serves.
func TestHASIGKILLOneReplicaUnderLoad(t *testing.T) {
	t.Parallel()
	hc := haStartCluster(t, pgtest.Shared(t).NewDatabase(t), 0)
	load := haStartLoad(t, hc.proxyConns(t, 6), "HA-KILL", 2000, 5*time.Second)
	load.waitOK(t, 60, 60*time.Second)
	victim := hc.rs[1]
	before, _ := load.count()
	killedAt := time.Now()
	victim.kill(t)
	hc.proxy.WaitState(t, victim.id, "DOWN", 10*time.Second)
	downAfter := time.Since(killedAt)
	load.waitOK(t, 150, 60*time.Second)
	results := load.Stop()
	after := results[before:]
	perChain := haCheckOKsRecorded(t, hc.dsn, results)
	counts, afterCounts := haTally(results), haTally(after)
	if afterCounts["OK"] < 150 {
		t.Errorf("only %d OK calls after the kill", afterCounts["OK"])
	}
	// The calls that failed: cut on the killed replica (Unavailable, no
	// request id reached the client) or refused by the shared in-flight
	// guard while the dead replica's keys live out their TTL. Whatever
	// the broker recorded of them, none reached the client as OK.
	recs := haAuditByRequest(t, hc.dsn)
	failedRecorded := map[string]int{}
	for _, r := range after {
		if !r.ok() && r.requestID != "" {
			if rec, ok := recs[r.requestID]; ok {
				failedRecorded[rec.code]++
			}
		}
	}
	t.Logf("SIGKILL of %s after %d calls: %d calls in all, %v; after the kill %v (records of the failed ones: %v); OK per chain %v (every OK response has its OK record); %s DOWN in HAProxy %s after the kill",
		victim.id, before, len(results), counts, afterCounts, failedRecorded, perChain, victim.id, downAfter.Round(time.Millisecond))

	victim.start(t)
	if !strings.Contains(victim.stores, "joined") {
		t.Fatalf("restarted %s did not join: %q", victim.id, victim.stores)
	}
	hc.proxy.WaitState(t, victim.id, "UP", 30*time.Second)
	direct := haCallPastDeadKeys(haDial(t, victim.data, hc.load.dir, hc.rs[0].caFile()), haSubjects()[0], "HA-KILL-BACK")
	if !direct.ok() {
		t.Fatalf("restarted %s refuses a direct call: %s %s", victim.id, direct.code, direct.reason)
	}
	// Roundrobin: three new connections in a row land on the three
	// replicas, the restarted one included.
	var fresh []haResult
	for i, conn := range hc.proxyConns(t, 3) {
		res := haCallPastDeadKeys(conn, haSubjects()[i+1], "HA-KILL-BACK")
		if !res.ok() {
			t.Fatalf("call %d through HAProxy after the restart: %s %s", i, res.code, res.reason)
		}
		fresh = append(fresh, res)
	}
	freshChains := haCheckOKsRecorded(t, hc.dsn, append(fresh, direct))
	if freshChains[victim.id] < 2 {
		t.Errorf("restarted %s served %d of the calls after its restart (direct + 3 new connections through HAProxy): %v", victim.id, freshChains[victim.id], freshChains)
	}
	out := hc.verifyOnline(t, hc.rs[0], "dev-1", "dev-2", "dev-3")
	t.Logf("after the restart %s serves (chains of the new calls %v); audit verify --online: %s", victim.id, freshChains, strings.TrimSpace(out))
}

// haCallPastDeadKeys calls once, again while the answer is
// duplicate_in_flight: the killed replica's in-flight keys live in the
// shared guard until their TTL (source timeout + audit timeout) ends.
func haCallPastDeadKeys(conn *grpc.ClientConn, subject *commonv1.SubjectIdentity, caseRef string) haResult {
	deadline := time.Now().Add(20 * time.Second)
	for {
		res := haCall(conn, subject, caseRef, 10*time.Second)
		if res.reason != "duplicate_in_flight" || time.Now().After(deadline) {
			return res
		}
		time.Sleep(100 * time.Millisecond) // waiting out a TTL we cannot observe
	}
}

// TestHAPostgresOutageFailsClosed stops PostgreSQL for about 5 s under a
// load on every replica: no OK response without its record, /readyz
// not ready naming the database on each, and every replica serves again
// after the restart without being restarted.
func TestHAPostgresOutageFailsClosed(t *testing.T) {
	t.Parallel()
	pg := pgtest.Start(t)
	dsn := pg.NewDatabase(t)
	var l haConsumer
	rs := haStartReplicas(t, dsn, 3, 0, func(a *haReplica) { l = haAddConsumer(t, a, haSIRET(t, "2199000060000"), 0) })
	var conns []*grpc.ClientConn
	for w := 0; w < 6; w++ {
		conns = append(conns, haDial(t, rs[w%3].data, l.dir, rs[0].caFile()))
	}
	load := haStartLoad(t, conns, "HA-PG-DOWN", 100000, 3*time.Second)
	load.waitOK(t, 60, 60*time.Second)
	stopping := time.Now()
	pg.Stop(t)
	stopped := time.Now()
	for _, r := range rs {
		haWaitReadyz(t, r, "not ready on the database", 15*time.Second, func(code int, body string) bool {
			return code == 503 && strings.Contains(body, `"database"`) && !strings.Contains(body, `"database":"ok"`)
		})
	}
	notReady := time.Since(stopped)
	// The outage lasts about 5 s by design: the duration is the
	// scenario, not a wait for an event.
	time.Sleep(time.Until(stopped.Add(5 * time.Second)))
	restarting := time.Now()
	pg.Restart(t)
	restarted := time.Now()
	for _, r := range rs {
		haWaitReadyz(t, r, "ready", 30*time.Second, func(code int, _ string) bool { return code == 200 })
	}
	back := haWaitEveryReplicaServes(t, rs, l, restarted)
	results := load.Stop()
	for _, r := range rs {
		if !r.runningSinceFirstStart() {
			t.Errorf("replica %s was restarted or exited during the outage", r.id)
		}
	}
	perChain := haCheckOKsRecorded(t, dsn, results)
	var during []haResult
	for _, r := range results {
		if r.at.After(stopped) && r.at.Before(restarting) {
			during = append(during, r)
		}
	}
	duringCounts := haTally(during)
	if n := duringCounts["OK"]; n > 0 {
		t.Errorf("%d OK responses arrived while PostgreSQL was down", n)
	}
	t.Logf("PostgreSQL stopped in %s, down %s: every /readyz not ready naming the database within %s; during the outage %v; every replica served again %s after the restart; all calls %v, OK per chain %v (every OK has its record)",
		stopped.Sub(stopping).Round(time.Millisecond), restarting.Sub(stopped).Round(time.Millisecond), notReady.Round(time.Millisecond), duringCounts,
		back.Round(time.Millisecond), haTally(results), perChain)
}

// haWaitEveryReplicaServes calls each replica directly until it answers OK
// and returns how long after since the last one took.
func haWaitEveryReplicaServes(t *testing.T, rs []*haReplica, c haConsumer, since time.Time) time.Duration {
	t.Helper()
	subjects := haSubjects()
	var last time.Time
	for i, r := range rs {
		conn := haDial(t, r.data, c.dir, rs[0].caFile())
		deadline := time.Now().Add(30 * time.Second)
		for {
			// Subjects the load does not use, so the in-flight guard
			// does not refuse the probe.
			res := haCall(conn, subjects[6+i%2], "HA-PG-BACK", 5*time.Second)
			if res.ok() {
				last = res.at
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica %s does not serve 30 s after PostgreSQL restarted: %s %s", r.id, res.code, res.reason)
			}
			time.Sleep(50 * time.Millisecond) // polling the replica
		}
	}
	return last.Sub(since)
}

// TestHARollingRestartZeroFailedCalls restarts the 3 replicas one after
// the other under a load through HAProxy: SIGTERM (the replica turns not
// ready and serves for the drain period), HAProxy sees it DOWN, it exits,
// it is started again, HAProxy sees it UP, next. No call fails.
func TestHARollingRestartZeroFailedCalls(t *testing.T) {
	t.Parallel()
	hc := haStartCluster(t, pgtest.Shared(t).NewDatabase(t), haDrain)
	load := haStartLoad(t, hc.proxyConns(t, 6), "HA-ROLL", 100000, 10*time.Second)
	load.waitOK(t, 60, 60*time.Second)
	start := time.Now()
	for _, r := range hc.rs {
		t0 := time.Now()
		exited := r.terminate(t)
		hc.proxy.WaitState(t, r.id, "DOWN", 10*time.Second)
		down := time.Since(t0)
		select {
		case <-exited:
		case <-time.After(haDrain + 30*time.Second):
			t.Fatalf("%s did not exit within the drain period + 30 s of SIGTERM", r.id)
		}
		if err := r.exitError(); err != nil {
			t.Fatalf("%s did not exit cleanly on SIGTERM: %v", r.id, err)
		}
		gone := time.Since(t0)
		r.start(t)
		hc.proxy.WaitState(t, r.id, "UP", 30*time.Second)
		t.Logf("%s: DOWN in HAProxy %s after SIGTERM, exited after %s, UP again after %s", r.id, down.Round(time.Millisecond), gone.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
		load.waitOK(t, 30, 60*time.Second)
	}
	results := load.Stop()
	counts := haTally(results)
	perChain := haCheckOKsRecorded(t, hc.dsn, results)
	if counts["OK"] != len(results) {
		t.Errorf("rolling restart: %d calls, %v; want every call OK", len(results), counts)
	}
	out := hc.verifyOnline(t, hc.rs[2], "dev-1", "dev-2", "dev-3")
	t.Logf("rolling restart of 3 replicas in %s under load: %d calls, %v, OK per chain %v; audit verify --online: %s",
		time.Since(start).Round(time.Millisecond), len(results), counts, perChain, strings.TrimSpace(out))
}
