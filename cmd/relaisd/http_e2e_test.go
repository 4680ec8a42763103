package main_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-openapi/loads"
	"github.com/go-openapi/strfmt"
	"github.com/go-openapi/validate"
)

// httpClient is a curl-equivalent HTTPS client with a demo credential
// (dir empty: no client certificate).
func httpClient(t *testing.T, d *devBroker, consumerDir string) *http.Client {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(d.dataDir, "dev", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if consumerDir != "" {
		pair, err := tls.LoadX509KeyPair(filepath.Join(consumerDir, "cert.pem"), filepath.Join(consumerDir, "key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

type httpAnswer struct {
	code   int
	header http.Header
	body   map[string]any
	raw    string
}

func post(t *testing.T, c *http.Client, d *devBroker, method, body string) httpAnswer {
	t.Helper()
	resp, err := c.Post("https://"+d.webAddr+"/"+method, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", method, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := httpAnswer{code: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

func reasonIn(a httpAnswer) string {
	details, _ := a.body["details"].([]any)
	for _, d := range details {
		if m, ok := d.(map[string]any); ok && m["@type"] == "type.googleapis.com/google.rpc.ErrorInfo" {
			r, _ := m["reason"].(string)
			return r
		}
	}
	return ""
}

func subjectJSON(name, given, sex, date, place string) string {
	return `{"birth_name":"` + name + `","given_names":["` + given + `"],"sex":"` + sex + `","birth_date":"` + date + `","birth_place_cog":"` + place + `","birth_country_cog":"99100"}`
}

const accessFull = `"access_context":{"recipient":"21990000100005","purpose":"tarification_sociale","case_reference":"HTTP-1"}`

// TestHTTPGateway calls every service over real HTTPS with the demo
// credentials, checks minimisation for the limited consumer, each error
// status, and that a call without a client certificate is refused.
func TestHTTPGateway(t *testing.T) {
	t.Parallel()
	d := startDev(t)
	full := httpClient(t, d, filepath.Join(d.dataDir, "dev", "consumers", "mairie-exemple"))
	zoe := subjectJSON("DUPONT", "Zoé", "SEX_FEMALE", "1984-03-12", "75056")
	for method, body := range map[string]string{
		"relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient":             `{` + accessFull + `,"subject":` + zoe + `}`,
		"relais.healthcover.v1.SolidarityHealthCoverService/GetSolidarityHealthCover":  `{` + accessFull + `,"subject":` + zoe + `}`,
		"relais.jobseeker.v1.JobSeekerStatusService/GetJobSeekerStatus":                `{` + accessFull + `,"france_travail_id":"SBX0000002"}`,
		"relais.studentstatus.v1.StudentStatusService/GetStudentStatus":                `{` + accessFull + `,"ine":"SBXINE00001"}`,
		"relais.studentscholarship.v1.StudentScholarshipService/GetStudentScholarship": `{` + accessFull + `,"ine":"SBXINE00001"}`,
	} {
		a := post(t, full, d, method, body)
		if a.code != http.StatusOK || a.body["source"] == nil || a.header.Get("x-request-id") == "" || a.header.Get("ratelimit-limit") == "" {
			t.Errorf("%s: %d %s (headers %v)", method, a.code, a.raw, a.header)
		}
	}

	limited := httpClient(t, d, filepath.Join(d.dataDir, "dev", "consumers", "ccas-limite"))
	a := post(t, limited, d, "relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient",
		`{"access_context":{"recipient":"21990000200003","purpose":"aide_sociale_facultative","case_reference":"HTTP-2"},"subject":`+zoe+`}`)
	if a.code != http.StatusOK || a.body["value"] == nil || a.body["children"] != nil || a.body["address"] != nil {
		t.Fatalf("limited consumer: %d %s", a.code, a.raw)
	}

	fq := "relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient"
	operator := httpClient(t, d, filepath.Join(d.dataDir, "dev", "operators", "admin"))
	for _, tc := range []struct {
		name   string
		client *http.Client
		method string
		body   string
		code   int
		reason string
	}{
		{"400 invalid recipient", full, fq, `{"access_context":{"recipient":"21990000100006","purpose":"tarification_sociale","case_reference":"X"},"subject":` + zoe + `}`, 400, "invalid_recipient"},
		{"400 malformed JSON", full, fq, `{"access_context":`, 400, "malformed_request"},
		{"401 not a consumer certificate", operator, fq, `{` + accessFull + `,"subject":` + zoe + `}`, 401, "credential_invalid"},
		{"403 purpose not granted", full, fq, `{"access_context":{"recipient":"21990000100005","purpose":"autre","case_reference":"X"},"subject":` + zoe + `}`, 403, "purpose_not_granted"},
		{"404 subject not found", full, fq, `{` + accessFull + `,"subject":` + subjectJSON("INCONNU", "Personne", "SEX_FEMALE", "2000-01-01", "75056") + `}`, 404, "subject_not_found"},
		{"422 not identifiable", full, fq, `{` + accessFull + `,"subject":{"birth_name":"NGUYEN","given_names":["Minh"],"sex":"SEX_MALE","birth_date":"1990-05-05","birth_country_cog":"99243"}}`, 422, "subject_not_identifiable"},
		{"503 source unavailable", full, fq, `{` + accessFull + `,"subject":` + subjectJSON("MERCIER", "Paul", "SEX_MALE", "1965-01-01", "75056") + `}`, 503, "source_unavailable"},
		{"504 source timeout", full, fq, `{` + accessFull + `,"subject":` + subjectJSON("BLANC", "Emma", "SEX_FEMALE", "1972-02-14", "69123") + `}`, 504, "source_timeout"},
	} {
		a := post(t, tc.client, d, tc.method, tc.body)
		if a.code != tc.code || reasonIn(a) != tc.reason {
			t.Errorf("%s: got %d %q, want %d %q: %s", tc.name, a.code, reasonIn(a), tc.code, tc.reason, a.raw)
		}
		if tc.code == 503 && a.header.Get("Retry-After") != "30" {
			t.Errorf("503 without Retry-After: %v", a.header)
		}
	}
	a = post(t, full, d, fq, `{"access_context":{"recipient":"21990000100006","purpose":"tarification_sociale","case_reference":"X"},"subject":`+zoe+`}`)
	if !strings.Contains(a.raw, `"field":"access_context.recipient"`) {
		t.Errorf("no field violation naming the recipient: %s", a.raw)
	}

	// 429: the demo quota is 20/s with a burst of 40; 120 calls from 12
	// clients at once empty the bucket whatever the machine's speed.
	var mu sync.Mutex
	var limitedAnswer httpAnswer
	var wg sync.WaitGroup
	for w := 0; w < 12; w++ {
		wg.Go(func() {
			for i := 0; i < 10; i++ {
				a := post(t, full, d, "relais.healthcover.v1.SolidarityHealthCoverService/GetSolidarityHealthCover", `{`+accessFull+`,"subject":`+zoe+`}`)
				if a.code == http.StatusTooManyRequests {
					mu.Lock()
					limitedAnswer = a
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if limitedAnswer.code != http.StatusTooManyRequests || reasonIn(limitedAnswer) != "rate_limited" || limitedAnswer.header.Get("Retry-After") == "" {
		t.Errorf("429: %d %v %s", limitedAnswer.code, limitedAnswer.header, limitedAnswer.raw)
	}

	// No client certificate: refused during the TLS handshake.
	if _, err := httpClient(t, d, "").Post("https://"+d.webAddr+"/"+fq, "application/json", strings.NewReader("{}")); err == nil {
		t.Fatal("a call without client certificate was answered")
	}
}

// TestOpenAPIIsServedAndValid fetches the OpenAPI document from the
// broker and validates it with go-openapi's validator; it must describe
// every typed service.
func TestOpenAPIIsServedAndValid(t *testing.T) {
	t.Parallel()
	d := startDev(t)
	c := httpClient(t, d, filepath.Join(d.dataDir, "dev", "consumers", "mairie-exemple"))
	resp, err := c.Get("https://" + d.webAddr + "/docs/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	doc, err := loads.Analyzed(json.RawMessage(raw), "")
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if err := validate.Spec(doc, strfmt.Default); err != nil {
		t.Fatalf("the OpenAPI document is invalid: %v", err)
	}
	for _, path := range []string{"/relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient", "/relais.studentstatus.v1.StudentStatusService/GetStudentStatus",
		"/relais.studentscholarship.v1.StudentScholarshipService/GetStudentScholarship", "/relais.jobseeker.v1.JobSeekerStatusService/GetJobSeekerStatus",
		"/relais.healthcover.v1.SolidarityHealthCoverService/GetSolidarityHealthCover"} {
		if !bytes.Contains(raw, []byte(`"`+path+`"`)) {
			t.Errorf("%s missing from the OpenAPI document", path)
		}
	}
	ref, err := c.Get("https://" + d.webAddr + "/docs/api.md")
	if err != nil || ref.StatusCode != http.StatusOK {
		t.Fatalf("API reference: %v %v", ref, err)
	}
	ref.Body.Close()
}
