package devenv

import (
	"time"

	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/scope"
)

// DemoConsumer is a fictitious consuming body dev mode creates.
type DemoConsumer struct {
	// Dir is the directory name under DIR/dev/consumers.
	Dir   string
	SIRET string
	Name  string
}

// The two demo consumers: one granted everything, one granted a subset so
// that minimisation shows at the first call.
var (
	FullConsumer    = DemoConsumer{Dir: "mairie-exemple", SIRET: "21990000100005", Name: "Mairie d'Exemple-sur-Loire (démo)"}
	LimitedConsumer = DemoConsumer{Dir: "ccas-limite", SIRET: "21990000200003", Name: "CCAS de Démoville (démo)"}
)

// DemoConsumers lists the demo consumers.
func DemoConsumers() []DemoConsumer { return []DemoConsumer{FullConsumer, LimitedConsumer} }

// Demo purposes, with the legal basis an operator would record.
var (
	purposeSocialPricing = registry.Purpose{
		Code:       "tarification_sociale",
		Label:      "Tarification sociale des services municipaux (cantine, accueil de loisirs)",
		LegalBasis: "CRPA art. L114-8 et R114-9-3 ; délibération du conseil municipal fixant les tarifs",
	}
	purposeSocialAid = registry.Purpose{
		Code:       "aide_sociale_facultative",
		Label:      "Instruction d'une aide sociale facultative du CCAS",
		LegalBasis: "CASF art. L123-5 ; CRPA art. L114-8",
	}
	purposeStudentAid = registry.Purpose{
		Code:       "aide_etudiante",
		Label:      "Aide municipale aux étudiants (transport, logement)",
		LegalBasis: "CRPA art. L114-8 et R114-9-3",
	}
)

// demoQuota is API particulier's default: 20 calls per second.
var demoQuota = registry.Quota{RatePerSecond: 20, Burst: 40}

// DeferredService is the service whose accesses by the CCAS are disclosed
// to the citizen late (DeferredDisclosure): the dev portal shows its
// notice, and `relaisctl audit deferred` lists these accesses.
const DeferredService = "relais.rsa.v1.RsaStatusService"

// DeferredDisclosure is the deferral of the CCAS's RSA checks: a control
// of the aids it grants, disclosed 90 days later.
var DeferredDisclosure = registry.Disclosure{Delay: 90 * 24 * time.Hour,
	LegalReference: "Code de la sécurité sociale, art. L114-9 (contrôle des aides, démo)"}

// DemoData returns the demo consumers and their grants, valid for a year
// from now.
func DemoData(cat *catalog.Catalog, now time.Time) ([]registry.Consumer, []registry.Grant) {
	from, to := now.Add(-time.Hour), now.AddDate(1, 0, 0)
	var grants []registry.Grant
	for _, svc := range cat.Services() {
		all, _ := cat.ServiceScopes(svc)
		grants = append(grants, registry.Grant{
			ID: "demo-full-" + svc, Consumer: FullConsumer.SIRET, Service: svc, Scopes: all,
			Purposes:  []registry.Purpose{purposeSocialPricing, purposeSocialAid, purposeStudentAid},
			NotBefore: from, NotAfter: to, Quota: demoQuota,
			// The town hall's portal may also pass a citizen's own login
			// (examples/citizen-portal); the CCAS below types identities only.
			Designations: []string{registry.DesignationTyped, registry.DesignationCitizenLogin},
		})
	}
	limited := map[string][]string{
		"relais.familyquotient.v1.FamilyQuotientService":     {"family_quotient.value"},
		"relais.healthcover.v1.SolidarityHealthCoverService": {"solidarity_health_cover.status"},
		"relais.jobseeker.v1.JobSeekerStatusService":         {"job_seeker.registration"},
		// What a CCAS instructing an aid checks: whether the person
		// already receives a minimum income or the AAH, and what France
		// Travail paid per month; never the single-parent increase, the
		// AAH dates or the detail of each payment.
		"relais.rsa.v1.RsaStatusService":                       {"rsa.status"},
		"relais.activitybonus.v1.ActivityBonusService":         {"activity_bonus.status"},
		"relais.aah.v1.DisabledAdultAllowanceService":          {"disabled_adult_allowance.status"},
		"relais.jobseekerpayments.v1.JobSeekerPaymentsService": {"job_seeker_payments.monthly"},
	}
	for svc, scopes := range limited {
		g := registry.Grant{
			ID: "demo-limited-" + svc, Consumer: LimitedConsumer.SIRET, Service: svc, Scopes: scope.Of(scopes...),
			Purposes:  []registry.Purpose{purposeSocialAid},
			NotBefore: from, NotAfter: to, Quota: demoQuota,
		}
		if svc == DeferredService {
			g.Disclosure = DeferredDisclosure
		}
		grants = append(grants, g)
	}
	consumers := []registry.Consumer{
		// Fictitious contacts (the .example domain never delivers): dev mode's
		// expiry reminders are written to DIR/dev/outbox for them.
		{SIRET: FullConsumer.SIRET, Name: FullConsumer.Name, Status: registry.StatusActive,
			Contacts: []registry.Contact{{Name: "DSI de la mairie (démo)", Email: "dsi@mairie-exemple.example"}}},
		{SIRET: LimitedConsumer.SIRET, Name: LimitedConsumer.Name, Status: registry.StatusActive,
			Contacts: []registry.Contact{{Name: "Direction du CCAS (démo)", Email: "direction@ccas-demoville.example"}}},
	}
	return consumers, grants
}
