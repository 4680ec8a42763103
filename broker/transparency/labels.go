package transparency

// Label is a text in the portal's languages.
type Label struct {
	FR, EN string
}

// In returns the label in lang ("en" for English, French otherwise).
func (l Label) In(lang string) string {
	if lang == "en" {
		return l.EN
	}
	return l.FR
}

// OtherScope is the category of a returned field the catalogue does not
// know (a record older than the current schema): it is still told.
const OtherScope = "other"

// scopeLabels are the categories of data in plain words, per scope of the
// catalogue; TestEveryScopeHasALabel keeps the table complete.
var scopeLabels = map[string]Label{
	OtherScope: {"Autres données", "Other data"},

	"activity_bonus.increase": {"Majoration de la prime d'activité", "Activity bonus increase"},
	"activity_bonus.status":   {"Droit à la prime d'activité et date d'ouverture", "Activity bonus entitlement and start date"},

	"civic_service.current": {"Service civique en cours (organisme d'accueil, dates)", "Current civic service (host body, dates)"},
	"civic_service.past":    {"Service civique passé (organisme d'accueil, dates)", "Past civic service (host body, dates)"},

	"disabled_adult_allowance.rights": {"Date d'ouverture des droits à l'AAH", "Start date of the disabled adult allowance (AAH)"},
	"disabled_adult_allowance.status": {"Droit à l'allocation aux adultes handicapés (AAH)", "Entitlement to the disabled adult allowance (AAH)"},

	"disabled_child_allowance.rights": {"Date d'ouverture des droits à l'AEEH", "Start date of the disabled child allowance (AEEH)"},
	"disabled_child_allowance.status": {"Droit à l'allocation d'éducation de l'enfant handicapé (AEEH)", "Entitlement to the disabled child allowance (AEEH)"},

	"family_quotient.address":       {"Adresse postale du foyer", "Household postal address"},
	"family_quotient.beneficiaries": {"Allocataires du foyer (noms, prénoms, date de naissance)", "Household's beneficiaries (names, birth date)"},
	"family_quotient.children":      {"Enfants du foyer (noms, prénoms, date de naissance)", "Household's children (names, birth date)"},
	"family_quotient.value":         {"Quotient familial (montant, mois de référence, régime)", "Family quotient (amount, reference month, scheme)"},

	"family_support_allowance.rights": {"Date d'ouverture des droits à l'ASF", "Start date of the family support allowance (ASF)"},
	"family_support_allowance.status": {"Droit à l'allocation de soutien familial (ASF)", "Entitlement to the family support allowance (ASF)"},

	"job_seeker.category":     {"Catégorie d'inscription à France Travail", "France Travail registration category"},
	"job_seeker.identity":     {"Identité connue de France Travail", "Identity known to France Travail"},
	"job_seeker.registration": {"Inscription à France Travail (dates)", "France Travail registration (dates)"},

	"job_seeker_payments.monthly":  {"Montants mensuels versés par France Travail", "Monthly amounts paid by France Travail"},
	"job_seeker_payments.payments": {"Détail des paiements de France Travail", "Details of France Travail payments"},

	"national_service.comment": {"Commentaire sur la situation au service national", "Comment on the national service status"},
	"national_service.status":  {"Situation au regard du service national (JDC)", "National service status (JDC)"},

	"rsa.increase": {"Majoration du RSA", "RSA increase"},
	"rsa.status":   {"Droit au revenu de solidarité active (RSA) et date d'ouverture", "Entitlement to the RSA and start date"},

	"schooling.boarding":            {"Régime d'hébergement de l'élève", "Pupil's boarding regime"},
	"schooling.establishment":       {"Établissement scolaire", "School"},
	"schooling.identity":            {"Identité connue de l'Éducation nationale", "Identity known to the Education ministry"},
	"schooling.scholarship":         {"Bourse de l'élève", "Pupil's scholarship"},
	"schooling.scholarship_echelon": {"Échelon de la bourse de l'élève", "Pupil's scholarship level"},
	"schooling.status":              {"Scolarité (année, inscription, statut)", "Schooling (year, enrolment, status)"},
	"schooling.training":            {"Formation suivie", "Course followed"},

	"solidarity_health_cover.participation": {"Participation financière à la Complémentaire santé solidaire", "Financial participation in the solidarity health cover"},
	"solidarity_health_cover.rights":        {"Dates des droits à la Complémentaire santé solidaire", "Dates of the solidarity health cover"},
	"solidarity_health_cover.status":        {"Droit à la Complémentaire santé solidaire (C2S)", "Entitlement to the solidarity health cover (C2S)"},

	"student_scholarship.echelon":    {"Échelon de la bourse étudiante", "Student grant level"},
	"student_scholarship.status":     {"Bourse étudiante (statut)", "Student grant (status)"},
	"student_scholarship.study_city": {"Ville d'études", "City of study"},
	"student_scholarship.validity":   {"Période de validité de la bourse étudiante", "Validity of the student grant"},

	"student_status.admissions": {"Inscriptions dans l'enseignement supérieur", "Higher-education enrolments"},
	"student_status.identity":   {"Identité connue de l'enseignement supérieur", "Identity known to higher education"},
}

// ScopeLabel is the plain-words label of a scope; an unknown scope is
// told by its name, never dropped.
func ScopeLabel(scope string) Label {
	if l, ok := scopeLabels[scope]; ok {
		return l
	}
	return Label{FR: scope, EN: scope}
}

// serviceLabels name each data service as a citizen knows it: what was
// consulted and at which administration.
var serviceLabels = map[string]Label{
	"relais.aah.v1.DisabledAdultAllowanceService":            {"Allocation aux adultes handicapés (CAF / MSA)", "Disabled adult allowance (CAF / MSA)"},
	"relais.activitybonus.v1.ActivityBonusService":           {"Prime d'activité (CAF / MSA)", "Activity bonus (CAF / MSA)"},
	"relais.aeeh.v1.DisabledChildAllowanceService":           {"Allocation d'éducation de l'enfant handicapé (CAF / MSA)", "Disabled child allowance (CAF / MSA)"},
	"relais.asf.v1.FamilySupportAllowanceService":            {"Allocation de soutien familial (CAF / MSA)", "Family support allowance (CAF / MSA)"},
	"relais.civicservice.v1.CivicServiceStatusService":       {"Service civique (Agence du service civique)", "Civic service (civic service agency)"},
	"relais.familyquotient.v1.FamilyQuotientService":         {"Quotient familial (CAF / MSA)", "Family quotient (CAF / MSA)"},
	"relais.healthcover.v1.SolidarityHealthCoverService":     {"Complémentaire santé solidaire (Assurance maladie)", "Solidarity health cover (health insurance)"},
	"relais.jobseeker.v1.JobSeekerStatusService":             {"Inscription à France Travail", "France Travail registration"},
	"relais.jobseekerpayments.v1.JobSeekerPaymentsService":   {"Paiements de France Travail", "France Travail payments"},
	"relais.nationalservice.v1.NationalServiceStatusService": {"Service national (ministère des Armées)", "National service (Armed forces ministry)"},
	"relais.rsa.v1.RsaStatusService":                         {"Revenu de solidarité active (CAF / MSA)", "RSA (CAF / MSA)"},
	"relais.schooling.v1.SchoolingService":                   {"Scolarité (Éducation nationale)", "Schooling (Education ministry)"},
	"relais.studentscholarship.v1.StudentScholarshipService": {"Bourse étudiante (CNOUS)", "Student grant (CNOUS)"},
	"relais.studentstatus.v1.StudentStatusService":           {"Statut étudiant (enseignement supérieur)", "Student status (higher education)"},
}

// ServiceLabel is the plain-words label of a data service (its full
// proto name); an unknown one is told by its name.
func ServiceLabel(service string) Label {
	if l, ok := serviceLabels[service]; ok {
		return l
	}
	return Label{FR: service, EN: service}
}
