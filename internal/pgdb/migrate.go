package pgdb

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// Version is the schema version this build needs: the highest embedded
// migration (a test keeps them equal).
const Version int64 = 7

// lockID is the advisory lock that serialises `relaisctl db migrate` runs
// on one database ("relais" in ASCII), so two replicas migrating at once
// is safe.
const lockID int64 = 0x72656c616973

// ErrSchemaTooOld wraps Check's refusal of a schema this relaisd cannot run
// on until it is migrated.
var ErrSchemaTooOld = errors.New("database schema is too old")

// ErrSchemaTooNew wraps Check's refusal of a schema written by a newer
// relaisd.
var ErrSchemaTooNew = errors.New("database schema is too new")

// Migrate applies every embedded migration not yet applied, under one
// advisory lock, and returns the schema version reached. It runs as the
// database's owner (the DSN of the operator, not of relais_broker). A
// schema newer than Version is refused (ErrSchemaTooNew), untouched.
func Migrate(ctx context.Context, dsn string) (version int64, err error) {
	p, closeDB, password, err := provider(dsn)
	if err != nil {
		return 0, err
	}
	defer closeDB()
	// goose would report success on a schema it does not know.
	if current, _, err := p.GetVersions(ctx); err == nil && current > Version {
		return current, &schemaError{ErrSchemaTooNew, fmt.Sprintf("database schema is at version %d, newer than this relaisctl knows (%d): upgrade relaisctl", current, Version)}
	}
	if _, err := p.Up(ctx); err != nil {
		return 0, Redact(fmt.Errorf("migrate: %w", err), password)
	}
	v, err := p.GetDBVersion(ctx)
	if err != nil {
		return 0, Redact(fmt.Errorf("schema version: %w", err), password)
	}
	return v, nil
}

// MigrationState is one embedded migration and whether the database has it.
type MigrationState struct {
	Version int64
	Name    string // file name, e.g. 00001_roles.sql
	Applied bool
}

// Status reports the database's schema version and the state of every
// embedded migration, for `relaisctl db status`. It changes nothing but may
// create goose's (empty) version table.
func Status(ctx context.Context, dsn string) (current int64, migrations []MigrationState, err error) {
	p, closeDB, password, err := provider(dsn)
	if err != nil {
		return 0, nil, err
	}
	defer closeDB()
	st, err := p.Status(ctx)
	if err != nil {
		return 0, nil, Redact(fmt.Errorf("migration status: %w", err), password)
	}
	for _, s := range st {
		migrations = append(migrations, MigrationState{
			Version: s.Source.Version,
			Name:    path.Base(s.Source.Path),
			Applied: s.State == goose.StateApplied,
		})
	}
	current, err = p.GetDBVersion(ctx)
	if err != nil {
		return 0, nil, Redact(fmt.Errorf("schema version: %w", err), password)
	}
	return current, migrations, nil
}

// provider opens a database/sql handle on dsn and a goose provider over the
// embedded migrations.
func provider(dsn string) (*goose.Provider, func(), string, error) {
	cfg, err := parseConn(dsn)
	if err != nil {
		return nil, nil, "", err
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "relais-migrate"
	}
	db := stdlib.OpenDB(*cfg)
	closeDB := func() { _ = db.Close() }
	// Lock probes every second, for at most five minutes.
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(lockID), lock.WithLockTimeout(1, 300))
	if err != nil {
		closeDB()
		return nil, nil, "", err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, Migrations(),
		goose.WithSessionLocker(locker),
		goose.WithLogger(goose.NopLogger()),
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		closeDB()
		return nil, nil, "", fmt.Errorf("migrations: %w", err)
	}
	return p, closeDB, cfg.Password, nil
}

// embeddedVersions lists the versions of the embedded migration files.
func embeddedVersions() ([]int64, error) {
	names, err := fs.Glob(Migrations(), "*.sql")
	if err != nil {
		return nil, err
	}
	var vs []int64
	for _, n := range names {
		num, _, ok := strings.Cut(n, "_")
		v, err := strconv.ParseInt(num, 10, 64)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration file %s: name is not NNNNN_name.sql", n)
		}
		vs = append(vs, v)
	}
	slices.Sort(vs)
	return vs, nil
}

// Check refuses a schema older than Version (or missing one of the embedded
// migrations) and a schema newer than Version. It only reads (relais_broker
// may run it) and is called by relaisd at start.
func Check(ctx context.Context, pool *pgxpool.Pool) error {
	var exists bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass('goose_db_version') IS NOT NULL").Scan(&exists); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	var applied []int64
	if exists {
		// goose's table is a log: the newest row of a version says whether it
		// is applied.
		rows, err := pool.Query(ctx, `SELECT version_id FROM (
			SELECT DISTINCT ON (version_id) version_id, is_applied FROM goose_db_version ORDER BY version_id, id DESC
		) v WHERE is_applied AND version_id > 0 ORDER BY version_id`)
		if err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		for rows.Next() {
			var v int64
			if err := rows.Scan(&v); err != nil {
				rows.Close()
				return fmt.Errorf("read schema version: %w", err)
			}
			applied = append(applied, v)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
	}
	return checkVersions(applied)
}

// checkVersions compares the applied versions with the embedded ones.
func checkVersions(applied []int64) error {
	var current int64
	if len(applied) > 0 {
		current = applied[len(applied)-1]
	}
	switch {
	case current > Version:
		return &schemaError{ErrSchemaTooNew, fmt.Sprintf("database schema is at version %d, this relaisd knows only up to %d: this relaisd is older than the database schema, upgrade it", current, Version)}
	case current < Version:
		return &schemaError{ErrSchemaTooOld, fmt.Sprintf("database schema is at version %d, this relaisd needs %d: run relaisctl db migrate", current, Version)}
	}
	want, err := embeddedVersions()
	if err != nil {
		return err
	}
	for _, v := range want {
		if !slices.Contains(applied, v) {
			return &schemaError{ErrSchemaTooOld, fmt.Sprintf("database schema is at version %d but migration %d is not applied: run relaisctl db migrate", current, v)}
		}
	}
	return nil
}

// schemaError is Check's refusal: its message says what to run, and it
// matches ErrSchemaTooOld or ErrSchemaTooNew with errors.Is.
type schemaError struct {
	kind error
	msg  string
}

func (e *schemaError) Error() string { return e.msg }
func (e *schemaError) Unwrap() error { return e.kind }
