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

	"buf.build/go/protovalidate"

	"github.com/relais-broker/relais/adapters/adaptertest"
	"github.com/relais-broker/relais/adapters/httpjson"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/source"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	nationalservicev1 "github.com/relais-broker/relais/proto/relais/nationalservice/v1"
	rsav1 "github.com/relais-broker/relais/proto/relais/rsa/v1"
)

// particulierError is the error body API particulier publishes.
func particulierError(w http.ResponseWriter, status int, code, title string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(`{"errors":[{"code":"` + code + `","title":"` + title + `","detail":"","source":null,"meta":{"provider":"CNAV"}}]}`))
}

// particulierUpstream mimics two API particulier v3 routes (RSA from the
// CNAV, national service from the DSNJ): the identity pivot in the query,
// the answer in {"data": …}, and the failure modes chosen by the birth
// name. A person is found only when every part of the identity the
// adapter sends matches, so a mapping that drops or mangles a parameter
// answers not found.
func particulierUpstream(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Api-Key") != token {
			particulierError(w, http.StatusUnauthorized, "00101", "Interdiction d'accès")
			return
		}
		q := r.URL.Query()
		name := q.Get("nomNaissance")
		switch name {
		case "LENT":
			<-r.Context().Done()
			return
		case "SATURE":
			w.Header().Set("Retry-After", "90")
			particulierError(w, http.StatusTooManyRequests, "00429", "Trop de requêtes")
			return
		case "PANNE":
			particulierError(w, http.StatusBadGateway, "37999", "Erreur inconnue du fournisseur de données")
			return
		case "HORSDELAI":
			particulierError(w, http.StatusGatewayTimeout, "37002", "Intermédiaire hors-délai")
			return
		case "HOMONYME":
			particulierError(w, http.StatusConflict, "37004", "Plusieurs dossiers correspondent")
			return
		case "CASSE":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"data": {"est_beneficiaire": tr`))
			return
		case "ENORME":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"data":{"commentaires":"` + strings.Repeat("a", 2<<20) + `"}}`))
			return
		case "TEXTE":
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte("<html>maintenance</html>"))
			return
		case "FORME":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"data":{"est_beneficiaire":"oui","statut_service_national":["en_regle"]}}`))
			return
		case "VIDE":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"data":{},"links":{},"meta":{}}`))
			return
		case "INCONNUCODE":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"data":{"statut_service_national":"peut_etre","commentaires":""}}`))
			return
		case "BAVARD":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"data":{"statut_service_national":"en_regle","commentaires":"` + strings.Repeat("x", 5000) + `"}}`))
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
		pivot := q.Get("prenoms[]") == "Samuel Jean" && q.Get("sexeEtatCivil") == "M" && q.Get("anneeDateNaissance") == "1980" &&
			q.Get("moisDateNaissance") == "9" && q.Get("jourDateNaissance") == "2" && q.Get("codeCogInseeCommuneNaissance") == "08480" &&
			q.Get("codeCogInseePaysNaissance") == "99100"
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		switch {
		case r.URL.Path == "/v3/dss/revenu_solidarite_active/identite" && name == "MARTINEAU" && pivot:
			_, _ = w.Write([]byte(`{"data":{"est_beneficiaire":true,"avec_majoration":true,"date_debut_droit":"1992-11-20"},"links":{},"meta":{}}`))
		case r.URL.Path == "/v3/dss/revenu_solidarite_active/identite" && name == "GONTRAND" && pivot:
			_, _ = w.Write([]byte(`{"data":{"est_beneficiaire":false,"avec_majoration":false,"date_debut_droit":null},"links":{},"meta":{}}`))
		case r.URL.Path == "/v3/dsnj/service_national/identite" && name == "MARTINEAU" && pivot:
			_, _ = w.Write([]byte(`{"data":{"statut_service_national":"pas_en_regle","commentaires":"Journée défense et citoyenneté non effectuée"},"links":{},"meta":{}}`))
		default:
			particulierError(w, http.StatusNotFound, "37003", "Entité non trouvée")
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func samuel(name string) *commonv1.SubjectIdentity {
	return &commonv1.SubjectIdentity{BirthName: name, GivenNames: []string{"Samuel", "Jean"}, Sex: commonv1.Sex_SEX_MALE,
		BirthDate: "1980-09-02", BirthPlaceCog: "08480", BirthCountryCog: "99100"}
}

func rsaReq(name string) *rsav1.GetRsaStatusRequest {
	return &rsav1.GetRsaStatusRequest{Subject: samuel(name)}
}

func nsReq(name string) *nationalservicev1.GetNationalServiceStatusRequest {
	return &nationalservicev1.GetNationalServiceStatusRequest{Subject: samuel(name)}
}

func particulierAdapter(t *testing.T, baseURL string) *httpjson.Adapter {
	t.Helper()
	secret := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(secret, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := httpjson.New(httpjson.Config{
		SourceID: "particulier-exemple", Provider: "CNAV / DSNJ (exemple)", BaseURL: baseURL, AuthHeader: "X-Api-Key", AuthValueFile: secret,
		Routes: map[string]httpjson.Route{httpjson.RsaMethod: httpjson.RsaRoute(), httpjson.NationalServiceMethod: httpjson.NationalServiceRoute()},
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParticulierConformance(t *testing.T) {
	a := particulierAdapter(t, particulierUpstream(t).URL)
	adaptertest.Run(t, adaptertest.Suite{Adapter: a, Cases: []adaptertest.Case{
		{Method: httpjson.RsaMethod, Found: rsaReq("MARTINEAU"), NotFound: rsaReq("INCONNU"), NotIdentifiable: rsaReq("HOMONYME"), Unavailable: rsaReq("PANNE"), Hang: rsaReq("LENT")},
		{Method: httpjson.NationalServiceMethod, Found: nsReq("MARTINEAU"), NotFound: nsReq("INCONNU"), NotIdentifiable: nsReq("HOMONYME"), Unavailable: nsReq("HORSDELAI"), Hang: nsReq("LENT")},
	}})
}

func TestParticulierMappedAnswers(t *testing.T) {
	a := particulierAdapter(t, particulierUpstream(t).URL)
	cat := catalog.Default()
	get := func(t *testing.T, method string, req source.Request) any {
		t.Helper()
		m, _ := cat.Method(method)
		req.Method, req.Scopes = method, m.Scopes
		got, err := a.Fetch(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if err := protovalidate.Validate(got); err != nil {
			t.Fatalf("mapped answer breaks its rules: %v", err)
		}
		return got
	}
	t.Run("rsa beneficiary with increase", func(t *testing.T) {
		r := get(t, httpjson.RsaMethod, source.Request{Input: rsaReq("MARTINEAU")}).(*rsav1.GetRsaStatusResponse)
		if !r.GetIsBeneficiary() || !r.GetWithIncrease() || r.GetRightsStartDate() != "1992-11-20" || r.GetSource().GetSourceId() != "particulier-exemple" || r.GetSource().GetValidUntil() == nil {
			t.Fatalf("rsa: %v", r)
		}
	})
	t.Run("rsa non-beneficiary: false is kept, a null date is left unset", func(t *testing.T) {
		r := get(t, httpjson.RsaMethod, source.Request{Input: rsaReq("GONTRAND")}).(*rsav1.GetRsaStatusResponse)
		if r.IsBeneficiary == nil || r.GetIsBeneficiary() || r.WithIncrease == nil || r.GetRightsStartDate() != "" {
			t.Fatalf("rsa: %v", r)
		}
	})
	t.Run("national service code translated", func(t *testing.T) {
		r := get(t, httpjson.NationalServiceMethod, source.Request{Input: nsReq("MARTINEAU")}).(*nationalservicev1.GetNationalServiceStatusResponse)
		if r.GetStatus() != nationalservicev1.NationalServiceStatus_NATIONAL_SERVICE_STATUS_NOT_IN_ORDER || !strings.Contains(r.GetComment(), "non effectuée") {
			t.Fatalf("national service: %v", r)
		}
	})
	t.Run("a mangled identity parameter is not found", func(t *testing.T) {
		id := samuel("MARTINEAU")
		id.BirthDate = "1980-09-20" // the day part differs
		m, _ := cat.Method(httpjson.RsaMethod)
		_, err := a.Fetch(context.Background(), source.Request{Method: m.FullMethod, Input: &rsav1.GetRsaStatusRequest{Subject: id}, Scopes: m.Scopes})
		if !errors.Is(err, source.ErrSubjectNotFound) {
			t.Fatalf("err = %v, want not found", err)
		}
	})
}

func TestParticulierFailureModes(t *testing.T) {
	a := particulierAdapter(t, particulierUpstream(t).URL)
	cat := catalog.Default()
	for _, tc := range []struct {
		name, method, subject string
		want                  error
		retryAfter            time.Duration
	}{
		{"slow upstream", httpjson.RsaMethod, "LENT", source.ErrTimeout, 0},
		{"429 with Retry-After", httpjson.RsaMethod, "SATURE", source.ErrUnavailable, 90 * time.Second},
		{"502 provider error", httpjson.RsaMethod, "PANNE", source.ErrUnavailable, 0},
		{"504 provider timeout", httpjson.NationalServiceMethod, "HORSDELAI", source.ErrUnavailable, 0},
		{"malformed JSON", httpjson.RsaMethod, "CASSE", source.ErrInvalidResponse, 0},
		{"huge body", httpjson.NationalServiceMethod, "ENORME", source.ErrInvalidResponse, 0},
		{"wrong content type", httpjson.RsaMethod, "TEXTE", source.ErrInvalidResponse, 0},
		{"wrong shape (rsa)", httpjson.RsaMethod, "FORME", source.ErrInvalidResponse, 0},
		{"wrong shape (national service)", httpjson.NationalServiceMethod, "FORME", source.ErrInvalidResponse, 0},
		{"required field missing (rsa)", httpjson.RsaMethod, "VIDE", source.ErrInvalidResponse, 0},
		{"required field missing (national service)", httpjson.NationalServiceMethod, "VIDE", source.ErrInvalidResponse, 0},
		{"unknown status code", httpjson.NationalServiceMethod, "INCONNUCODE", source.ErrInvalidResponse, 0},
		{"connection reset", httpjson.NationalServiceMethod, "COUPE", source.ErrUnavailable, 0},
		{"404", httpjson.NationalServiceMethod, "INCONNU", source.ErrSubjectNotFound, 0},
		{"409", httpjson.RsaMethod, "HOMONYME", source.ErrNotIdentifiable, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			m, _ := cat.Method(tc.method)
			in := source.Request{Method: m.FullMethod, Scopes: m.Scopes, Input: rsaReq(tc.subject)}
			if tc.method == httpjson.NationalServiceMethod {
				in.Input = nsReq(tc.subject)
			}
			_, err := a.Fetch(ctx, in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			var retry *source.RetryableError
			if tc.retryAfter > 0 && (!errors.As(err, &retry) || retry.RetryAfter != tc.retryAfter) {
				t.Fatalf("retry after: %v", err)
			}
			for _, leak := range []string{tc.subject, "Samuel", "1980", "08480", token} {
				if strings.Contains(err.Error(), leak) && tc.subject != "INCONNU" {
					t.Fatalf("error message leaks %q: %v", leak, err)
				}
			}
		})
	}
	t.Run("an over-long comment breaks the response's rules", func(t *testing.T) {
		m, _ := cat.Method(httpjson.NationalServiceMethod)
		got, err := a.Fetch(context.Background(), source.Request{Method: m.FullMethod, Scopes: m.Scopes, Input: nsReq("BAVARD")})
		if err != nil {
			t.Fatal(err)
		}
		if protovalidate.Validate(got) == nil {
			t.Fatal("a 5000-character comment passed validation: the broker would forward it")
		}
	})
}
