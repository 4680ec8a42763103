package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/relais-broker/relais/adapters/sandbox"
	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/audit/pglog"
	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/registry/pgreg"
	"github.com/relais-broker/relais/broker/scope"
	"github.com/relais-broker/relais/certs"
	"github.com/relais-broker/relais/internal/devenv"
	"github.com/relais-broker/relais/internal/keyfile"
	"github.com/relais-broker/relais/internal/pgdb"
	"github.com/relais-broker/relais/internal/pgtest"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
)

// These tests are the acceptance of "every store on PostgreSQL" with real
// processes: relaisd and relaisctl as built binaries, grpcurl, and a real
// PostgreSQL cluster (internal/pgtest).

// storesLine is the banner's line about the stores; its replica is the
// broker's audit chain.
var storesLine = regexp.MustCompile(`(?m)^stores: +PostgreSQL\b.*\breplica ([A-Za-z0-9._-]+)\b(.*)$`)

// replicaOf returns the replica a dev broker's banner names and the rest
// of its stores line, or fails.
func replicaOf(t *testing.T, banner string) (string, string) {
	t.Helper()
	m := storesLine.FindStringSubmatch(banner)
	if m == nil {
		t.Fatalf("no PostgreSQL stores line in the banner:\n%s", banner)
	}
	return m[1], m[2]
}

// startPGDev runs `relaisd dev --postgres dsn` with dataDir and returns the
// broker and its welcome text (every line up to the first call).
func startPGDev(t *testing.T, dataDir, dsn string) (*devBroker, string) {
	t.Helper()
	relaisd, _ := binaries(t)
	d := &devBroker{dataDir: dataDir}
	var err error
	d.stderr, err = os.Create(filepath.Join(t.TempDir(), "stderr.log"))
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(relaisd, "dev", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0",
		"--http-listen", "127.0.0.1:0", "--idp-listen", "127.0.0.1:0", "--portal-listen", "127.0.0.1:0", "--data-dir", dataDir, "--postgres", dsn)
	d.cmd.Stderr = d.stderr
	stdout, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = d.cmd.Process.Kill()
		_ = d.cmd.Wait()
		if t.Failed() {
			logs, _ := os.ReadFile(d.stderr.Name())
			t.Logf("relaisd stderr:\n%s", logs)
		}
	})
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	listening := regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`)
	adminAPI := regexp.MustCompile(`admin API: +(127\.0\.0\.1:\d+)`)
	opsAPI := regexp.MustCompile(`operations: +http://(127\.0\.0\.1:\d+)/`)
	var banner strings.Builder
	timeout := time.After(90 * time.Second)
	for d.firstCall == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				logs, _ := os.ReadFile(d.stderr.Name())
				t.Fatalf("relaisd exited before printing its first call:\n%s", logs)
			}
			banner.WriteString(line + "\n")
			if m := listening.FindStringSubmatch(line); m != nil {
				d.addr = m[1]
			}
			if m := adminAPI.FindStringSubmatch(line); m != nil {
				d.adminAddr = m[1]
			}
			if m := opsAPI.FindStringSubmatch(line); m != nil {
				d.opsAddr = m[1]
			}
			if strings.HasPrefix(line, "  grpcurl ") {
				d.firstCall = strings.TrimSpace(line)
			}
		case <-timeout:
			t.Fatal("relaisd dev --postgres did not start within 90s")
		}
	}
	go func() {
		for range lines {
		}
	}()
	return d, banner.String()
}

// stopDev sends SIGTERM and requires a clean exit.
func stopDev(t *testing.T, d *devBroker) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Wait(); err != nil {
		t.Fatalf("relaisd did not exit cleanly on SIGTERM: %v", err)
	}
}

// adminFlags are relaisctl's flags for d's admin API as its operator.
func adminFlags(d *devBroker) string {
	return fmt.Sprintf("--admin-addr %s --operator-dir %s", d.adminAddr, filepath.Join(d.dataDir, "dev", "operators", "admin"))
}

// limitedCall is the printed first call made by the limited consumer.
func limitedCall(firstCall string) string {
	line := strings.ReplaceAll(firstCall, devenv.FullConsumer.Dir, devenv.LimitedConsumer.Dir)
	return strings.Replace(line, "tarification_sociale", "aide_sociale_facultative", 1)
}

// TestPostgresDevKeepsNothingLocal runs `relaisd dev --postgres`, calls it
// as both demo consumers, stops it, and starts it again on the same
// database with a fresh data directory: it joins the installation (same
// CA, keys and registry), serves the demo consumers with new credentials,
// and its audit log holds, queries and verifies the calls of both runs.
func TestPostgresDevKeepsNothingLocal(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Shared(t).NewDatabase(t)

	d1, banner := startPGDev(t, t.TempDir(), dsn)
	replica1, rest := replicaOf(t, banner)
	if !strings.Contains(rest, "new installation") {
		t.Fatalf("first start on an empty database: banner\n%s", banner)
	}
	if strings.Contains(banner, dsn) {
		t.Error("the banner prints the DSN")
	}
	out, err := shell(t, d1.firstCall)
	if err != nil {
		t.Fatalf("first call: %v\n%s", err, out)
	}
	var full map[string]any
	if err := json.Unmarshal([]byte(out), &full); err != nil || full["value"] != float64(755) {
		t.Fatalf("first call: %v\n%s", err, out)
	}
	for _, key := range []string{"beneficiaries", "children", "address"} {
		if _, ok := full[key]; !ok {
			t.Errorf("full consumer: %q missing in %s", key, out)
		}
	}
	out, err = shell(t, limitedCall(d1.firstCall))
	if err != nil {
		t.Fatalf("limited call: %v\n%s", err, out)
	}
	var limited map[string]any
	if err := json.Unmarshal([]byte(out), &limited); err != nil || limited["value"] != float64(755) {
		t.Fatalf("limited call: %v\n%s", err, out)
	}
	for _, key := range []string{"beneficiaries", "children", "address"} {
		if _, ok := limited[key]; ok {
			t.Errorf("limited consumer received %q: %s", key, out)
		}
	}
	ca1, err := os.ReadFile(filepath.Join(d1.dataDir, "dev", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cert1, _ := os.ReadFile(filepath.Join(d1.dataDir, "dev", "consumers", devenv.FullConsumer.Dir, "cert.pem"))
	stopDev(t, d1)

	dir2 := t.TempDir()
	d2, banner := startPGDev(t, dir2, dsn)
	replica2, rest := replicaOf(t, banner)
	if !strings.Contains(rest, "joined the installation already in this database") {
		t.Fatalf("second start with a fresh --data-dir: banner\n%s", banner)
	}
	t.Logf("replica of the first run %s, of the second %s", replica1, replica2)
	ca2, err := os.ReadFile(filepath.Join(dir2, "dev", "ca.pem"))
	if err != nil || string(ca2) != string(ca1) {
		t.Fatalf("the fresh data directory has another CA (%v)", err)
	}
	cert2, err := os.ReadFile(filepath.Join(dir2, "dev", "consumers", devenv.FullConsumer.Dir, "cert.pem"))
	if err != nil || len(cert2) == 0 || string(cert2) == string(cert1) {
		t.Fatalf("the fresh data directory has no new demo credential (%v)", err)
	}
	if !strings.Contains(d2.firstCall, dir2) {
		t.Fatalf("the printed call does not use the fresh directory: %s", d2.firstCall)
	}
	second := strings.Replace(d2.firstCall, "DOSSIER-2026-0001", "DOSSIER-PG-RUN2", 1)
	if out, err := shell(t, second); err != nil || !strings.Contains(out, `"value": 755`) {
		t.Fatalf("first call after the restart: %v\n%s", err, out)
	}
	out, err = shell(t, limitedCall(d2.firstCall))
	if err != nil || !strings.Contains(out, `"value": 755`) || strings.Contains(out, "children") {
		t.Fatalf("limited call after the restart: %v\n%s", err, out)
	}

	admin := adminFlags(d2)
	jsonl, err := shell(t, "relaisctl audit query --method /"+devenv.FirstCallMethod+" -o jsonl "+admin)
	if err != nil {
		t.Fatalf("audit query: %v\n%s", err, jsonl)
	}
	byCase := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(jsonl), "\n") {
		var r struct {
			Consumer string `json:"consumer_siret"`
			Case     string `json:"case_reference"`
			Code     string `json:"code"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("audit query line %q: %v", line, err)
		}
		if r.Code == "OK" {
			byCase[r.Case] = append(byCase[r.Case], r.Consumer)
		}
	}
	// Run 1: the Mairie and the CCAS on DOSSIER-2026-0001; run 2: the
	// Mairie on DOSSIER-PG-RUN2, the CCAS on DOSSIER-2026-0001.
	sort.Strings(byCase["DOSSIER-2026-0001"])
	if got := strings.Join(byCase["DOSSIER-2026-0001"], ","); got != "21990000100005,21990000200003,21990000200003" {
		t.Errorf("records of the first call (both runs) by consumer: %q\n%s", got, jsonl)
	}
	if got := strings.Join(byCase["DOSSIER-PG-RUN2"], ","); got != "21990000100005" {
		t.Errorf("records of the second run's call: %q\n%s", got, jsonl)
	}
	out, err = shell(t, "relaisctl audit subject -o json --birth-name dupont --given-names zoe --sex F --birth-date 1984-03-12 --birth-place 75056 "+admin)
	if err != nil {
		t.Fatalf("audit subject: %v\n%s", err, out)
	}
	var report struct {
		Accesses []struct {
			Siret string `json:"consumer_siret"`
			Code  string `json:"code"`
		} `json:"accesses"`
	}
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("audit subject: %v\n%s", err, out)
	}
	perConsumer := map[string]int{}
	for _, a := range report.Accesses {
		perConsumer[a.Siret]++
	}
	if perConsumer[devenv.FullConsumer.SIRET] != 2 || perConsumer[devenv.LimitedConsumer.SIRET] != 2 || len(report.Accesses) != 4 {
		t.Errorf("Zoé's report should list the 4 calls of both runs, got %v\n%s", perConsumer, out)
	}
	pub := filepath.Join(dir2, "keys", devenv.AuditPublicKeyFile)
	if out, err := shell(t, "relaisctl audit verify --online --public-key "+pub+" "+admin); err != nil || !strings.HasPrefix(out, "OK:") {
		t.Fatalf("audit verify --online: %v\n%s", err, out)
	} else {
		t.Logf("%s", strings.TrimSpace(out))
	}
	stopDev(t, d2)
}

// TestPostgresDataDirectoryHoldsNoPersonalData calls every service for
// sandbox citizens through a dev broker on a cluster of its own, then scans
// the raw bytes of the PostgreSQL data directory (tables, indexes, WAL)
// and the broker's log for the citizens' identities and returned values.
func TestPostgresDataDirectoryHoldsNoPersonalData(t *testing.T) {
	t.Parallel()
	cluster := pgtest.Start(t)
	dsn := cluster.NewDatabase(t)
	d, _ := startPGDev(t, t.TempDir(), dsn)
	calls := []struct{ method, body string }{
		{"relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient", `"subject":{"birth_name":"DUPONT","given_names":["Zoé"],"sex":"SEX_FEMALE","birth_date":"1984-03-12","birth_place_cog":"75056","birth_country_cog":"99100"}`},
		{"relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient", `"subject":{"birth_name":"MARTIN","given_names":["Lucas"],"sex":"SEX_MALE","birth_date":"1979-11-02","birth_place_cog":"69123","birth_country_cog":"99100"}`},
		{"relais.studentstatus.v1.StudentStatusService/GetStudentStatus", `"ine":"SBXINE00001"`},
		{"relais.jobseeker.v1.JobSeekerStatusService/GetJobSeekerStatus", `"identity":{"birth_name":"GARCIA","given_names":["Manon"],"sex":"SEX_FEMALE","birth_date":"1987-08-08","birth_place_cog":"31555","birth_country_cog":"99100"}`},
		{"relais.jobseeker.v1.JobSeekerStatusService/GetJobSeekerStatus", `"france_travail_id":"SBX0000001"`},
		{"relais.healthcover.v1.SolidarityHealthCoverService/GetSolidarityHealthCover", `"subject":{"birth_name":"BENALI","given_names":["Yasmine"],"sex":"SEX_FEMALE","birth_date":"1986-04-23","birth_country_cog":"99350"}`},
	}
	prefix := strings.SplitN(d.firstCall, " -d ", 2)[0]
	for _, c := range calls {
		line := fmt.Sprintf(`%s -d '{"access_context":{"recipient":"21990000100005","purpose":"aide_sociale_facultative","case_reference":"DOSSIER-PG-SCAN"},%s}' %s %s`, prefix, c.body, d.addr, c.method)
		if out, err := shell(t, line); err != nil {
			t.Fatalf("%s: %v\n%s", c.method, err, out)
		}
	}
	if out, err := shell(t, "relaisctl audit subject --ine SBXINE00001 "+adminFlags(d)); err != nil || !strings.Contains(out, "admissions") {
		t.Fatalf("subject report by INE: %v\n%s", err, out)
	}
	stopDev(t, d)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, cluster.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(ctx)

	var raw []byte
	files := 0
	err = filepath.WalkDir(cluster.DataDir(), func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // a temporary file the server removed meanwhile
			}
			return err
		}
		if !e.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		files++
		raw = append(raw, b...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	logs, err := os.ReadFile(d.stderr.Name())
	if err != nil || !strings.Contains(string(logs), `"msg":"call"`) {
		t.Fatalf("no call lines in the broker's log: %v", err)
	}
	// The scan proves something only if the records are readable bytes.
	if n := strings.Count(string(raw), "DOSSIER-PG-SCAN"); n < len(calls) {
		t.Fatalf("the data directory holds %d copies of the calls' case reference, want >= %d: the scan would prove nothing", n, len(calls))
	}
	raw = append(raw, logs...)
	needles := sandboxNeedles(t)
	for _, n := range needles {
		for _, form := range []string{n, strings.ToUpper(n), strings.ToLower(n)} {
			if i := wordIndex(raw, form); i >= 0 {
				t.Errorf("the PostgreSQL data directory or the broker's log contain %q: %q", form, raw[max(0, i-40):min(len(raw), i+len(form)+40)])
			}
		}
	}
	t.Logf("scanned %d files (%d MB) and the log for %d needles", files, len(raw)>>20, len(needles))
}

// wordIndex is the index of the first occurrence of needle in raw that is
// not inside a longer word (no ASCII letter right before or after it), or
// -1: PostgreSQL's catalogs hold words such as "comparison", "prosecdef"
// or "lanname", which contain sandbox names without holding them.
func wordIndex(raw []byte, needle string) int {
	letter := func(b byte) bool { return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' }
	for from := 0; ; {
		i := bytes.Index(raw[from:], []byte(needle))
		if i < 0 {
			return -1
		}
		i += from
		end := i + len(needle)
		if (i == 0 || !letter(raw[i-1])) && (end == len(raw) || !letter(raw[end])) {
			return i
		}
		from = i + 1
	}
}

// sandboxNeedles are the sandbox citizens' identities (names, birth dates
// as the data set writes them and as dd/mm/yyyy, INE, France Travail ids)
// and the distinctive strings of the records the sources return
// (addresses, labels, dates, the family quotient in JSON); short strings
// and record dates that an audit timestamp could hold are left out as
// false positives, and so are the names of the demo consumers.
func sandboxNeedles(t *testing.T) []string {
	t.Helper()
	seen := map[string]bool{}
	var needles []string
	// The demo consumers' names are public bodies, not personal data (the
	// sandbox's study city is the Mairie's town).
	public := devenv.FullConsumer.Name + " " + devenv.LimitedConsumer.Name
	add := func(s string) {
		if len([]rune(s)) >= 4 && !seen[s] && !strings.Contains(public, s) {
			seen[s] = true
			needles = append(needles, s)
		}
	}
	recent := regexp.MustCompile(`^20(2[5-9]|[3-9]\d)-\d\d-\d\d$`)
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			if !recent.MatchString(x) && !strings.HasPrefix(x, "SEX_") {
				add(x)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	for _, c := range sandbox.Default().Citizens() {
		id := c.Identity
		add(id.GetBirthName())
		add(id.GetUsageName())
		for _, g := range id.GetGivenNames() {
			add(g)
		}
		if bd := id.GetBirthDate(); bd != "" {
			add(bd)
			if p := strings.Split(bd, "-"); len(p) == 3 {
				add(p[2] + "/" + p[1] + "/" + p[0])
			}
		}
		add(c.INE)
		add(c.FranceTravailID)
		for _, rec := range c.Records {
			b, err := protojson.Marshal(rec)
			if err != nil {
				t.Fatal(err)
			}
			var v any
			if err := json.Unmarshal(b, &v); err != nil {
				t.Fatal(err)
			}
			walk(v)
			if m, ok := v.(map[string]any); ok {
				if val, ok := m["value"].(float64); ok && val >= 100 {
					add(fmt.Sprintf(`"value":%d`, int(val)))
					add(fmt.Sprintf(`"value": %d`, int(val)))
				}
			}
		}
	}
	if !seen["12 RUE DES LILAS"] || !seen["DUPONT"] || !seen["SBXINE00001"] || !seen["SBX0000001"] || !seen[`"value":755`] {
		t.Fatalf("the needles miss the sandbox's known values: %q", needles)
	}
	return needles
}

// callOutcome is one call of the outage load: the phase of the database
// when it started and when it ended, and what the client received.
type callOutcome struct {
	started, ended int32
	code           codes.Code
	reason, id     string
}

// Phases of the database during the outage test.
const (
	phaseUp int32 = iota
	phaseStopping
	phaseDown
	phaseRestarting
	phaseBack
)

// TestPostgresOutageUnderLoad stops PostgreSQL for about 3 s under a
// bounded, paced load of 4 clients (two per demo consumer): during the
// outage calls fail closed (Unavailable, never OK) and /readyz names the
// database; after the restart calls succeed again without restarting
// relaisd, and every OK response has its audit record.
func TestPostgresOutageUnderLoad(t *testing.T) {
	t.Parallel()
	cluster := pgtest.Start(t)
	dsn := cluster.NewDatabase(t)
	d, banner := startPGDev(t, t.TempDir(), dsn)
	replica, _ := replicaOf(t, banner)
	// Two workers per demo consumer, each on its own citizen (the duplicate
	// guard refuses one consumer's concurrent calls for one subject), each
	// consumer paced under its grant's 20 calls/s so that calls are not
	// rate limited.
	type worker struct {
		client familyquotientv1.FamilyQuotientServiceClient
		req    *familyquotientv1.GetFamilyQuotientRequest
		pace   <-chan time.Time
	}
	subjects := []*commonv1.SubjectIdentity{zoeIdentity(),
		{BirthName: "MARTIN", GivenNames: []string{"Lucas"}, Sex: commonv1.Sex_SEX_MALE, BirthDate: "1979-11-02", BirthPlaceCog: "69123", BirthCountryCog: "99100"},
		{BirthName: "BERNARD", GivenNames: []string{"Inès"}, Sex: commonv1.Sex_SEX_FEMALE, BirthDate: "1975-06-14", BirthPlaceCog: "31555", BirthCountryCog: "99100"},
		{BirthName: "FAURE", GivenNames: []string{"Louise"}, Sex: commonv1.Sex_SEX_FEMALE, BirthDate: "1996-02-29", BirthPlaceCog: "33063", BirthCountryCog: "99100"},
	}
	var workers []worker
	for i, c := range []struct {
		consumer devenv.DemoConsumer
		purpose  string
	}{{devenv.FullConsumer, "tarification_sociale"}, {devenv.LimitedConsumer, "aide_sociale_facultative"}} {
		client := familyquotientv1.NewFamilyQuotientServiceClient(grpcConn(t, d, c.consumer.Dir))
		pace := time.NewTicker(70 * time.Millisecond) // about 14 calls/s per consumer
		t.Cleanup(pace.Stop)
		for _, subject := range subjects[2*i : 2*i+2] {
			workers = append(workers, worker{client: client, pace: pace.C, req: &familyquotientv1.GetFamilyQuotientRequest{
				AccessContext: &commonv1.AccessContext{Recipient: c.consumer.SIRET, Purpose: c.purpose, CaseReference: "DOSSIER-PG-OUTAGE"},
				Subject:       subject,
			}})
		}
	}
	var phase atomic.Int32
	var mu sync.Mutex
	var outcomes []callOutcome
	snapshot := func() []callOutcome {
		mu.Lock()
		defer mu.Unlock()
		return append([]callOutcome(nil), outcomes...)
	}
	count := func(keep func(callOutcome) bool) int {
		n := 0
		for _, o := range snapshot() {
			if keep(o) {
				n++
			}
		}
		return n
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			for i := 0; i < 2000; i++ {
				select {
				case <-stop:
					return
				case <-w.pace:
				}
				o := callOutcome{started: phase.Load()}
				var header, trailer metadata.MD
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := w.client.GetFamilyQuotient(ctx, w.req, grpc.Header(&header), grpc.Trailer(&trailer))
				cancel()
				o.ended = phase.Load()
				st := status.Convert(err)
				o.code = st.Code()
				for _, det := range st.Details() {
					if info, ok := det.(*errdetails.ErrorInfo); ok {
						o.reason = info.GetReason()
					}
				}
				if ids := append(header.Get("x-request-id"), trailer.Get("x-request-id")...); len(ids) > 0 {
					o.id = ids[0]
				}
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
			}
		})
	}
	halt := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer halt()
	waitFor := func(what string, limit time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(limit)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s", what, limit)
			}
			time.Sleep(20 * time.Millisecond) // polling the load's outcomes and /readyz
		}
	}
	isOK := func(o callOutcome) bool { return o.code == codes.OK }
	waitFor("50 OK calls before the outage", 60*time.Second, func() bool { return count(isOK) >= 50 })

	phase.Store(phaseStopping)
	cluster.Stop(t)
	phase.Store(phaseDown)
	down := time.Now()
	var ready pgReadyz
	waitFor("/readyz not ready, naming the database", 10*time.Second, func() bool {
		ready = getPGReadyz(t, d.opsAddr)
		return ready.status == http.StatusServiceUnavailable && !ready.Ready && ready.Checks["database"] != "" && ready.Checks["database"] != "ok"
	})
	t.Logf("/readyz during the outage: %d %v", ready.status, ready.Checks)
	inOutage := func(o callOutcome) bool { return o.started == phaseDown && o.ended == phaseDown }
	waitFor("failed calls during the outage", 15*time.Second, func() bool { return count(inOutage) >= 5 && time.Since(down) >= 3*time.Second })
	phase.Store(phaseRestarting)
	cluster.Restart(t)
	phase.Store(phaseBack)
	back := time.Now()
	isBack := func(o callOutcome) bool { return o.started == phaseBack && o.code == codes.OK }
	waitFor("OK calls after the restart", 60*time.Second, func() bool { return count(isBack) >= 20 })
	recovered := time.Since(back)
	waitFor("/readyz ready again", 10*time.Second, func() bool {
		r := getPGReadyz(t, d.opsAddr)
		return r.status == http.StatusOK && r.Ready
	})
	halt()

	all := snapshot()
	byPhase := map[string]int{}
	reasons := map[string]int{}
	okIDs := map[string]bool{}
	for _, o := range all {
		byPhase[fmt.Sprintf("%d-%d %s/%s", o.started, o.ended, o.code, o.reason)]++
		if inOutage(o) {
			reasons[o.code.String()+"/"+o.reason]++
			if o.code != codes.Unavailable || (o.reason != "audit_unavailable" && o.reason != "quota_unavailable") {
				t.Errorf("a call during the outage ended %s/%s, want Unavailable with audit_unavailable or quota_unavailable", o.code, o.reason)
			}
		}
		if o.code == codes.OK {
			if o.id == "" {
				t.Fatal("an OK response carries no x-request-id")
			}
			okIDs[o.id] = true
		}
	}
	if reasons["Unavailable/audit_unavailable"] == 0 {
		t.Errorf("no call during the outage failed with audit_unavailable: %v", reasons)
	}

	// Every OK response has its record: read the log as the admin role.
	ctx := context.Background()
	pool, err := pgdb.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	st, err := pglog.Open(ctx, pool, pglog.Options{Chain: replica})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	recs, err := st.Query(ctx, audit.Filter{Limit: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, r := range recs {
		have[r.RequestID] = true
	}
	missing := 0
	for id := range okIDs {
		if !have[id] {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d OK responses have no audit record", missing, len(okIDs))
	}
	pub := filepath.Join(d.dataDir, "keys", devenv.AuditPublicKeyFile)
	out, err := shell(t, "relaisctl audit verify --online --public-key "+pub+" "+adminFlags(d))
	if err != nil || !strings.HasPrefix(out, "OK:") {
		t.Fatalf("audit verify --online after the outage: %v\n%s", err, out)
	}
	t.Logf("outcomes by phase (0 up, 1 stopping, 2 down, 3 restarting, 4 back): %v", byPhase)
	t.Logf("%d calls, %d OK (each with its record among %d); during the outage %v; first OK %s after the restart; %s",
		len(all), len(okIDs), len(recs), reasons, recovered.Round(time.Millisecond), strings.TrimSpace(out))
	stopDev(t, d)
}

// pgReadyz is the answer of /readyz.
type pgReadyz struct {
	status int
	Ready  bool              `json:"ready"`
	Checks map[string]string `json:"checks"`
}

func getPGReadyz(t *testing.T, addr string) pgReadyz {
	t.Helper()
	var r pgReadyz
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return r
	}
	defer resp.Body.Close()
	r.status = resp.StatusCode
	_ = json.NewDecoder(resp.Body).Decode(&r)
	return r
}

// TestPostgresServeFromAConfigurationFile runs `relaisd serve` with
// `store: {kind: postgres, dsn_file}` as an operator would: it refuses a
// database whose schema was not migrated, naming the command to run (and
// never the password); after `relaisctl db migrate` it serves calls as a
// login of relais_broker, from a registry kept in the database.
func TestPostgresServeFromAConfigurationFile(t *testing.T) {
	t.Parallel()
	relaisd, _ := binaries(t)
	cluster := pgtest.Shared(t)
	ownerDSN := cluster.NewDatabase(t)
	dir := t.TempDir()
	ownerFile, brokerFile := filepath.Join(dir, "owner.dsn"), filepath.Join(dir, "broker.dsn")
	if err := os.WriteFile(ownerFile, []byte(ownerDSN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, caDir := filepath.Join(dir, "keys"), filepath.Join(dir, "ca")
	if err := os.MkdirAll(keys, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := keyfile.CreateSigningKey(filepath.Join(keys, "audit.key"), filepath.Join(keys, "audit.pub")); err != nil {
		t.Fatal(err)
	}
	if err := keyfile.CreatePseudonymKey(filepath.Join(keys, "pseudonym.key")); err != nil {
		t.Fatal(err)
	}
	ca, err := certs.OpenDevCA(caDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cred, err := ca.IssueClient(ctx, certs.ClientRequest{Kind: identity.KindConsumer, ID: "21990000100005", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	bundle, _ := ca.TrustBundle(ctx)
	if err := certs.WriteCredential(filepath.Join(dir, "mairie"), cred, bundle); err != nil {
		t.Fatal(err)
	}
	sourcesFile := filepath.Join(dir, "sources.yaml")
	if err := os.WriteFile(sourcesFile, []byte("sources:\n  - {service: relais.familyquotient.v1.FamilyQuotientService, id: sandbox, kind: sandbox}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "relaisd.yaml")
	writeConfig := func(dsnFile string) {
		t.Helper()
		if err := os.WriteFile(config, []byte(fmt.Sprintf(`store: {kind: postgres, dsn_file: %s}
replica_id: serve-1
listen: {data: "127.0.0.1:0", admin: "127.0.0.1:0", ops: "127.0.0.1:0", http: "127.0.0.1:0"}
tls:
  server_names: [localhost]
  server_ips: [127.0.0.1]
  dev_ca_dir: %s
audit:
  signing_key_file: %s
  pseudonym_key_file: %s
  retention: 8760h
sources_file: %s
`, dsnFile, caDir, filepath.Join(keys, "audit.key"), filepath.Join(keys, "pseudonym.key"), sourcesFile)), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// Not migrated: refused with the command to run, without the password
	// of the login in the DSN file.
	login := cluster.NewLogin(t, ownerDSN)
	if err := os.WriteFile(brokerFile, []byte(login), 0o600); err != nil {
		t.Fatal(err)
	}
	password := ""
	if cfg, err := pgx.ParseConfig(login); err == nil {
		password = cfg.Password
	}
	writeConfig(brokerFile)
	for _, args := range [][]string{{"check-config", "--config", config}, {"serve", "--config", config}} {
		cmd := exec.Command(relaisd, args...)
		out, err := runBounded(t, cmd)
		if args[0] == "check-config" {
			if err != nil {
				t.Fatalf("check-config (the file is valid; the schema is checked at start): %v\n%s", err, out)
			}
			continue
		}
		var exit *exec.ExitError
		if !errors.As(err, &exit) || !strings.Contains(out, "run relaisctl db migrate") {
			t.Fatalf("serve on a database not migrated: %v\n%s", err, out)
		}
		if password == "" || strings.Contains(out, password) || strings.Contains(out, login) {
			t.Fatalf("the refusal shows the DSN or its password:\n%s", out)
		}
		t.Logf("refused: %s", strings.TrimSpace(out))
	}

	if out, err := shell(t, "relaisctl db migrate --dsn-file "+ownerFile); err != nil || !strings.HasPrefix(out, fmt.Sprintf("OK: database schema at version %d", pgdb.Version)) {
		t.Fatalf("db migrate: %v\n%s", err, out)
	}
	if out, err := shell(t, "relaisctl db status --dsn-file "+ownerFile); err != nil || !strings.Contains(out, "up to date") {
		t.Fatalf("db status: %v\n%s", err, out)
	}
	// The operator onboards the Mairie in the database's registry.
	pool, err := pgdb.Connect(ctx, ownerDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	reg, err := pgreg.Open(ctx, pool, pgreg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.AddConsumer(ctx, registry.Consumer{SIRET: "21990000100005", Name: "Mairie"}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.AddGrant(ctx, registry.Grant{Consumer: "21990000100005", Service: "relais.familyquotient.v1.FamilyQuotientService",
		Scopes:    scope.Of("family_quotient.value"),
		Purposes:  []registry.Purpose{{Code: "tarification_sociale", Label: "Cantine", LegalBasis: "CRPA art. L114-8"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), Quota: registry.Quota{RatePerSecond: 20, Burst: 40}}); err != nil {
		t.Fatal(err)
	}
	// The broker runs as a login of relais_broker, not as the owner.
	brokerLogin := cluster.NewLogin(t, ownerDSN, "relais_broker")
	if err := os.WriteFile(brokerFile, []byte(brokerLogin), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, banner, stderrFile := startServe(t, relaisd, config, nil)
	m := regexp.MustCompile(`data API on (\S+), admin API on (\S+), operations on http://(\S+), HTTPS/JSON on (\S+)`).FindStringSubmatch(banner)
	if m == nil {
		logs, _ := os.ReadFile(stderrFile)
		t.Fatalf("banner: %s\n%s", banner, logs)
	}
	for i := 1; i <= 2; i++ {
		call := fqCall(filepath.Join(dir, "mairie"), m[1], fmt.Sprintf("SERVE-PG-%d", i))
		if out, err := shell(t, call); err != nil || !strings.Contains(out, `"value": 755`) || strings.Contains(out, "children") {
			logs, _ := os.ReadFile(stderrFile)
			t.Fatalf("call %d: %v\n%s\n%s", i, err, out, logs)
		}
	}
	r := getPGReadyz(t, m[3])
	if r.status != http.StatusOK || r.Checks["database"] != "ok" {
		t.Fatalf("/readyz: %d %v", r.status, r.Checks)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("relaisd serve did not exit cleanly: %v", err)
	}
	logs, _ := os.ReadFile(stderrFile)
	if strings.Contains(string(logs), brokerLogin) || strings.Contains(string(logs), ownerDSN) {
		t.Error("the broker's log holds a DSN")
	}
	// The calls are in the database, in the chain of the configured replica.
	st, err := pglog.Open(ctx, pool, pglog.Options{Chain: "serve-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	recs, err := st.Query(ctx, audit.Filter{Consumer: "21990000100005", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]bool{}
	for _, rec := range recs {
		cases[rec.CaseReference] = true
	}
	if !cases["SERVE-PG-1"] || !cases["SERVE-PG-2"] {
		t.Fatalf("the serve broker's records are not in the database: %d records, cases %v", len(recs), cases)
	}
}

// runBounded runs cmd to completion within 60 s and returns its output.
func runBounded(t *testing.T, cmd *exec.Cmd) (string, error) {
	t.Helper()
	cmd.WaitDelay = 5 * time.Second
	done := make(chan struct{})
	var out []byte
	var err error
	go func() {
		out, err = cmd.CombinedOutput()
		close(done)
	}()
	select {
	case <-done:
		return string(out), err
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		return string(out), fmt.Errorf("%s did not exit within 60s", strings.Join(cmd.Args, " "))
	}
}
