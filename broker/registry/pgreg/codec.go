package pgreg

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/scope"
)

// The jsonb forms of the nested lists, with explicit field names so that
// renaming a Go field never changes the stored rows.

type contactJSON struct {
	Name  string `json:"name"`
	Email string `json:"email,omitempty"`
	Phone string `json:"phone,omitempty"`
}

type purposeJSON struct {
	Code       string `json:"code"`
	Label      string `json:"label"`
	LegalBasis string `json:"legal_basis"`
}

func encodeContacts(cs []registry.Contact) []byte {
	out := make([]contactJSON, len(cs))
	for i, c := range cs {
		out[i] = contactJSON(c)
	}
	b, _ := json.Marshal(out) // plain strings: cannot fail
	return b
}

func encodePurposes(ps []registry.Purpose) []byte {
	out := make([]purposeJSON, len(ps))
	for i, p := range ps {
		out[i] = purposeJSON(p)
	}
	b, _ := json.Marshal(out) // plain strings: cannot fail
	return b
}

// nullTime stores the zero time as NULL.
func nullTime(t time.Time) pgtype.Timestamptz {
	return pgtype.Timestamptz{Time: t, Valid: !t.IsZero()}
}

// fromDB returns a stored time in UTC (pgx returns local times), the zero
// time for NULL.
func fromDB(t pgtype.Timestamptz) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC()
}

const consumerColumns = `siret, name, status, contacts, created_at, updated_at`

func consumerValues(c registry.Consumer) []any {
	return []any{c.SIRET, c.Name, string(c.Status), encodeContacts(c.Contacts), c.CreatedAt, c.UpdatedAt}
}

func scanConsumer(row pgx.CollectableRow) (registry.Consumer, error) {
	var (
		c                registry.Consumer
		status           string
		contacts         []byte
		created, updated pgtype.Timestamptz
	)
	if err := row.Scan(&c.SIRET, &c.Name, &status, &contacts, &created, &updated); err != nil {
		return registry.Consumer{}, err
	}
	var cs []contactJSON
	if err := json.Unmarshal(contacts, &cs); err != nil {
		return registry.Consumer{}, fmt.Errorf("registry: corrupt record: consumer %s: contacts: %w", c.SIRET, err)
	}
	for _, ct := range cs {
		c.Contacts = append(c.Contacts, registry.Contact(ct))
	}
	c.Status, c.CreatedAt, c.UpdatedAt = registry.Status(status), fromDB(created), fromDB(updated)
	return c, nil
}

const grantColumns = `id, consumer, service, scopes, purposes, not_before, not_after, rate_per_second, burst, daily_cap,
	expected_daily_volume, anomaly_max_not_found_ratio, anomaly_max_distinct_subjects, anomaly_action, created_at, revoked_at,
	designations, disclosure_delay, disclosure_reference`

func grantValues(g registry.Grant) []any {
	return []any{
		g.ID, g.Consumer, g.Service, g.Scopes.Sorted(), encodePurposes(g.Purposes), g.NotBefore, g.NotAfter,
		g.Quota.RatePerSecond, g.Quota.Burst, g.Quota.DailyCap, g.ExpectedDailyVolume,
		g.Anomaly.MaxNotFoundRatio, g.Anomaly.MaxDistinctSubjects, g.Anomaly.Action, g.CreatedAt, nullTime(g.RevokedAt),
		designationsValue(g.Designations), pgtype.Interval{Microseconds: g.Disclosure.Delay.Microseconds(), Valid: true}, g.Disclosure.LegalReference,
	}
}

// designationsValue stores no designations as an empty array, never NULL.
func designationsValue(ds []string) []string {
	if ds == nil {
		return []string{}
	}
	return ds
}

func scanGrant(row pgx.CollectableRow) (registry.Grant, error) {
	var (
		g                                     registry.Grant
		scopes                                []string
		purposes                              []byte
		notBefore, notAfter, created, revoked pgtype.Timestamptz
		delay                                 pgtype.Interval
	)
	if err := row.Scan(&g.ID, &g.Consumer, &g.Service, &scopes, &purposes, &notBefore, &notAfter,
		&g.Quota.RatePerSecond, &g.Quota.Burst, &g.Quota.DailyCap, &g.ExpectedDailyVolume,
		&g.Anomaly.MaxNotFoundRatio, &g.Anomaly.MaxDistinctSubjects, &g.Anomaly.Action, &created, &revoked,
		&g.Designations, &delay, &g.Disclosure.LegalReference); err != nil {
		return registry.Grant{}, err
	}
	if !delay.Valid || delay.Months != 0 {
		return registry.Grant{}, fmt.Errorf("registry: corrupt record: grant %s: disclosure_delay is not a plain duration", g.ID)
	}
	g.Disclosure.Delay = time.Duration(delay.Days)*24*time.Hour + time.Duration(delay.Microseconds)*time.Microsecond
	if len(g.Designations) == 0 {
		g.Designations = nil // typed only, as every grant before citizen login
	}
	var ps []purposeJSON
	if err := json.Unmarshal(purposes, &ps); err != nil {
		return registry.Grant{}, fmt.Errorf("registry: corrupt record: grant %s: purposes: %w", g.ID, err)
	}
	for _, p := range ps {
		g.Purposes = append(g.Purposes, registry.Purpose(p))
	}
	g.Scopes = scope.Of(scopes...)
	g.NotBefore, g.NotAfter, g.CreatedAt, g.RevokedAt = fromDB(notBefore), fromDB(notAfter), fromDB(created), fromDB(revoked)
	return g, nil
}

const credentialColumns = `serial, kind, subject, not_before, not_after, status, revoked_at, issued_by`

func credentialValues(r registry.CredentialRecord) []any {
	return []any{r.Serial, r.Kind, r.Subject, nullTime(r.NotBefore), nullTime(r.NotAfter), r.Status, nullTime(r.RevokedAt), r.IssuedBy}
}

func scanCredential(row pgx.CollectableRow) (registry.CredentialRecord, error) {
	var (
		r                            registry.CredentialRecord
		notBefore, notAfter, revoked pgtype.Timestamptz
	)
	if err := row.Scan(&r.Serial, &r.Kind, &r.Subject, &notBefore, &notAfter, &r.Status, &revoked, &r.IssuedBy); err != nil {
		return registry.CredentialRecord{}, err
	}
	r.NotBefore, r.NotAfter, r.RevokedAt = fromDB(notBefore), fromDB(notAfter), fromDB(revoked)
	return r, nil
}

// load reads the whole registry as tx sees it into a snapshot of version.
func load(ctx context.Context, tx pgx.Tx, version uint64) (*registry.Snapshot, error) {
	rows, _ := tx.Query(ctx, `SELECT `+consumerColumns+` FROM registry_consumers`)
	consumers, err := pgx.CollectRows(rows, scanConsumer)
	if err != nil {
		return nil, err
	}
	rows, _ = tx.Query(ctx, `SELECT `+grantColumns+` FROM registry_grants`)
	grants, err := pgx.CollectRows(rows, scanGrant)
	if err != nil {
		return nil, err
	}
	rows, _ = tx.Query(ctx, `SELECT serial FROM registry_credentials WHERE status = 'revoked'`)
	revoked, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	return registry.NewSnapshot(version, consumers, grants, revoked), nil
}

// columns splits a column list constant for COPY.
func columns(list string) []string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		parts[i] = strings.TrimSpace(p)
	}
	return parts
}
