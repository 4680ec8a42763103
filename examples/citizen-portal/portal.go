package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
)

// portalConfig configures the web app.
type portalConfig struct {
	Issuer, ClientID, ClientSecret string
	// RedirectURL is http://LISTEN/callback.
	RedirectURL string
	// HTTPClient trusts the provider.
	HTTPClient *http.Client
	// Relais makes the call.
	Relais familyQuotient
	// Recipient and Purpose fill the access context.
	Recipient, Purpose string
	// Now is the clock of pending logins; time.Now when nil.
	Now func() time.Time
	// Logger gets one line per login outcome, without any token or identity.
	Logger *slog.Logger
}

const (
	loginCookie     = "citizen_portal_login"
	pendingLifetime = 10 * time.Minute
	maxPending      = 1000
)

type portal struct {
	cfg  portalConfig
	oidc *oidcClient
	now  func() time.Time
	log  *slog.Logger
	mux  *http.ServeMux

	mu      sync.Mutex
	pending map[string]pendingEntry
}

type pendingEntry struct {
	pendingLogin
	expires time.Time
}

func newPortal(cfg portalConfig) (*portal, error) {
	u, err := url.Parse(cfg.RedirectURL)
	if err != nil || u.Path != "/callback" || u.Host == "" {
		return nil, errors.New("portal: redirect url must be http(s)://HOST:PORT/callback")
	}
	if cfg.Relais == nil || cfg.HTTPClient == nil || cfg.Issuer == "" || cfg.ClientID == "" {
		return nil, errors.New("portal: issuer, client id, http client and relais client are required")
	}
	p := &portal{
		cfg:     cfg,
		oidc:    &oidcClient{issuer: cfg.Issuer, clientID: cfg.ClientID, clientSecret: cfg.ClientSecret, redirectURL: cfg.RedirectURL, http: cfg.HTTPClient},
		now:     cfg.Now,
		log:     cfg.Logger,
		pending: map[string]pendingEntry{},
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.mux = http.NewServeMux()
	p.mux.HandleFunc("GET /{$}", p.home)
	p.mux.HandleFunc("GET /login", p.login)
	p.mux.HandleFunc("GET /callback", p.callback)
	p.mux.HandleFunc("POST /logout", p.logout)
	p.mux.HandleFunc("GET /style.css", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		_, _ = w.Write([]byte(portalCSS))
	})
	return p, nil
}

func (p *portal) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	p.mux.ServeHTTP(w, r)
}

func (p *portal) home(w http.ResponseWriter, _ *http.Request) {
	p.render(w, http.StatusOK, "home", nil)
}

// login starts the flow: a pending record bound to a cookie, then the
// provider's authorization endpoint.
func (p *portal) login(w http.ResponseWriter, r *http.Request) {
	authURL, pl, err := p.oidc.start(r.Context())
	if err != nil {
		p.log.Warn("login not started", "reason", "identity provider unreachable")
		p.render(w, http.StatusBadGateway, "error", pageError{Title: "Connexion impossible",
			Explanation: "Le fournisseur d'identité est injoignable. Réessayez dans un instant."})
		return
	}
	id := randomHex()
	now := p.now()
	p.mu.Lock()
	for k, e := range p.pending {
		if !now.Before(e.expires) {
			delete(p.pending, k)
		}
	}
	if len(p.pending) >= maxPending {
		p.mu.Unlock()
		p.render(w, http.StatusServiceUnavailable, "error", pageError{Title: "Trop de connexions en cours",
			Explanation: "Réessayez dans quelques minutes."})
		return
	}
	p.pending[id] = pendingEntry{pendingLogin: pl, expires: now.Add(pendingLifetime)}
	p.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: id, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteLaxMode, MaxAge: int(pendingLifetime / time.Second)})
	http.Redirect(w, r, authURL, http.StatusFound)
}

// takePending returns and forgets the pending login of the request's cookie.
func (p *portal) takePending(r *http.Request) (pendingLogin, bool) {
	c, err := r.Cookie(loginCookie)
	if err != nil {
		return pendingLogin{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.pending[c.Value]
	delete(p.pending, c.Value)
	if !ok || !p.now().Before(e.expires) {
		return pendingLogin{}, false
	}
	return e.pendingLogin, true
}

func (p *portal) callback(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: "", Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode, MaxAge: -1})
	pl, ok := p.takePending(r)
	if !ok {
		p.log.Info("login refused", "reason", "no pending login")
		p.render(w, http.StatusBadRequest, "error", pageError{Title: "Connexion introuvable",
			Explanation: "Cette connexion a expiré ou a déjà servi. Recommencez depuis l'accueil."})
		return
	}
	q := r.URL.Query()
	if q.Get("state") != pl.state {
		p.log.Info("login refused", "reason", "state mismatch")
		p.render(w, http.StatusBadRequest, "error", pageError{Title: "Connexion refusée",
			Explanation: "La réponse du fournisseur d'identité ne correspond pas à cette connexion. Recommencez depuis l'accueil."})
		return
	}
	if e := q.Get("error"); e != "" {
		p.log.Info("login refused", "reason", "provider error", "error", safeCode(e))
		expl := "Le fournisseur d'identité a refusé la connexion."
		if e == "access_denied" {
			expl = "Vous avez annulé la connexion."
		}
		p.render(w, http.StatusOK, "error", pageError{Title: "Connexion non aboutie", Explanation: expl})
		return
	}
	token, _, err := p.oidc.finish(r.Context(), q.Get("code"), pl)
	if err != nil {
		p.log.Info("login refused", "reason", "token exchange or id token")
		p.render(w, http.StatusBadGateway, "error", pageError{Title: "Connexion refusée",
			Explanation: "La connexion n'a pas pu être vérifiée. Recommencez depuis l'accueil."})
		return
	}
	resp, err := p.cfg.Relais.GetFamilyQuotient(r.Context(), p.cfg.Recipient, p.cfg.Purpose, caseReference(p.now()), token)
	if err != nil {
		rf := decodeError(err)
		p.log.Info("relais call refused", "code", rf.Code.String(), "reason", rf.Reason)
		p.render(w, http.StatusOK, "error", pageError{Title: "Demande refusée par Relais", Explanation: rf.Explanation, Refusal: &rf})
		return
	}
	p.log.Info("relais call answered")
	p.render(w, http.StatusOK, "result", resultView(resp))
}

// logout sends the browser to the provider's end-session endpoint.
func (p *portal) logout(w http.ResponseWriter, r *http.Request) {
	if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host {
		http.Error(w, "cross-origin logout refused", http.StatusForbidden)
		return
	}
	u, err := p.oidc.endSessionURL(r.Context(), "http://"+r.Host+"/")
	if err != nil {
		p.render(w, http.StatusBadGateway, "error", pageError{Title: "Déconnexion impossible",
			Explanation: "Le fournisseur d'identité est injoignable."})
		return
	}
	http.Redirect(w, r, u, http.StatusSeeOther)
}

func randomHex() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// caseReference names the portal's file for the call, as a town hall's
// case-management system would.
func caseReference(now time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return "PORTAIL-" + now.Format("20060102") + "-" + strings.ToUpper(hex.EncodeToString(b[:]))
}

// safeCode keeps an OAuth error code loggable (it comes from the query).
func safeCode(s string) string {
	if len(s) > 40 || strings.IndexFunc(s, func(r rune) bool { return !(r == '_' || r >= 'a' && r <= 'z') }) >= 0 {
		return "other"
	}
	return s
}

// --- views ---

type pageError struct {
	Title, Explanation string
	Refusal            *refusal
}

type row struct{ Label, Value string }

type resultPage struct {
	Rows       []row
	People     []personView
	Children   []personView
	Address    []string
	Withheld   []string
	SourceLine string
}

type personView struct{ Name, Born string }

func person(p *commonv1.Person) personView {
	name := strings.TrimSpace(strings.Join(p.GetGivenNames(), " ") + " " + p.GetBirthName())
	if p.GetUsageName() != "" {
		name += " (nom d'usage " + p.GetUsageName() + ")"
	}
	return personView{Name: name, Born: p.GetBirthDate()}
}

var regimes = map[familyquotientv1.Regime]string{
	familyquotientv1.Regime_REGIME_CNAF: "CNAF (caisse d'allocations familiales)",
	familyquotientv1.Regime_REGIME_MSA:  "MSA (mutualité sociale agricole)",
}

// resultView shows what Relais returned and names what it withheld: the
// minimisation is the point of the demo.
func resultView(r *familyquotientv1.GetFamilyQuotientResponse) resultPage {
	var v resultPage
	if r.Value != nil {
		v.Rows = append(v.Rows, row{"Quotient familial", itoa(int(r.GetValue())) + " €"})
	} else {
		v.Withheld = append(v.Withheld, "montant du quotient familial")
	}
	if r.ReferenceYear != nil && r.ReferenceMonth != nil {
		v.Rows = append(v.Rows, row{"Période de référence", twoDigits(int(r.GetReferenceMonth())) + "/" + itoa(int(r.GetReferenceYear()))})
	}
	if l, ok := regimes[r.GetRegime()]; ok {
		v.Rows = append(v.Rows, row{"Régime", l})
	}
	for _, b := range r.GetBeneficiaries() {
		v.People = append(v.People, person(b))
	}
	if len(v.People) == 0 {
		v.Withheld = append(v.Withheld, "allocataires")
	}
	for _, c := range r.GetChildren() {
		v.Children = append(v.Children, person(c))
	}
	if len(v.Children) == 0 {
		v.Withheld = append(v.Withheld, "enfants")
	}
	if a := r.GetAddress(); a != nil {
		for _, l := range []string{a.GetRecipientLine(), a.GetAdditionalLine(), a.GetStreetLine(), a.GetLocality(),
			strings.TrimSpace(a.GetPostalCode() + " " + a.GetCity()), a.GetCountry()} {
			if l != "" {
				v.Address = append(v.Address, l)
			}
		}
	} else {
		v.Withheld = append(v.Withheld, "adresse")
	}
	if s := r.GetSource(); s != nil {
		v.SourceLine = s.GetProvider()
		if t := s.GetProducedAt(); t != nil {
			v.SourceLine += ", le " + t.AsTime().In(paris()).Format("02/01/2006 à 15:04")
		}
	}
	return v
}

func paris() *time.Location {
	if l, err := time.LoadLocation("Europe/Paris"); err == nil {
		return l
	}
	return time.UTC
}

func itoa(n int) string { return strconv.Itoa(n) }

func twoDigits(n int) string {
	if n < 10 {
		return "0" + itoa(n)
	}
	return itoa(n)
}

func (p *portal) render(w http.ResponseWriter, status int, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, name, data); err != nil {
		p.log.Error("page rendering failed", "page", name)
	}
}

// codeLabel is a gRPC code for the technical details.
func codeLabel(c codes.Code) string { return c.String() }

var pages = template.Must(template.New("pages").Funcs(template.FuncMap{
	"code":    codeLabel,
	"seconds": func(d time.Duration) int { return int(d.Round(time.Second) / time.Second) },
}).Parse(`
{{define "head"}}<!doctype html>
<html lang="fr">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.}} — Mairie d'Exemple-sur-Loire (démo)</title><link rel="stylesheet" href="/style.css"></head>
<body>
<a class="skip" href="#contenu">Aller au contenu</a>
<div class="banner" role="note"><strong>Démonstration</strong> — portail fictif, identités fictives, données du bac à sable Relais.</div>
<header><p class="town">Mairie d'Exemple-sur-Loire</p><p class="service">Tarifs de la cantine et de l'accueil de loisirs</p></header>
<main id="contenu">{{end}}
{{define "foot"}}</main></body></html>{{end}}

{{define "home"}}{{template "head" "Accueil"}}
<h1>Votre tarif de cantine, sans justificatif</h1>
<p>Connectez-vous avec FranceConnect : la mairie obtient directement votre quotient familial auprès de la CAF
ou de la MSA, par Relais. Vous n'avez rien à saisir ni à téléverser.</p>
<p>La mairie ne reçoit que ce à quoi elle est habilitée ; chaque consultation est enregistrée et vous pouvez la
retrouver sur le portail de transparence.</p>
<p><a class="button" href="/login">Se connecter avec FranceConnect (démo)</a></p>
{{template "foot"}}{{end}}

{{define "result"}}{{template "head" "Votre quotient familial"}}
<h1>Votre quotient familial</h1>
<p>Relais a transmis à la mairie les données ci-dessous, <strong>limitées à ce que la mairie est habilitée à recevoir</strong>.</p>
{{if .Rows}}<table><caption>Données transmises</caption><tbody>
{{range .Rows}}<tr><th scope="row">{{.Label}}</th><td>{{.Value}}</td></tr>
{{end}}</tbody></table>{{end}}
{{if .People}}<h2>Allocataires</h2><ul>{{range .People}}<li>{{.Name}}{{if .Born}}, né(e) le {{.Born}}{{end}}</li>{{end}}</ul>{{end}}
{{if .Children}}<h2>Enfants</h2><ul>{{range .Children}}<li>{{.Name}}{{if .Born}}, né(e) le {{.Born}}{{end}}</li>{{end}}</ul>{{end}}
{{if .Address}}<h2>Adresse</h2><p class="address">{{range .Address}}{{.}}<br>{{end}}</p>{{end}}
{{if .Withheld}}<h2>Non transmis</h2><p>La mairie n'est pas habilitée à recevoir : {{range $i, $w := .Withheld}}{{if $i}}, {{end}}{{$w}}{{end}}.</p>{{end}}
{{if .SourceLine}}<p class="source">Source : {{.SourceLine}}.</p>{{end}}
<p>Votre connexion n'a servi qu'à cette demande : la mairie ne la conserve pas.</p>
<form method="post" action="/logout"><button type="submit" class="secondary">Se déconnecter</button></form>
{{template "foot"}}{{end}}

{{define "error"}}{{template "head" .Title}}
<h1>{{.Title}}</h1>
<p class="error" role="alert">{{.Explanation}}</p>
{{with .Refusal}}<details open><summary>Détails techniques</summary><dl>
<dt>Code</dt><dd>{{code .Code}}</dd>
{{if .Reason}}<dt>Raison</dt><dd><code>{{.Reason}}</code></dd>{{end}}
{{if .Message}}<dt>Message</dt><dd>{{.Message}}</dd>{{end}}
{{if .RetryAfter}}<dt>Réessayer après</dt><dd>{{seconds .RetryAfter}} s</dd>{{end}}
{{if .Violations}}<dt>Champs en cause</dt><dd>{{range .Violations}}<code>{{.}}</code> {{end}}</dd>{{end}}
</dl></details>{{end}}
<p><a class="button" href="/">Retour à l'accueil</a></p>
{{template "foot"}}{{end}}
`))

const portalCSS = `*{box-sizing:border-box}
body{margin:0;font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#161616;background:#fff;line-height:1.5}
.skip{position:absolute;left:-10000px}.skip:focus{left:1rem;top:1rem;background:#fff;padding:.5rem;z-index:1}
.banner{background:#fff4d6;border-bottom:3px solid #b34000;padding:.5rem 1rem;text-align:center}
header{border-bottom:1px solid #ddd;padding:1rem 2rem}
.town{font-weight:bold;font-size:1.25rem;margin:0;color:#000091}.service{margin:0;color:#3a3a3a}
main{max-width:46rem;margin:1.5rem auto;padding:0 1.5rem}
h1{color:#000091}
table{border-collapse:collapse;margin:1rem 0;min-width:60%}
caption{text-align:left;font-weight:bold;padding-bottom:.25rem}
th,td{border:1px solid #ccc;padding:.4rem .75rem;text-align:left}
th{background:#f3f3f3}
.button,button{display:inline-block;font:inherit;padding:.6rem 1.25rem;background:#000091;color:#fff;border:2px solid #000091;text-decoration:none;cursor:pointer}
.secondary{background:#fff;color:#000091}
.error{color:#ce0500;font-weight:bold;border-left:4px solid #ce0500;padding-left:.5rem}
.source{color:#3a3a3a;font-size:.9rem}
:focus-visible{outline:3px solid #0a76f6;outline-offset:2px}
`
