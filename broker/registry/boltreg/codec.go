package boltreg

import (
	"encoding/json"
	"time"

	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/scope"
)

// The stored forms: JSON, readable with any bbolt viewer, with explicit
// field names so that renaming a Go field never changes the file.

type consumerJSON struct {
	SIRET     string             `json:"siret"`
	Name      string             `json:"name"`
	Status    string             `json:"status"`
	Contacts  []registry.Contact `json:"contacts,omitempty"`
	CreatedAt time.Time          `json:"created_at"`
	UpdatedAt time.Time          `json:"updated_at"`
}

type purposeJSON struct {
	Code       string `json:"code"`
	Label      string `json:"label"`
	LegalBasis string `json:"legal_basis"`
}

type grantJSON struct {
	ID                  string          `json:"id"`
	Consumer            string          `json:"consumer"`
	Service             string          `json:"service"`
	Scopes              []string        `json:"scopes"`
	Purposes            []purposeJSON   `json:"purposes"`
	NotBefore           time.Time       `json:"not_before"`
	NotAfter            time.Time       `json:"not_after"`
	RatePerSecond       float64         `json:"rate_per_second"`
	Burst               int             `json:"burst"`
	DailyCap            int             `json:"daily_cap,omitempty"`
	ExpectedDailyVolume int             `json:"expected_daily_volume,omitempty"`
	Anomaly             *anomalyJSON    `json:"anomaly,omitempty"`
	Designations        []string        `json:"designations,omitempty"`
	Disclosure          *disclosureJSON `json:"disclosure,omitempty"`
	CreatedAt           time.Time       `json:"created_at"`
	RevokedAt           time.Time       `json:"revoked_at,omitzero"`
}

// anomalyJSON is absent from grants written before it existed and from
// grants that keep the defaults, so older files read unchanged.
type anomalyJSON struct {
	MaxNotFoundRatio    float64 `json:"max_not_found_ratio,omitempty"`
	MaxDistinctSubjects int     `json:"max_distinct_subjects,omitempty"`
	Action              string  `json:"action,omitempty"`
}

// disclosureJSON is absent from grants that disclose at once, and
// designations from typed-only grants written before citizen login
// existed, so older files read unchanged (typed only, no deferral).
type disclosureJSON struct {
	// DelaySeconds is whole seconds (the registry refuses anything finer).
	DelaySeconds   int64  `json:"delay_seconds"`
	LegalReference string `json:"legal_reference"`
}

type credentialJSON struct {
	Serial    string    `json:"serial"`
	Kind      string    `json:"kind"`
	Subject   string    `json:"subject"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	Status    string    `json:"status"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	IssuedBy  string    `json:"issued_by,omitempty"`
}

func encodeConsumer(c registry.Consumer) ([]byte, error) {
	return json.Marshal(consumerJSON{SIRET: c.SIRET, Name: c.Name, Status: string(c.Status), Contacts: c.Contacts, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt})
}

func decodeConsumer(b []byte) (registry.Consumer, error) {
	var j consumerJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return registry.Consumer{}, err
	}
	return registry.Consumer{SIRET: j.SIRET, Name: j.Name, Status: registry.Status(j.Status), Contacts: j.Contacts, CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt}, nil
}

func encodeGrant(g registry.Grant) ([]byte, error) {
	j := grantJSON{
		ID: g.ID, Consumer: g.Consumer, Service: g.Service, Scopes: g.Scopes.Sorted(), NotBefore: g.NotBefore, NotAfter: g.NotAfter,
		RatePerSecond: g.Quota.RatePerSecond, Burst: g.Quota.Burst, DailyCap: g.Quota.DailyCap,
		ExpectedDailyVolume: g.ExpectedDailyVolume, CreatedAt: g.CreatedAt, RevokedAt: g.RevokedAt,
		Designations: g.Designations,
	}
	for _, p := range g.Purposes {
		j.Purposes = append(j.Purposes, purposeJSON(p))
	}
	if g.Disclosure != (registry.Disclosure{}) {
		j.Disclosure = &disclosureJSON{DelaySeconds: int64(g.Disclosure.Delay / time.Second), LegalReference: g.Disclosure.LegalReference}
	}
	if g.Anomaly != (registry.AnomalyPolicy{}) {
		a := anomalyJSON(g.Anomaly)
		j.Anomaly = &a
	}
	return json.Marshal(j)
}

func decodeGrant(b []byte) (registry.Grant, error) {
	var j grantJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return registry.Grant{}, err
	}
	g := registry.Grant{
		ID: j.ID, Consumer: j.Consumer, Service: j.Service, Scopes: scope.Of(j.Scopes...), NotBefore: j.NotBefore, NotAfter: j.NotAfter,
		Quota:               registry.Quota{RatePerSecond: j.RatePerSecond, Burst: j.Burst, DailyCap: j.DailyCap},
		ExpectedDailyVolume: j.ExpectedDailyVolume, CreatedAt: j.CreatedAt, RevokedAt: j.RevokedAt,
		Designations: j.Designations,
	}
	for _, p := range j.Purposes {
		g.Purposes = append(g.Purposes, registry.Purpose(p))
	}
	if j.Disclosure != nil {
		g.Disclosure = registry.Disclosure{Delay: time.Duration(j.Disclosure.DelaySeconds) * time.Second, LegalReference: j.Disclosure.LegalReference}
	}
	if j.Anomaly != nil {
		g.Anomaly = registry.AnomalyPolicy(*j.Anomaly)
	}
	return g, nil
}

func encodeCredential(r registry.CredentialRecord) ([]byte, error) {
	return json.Marshal(credentialJSON(r))
}

func decodeCredential(b []byte) (registry.CredentialRecord, error) {
	var j credentialJSON
	err := json.Unmarshal(b, &j)
	return registry.CredentialRecord(j), err
}
