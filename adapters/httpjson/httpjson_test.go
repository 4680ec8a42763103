package httpjson_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relais-broker/relais/adapters/adaptertest"
	"github.com/relais-broker/relais/adapters/httpjson"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/source"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
	jobseekerv1 "github.com/relais-broker/relais/proto/relais/jobseeker/v1"
)

const (
	cafBody = `{"regime":"CNAF","quotientFamilial":755,"annee":2026,"mois":10,
 "allocataires":[{"nomNaissance":"DUPONT","nomUsuel":"","prenoms":"Zoé Marie","dateDeNaissance":"12/03/1984","sexe":"F"}],
 "enfants":[{"nomNaissance":"ROBERT","prenoms":"Inès","dateDeNaissance":"21/05/2014","sexe":"F"}],
 "adresse":{"identite":"MADAME ZOÉ DUPONT","numeroRue":"12 RUE DES LILAS","codePostal":"75019","ville":"PARIS","pays":"FRANCE"}}`
	ftBody = `{"identite":{"nomNaissance":"GARCIA","nomUsage":"","prenoms":["Manon"],"dateNaissance":"1987-08-08"},
 "inscription":{"inscrit":false,"dateInscription":"2024-03-01","dateCessationInscription":"2025-06-30","codeCategorie":"1","libelleCategorie":"Personne sans emploi"}}`
	token = "s3cr3t-token-from-a-file"
)

// upstream mimics a CAF and a France Travail API, with failure modes
// chosen by the birth name (or the identifier).
func upstream(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Api-Key") != token {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		q := r.URL.Query()
		name := q.Get("nomNaissance")
		switch name {
		case "LENT":
			<-r.Context().Done()
			return
		case "ERREUR":
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		case "SATURE":
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		case "HOMONYME":
			w.WriteHeader(http.StatusConflict)
			return
		case "CASSE":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"quotientFamilial": 7`))
			return
		case "ENORME":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"x":"` + strings.Repeat("a", 2<<20) + `"}`))
			return
		case "TEXTE":
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte("<html>maintenance</html>"))
			return
		case "FORME":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"regime":"CNAF","quotientFamilial":"beaucoup","annee":2026,"mois":10}`))
			return
		case "COUPE":
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				if tc, ok := conn.(*net.TCPConn); ok {
					_ = tc.SetLinger(0) // RST
				}
				conn.Close()
			}
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		switch {
		case r.URL.Path == "/v2/quotient-familial" && name == "DUPONT" && q.Get("dateNaissance") == "1984-03-12":
			_, _ = w.Write([]byte(cafBody))
		case r.URL.Path == "/v1/statut-demandeur-emploi" && (q.Get("identifiant") == "SBX0000002" || name == "GARCIA"):
			_, _ = w.Write([]byte(ftBody))
		default:
			http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func newAdapter(t *testing.T, baseURL string) *httpjson.Adapter {
	t.Helper()
	secret := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(secret, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := httpjson.New(httpjson.Config{
		SourceID: "caf-exemple", Provider: "CNAF (exemple)", BaseURL: baseURL, AuthHeader: "X-Api-Key", AuthValueFile: secret,
		Routes: map[string]httpjson.Route{httpjson.FamilyQuotientMethod: httpjson.FamilyQuotientRoute(), httpjson.JobSeekerMethod: httpjson.JobSeekerRoute()},
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func fq(name string) *familyquotientv1.GetFamilyQuotientRequest {
	return &familyquotientv1.GetFamilyQuotientRequest{Subject: &commonv1.SubjectIdentity{BirthName: name, GivenNames: []string{"Zoé"}, Sex: commonv1.Sex_SEX_FEMALE,
		BirthDate: "1984-03-12", BirthPlaceCog: "75056", BirthCountryCog: "99100"}}
}

func js(name string) *jobseekerv1.GetJobSeekerStatusRequest {
	return &jobseekerv1.GetJobSeekerStatusRequest{Subject: &jobseekerv1.GetJobSeekerStatusRequest_Identity{Identity: &commonv1.SubjectIdentity{
		BirthName: name, GivenNames: []string{"Manon"}, Sex: commonv1.Sex_SEX_FEMALE, BirthDate: "1987-08-08", BirthPlaceCog: "31555", BirthCountryCog: "99100"}}}
}

func TestConformance(t *testing.T) {
	a := newAdapter(t, upstream(t).URL)
	adaptertest.Run(t, adaptertest.Suite{Adapter: a, Cases: []adaptertest.Case{
		{Method: httpjson.FamilyQuotientMethod, Found: fq("DUPONT"), NotFound: fq("INCONNU"), NotIdentifiable: fq("HOMONYME"), Unavailable: fq("SATURE"), Hang: fq("LENT")},
		{Method: httpjson.JobSeekerMethod, Found: js("GARCIA"), NotFound: js("INCONNU"), NotIdentifiable: js("HOMONYME"), Unavailable: js("ERREUR"), Hang: js("LENT")},
	}})
}

func TestMappedAnswer(t *testing.T) {
	a := newAdapter(t, upstream(t).URL)
	m, _ := catalog.Default().Method(httpjson.FamilyQuotientMethod)
	got, err := a.Fetch(context.Background(), source.Request{Method: m.FullMethod, Input: fq("DUPONT"), Scopes: m.Scopes})
	if err != nil {
		t.Fatal(err)
	}
	r := got.(*familyquotientv1.GetFamilyQuotientResponse)
	if r.GetValue() != 755 || r.GetRegime() != familyquotientv1.Regime_REGIME_CNAF || r.GetChildren()[0].GetBirthDate() != "2014-05-21" ||
		len(r.GetBeneficiaries()[0].GetGivenNames()) != 2 || r.GetAddress().GetCity() != "PARIS" || r.GetSource().GetValidUntil() == nil {
		t.Fatalf("mapped answer: %v", r)
	}
}

func TestUpstreamFailureModes(t *testing.T) {
	a := newAdapter(t, upstream(t).URL)
	call := func(name string, timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		m, _ := catalog.Default().Method(httpjson.FamilyQuotientMethod)
		_, err := a.Fetch(ctx, source.Request{Method: m.FullMethod, Input: fq(name), Scopes: m.Scopes})
		return err
	}
	for _, tc := range []struct {
		name, subject string
		want          error
		retryAfter    time.Duration
	}{
		{"slow upstream", "LENT", source.ErrTimeout, 0},
		{"500", "ERREUR", source.ErrUnavailable, 0},
		{"503 with Retry-After", "SATURE", source.ErrUnavailable, 2 * time.Minute},
		{"malformed JSON", "CASSE", source.ErrInvalidResponse, 0},
		{"huge body", "ENORME", source.ErrInvalidResponse, 0},
		{"wrong content type", "TEXTE", source.ErrInvalidResponse, 0},
		{"wrong shape", "FORME", source.ErrInvalidResponse, 0},
		{"connection reset", "COUPE", source.ErrUnavailable, 0},
		{"404", "INCONNU", source.ErrSubjectNotFound, 0},
		{"409", "HOMONYME", source.ErrNotIdentifiable, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := call(tc.subject, 300*time.Millisecond)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			var retry *source.RetryableError
			if tc.retryAfter > 0 && (!errors.As(err, &retry) || retry.RetryAfter != tc.retryAfter) {
				t.Fatalf("retry after: %v", err)
			}
			for _, leak := range []string{tc.subject, "1984-03-12", token} {
				if strings.Contains(err.Error(), leak) && tc.subject != "INCONNU" {
					t.Fatalf("error message leaks %q: %v", leak, err)
				}
			}
		})
	}
}

func TestConfigurationIsChecked(t *testing.T) {
	base := httpjson.Config{SourceID: "x", Provider: "y", BaseURL: "https://caf.example", Routes: map[string]httpjson.Route{httpjson.FamilyQuotientMethod: httpjson.FamilyQuotientRoute()}}
	bad := func(f func(*httpjson.Config)) error { c := base; f(&c); _, err := httpjson.New(c); return err }
	for name, err := range map[string]error{
		"plain http off loopback": bad(func(c *httpjson.Config) { c.BaseURL = "http://caf.example" }),
		"unknown method":          bad(func(c *httpjson.Config) { c.Routes = map[string]httpjson.Route{"/x.Y/Z": {}} }),
		"unknown field": bad(func(c *httpjson.Config) {
			r := httpjson.FamilyQuotientRoute()
			r.Mapping["income"] = httpjson.Field{Path: "revenu"}
			c.Routes = map[string]httpjson.Route{httpjson.FamilyQuotientMethod: r}
		}),
		"bad enum target": bad(func(c *httpjson.Config) {
			r := httpjson.FamilyQuotientRoute()
			r.Mapping["regime"] = httpjson.Field{Path: "regime", Enum: map[string]string{"CNAF": "REGIME_CAF"}}
			c.Routes = map[string]httpjson.Route{httpjson.FamilyQuotientMethod: r}
		}),
		"missing secret file": bad(func(c *httpjson.Config) { c.AuthHeader, c.AuthValueFile = "X-Api-Key", "/nonexistent" }),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
