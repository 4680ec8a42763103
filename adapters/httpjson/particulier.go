package httpjson

import "time"

// Routes of two sources in the format API particulier (v3) publishes them:
// identity pivot in the query (nomNaissance, prenoms[], sexeEtatCivil,
// date of birth in parts, COG codes of birth place and country), answer
// wrapped in {"data": …, "links": {}, "meta": {}}, errors as
// {"errors": [{"code", "title", "detail"}]} with 404 for an unknown person
// and 429/502/504 when the provider is saturated, failing or slow. The
// shapes are exercised against a local mimic in the tests.

// Method names of the two routes.
const (
	RsaMethod             = "/relais.rsa.v1.RsaStatusService/GetRsaStatus"
	NationalServiceMethod = "/relais.nationalservice.v1.NationalServiceStatusService/GetNationalServiceStatus"
)

// identityPivot is the query of API particulier's "identité pivot" calls.
// prenoms[] carries the given names space-joined, as one value.
func identityPivot() map[string]string {
	return map[string]string{
		"nomNaissance": "{birth_name}", "nomUsage": "{usage_name}", "prenoms[]": "{given_names}", "sexeEtatCivil": "{sex}",
		"anneeDateNaissance": "{birth_year}", "moisDateNaissance": "{birth_month}", "jourDateNaissance": "{birth_day}",
		"codeCogInseeCommuneNaissance": "{birth_place_cog}", "codeCogInseePaysNaissance": "{birth_country_cog}",
	}
}

// RsaRoute reads the RSA status the Sécurité sociale publishes through
// the CNAV (GET /v3/dss/revenu_solidarite_active/identite):
//
//	{"data": {"est_beneficiaire": true, "avec_majoration": true, "date_debut_droit": "1992-11-20"}, "links": {}, "meta": {}}
//
// date_debut_droit is null for a non-beneficiary: the field is left unset.
func RsaRoute() Route {
	return Route{
		Path:     "/v3/dss/revenu_solidarite_active/identite",
		Query:    identityPivot(),
		ValidFor: 24 * time.Hour,
		Mapping: Mapping{
			"is_beneficiary":    {Path: "data.est_beneficiaire", Required: true},
			"rights_start_date": {Path: "data.date_debut_droit"},
			"with_increase":     {Path: "data.avec_majoration"},
		},
	}
}

// NationalServiceRoute reads the national service status the DSNJ
// publishes (GET /v3/dsnj/service_national/identite):
//
//	{"data": {"statut_service_national": "en_regle", "commentaires": "Journée Défense et Citoyenneté effectuée le 15/06/2008"}, …}
//
// An unknown status code is an invalid response, not a guess.
func NationalServiceRoute() Route {
	return Route{
		Path:     "/v3/dsnj/service_national/identite",
		Query:    identityPivot(),
		ValidFor: 24 * time.Hour,
		Mapping: Mapping{
			"status": {Path: "data.statut_service_national", Required: true, Enum: map[string]string{
				"en_regle":     "NATIONAL_SERVICE_STATUS_IN_ORDER",
				"pas_en_regle": "NATIONAL_SERVICE_STATUS_NOT_IN_ORDER",
				"non_concerne": "NATIONAL_SERVICE_STATUS_NOT_CONCERNED",
				"indetermine":  "NATIONAL_SERVICE_STATUS_UNDETERMINED",
			}},
			"comment": {Path: "data.commentaires"},
		},
	}
}
