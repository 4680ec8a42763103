package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relais-broker/relais/internal/localserver"

	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/internal/devidp"
	"github.com/relais-broker/relais/internal/devidp/devidptest"
	"github.com/relais-broker/relais/internal/tlstest"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
)

// tokenPattern is the proto's rule for citizen_access_token.
var tokenPattern = regexp.MustCompile(`^[A-Za-z0-9._~+/-]+=*$`)

// writeCA writes the provider's certificate as a PEM bundle for --idp-ca.
func writeCA(t *testing.T, s *devidptest.Server) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "idp-ca.pem")
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.TLS.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// userinfoSub returns the verified userinfo subject and audience of token.
func userinfoSub(t *testing.T, s *devidptest.Server, token string) (string, []any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.Issuer+"/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := s.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("userinfo: %d", resp.StatusCode)
	}
	jws, err := jose.ParseSigned(string(body), []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Sub string `json:"sub"`
		Aud []any  `json:"aud"`
	}
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &claims); err != nil {
		t.Fatal(err)
	}
	return claims.Sub, claims.Aud
}

func TestTokenCommand(t *testing.T) {
	s := devidptest.Start(t, devidptest.Options{})
	ca := writeCA(t, s)
	for _, tc := range []struct {
		client, citizen, label string
		aud                    []any
	}{
		{"citizen-portal", "DUPONT Zoé", "DUPONT Zoé", []any{"citizen-portal", "relais"}},
		{"other-town", "benali yasmine", "BENALI Yasmine", []any{"other-town"}},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), []string{"token", "--issuer", s.Issuer, "--idp-ca", ca, "--client-id", tc.client, "--citizen", tc.citizen}, &stdout, &stderr)
		if code != 0 {
			t.Fatalf("token %s: exit %d: %s", tc.citizen, code, stderr.String())
		}
		out := stdout.String()
		tok := strings.TrimSuffix(out, "\n")
		if strings.Count(out, "\n") != 1 || !tokenPattern.MatchString(tok) || len(tok) > 4096 {
			t.Fatalf("stdout is not one token line: %q", out)
		}
		sub, aud := userinfoSub(t, s, tok)
		want, _ := s.Provider.Subject(tc.label)
		if sub != want || fmt.Sprint(aud) != fmt.Sprint(tc.aud) {
			t.Errorf("%s: sub %s aud %v, want %s %v", tc.citizen, sub, aud, want, tc.aud)
		}
		if stderr.Len() != 0 {
			t.Errorf("stderr: %s", stderr.String())
		}
	}
}

func TestTokenCommandErrors(t *testing.T) {
	s := devidptest.Start(t, devidptest.Options{})
	ca := writeCA(t, s)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"token", "--issuer", s.Issuer, "--idp-ca", ca, "--citizen", "MARTIN Paul"}, &stdout, &stderr)
	if code != 1 || stdout.Len() != 0 {
		t.Fatalf("exit %d, stdout %q", code, stdout.String())
	}
	if !strings.Contains(stderr.String(), `no citizen with that label "MARTIN Paul"; available: DUPONT Zoé, LEROY Camille, BENALI Yasmine, DUBOIS Alice`) {
		t.Errorf("stderr: %s", stderr.String())
	}
	stderr.Reset()
	if code := run(context.Background(), []string{"token", "--issuer", s.Issuer, "--idp-ca", ca}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "--citizen is required") {
		t.Errorf("no --citizen: exit %d: %s", code, stderr.String())
	}
	// The provider's certificate is not trusted without --idp-ca.
	stderr.Reset()
	if code := run(context.Background(), []string{"token", "--issuer", s.Issuer, "--data-dir", t.TempDir(), "--citizen", "DUPONT Zoé"}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "certificate") {
		t.Errorf("untrusted provider: exit %d: %s", code, stderr.String())
	}
	if code := run(context.Background(), []string{"bogus"}, &stdout, &stderr); code != 2 {
		t.Errorf("unknown command: exit %d", code)
	}
}

// fakeRelais is a FamilyQuotientService over real mTLS that resolves the
// citizen's token at the real provider, as the broker would, and answers
// per citizen.
type fakeRelais struct {
	familyquotientv1.UnimplementedFamilyQuotientServiceServer
	idp *devidptest.Server
	t   *testing.T

	mu     sync.Mutex
	tokens []string
	reqs   []*familyquotientv1.GetFamilyQuotientRequest
	answer func(sub string) (*familyquotientv1.GetFamilyQuotientResponse, error)
}

func (f *fakeRelais) GetFamilyQuotient(_ context.Context, req *familyquotientv1.GetFamilyQuotientRequest) (*familyquotientv1.GetFamilyQuotientResponse, error) {
	f.mu.Lock()
	f.tokens = append(f.tokens, req.GetCitizenAccessToken())
	f.reqs = append(f.reqs, proto.Clone(req).(*familyquotientv1.GetFamilyQuotientRequest))
	answer := f.answer
	f.mu.Unlock()
	sub, _ := userinfoSub(f.t, f.idp, req.GetCitizenAccessToken())
	return answer(sub)
}

type harness struct {
	idp    *devidptest.Server
	relais *fakeRelais
	portal *httptest.Server
	logs   *bytes.Buffer
	client *http.Client
}

// startRelais serves the fake Relais over mTLS (or returns an address
// where nothing listens) and writes the demo consumer's credential and the
// CA where `relaisd dev` writes them, in the returned data directory.
func startRelais(t *testing.T, idp *devidptest.Server, up bool) (*fakeRelais, string, string) {
	t.Helper()
	pki := tlstest.New(t)
	f := &fakeRelais{idp: idp, t: t}
	addr := "127.0.0.1:1" // nothing listens there
	if up {
		srv := grpc.NewServer(pki.ServerCreds())
		familyquotientv1.RegisterFamilyQuotientServiceServer(srv, f)
		addr = tlstest.Serve(t, srv)
	}
	data := t.TempDir()
	cdir := filepath.Join(data, "dev", "consumers", "mairie-exemple")
	if err := os.MkdirAll(cdir, 0o700); err != nil {
		t.Fatal(err)
	}
	cred := pki.Issue(t, identity.KindConsumer, "21990000100005")
	bundle, err := pki.CA.TrustBundle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for f, b := range map[string][]byte{filepath.Join(cdir, "cert.pem"): cred.FullChainPEM(), filepath.Join(cdir, "key.pem"): cred.KeyPEM, filepath.Join(data, "dev", "ca.pem"): bundle} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return f, addr, data
}

func startHarness(t *testing.T, relaisUp bool) *harness {
	t.Helper()
	idp := devidptest.Start(t, devidptest.Options{})
	f, addr, data := startRelais(t, idp, relaisUp)
	creds, err := consumerCredentials(data, "mairie-exemple", "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := dialRelais(addr, "", creds)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })

	logs := &bytes.Buffer{}
	ps := httptest.NewUnstartedServer(nil)
	p, err := newPortal(portalConfig{
		Issuer: idp.Issuer, ClientID: devidp.ClientCitizenPortal,
		RedirectURL: "http://" + ps.Listener.Addr().String() + "/callback",
		HTTPClient:  idp.HTTPClient(), Relais: newRelaisClient(conn),
		Recipient: "21990000100005", Purpose: "tarification_sociale",
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ps.Config.Handler = p
	ps.Start()
	t.Cleanup(ps.Close)

	return &harness{idp: idp, relais: f, portal: ps, logs: logs, client: browser(idp)}
}

// browser is an HTTP client with a cookie jar that trusts the provider.
func browser(idp *devidptest.Server) *http.Client {
	jar, _ := cookiejar.New(nil)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = idp.HTTPClient().Transport.(*http.Transport).TLSClientConfig.Clone()
	return &http.Client{Jar: jar, Transport: tr, Timeout: 10 * time.Second}
}

var radio = regexp.MustCompile(`<input type="radio" name="citizen" id="[^"]*" value="([^"]*)" data-label="([^"]*)"`)
var hidden = regexp.MustCompile(`<input type="hidden" name="authRequestID" value="([^"]*)">`)

// browse logs in at the portal as citizen (or cancels when citizen is
// empty) and returns the final page.
func (h *harness) browse(t *testing.T, citizen string) (int, string) {
	t.Helper()
	resp, err := h.client.Get(h.portal.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Request.URL.String(), h.idp.Issuer+"/login") {
		t.Fatalf("login page: %d at %s", resp.StatusCode, resp.Request.URL.Path)
	}
	m := hidden.FindStringSubmatch(string(page))
	if m == nil {
		t.Fatal("login page has no request id")
	}
	form := url.Values{"authRequestID": {m[1]}}
	if citizen == "" {
		form.Set("cancel", "1")
	}
	for _, r := range radio.FindAllStringSubmatch(string(page), -1) {
		if html.UnescapeString(r[2]) == citizen {
			form.Set("citizen", r[1])
		}
	}
	if citizen != "" && form.Get("citizen") == "" {
		t.Fatalf("no citizen %q on the login page", citizen)
	}
	resp, err = h.client.PostForm(h.idp.Issuer+"/login", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.HasPrefix(resp.Request.URL.String(), h.portal.URL+"/callback") {
		t.Fatalf("flow ended at %s", resp.Request.URL.Path)
	}
	return resp.StatusCode, html.UnescapeString(string(body))
}

func TestWebFlow(t *testing.T) {
	h := startHarness(t, true)
	zoe, _ := h.idp.Provider.Subject("DUPONT Zoé")
	h.relais.answer = func(sub string) (*familyquotientv1.GetFamilyQuotientResponse, error) {
		if sub != zoe {
			return nil, status.Error(codes.NotFound, "subject not found")
		}
		return &familyquotientv1.GetFamilyQuotientResponse{
			Value: proto.Int32(755), ReferenceYear: proto.Int32(2026), ReferenceMonth: proto.Int32(10),
			Regime: familyquotientv1.Regime_REGIME_CNAF,
		}, nil
	}
	resp, err := h.client.Get(h.portal.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	home, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(home), "Se connecter avec FranceConnect (démo)") || !strings.Contains(string(home), `lang="fr"`) {
		t.Fatal("home page lacks the login button")
	}

	code, page := h.browse(t, "DUPONT Zoé")
	if code != http.StatusOK {
		t.Fatalf("result: %d\n%s", code, page)
	}
	for _, want := range []string{"Votre quotient familial", "755 €", "10/2026", "CNAF", "Non transmis", "allocataires, enfants, adresse"} {
		if !strings.Contains(page, want) {
			t.Errorf("result page lacks %q", want)
		}
	}
	h.relais.mu.Lock()
	req, tok := h.relais.reqs[0], h.relais.tokens[0]
	h.relais.mu.Unlock()
	if req.GetSubject() != nil || req.GetAccessContext().GetRecipient() != "21990000100005" || req.GetAccessContext().GetPurpose() != "tarification_sociale" ||
		!strings.HasPrefix(req.GetAccessContext().GetCaseReference(), "PORTAIL-") {
		t.Errorf("request: %v", req)
	}
	if strings.Contains(page, tok) || strings.Contains(h.logs.String(), tok) {
		t.Error("the access token reached the page or the portal's log")
	}
	if !strings.Contains(h.logs.String(), "relais call answered") {
		t.Errorf("logs: %s", h.logs.String())
	}
	// The pending login is single-use: replaying the callback is refused.
	resp, err = h.client.Get(h.portal.URL + "/callback?state=x&code=y")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("replayed callback: %d", resp.StatusCode)
	}

	// Logout goes to the provider's end session and back home.
	resp, err = h.client.PostForm(h.portal.URL+"/logout", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.String() != h.portal.URL+"/" {
		t.Errorf("logout ended at %d %s", resp.StatusCode, resp.Request.URL)
	}
}

func TestWebFlowRefusals(t *testing.T) {
	h := startHarness(t, true)
	h.relais.answer = func(string) (*familyquotientv1.GetFamilyQuotientResponse, error) {
		st, _ := status.New(codes.Unavailable, "identity provider is unavailable").WithDetails(
			&errdetails.ErrorInfo{Reason: "identity_provider_unavailable", Domain: "relais"},
			&errdetails.RetryInfo{RetryDelay: durationpb.New(5 * time.Second)})
		return nil, st.Err()
	}
	_, page := h.browse(t, "LEROY Camille")
	for _, want := range []string{"Demande refusée par Relais", "Le fournisseur d'identité est momentanément indisponible",
		"identity_provider_unavailable", "Unavailable", "5 s"} {
		if !strings.Contains(page, want) {
			t.Errorf("refusal page lacks %q", want)
		}
	}
	if !strings.Contains(h.logs.String(), "reason=identity_provider_unavailable") {
		t.Errorf("logs: %s", h.logs.String())
	}

	h.relais.answer = func(string) (*familyquotientv1.GetFamilyQuotientResponse, error) {
		st, _ := status.New(codes.PermissionDenied, "designation by citizen login is not granted").WithDetails(
			&errdetails.ErrorInfo{Reason: "designation_not_granted", Domain: "relais"})
		return nil, st.Err()
	}
	if _, page := h.browse(t, "DUPONT Zoé"); !strings.Contains(page, "pas habilitée à vous désigner par votre connexion") {
		t.Errorf("designation refusal not explained:\n%s", page)
	}

	// Cancelling at the provider comes back as such.
	if _, page := h.browse(t, ""); !strings.Contains(page, "Vous avez annulé la connexion") {
		t.Errorf("cancel:\n%s", page)
	}
	// A callback whose state is not the pending one is refused.
	resp, err := h.client.Get(h.portal.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = h.client.Get(h.portal.URL + "/callback?state=forged&code=x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(html.UnescapeString(string(body)), "ne correspond pas") {
		t.Errorf("forged state: %d", resp.StatusCode)
	}
}

func TestWebFlowRelaisDown(t *testing.T) {
	h := startHarness(t, false)
	_, page := h.browse(t, "DUPONT Zoé")
	if !strings.Contains(page, "Relais est momentanément injoignable") || !strings.Contains(page, "Unavailable") {
		t.Errorf("relais down:\n%s", page)
	}
}

func TestResultView(t *testing.T) {
	v := resultView(&familyquotientv1.GetFamilyQuotientResponse{})
	if len(v.Rows) != 0 || len(v.Withheld) != 4 {
		t.Errorf("empty answer: %+v", v)
	}
	v = resultView(&familyquotientv1.GetFamilyQuotientResponse{
		Source: &commonv1.SourceMetadata{SourceId: "sandbox", Provider: "CNAF (bac à sable)", ProducedAt: timestamppb.New(time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC))},
		Value:  proto.Int32(0), Regime: familyquotientv1.Regime_REGIME_MSA,
		Children: []*commonv1.Person{{BirthName: "ROBERT", GivenNames: []string{"Inès"}, BirthDate: "2014-05-21"}},
		Address:  &commonv1.PostalAddress{StreetLine: "12 RUE DES LILAS", PostalCode: "75019", City: "PARIS"},
	})
	if v.SourceLine != "CNAF (bac à sable), le 01/12/2026 à 10:30" {
		t.Errorf("source line %q", v.SourceLine)
	}
	if fmt.Sprint(v.Rows) != "[{Quotient familial 0 €} {Régime MSA (mutualité sociale agricole)}]" || fmt.Sprint(v.Withheld) != "[allocataires]" {
		t.Errorf("rows %v withheld %v", v.Rows, v.Withheld)
	}
	if fmt.Sprint(v.Children) != "[{Inès ROBERT 2014-05-21}]" || fmt.Sprint(v.Address) != "[12 RUE DES LILAS 75019 PARIS]" {
		t.Errorf("children %v address %v", v.Children, v.Address)
	}
}

// TestServeCommand runs the `serve` command as a user would (flags, the
// credential found in --data-dir) and logs in through it.
func TestServeCommand(t *testing.T) {
	idp := devidptest.Start(t, devidptest.Options{})
	f, addr, data := startRelais(t, idp, true)
	f.answer = func(string) (*familyquotientv1.GetFamilyQuotientResponse, error) {
		return &familyquotientv1.GetFamilyQuotientResponse{Value: proto.Int32(412)}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	out, w := io.Pipe()
	var stderr localserver.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--listen", "127.0.0.1:0", "--issuer", idp.Issuer, "--idp-ca", writeCA(t, idp),
			"--relais", addr, "--data-dir", data}, w, &stderr)
		w.Close()
	}()
	line, err := readLine(out)
	if err != nil {
		t.Fatalf("serve printed nothing: %v (%s)", err, stderr.String())
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	m := regexp.MustCompile(`^citizen-portal: (http://127\.0\.0\.1:\d+)/ `).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("banner %q", line)
	}
	h := &harness{idp: idp, relais: f, portal: &httptest.Server{URL: m[1]}, client: browser(idp)}
	if _, page := h.browse(t, "DUBOIS Alice"); !strings.Contains(page, "412 €") {
		t.Errorf("result page:\n%s", page)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("serve exit %d: %s", code, stderr.String())
	}
	f.mu.Lock()
	tokens := append([]string(nil), f.tokens...)
	f.mu.Unlock()
	if len(tokens) != 1 {
		t.Fatalf("relais got %d calls", len(tokens))
	}
	if strings.Contains(stderr.String(), tokens[0]) {
		t.Error("token in the serve log")
	}
	if !strings.Contains(stderr.String(), "relais call answered") {
		t.Errorf("serve log: %s", stderr.String())
	}
}

func readLine(r io.Reader) (string, error) {
	var b []byte
	one := make([]byte, 1)
	for {
		if _, err := r.Read(one); err != nil {
			return string(b), err
		}
		if one[0] == '\n' {
			return string(b), nil
		}
		b = append(b, one[0])
	}
}
