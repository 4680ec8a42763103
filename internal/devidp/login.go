package devidp

import (
	"html/template"
	"net/http"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Form field names of the login page; the headless login reads them.
const (
	formRequestID = "authRequestID"
	formCitizen   = "citizen"
	formCancel    = "cancel"
)

type loginCitizen struct {
	ID, Label, Born string
}

type loginData struct {
	RequestID string
	Client    string
	Citizens  []loginCitizen
	Error     string
}

var loginTemplate = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="fr">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Connexion — fournisseur d'identité de démonstration</title>
<link rel="stylesheet" href="login.css">
</head>
<body>
<div class="banner" role="note"><strong>Environnement de démonstration — identités fictives.</strong>
Aucune personne réelle ; ce fournisseur imite FranceConnect pour les essais.</div>
<main>
<h1>Se connecter</h1>
<p>L'application <strong>{{.Client}}</strong> demande votre identité. Choisissez un citoyen fictif.</p>
{{if .Error}}<p class="error" role="alert" id="error">{{.Error}}</p>{{end}}
<form method="post" action="login">
<input type="hidden" name="authRequestID" value="{{.RequestID}}">
<fieldset{{if .Error}} aria-describedby="error"{{end}}>
<legend>Citoyens fictifs</legend>
<ul>
{{range .Citizens}}<li><input type="radio" name="citizen" id="c-{{.ID}}" value="{{.ID}}" data-label="{{.Label}}" required>
<label for="c-{{.ID}}"><span class="name">{{.Label}}</span> <span class="born">{{.Born}}</span></label></li>
{{end}}</ul>
</fieldset>
<p class="actions"><button type="submit">Se connecter</button>
<button type="submit" name="cancel" value="1" formnovalidate class="secondary">Annuler</button></p>
</form>
</main>
</body>
</html>
`))

const loginCSS = `*{box-sizing:border-box}
body{margin:0;font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#161616;background:#f6f6f6;line-height:1.5}
.banner{background:#fff4d6;border-bottom:3px solid #b34000;padding:.75rem 1rem;text-align:center}
main{max-width:40rem;margin:2rem auto;background:#fff;padding:1.5rem 2rem;border:1px solid #ddd}
h1{margin-top:0;color:#000091}
fieldset{border:1px solid #929292;padding:1rem}
legend{font-weight:bold;padding:0 .25rem}
ul{list-style:none;margin:0;padding:0}
li{padding:.35rem 0}
input[type=radio]{width:1.2rem;height:1.2rem;vertical-align:middle;margin-right:.5rem}
label{cursor:pointer}
.name{font-weight:600}
.born{color:#3a3a3a}
.error{color:#ce0500;font-weight:bold;border-left:4px solid #ce0500;padding-left:.5rem}
.actions{margin-top:1.25rem;display:flex;gap:1rem}
button{font:inherit;padding:.5rem 1.25rem;background:#000091;color:#fff;border:2px solid #000091;cursor:pointer}
button.secondary{background:#fff;color:#000091}
:focus-visible{outline:3px solid #0a76f6;outline-offset:2px}
`

func serveStyle(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	_, _ = w.Write([]byte(loginCSS))
}

func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

var frenchMonths = [...]string{"janvier", "février", "mars", "avril", "mai", "juin", "juillet",
	"août", "septembre", "octobre", "novembre", "décembre"}

func bornText(u *user) string {
	d, err := time.Parse(time.DateOnly, u.BirthDate)
	if err != nil {
		return ""
	}
	verb := "né le "
	if u.Gender == GenderFemale {
		verb = "née le "
	}
	day := d.Format("2")
	if d.Day() == 1 {
		day = "1er"
	}
	return verb + day + " " + frenchMonths[d.Month()-1] + " " + d.Format("2006")
}

func (p *Provider) renderLogin(w http.ResponseWriter, status int, r *authRequest, msg string) {
	data := loginData{RequestID: r.id, Client: r.clientID, Error: msg}
	for _, u := range p.userList {
		data.Citizens = append(data.Citizens, loginCitizen{ID: u.ID, Label: u.Label, Born: bornText(u)})
	}
	securityHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = loginTemplate.Execute(w, data)
}

func (p *Provider) pendingRequest(id string) (*authRequest, bool) {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	r, ok := p.store.requests[id]
	if !ok || r.done {
		return nil, false
	}
	return r, true
}

func (p *Provider) loginPage(w http.ResponseWriter, r *http.Request) {
	req, ok := p.pendingRequest(r.URL.Query().Get(formRequestID))
	if !ok {
		http.Error(w, "unknown or finished authorization request: start again from the application", http.StatusBadRequest)
		return
	}
	p.renderLogin(w, http.StatusOK, req, "")
}

func (p *Provider) loginSubmit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "cannot parse the login form", http.StatusBadRequest)
		return
	}
	id := r.PostForm.Get(formRequestID)
	req, ok := p.pendingRequest(id)
	if !ok {
		http.Error(w, "unknown or finished authorization request: start again from the application", http.StatusBadRequest)
		return
	}
	if r.PostForm.Get(formCancel) != "" {
		p.store.mu.Lock()
		delete(p.store.requests, id)
		p.store.mu.Unlock()
		op.AuthRequestError(w, r, req, oidc.ErrAccessDenied().WithDescription("the citizen cancelled the login"), p.op)
		return
	}
	var chosen *user
	for _, u := range p.userList {
		if u.ID == r.PostForm.Get(formCitizen) {
			chosen = u
		}
	}
	if chosen == nil {
		p.renderLogin(w, http.StatusBadRequest, req, "Choisissez un citoyen dans la liste.")
		return
	}
	if err := p.store.finishLogin(id, chosen); err != nil {
		http.Error(w, "unknown or finished authorization request: start again from the application", http.StatusBadRequest)
		return
	}
	http.Redirect(w, r, op.AuthCallbackURL(p.op)(r.Context(), id), http.StatusFound)
}

func (p *Provider) loggedOut(w http.ResponseWriter, _ *http.Request) {
	securityHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(`<!doctype html><html lang="fr"><head><meta charset="utf-8"><title>Déconnecté</title>` +
		`<link rel="stylesheet" href="login.css"></head><body><div class="banner" role="note">` +
		`<strong>Environnement de démonstration — identités fictives.</strong></div>` +
		`<main><h1>Vous êtes déconnecté</h1><p>Votre session de démonstration est terminée.</p></main></body></html>`))
}
