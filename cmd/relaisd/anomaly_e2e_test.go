package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/relais-broker/relais/internal/devenv"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
)

// TestEnumerationIsDetected plays the attack of issue 12 against a real
// `relaisd dev`: the full demo consumer asks for 200 random identities
// (all unknown), while the limited one makes 200 ordinary calls on three
// known sandbox citizens. The first raises relais_anomalies_total
// {kind="enumeration"} on the operations /metrics, a WARN log line and an
// entry in `relaisctl anomalies list`; the second raises nothing.
func TestEnumerationIsDetected(t *testing.T) {
	t.Parallel()
	d := startDev(t)
	full, limited := devenv.FullConsumer.SIRET, devenv.LimitedConsumer.SIRET
	attacker := familyquotientv1.NewFamilyQuotientServiceClient(grpcConn(t, d, devenv.FullConsumer.Dir))
	desk := familyquotientv1.NewFamilyQuotientServiceClient(grpcConn(t, d, devenv.LimitedConsumer.Dir))
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 12))
	var names []string
	known := []*commonv1.SubjectIdentity{
		zoeIdentity(),
		{BirthName: "MARTIN", GivenNames: []string{"Lucas"}, Sex: commonv1.Sex_SEX_MALE, BirthDate: "1979-11-02", BirthPlaceCog: "69123", BirthCountryCog: "99100"},
		{BirthName: "BERNARD", GivenNames: []string{"Inès"}, Sex: commonv1.Sex_SEX_FEMALE, BirthDate: "1975-06-14", BirthPlaceCog: "31555", BirthCountryCog: "99100"},
	}
	for range 200 {
		names = append(names, randomName(rng))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Go(func() {
		for i, name := range names {
			req := &familyquotientv1.GetFamilyQuotientRequest{
				AccessContext: &commonv1.AccessContext{Recipient: full, Purpose: "tarification_sociale", CaseReference: fmt.Sprintf("ENUM-%d", i)},
				Subject: &commonv1.SubjectIdentity{BirthName: name, GivenNames: []string{"Camille"}, Sex: commonv1.Sex_SEX_FEMALE,
					BirthDate: fmt.Sprintf("19%02d-%02d-%02d", 40+rng.IntN(60), 1+rng.IntN(12), 1+rng.IntN(28)), BirthPlaceCog: "75056", BirthCountryCog: "99100"},
			}
			if code := callPaced(attacker, req); code != codes.NotFound {
				errs <- fmt.Errorf("random identity %d: %s, want NotFound", i, code)
				return
			}
		}
	})
	wg.Go(func() {
		for i := range 200 {
			req := &familyquotientv1.GetFamilyQuotientRequest{
				AccessContext: &commonv1.AccessContext{Recipient: limited, Purpose: "aide_sociale_facultative", CaseReference: fmt.Sprintf("DESK-%d", i)},
				Subject:       known[i%len(known)],
			}
			if code := callPaced(desk, req); code != codes.OK {
				errs <- fmt.Errorf("known citizen %d: %s, want OK", i%len(known), code)
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// The operations /metrics: one enumeration for the attacker (once per
	// window, not per call), nothing for the desk.
	anomalies := scrapeAnomalies(t, d)
	if got := anomalies[full+"/enumeration"]; got != 1 {
		t.Errorf("relais_anomalies_total{consumer=%s,kind=enumeration} = %v, want 1 (all: %v)", full, got, anomalies)
	}
	for k, v := range anomalies {
		if strings.HasPrefix(k, limited+"/") {
			t.Errorf("ordinary calls raised relais_anomalies_total{%s} = %v", k, v)
		}
	}

	// relaisctl anomalies list, as an operator runs it.
	operator := filepath.Join(d.dataDir, "dev", "operators", "admin")
	out, err := shell(t, fmt.Sprintf("relaisctl anomalies list --admin-addr %s --operator-dir %s -o json", d.adminAddr, operator))
	if err != nil {
		t.Fatalf("relaisctl anomalies list: %v\n%s", err, out)
	}
	var listed struct {
		Anomalies []struct {
			ConsumerSiret    string  `json:"consumer_siret"`
			Service          string  `json:"service"`
			Kind             string  `json:"kind"`
			Trigger          string  `json:"trigger"`
			Calls            int     `json:"calls"`
			NotFound         int     `json:"not_found"`
			NotFoundRatio    float64 `json:"not_found_ratio"`
			DistinctSubjects int     `json:"distinct_subjects"`
			Action           string  `json:"action"`
			WindowStart      string  `json:"window_start"`
			WindowEnd        string  `json:"window_end"`
		} `json:"anomalies"`
	}
	if err := json.Unmarshal([]byte(out), &listed); err != nil {
		t.Fatalf("relaisctl anomalies list -o json: %v\n%s", err, out)
	}
	if len(listed.Anomalies) != 1 {
		t.Fatalf("want exactly the attacker's anomaly, got:\n%s", out)
	}
	a := listed.Anomalies[0]
	if a.ConsumerSiret != full || a.Kind != "enumeration" || a.Trigger != "not_found_ratio" || a.Service != "relais.familyquotient.v1.FamilyQuotientService" ||
		a.Calls < 20 || a.NotFound != a.Calls || a.NotFoundRatio != 1 || a.DistinctSubjects != a.Calls || a.Action != "alert" || a.WindowStart == "" || a.WindowEnd == "" {
		t.Errorf("listed anomaly %+v", a)
	}
	out, err = shell(t, fmt.Sprintf("relaisctl anomalies list --consumer %s --admin-addr %s --operator-dir %s", limited, d.adminAddr, operator))
	if err != nil || strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.HasPrefix(out, "WINDOW END") {
		t.Fatalf("the desk's listing should be a header only: %v\n%s", err, out)
	}
	out, err = shell(t, fmt.Sprintf("relaisctl anomalies list --consumer %s --admin-addr %s --operator-dir %s", full, d.adminAddr, operator))
	if err != nil || !strings.Contains(out, full) || !strings.Contains(out, "enumeration") || !strings.Contains(out, "100% not found") {
		t.Fatalf("the attacker's listing: %v\n%s", err, out)
	}

	// One WARN line naming the consumer and the window, no personal data.
	logs, err := os.ReadFile(d.stderr.Name())
	if err != nil {
		t.Fatal(err)
	}
	var warns []string
	for _, line := range strings.Split(string(logs), "\n") {
		if strings.Contains(line, `"msg":"abnormal use detected"`) {
			warns = append(warns, line)
		}
	}
	if len(warns) != 1 {
		t.Fatalf("%d anomaly log lines, want 1:\n%s", len(warns), logs)
	}
	for _, want := range []string{`"level":"WARN"`, `"consumer":"` + full + `"`, `"kind":"enumeration"`, `"window_start"`, `"window_end"`} {
		if !strings.Contains(warns[0], want) {
			t.Errorf("anomaly log line misses %s: %s", want, warns[0])
		}
	}
	for _, name := range names {
		if strings.Contains(string(logs), name) {
			t.Fatalf("a subject's name reached the logs: %s", name)
		}
	}
}

// randomName is a birth name no sandbox citizen has.
func randomName(rng *rand.Rand) string {
	b := []byte("ZZ")
	for range 8 {
		b = append(b, byte('A'+rng.IntN(26)))
	}
	return string(b)
}

// callPaced makes one call, waiting as the broker's RetryInfo says when
// the demo rate limit (20/s) refuses it, and returns the final code.
func callPaced(c familyquotientv1.FamilyQuotientServiceClient, req *familyquotientv1.GetFamilyQuotientRequest) codes.Code {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := c.GetFamilyQuotient(ctx, req)
		cancel()
		st := status.Convert(err)
		if st.Code() != codes.ResourceExhausted {
			return st.Code()
		}
		wait := time.Duration(0)
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok {
				wait = ri.GetRetryDelay().AsDuration()
			}
		}
		if wait <= 0 || wait > 5*time.Second {
			return st.Code() // not the demo rate limit: let the caller fail
		}
		time.Sleep(wait) // the broker said when a token is free
	}
}

// scrapeAnomalies reads relais_anomalies_total from the operations
// listener, keyed "consumer/kind".
func scrapeAnomalies(t *testing.T, d *devBroker) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + d.opsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatalf("exposition format: %v", err)
	}
	out := map[string]float64{}
	for _, m := range families["relais_anomalies_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		out[labels["consumer"]+"/"+labels["kind"]] = m.GetCounter().GetValue()
	}
	return out
}
