package portal

import (
	"fmt"
	"net/http"
	"time"

	"golang.org/x/text/language"
)

// Languages of the portal: French first (the default), then English.
const (
	langFR = "fr"
	langEN = "en"
)

var langMatcher = language.NewMatcher([]language.Tag{language.French, language.English})

// pickLang chooses the language: an explicit ?lang=, else the lang
// cookie, else Accept-Language, else French.
func pickLang(r *http.Request) (lang string, explicit bool) {
	if l := r.URL.Query().Get("lang"); l == langFR || l == langEN {
		return l, true
	}
	if c, err := r.Cookie(cookieLang); err == nil && (c.Value == langFR || c.Value == langEN) {
		return c.Value, false
	}
	if h := r.Header.Get("Accept-Language"); h != "" {
		tags, _, err := language.ParseAcceptLanguage(h)
		if err == nil && len(tags) > 0 {
			_, i, conf := langMatcher.Match(tags...)
			if conf != language.No && i == 1 {
				return langEN, false
			}
		}
	}
	return langFR, false
}

// messages are the portal's texts; TestMessagesComplete checks that both
// languages have every key, and templates run with missingkey=error.
var messages = map[string]map[string]string{
	langFR: {
		"site_title":       "Qui a consulté mes données ?",
		"site_tagline":     "Portail de transparence Relais",
		"skip":             "Aller au contenu",
		"lang_other":       "English",
		"lang_other_code":  "en",
		"lang_other_label": "Read this page in English",
		"nav_label":        "Compte",

		"home_heading": "Sachez qui a consulté vos données",
		"home_intro": "Des administrations (mairies, CCAS, universités…) consultent certaines de vos données auprès d'autres administrations " +
			"(CAF, France Travail, Assurance maladie…) par l'intermédiaire de Relais, pour instruire vos démarches. Chaque consultation est tracée.",
		"home_list_intro":  "Après connexion, vous verrez pour chaque consultation :",
		"home_item_when":   "la date et l'heure ;",
		"home_item_body":   "l'organisme qui a consulté vos données (nom et SIRET) ;",
		"home_item_why":    "la finalité et la base légale de la consultation ;",
		"home_item_what":   "les catégories de données transmises et le résultat ;",
		"home_item_self":   "si la consultation a été faite à votre initiative.",
		"home_privacy":     "Le portail ne conserve ni votre identité ni vos jetons de connexion : seulement un pseudonyme, le temps de votre visite (15 minutes d'inactivité, une heure au plus).",
		"login_button":     "Se connecter avec",
		"logout":           "Se déconnecter",
		"logged_in":        "Vous êtes connecté.",
		"accesses_heading": "Les consultations de vos données",
		"list_heading":     "Liste des consultations",

		"deferred_title":  "Certaines consultations peuvent apparaître plus tard",
		"deferred_notice": "La loi permet de différer votre information pendant un contrôle ou une enquête (par exemple la lutte contre la fraude). Ces consultations sont tracées dès qu'elles ont lieu et apparaîtront ici à la date prévue, avec la référence du texte qui autorise ce délai.",

		"filters_heading": "Filtrer les consultations",
		"filter_from":     "Du",
		"filter_to":       "Au (inclus)",
		"filter_hint":     "Format : AAAA-MM-JJ",
		"filter_body":     "Organisme",
		"all_bodies":      "Tous les organismes",
		"filter_submit":   "Appliquer les filtres",
		"filter_reset":    "Effacer les filtres",
		"error_summary":   "Le filtre n'a pas été appliqué :",
		"err_from":        "La date de début doit être une date au format AAAA-MM-JJ.",
		"err_to":          "La date de fin doit être une date au format AAAA-MM-JJ.",
		"err_range":       "La date de début doit précéder la date de fin.",
		"err_body":        "L'organisme doit être désigné par son numéro SIRET (14 chiffres).",

		"export_heading": "Télécharger mes données",
		"export_intro":   "Les fichiers contiennent les consultations affichées (avec les filtres appliqués).",
		"export_csv":     "Télécharger au format CSV (tableur)",
		"export_json":    "Télécharger au format JSON",

		"chart_heading": "Consultations par mois",
		"chart_details": "Voir les chiffres du graphique",
		"col_month":     "Mois",
		"col_count":     "Consultations",

		"col_when":       "Date et heure (heure de Paris)",
		"col_body":       "Organisme",
		"col_purpose":    "Finalité et base légale",
		"col_data":       "Données",
		"col_outcome":    "Résultat",
		"initiated":      "À votre initiative",
		"on_behalf":      "pour le compte de",
		"siret":          "SIRET",
		"legal_basis":    "Base légale :",
		"service":        "Demande :",
		"reference":      "Référence :",
		"deferred_until": "Information différée jusqu'au",
		"legal_ref":      "Référence légale :",
		"no_category":    "Aucune donnée transmise",
		"none_yet":       "Aucune consultation de vos données n'est enregistrée.",
		"none_filtered":  "Aucune consultation ne correspond à ces filtres.",
		"contact_link":   "Contacter cet organisme",
		"unknown_body":   "Organisme non référencé",

		"outcome_data_given":    "Données transmises",
		"outcome_nothing_found": "Aucune donnée trouvée",
		"outcome_refused":       "Refusée par Relais",
		"outcome_failed":        "Non aboutie (incident technique)",

		"contacts_heading": "Contacter les organismes",
		"contacts_intro":   "Pour toute question sur une consultation, ou pour exercer vos droits (accès, rectification, opposition), écrivez à l'organisme qui l'a faite en citant sa référence.",
		"no_contact":       "Aucun contact enregistré : écrivez à l'organisme par ses moyens habituels.",
		"cnil_heading":     "Réclamation auprès de la CNIL",
		"cnil_text":        "Si vous estimez que vos données ont été consultées sans droit, ou si l'organisme ne vous répond pas, vous pouvez adresser une plainte à la Commission nationale de l'informatique et des libertés (CNIL).",
		"cnil_link":        "Adresser une plainte à la CNIL (site de la CNIL)",

		"error_title":         "La demande n'a pas abouti",
		"err_login_state":     "La connexion a expiré ou n'a pas pu être vérifiée. Veuillez recommencer.",
		"err_login_failed":    "La connexion n'a pas abouti. Veuillez réessayer.",
		"err_login_cancelled": "La connexion a été annulée.",
		"err_provider":        "Le service d'identité ne répond pas. Réessayez dans quelques minutes.",
		"err_rate":            "Trop de demandes en peu de temps. Patientez une minute puis réessayez.",
		"err_forbidden":       "Cette action a été refusée : le formulaire a expiré. Rechargez la page puis recommencez.",
		"err_not_found":       "Cette page n'existe pas.",
		"err_internal":        "Le service est momentanément indisponible. Réessayez plus tard.",
		"err_busy":            "Trop de connexions en cours. Réessayez dans quelques minutes.",
		"back_home":           "Retour à l'accueil",
		"footer":              "Relais, courtier d'échange de données entre administrations. Ce portail n'enregistre ni votre identité ni vos jetons de connexion.",
	},
	langEN: {
		"site_title":       "Who accessed my data?",
		"site_tagline":     "Relais transparency portal",
		"skip":             "Skip to content",
		"lang_other":       "Français",
		"lang_other_code":  "fr",
		"lang_other_label": "Lire cette page en français",
		"nav_label":        "Account",

		"home_heading": "Know who accessed your data",
		"home_intro": "Public bodies (town halls, social action centres, universities…) consult some of your data held by other administrations " +
			"(family allowance funds, France Travail, health insurance…) through Relais, to process your applications. Every access is traced.",
		"home_list_intro":  "Once logged in, you will see for each access:",
		"home_item_when":   "the date and time;",
		"home_item_body":   "the body that accessed your data (name and SIRET);",
		"home_item_why":    "the purpose and legal basis of the access;",
		"home_item_what":   "the categories of data returned and the outcome;",
		"home_item_self":   "whether the access was made at your initiative.",
		"home_privacy":     "The portal keeps neither your identity nor your login tokens: only a pseudonym, for the time of your visit (15 minutes idle, one hour at most).",
		"login_button":     "Log in with",
		"logout":           "Log out",
		"logged_in":        "You are logged in.",
		"accesses_heading": "Accesses to your data",
		"list_heading":     "List of accesses",

		"deferred_title":  "Some accesses may appear later",
		"deferred_notice": "The law allows telling you later about accesses made during a control or an investigation (for instance against fraud). They are traced as soon as they happen and will appear here on the set date, with the reference of the text that allows the delay.",

		"filters_heading": "Filter the accesses",
		"filter_from":     "From",
		"filter_to":       "To (inclusive)",
		"filter_hint":     "Format: YYYY-MM-DD",
		"filter_body":     "Body",
		"all_bodies":      "All bodies",
		"filter_submit":   "Apply filters",
		"filter_reset":    "Clear filters",
		"error_summary":   "The filter was not applied:",
		"err_from":        "The start date must be a date written YYYY-MM-DD.",
		"err_to":          "The end date must be a date written YYYY-MM-DD.",
		"err_range":       "The start date must come before the end date.",
		"err_body":        "The body must be given by its SIRET number (14 digits).",

		"export_heading": "Download my data",
		"export_intro":   "The files hold the accesses shown (with the filters applied).",
		"export_csv":     "Download as CSV (spreadsheet)",
		"export_json":    "Download as JSON",

		"chart_heading": "Accesses per month",
		"chart_details": "Show the chart's figures",
		"col_month":     "Month",
		"col_count":     "Accesses",

		"col_when":       "Date and time (Paris time)",
		"col_body":       "Body",
		"col_purpose":    "Purpose and legal basis",
		"col_data":       "Data",
		"col_outcome":    "Outcome",
		"initiated":      "At your initiative",
		"on_behalf":      "on behalf of",
		"siret":          "SIRET",
		"legal_basis":    "Legal basis:",
		"service":        "Request:",
		"reference":      "Reference:",
		"deferred_until": "Disclosure deferred until",
		"legal_ref":      "Legal reference:",
		"no_category":    "No data returned",
		"none_yet":       "No access to your data is recorded.",
		"none_filtered":  "No access matches these filters.",
		"contact_link":   "Contact this body",
		"unknown_body":   "Body no longer registered",

		"outcome_data_given":    "Data returned",
		"outcome_nothing_found": "No data found",
		"outcome_refused":       "Refused by Relais",
		"outcome_failed":        "Not completed (technical failure)",

		"contacts_heading": "Contact the bodies",
		"contacts_intro":   "For any question about an access, or to exercise your rights (access, rectification, objection), write to the body that made it, quoting its reference.",
		"no_contact":       "No contact registered: write to the body through its usual channels.",
		"cnil_heading":     "Complaint to the CNIL",
		"cnil_text":        "If you believe your data was accessed without right, or the body does not answer you, you can lodge a complaint with the French data protection authority (CNIL).",
		"cnil_link":        "Lodge a complaint with the CNIL (CNIL website, in French)",

		"error_title":         "The request could not be completed",
		"err_login_state":     "The login expired or could not be verified. Please start again.",
		"err_login_failed":    "The login did not succeed. Please try again.",
		"err_login_cancelled": "The login was cancelled.",
		"err_provider":        "The identity service does not answer. Try again in a few minutes.",
		"err_rate":            "Too many requests in a short time. Wait a minute, then try again.",
		"err_forbidden":       "This action was refused: the form expired. Reload the page and start again.",
		"err_not_found":       "This page does not exist.",
		"err_internal":        "The service is unavailable for now. Try again later.",
		"err_busy":            "Too many logins in progress. Try again in a few minutes.",
		"back_home":           "Back to the home page",
		"footer":              "Relais, a data-exchange broker between public administrations. This portal records neither your identity nor your login tokens.",
	},
}

var monthsFR = [...]string{"janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre", "novembre", "décembre"}

// monthsFRShort are the usual French abbreviations of the months.
var monthsFRShort = [...]string{"janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.", "déc."}

// formatDateTime writes t in loc the way each language writes it.
func formatDateTime(t time.Time, loc *time.Location, lang string) string {
	t = t.In(loc)
	if lang == langEN {
		return t.Format("2 January 2006, 15:04")
	}
	day := fmt.Sprint(t.Day())
	if t.Day() == 1 {
		day = "1er"
	}
	return fmt.Sprintf("%s %s %d à %s", day, monthsFR[t.Month()-1], t.Year(), t.Format("15:04"))
}

// formatDate writes the day of t in loc.
func formatDate(t time.Time, loc *time.Location, lang string) string {
	t = t.In(loc)
	if lang == langEN {
		return t.Format("2 January 2006")
	}
	day := fmt.Sprint(t.Day())
	if t.Day() == 1 {
		day = "1er"
	}
	return fmt.Sprintf("%s %s %d", day, monthsFR[t.Month()-1], t.Year())
}

// formatMonth writes a month, long ("mars 2026") or short ("mars 26").
func formatMonth(t time.Time, lang string, short bool) string {
	if lang == langEN {
		if short {
			return t.Format("Jan 06")
		}
		return t.Format("January 2006")
	}
	if short {
		return fmt.Sprintf("%s %02d", monthsFRShort[t.Month()-1], t.Year()%100)
	}
	return fmt.Sprintf("%s %d", monthsFR[t.Month()-1], t.Year())
}
