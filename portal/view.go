package portal

import (
	"bytes"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/transparency"
)

// pageData is what every template gets.
type pageData struct {
	Lang          string
	T             map[string]string
	LangSwitchURL string
	ProviderName  string
	LoggedIn      bool
	CSRF          string
	// Error is the message key of an error page.
	Error string
	CNIL  string
	// The accesses page.
	Filter     filterView
	CountText  string
	Empty      string
	Rows       []rowView
	Chart      *chartView
	ExportCSV  string
	ExportJSON string
	Contacts   []contactView
}

type filterView struct {
	From, To, Body string
	Bodies         []bodyOption
	Errors         []fieldError
	Active         bool
}

type bodyOption struct {
	SIRET, Label string
	Selected     bool
}

type fieldError struct {
	Field, Message string
}

// HasError reports whether field has an error (for aria-invalid).
func (f filterView) HasError(field string) bool {
	for _, e := range f.Errors {
		if e.Field == field {
			return true
		}
	}
	return false
}

type rowView struct {
	When, WhenISO                 string
	BodyName, BodySIRET, BodyLink string
	OnBehalfName, OnBehalfSIRET   string
	Service                       string
	Purpose, LegalBasis           string
	Categories                    []string
	Outcome, OutcomeClass         string
	Initiated                     bool
	Reference                     string
	DeferredUntil, LegalReference string
}

type contactView struct {
	Anchor, Name, SIRET string
	Contacts            []registry.Contact
}

// render executes a page; a template error is a 500 with a plain message
// (nothing half-written reaches the browser).
func (p *Portal) render(w http.ResponseWriter, status int, page string, d pageData) {
	var buf bytes.Buffer
	if err := p.pages[page].ExecuteTemplate(&buf, "layout", d); err != nil {
		p.log.Error("portal template", "page", page, "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// base fills what every page shows.
func (p *Portal) base(r *http.Request, lang string) pageData {
	other := langEN
	if lang == langEN {
		other = langFR
	}
	q := r.URL.Query()
	q.Set("lang", other)
	path := r.URL.Path
	if path != "/" {
		path, q = "/", url.Values{"lang": {other}}
	}
	return pageData{Lang: lang, T: messages[lang], LangSwitchURL: path + "?" + q.Encode(), ProviderName: p.cfg.ProviderName, CNIL: CNILComplaintURL}
}

// fail renders the error page with the message key msg.
func (p *Portal) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	lang, _ := pickLang(r)
	d := p.base(r, lang)
	d.Error = msg
	if status == http.StatusNotFound {
		p.m.pages.WithLabelValues("not_found").Inc()
	} else {
		p.m.pages.WithLabelValues("error").Inc()
	}
	p.render(w, status, "error", d)
}

// index is the home page (logged out) or the list of accesses.
func (p *Portal) index(w http.ResponseWriter, r *http.Request) {
	lang := p.lang(w, r)
	s, _, ok := p.currentSession(w, r)
	d := p.base(r, lang)
	if !ok {
		p.m.pages.WithLabelValues("home").Inc()
		p.render(w, http.StatusOK, "home", d)
		return
	}
	d.LoggedIn, d.CSRF = true, s.CSRF
	f, fv := parseFilter(r.URL.Query(), p.loc, lang)
	all, err := p.cfg.Accesses.Accesses(r.Context(), s.Pseudonym, transparency.CitizenView)
	if err != nil {
		p.log.Error("portal accesses", "error", err)
		p.fail(w, r, http.StatusServiceUnavailable, "err_internal")
		return
	}
	for _, b := range transparency.Bodies(all) {
		label := b.Name
		if label == "" {
			label = messages[lang]["unknown_body"]
		}
		fv.Bodies = append(fv.Bodies, bodyOption{SIRET: b.SIRET, Label: label + " (" + b.SIRET + ")", Selected: b.SIRET == fv.Body})
	}
	d.Filter = fv
	status := http.StatusOK
	shown := all
	if len(fv.Errors) > 0 {
		// A bad filter changes nothing: the error is told, the list is not
		// filtered by half of it.
		p.m.refusals.WithLabelValues("bad_filter").Inc()
		status = http.StatusBadRequest
	} else {
		shown = f.Apply(all)
	}
	d.CountText = countText(len(shown), lang)
	switch {
	case len(all) == 0:
		d.Empty = "none_yet"
	case len(shown) == 0:
		d.Empty = "none_filtered"
	}
	for _, a := range shown {
		d.Rows = append(d.Rows, p.row(a, lang))
	}
	d.Chart = buildChart(shown, p.loc, lang)
	eq := filterQuery(fv)
	d.ExportCSV, d.ExportJSON = "/export.csv"+eq, "/export.json"+eq
	d.Contacts = contacts(shown)
	p.m.pages.WithLabelValues("accesses").Inc()
	p.render(w, status, "accesses", d)
}

func countText(n int, lang string) string {
	switch {
	case lang == langEN && n == 1:
		return "1 access"
	case lang == langEN:
		return strconv.Itoa(n) + " accesses"
	case n <= 1:
		return strconv.Itoa(n) + " consultation"
	default:
		return strconv.Itoa(n) + " consultations"
	}
}

func (p *Portal) row(a transparency.Access, lang string) rowView {
	v := rowView{
		When: formatDateTime(a.Time, p.loc, lang), WhenISO: a.Time.In(p.loc).Format(time.RFC3339),
		BodyName: a.Body.Name, BodySIRET: a.Body.SIRET, BodyLink: "#" + anchor(a.Body.SIRET),
		OnBehalfName: a.OnBehalfOf.Name, OnBehalfSIRET: a.OnBehalfOf.SIRET,
		Service: a.Service.In(lang), Purpose: a.Purpose.Label, LegalBasis: a.Purpose.LegalBasis,
		Outcome: messages[lang]["outcome_"+string(a.Outcome)], OutcomeClass: string(a.Outcome),
		Initiated: a.CitizenInitiated, Reference: a.Reference, LegalReference: a.DisclosureReference,
	}
	if v.BodyName == "" {
		v.BodyName = messages[lang]["unknown_body"]
	}
	if v.Purpose == "" {
		v.Purpose = a.Purpose.Code
	}
	if !a.DiscloseAfter.IsZero() {
		v.DeferredUntil = formatDate(a.DiscloseAfter, p.loc, lang)
	}
	for _, c := range a.Categories {
		v.Categories = append(v.Categories, c.Label.In(lang))
	}
	return v
}

func anchor(siret string) string { return "contact-" + siret }

// contacts lists each body of the shown accesses once, with its contacts.
func contacts(as []transparency.Access) []contactView {
	var out []contactView
	for _, b := range transparency.Bodies(as) {
		out = append(out, contactView{Anchor: anchor(b.SIRET), Name: b.Name, SIRET: b.SIRET, Contacts: b.Contacts})
	}
	return out
}

var siretPattern = regexp.MustCompile(`^[0-9]{14}$`)

// parseFilter reads the filter parameters: dates as YYYY-MM-DD days in
// loc (the end day included), the body as a SIRET. Each bad value gets
// its own message; the filter is then not to be applied.
func parseFilter(q url.Values, loc *time.Location, lang string) (transparency.Filter, filterView) {
	fv := filterView{From: strings.TrimSpace(q.Get("from")), To: strings.TrimSpace(q.Get("to")), Body: strings.TrimSpace(q.Get("body"))}
	var f transparency.Filter
	msg := messages[lang]
	day := func(s string) (time.Time, bool) {
		if len(s) != len("2006-01-02") {
			return time.Time{}, false
		}
		t, err := time.ParseInLocation("2006-01-02", s, loc)
		return t, err == nil
	}
	if fv.From != "" {
		t, ok := day(fv.From)
		if !ok {
			fv.Errors = append(fv.Errors, fieldError{"from", msg["err_from"]})
		}
		f.From = t
	}
	if fv.To != "" {
		t, ok := day(fv.To)
		if !ok {
			fv.Errors = append(fv.Errors, fieldError{"to", msg["err_to"]})
		} else {
			f.To = t.AddDate(0, 0, 1)
		}
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		fv.Errors = append(fv.Errors, fieldError{"to", msg["err_range"]})
	}
	if fv.Body != "" {
		if !siretPattern.MatchString(fv.Body) {
			fv.Errors = append(fv.Errors, fieldError{"body", msg["err_body"]})
		}
		f.Body = fv.Body
	}
	// Keep only short values for redisplay: a value is echoed back
	// (escaped) into the form, never used otherwise.
	for _, s := range []*string{&fv.From, &fv.To, &fv.Body} {
		if len(*s) > 32 {
			*s = (*s)[:32]
		}
	}
	fv.Active = fv.From != "" || fv.To != "" || fv.Body != ""
	return f, fv
}

// filterQuery is the query string of the filter, for the export links.
func filterQuery(fv filterView) string {
	if len(fv.Errors) > 0 || !fv.Active {
		return ""
	}
	v := url.Values{}
	for k, s := range map[string]string{"from": fv.From, "to": fv.To, "body": fv.Body} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return "?" + v.Encode()
}
