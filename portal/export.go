package portal

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/relais-broker/relais/broker/transparency"
)

// exported returns the session's filtered accesses for an export, or
// false after answering (no session: back to the home page; bad filter:
// 400 with the messages, nothing exported).
func (p *Portal) exported(w http.ResponseWriter, r *http.Request) ([]transparency.Access, string, bool) {
	lang := p.lang(w, r)
	s, _, ok := p.currentSession(w, r)
	if !ok {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return nil, "", false
	}
	f, fv := parseFilter(r.URL.Query(), p.loc, lang)
	if len(fv.Errors) > 0 {
		p.m.refusals.WithLabelValues("bad_filter").Inc()
		var msgs []string
		for _, e := range fv.Errors {
			msgs = append(msgs, e.Message)
		}
		http.Error(w, strings.Join(msgs, "\n"), http.StatusBadRequest)
		return nil, "", false
	}
	all, err := p.cfg.Accesses.Accesses(r.Context(), s.Pseudonym, transparency.CitizenView)
	if err != nil {
		p.log.Error("portal accesses", "error", err)
		http.Error(w, messages[lang]["err_internal"], http.StatusServiceUnavailable)
		return nil, "", false
	}
	return f.Apply(all), lang, true
}

func (p *Portal) attachment(w http.ResponseWriter, ext, contentType string) {
	name := "relais-consultations-" + p.cfg.Now().In(p.loc).Format("2006-01-02") + "." + ext
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
}

// csvHeader are the CSV columns, per language.
var csvHeader = map[string][]string{
	langFR: {"date_heure", "organisme", "siret", "pour_le_compte_de", "siret_pour_le_compte_de", "demande", "finalite", "base_legale",
		"donnees_transmises", "resultat", "a_votre_initiative", "reference", "information_differee_jusqu_au", "reference_legale_du_delai"},
	langEN: {"date_time", "body", "siret", "on_behalf_of", "on_behalf_of_siret", "request", "purpose", "legal_basis",
		"data_returned", "outcome", "at_your_initiative", "reference", "disclosure_deferred_until", "deferral_legal_reference"},
}

// cell guards a spreadsheet against formula injection: a value a
// spreadsheet would evaluate is prefixed with a quote.
func cell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func (p *Portal) exportCSV(w http.ResponseWriter, r *http.Request) {
	as, lang, ok := p.exported(w, r)
	if !ok {
		return
	}
	var buf bytes.Buffer
	buf.WriteString("\ufeff") // spreadsheets read UTF-8 only with a BOM
	cw := csv.NewWriter(&buf)
	_ = cw.Write(csvHeader[lang])
	yes, no := "oui", "non"
	if lang == langEN {
		yes, no = "yes", "no"
	}
	for _, a := range as {
		var cats []string
		for _, c := range a.Categories {
			cats = append(cats, c.Label.In(lang))
		}
		initiated, deferred := no, ""
		if a.CitizenInitiated {
			initiated = yes
		}
		if !a.DiscloseAfter.IsZero() {
			deferred = a.DiscloseAfter.In(p.loc).Format(time.RFC3339)
		}
		_ = cw.Write([]string{
			a.Time.In(p.loc).Format(time.RFC3339), cell(a.Body.Name), a.Body.SIRET, cell(a.OnBehalfOf.Name), a.OnBehalfOf.SIRET,
			cell(a.Service.In(lang)), cell(a.Purpose.Label), cell(a.Purpose.LegalBasis), cell(strings.Join(cats, " ; ")),
			messages[lang]["outcome_"+string(a.Outcome)], initiated, cell(a.Reference), deferred, cell(a.DisclosureReference),
		})
	}
	cw.Flush()
	p.m.exports.WithLabelValues("csv").Inc()
	p.attachment(w, "csv", "text/csv; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

// jsonAccess is the portable form of an access (stable English keys;
// the labels in the page's language).
type jsonAccess struct {
	Time                string         `json:"time"`
	Reference           string         `json:"reference"`
	Body                jsonBody       `json:"body"`
	OnBehalfOf          *jsonBody      `json:"on_behalf_of,omitempty"`
	Service             string         `json:"service"`
	Method              string         `json:"method"`
	Purpose             jsonPurpose    `json:"purpose"`
	Categories          []jsonCategory `json:"categories"`
	Outcome             string         `json:"outcome"`
	OutcomeLabel        string         `json:"outcome_label"`
	CitizenInitiated    bool           `json:"citizen_initiated"`
	DiscloseAfter       string         `json:"disclose_after,omitempty"`
	DisclosureReference string         `json:"disclosure_reference,omitempty"`
}

type jsonBody struct {
	SIRET string `json:"siret"`
	Name  string `json:"name"`
}

type jsonPurpose struct {
	Code       string `json:"code"`
	Label      string `json:"label"`
	LegalBasis string `json:"legal_basis"`
}

type jsonCategory struct {
	Scope string `json:"scope"`
	Label string `json:"label"`
}

type jsonExport struct {
	GeneratedAt string       `json:"generated_at"`
	Language    string       `json:"language"`
	Accesses    []jsonAccess `json:"accesses"`
}

func (p *Portal) exportJSON(w http.ResponseWriter, r *http.Request) {
	as, lang, ok := p.exported(w, r)
	if !ok {
		return
	}
	out := jsonExport{GeneratedAt: p.cfg.Now().In(p.loc).Format(time.RFC3339), Language: lang, Accesses: []jsonAccess{}}
	for _, a := range as {
		j := jsonAccess{
			Time: a.Time.In(p.loc).Format(time.RFC3339), Reference: a.Reference, Body: jsonBody{a.Body.SIRET, a.Body.Name},
			Service: a.Service.In(lang), Method: a.Method, Purpose: jsonPurpose{a.Purpose.Code, a.Purpose.Label, a.Purpose.LegalBasis},
			Categories: []jsonCategory{}, Outcome: string(a.Outcome), OutcomeLabel: messages[lang]["outcome_"+string(a.Outcome)],
			CitizenInitiated: a.CitizenInitiated, DisclosureReference: a.DisclosureReference,
		}
		if a.OnBehalfOf.SIRET != "" {
			j.OnBehalfOf = &jsonBody{a.OnBehalfOf.SIRET, a.OnBehalfOf.Name}
		}
		if !a.DiscloseAfter.IsZero() {
			j.DiscloseAfter = a.DiscloseAfter.In(p.loc).Format(time.RFC3339)
		}
		for _, c := range a.Categories {
			j.Categories = append(j.Categories, jsonCategory{c.Scope, c.Label.In(lang)})
		}
		out.Accesses = append(out.Accesses, j)
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	p.m.exports.WithLabelValues("json").Inc()
	p.attachment(w, "json", "application/json; charset=utf-8")
	_, _ = w.Write(append(b, '\n'))
}
