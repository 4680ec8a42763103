package httpjson

import "time"

// Routes of two realistic upstream formats. The JSON shapes follow what
// the French family-allowance and employment services expose to API
// particulier (field names in French, dates in dd/mm/yyyy for the CAF),
// and are exercised against local servers in the tests.

// Method names of the two routes.
const (
	FamilyQuotientMethod = "/relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient"
	JobSeekerMethod      = "/relais.jobseeker.v1.JobSeekerStatusService/GetJobSeekerStatus"
)

var sexCodes = map[string]string{"F": "SEX_FEMALE", "M": "SEX_MALE"}

// person maps a CAF person record.
func person() Mapping {
	return Mapping{
		"birth_name":  {Path: "nomNaissance", Required: true},
		"usage_name":  {Path: "nomUsuel"},
		"given_names": {Path: "prenoms", Split: " "},
		"birth_date":  {Path: "dateDeNaissance", DateFormat: "02/01/2006"},
		"sex":         {Path: "sexe", Enum: sexCodes},
	}
}

// FamilyQuotientRoute reads a CAF/MSA family-quotient answer:
//
//	{"regime": "CNAF", "quotientFamilial": 755, "annee": 2026, "mois": 10,
//	 "allocataires": [{"nomNaissance": …, "prenoms": "Zoé Marie", "dateDeNaissance": "12/03/1984", "sexe": "F"}],
//	 "enfants": […], "adresse": {"identite": …, "numeroRue": …, "codePostal": …, "ville": …, "pays": …}}
func FamilyQuotientRoute() Route {
	return Route{
		Path: "/v2/quotient-familial",
		Query: map[string]string{"nomNaissance": "{birth_name}", "prenoms": "{given_names}", "sexe": "{sex}", "dateNaissance": "{birth_date}",
			"codeLieuNaissance": "{birth_place_cog}", "codePaysNaissance": "{birth_country_cog}"},
		ValidFor: 31 * 24 * time.Hour,
		Mapping: Mapping{
			"value":           {Path: "quotientFamilial", Required: true},
			"reference_year":  {Path: "annee", Required: true},
			"reference_month": {Path: "mois", Required: true},
			"regime":          {Path: "regime", Required: true, Enum: map[string]string{"CNAF": "REGIME_CNAF", "MSA": "REGIME_MSA"}},
			"beneficiaries":   {Path: "allocataires", Items: person()},
			"children":        {Path: "enfants", Items: person()},
			"address": {Path: "adresse", Items: Mapping{
				"recipient_line": {Path: "identite"}, "additional_line": {Path: "complementInformation"},
				"street_line": {Path: "numeroRue"}, "postal_code": {Path: "codePostal"}, "city": {Path: "ville"}, "country": {Path: "pays"},
			}},
		},
	}
}

// JobSeekerRoute reads a France Travail registration answer:
//
//	{"identite": {"nomNaissance": …, "nomUsage": …, "prenoms": ["Manon"], "dateNaissance": "1987-08-08"},
//	 "inscription": {"inscrit": false, "dateInscription": "2024-03-01", "dateCessationInscription": "2025-06-30",
//	                 "codeCategorie": "1", "libelleCategorie": …}}
func JobSeekerRoute() Route {
	return Route{
		Path: "/v1/statut-demandeur-emploi",
		Query: map[string]string{"identifiant": "{france_travail_id}", "nomNaissance": "{birth_name}", "prenom": "{first_given_name}",
			"dateNaissance": "{birth_date}", "sexe": "{sex}"},
		ValidFor: 24 * time.Hour,
		Mapping: Mapping{
			"identity": {Path: "identite", Items: Mapping{
				"birth_name": {Path: "nomNaissance"}, "usage_name": {Path: "nomUsage"}, "given_names": {Path: "prenoms"}, "birth_date": {Path: "dateNaissance"},
			}},
			"currently_registered":    {Path: "inscription.inscrit", Required: true},
			"registration_start_date": {Path: "inscription.dateInscription"},
			"registration_end_date":   {Path: "inscription.dateCessationInscription"},
			"category_code":           {Path: "inscription.codeCategorie"},
			"category_label":          {Path: "inscription.libelleCategorie"},
		},
	}
}
