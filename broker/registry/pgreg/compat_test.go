package pgreg_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	"github.com/pressly/goose/v3"

	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/registry/registrytest"
	"github.com/relais-broker/relais/internal/pgdb"
	"github.com/relais-broker/relais/internal/pgtest"
)

// TestGrantsWrittenBeforeMigration7: a grant row written on schema 6
// (before citizen login and deferred disclosure) reads, once migrated, as
// typed only and disclosed at once; and the new columns refuse what the
// Go rules refuse.
func TestGrantsWrittenBeforeMigration7(t *testing.T) {
	ctx := context.Background()
	c := pgtest.Shared(t)
	dsn := c.NewDatabase(t)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, pgdb.Migrations(), goose.WithDisableGlobalRegistry(true), goose.WithLogger(goose.NopLogger()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 6); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO registry_consumers (siret, name, status, created_at, updated_at) VALUES ('21990000100005', 'A', 'active', now(), now())`,
		`INSERT INTO registry_grants (id, consumer, service, scopes, purposes, not_before, not_after, rate_per_second, burst, daily_cap, created_at)
		 VALUES ('g-00000000000000aa', '21990000100005', 'relais.familyquotient.v1.FamilyQuotientService', '{family_quotient.value}',
		         '[{"code":"tarification_sociale","label":"Cantine","legal_basis":"CRPA art. L114-8"}]',
		         '2026-01-01T00:00:00Z', '2030-01-01T00:00:00Z', 10, 20, 0, '2026-01-01T00:00:00Z')`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pgdb.Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	pool, err := pgdb.Connect(ctx, c.NewLogin(t, dsn, "relais_broker"))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	s := openStore(t, pool, func() time.Time { return registrytest.Start })
	defer s.Close()
	gs, err := s.Grants(ctx, registrytest.SiretA, registrytest.FQ)
	if err != nil || len(gs) != 1 {
		t.Fatalf("grants: %+v, %v", gs, err)
	}
	if g := gs[0]; g.Designations != nil || g.Disclosure != (registry.Disclosure{}) || !g.Allows(registry.DesignationTyped) || g.Allows(registry.DesignationCitizenLogin) {
		t.Fatalf("a grant of schema 6 reads as %+v", g)
	}

	// The columns' checks back the Go rules for writers that bypass them.
	for name, q := range map[string]string{
		"unknown designation":     `UPDATE registry_grants SET designations = '{typed,eidas}'`,
		"delay without reference": `UPDATE registry_grants SET disclosure_delay = '1 hour'`,
		"reference without delay": `UPDATE registry_grants SET disclosure_reference = 'CSS art. L114-9'`,
		"delay over ten years":    `UPDATE registry_grants SET disclosure_delay = '87601 hours', disclosure_reference = 'x'`,
		"negative delay":          `UPDATE registry_grants SET disclosure_delay = '-1 hour', disclosure_reference = 'x'`,
	} {
		if _, err := db.ExecContext(ctx, q); err == nil {
			t.Errorf("%s: accepted by the table", name)
		}
	}
	if _, err := db.ExecContext(ctx, `UPDATE registry_grants SET designations = '{typed,citizen_login}', disclosure_delay = '8760 hours', disclosure_reference = 'x'`); err != nil {
		t.Fatalf("a valid change refused: %v", err)
	}
	if err := s.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	gs, _ = s.Grants(ctx, registrytest.SiretA, registrytest.FQ)
	if g := gs[0]; len(g.Designations) != 2 || g.Disclosure != (registry.Disclosure{Delay: 8760 * time.Hour, LegalReference: "x"}) {
		t.Fatalf("read back as %+v", g)
	}
}
