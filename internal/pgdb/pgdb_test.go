package pgdb_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/relais-broker/relais/internal/pgdb"
	"github.com/relais-broker/relais/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestVersionIsTheHighestEmbeddedMigration(t *testing.T) {
	names, err := fs.Glob(pgdb.Migrations(), "*.sql")
	if err != nil || len(names) == 0 {
		t.Fatalf("no embedded migrations: %v", err)
	}
	var highest int64
	for i, n := range names {
		var v int64
		if _, err := fmt.Sscanf(n, "%05d_", &v); err != nil || !strings.HasSuffix(n, ".sql") {
			t.Fatalf("migration %q is not named NNNNN_name.sql", n)
		}
		if i > 0 && v == highest {
			t.Fatalf("two migrations numbered %d", v)
		}
		highest = max(highest, v)
	}
	if highest != pgdb.Version {
		t.Fatalf("pgdb.Version = %d, highest embedded migration = %d: bump Version with each migration", pgdb.Version, highest)
	}
}

func TestMigrateAppliesEverythingOnceThenCheckPasses(t *testing.T) {
	c := pgtest.Shared(t)
	dsn := c.NewDatabase(t)
	ctx := ctxT(t)
	for range 2 { // the second run has nothing to do
		v, err := pgdb.Migrate(ctx, dsn)
		if err != nil || v != pgdb.Version {
			t.Fatalf("Migrate = %d, %v; want %d", v, err, pgdb.Version)
		}
	}
	pool, err := pgdb.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := pgdb.Check(ctx, pool); err != nil {
		t.Fatalf("Check after Migrate: %v", err)
	}
	for _, role := range []string{"relais_broker", "relais_retention"} {
		var login bool
		if err := pool.QueryRow(ctx, "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", role).Scan(&login); err != nil {
			t.Fatalf("role %s: %v", role, err)
		}
		if login {
			t.Errorf("role %s can log in: it must be NOLOGIN", role)
		}
	}
	_, migrations, err := func() (int64, []pgdb.MigrationState, error) { return pgdb.Status(ctx, dsn) }()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range migrations {
		if !m.Applied {
			t.Errorf("status: %s not applied", m.Name)
		}
	}
}

func TestConcurrentMigrationsAreSafe(t *testing.T) {
	c := pgtest.Shared(t)
	ctx := ctxT(t)
	// Two replicas on one database, and databases of one cluster at once
	// (the roles are cluster-wide).
	dsns := []string{c.NewDatabase(t), c.NewDatabase(t), c.NewDatabase(t)}
	dsns = append(dsns, dsns[0])
	var wg sync.WaitGroup
	errs := make([]error, len(dsns))
	for i, dsn := range dsns {
		wg.Go(func() {
			v, err := pgdb.Migrate(ctx, dsn)
			if err == nil && v != pgdb.Version {
				err = fmt.Errorf("version %d", v)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("migration %d: %v", i, err)
		}
	}
	conn, err := pgx.Connect(ctx, dsns[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM goose_db_version WHERE version_id > 0").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != int(pgdb.Version) {
		t.Fatalf("%d migration rows after two concurrent runs, want %d (each once)", n, pgdb.Version)
	}
}

func TestCheckRefusesOlderAndNewerSchemas(t *testing.T) {
	c := pgtest.Shared(t)
	dsn := c.NewDatabase(t)
	ctx := ctxT(t)
	pool, err := pgdb.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	err = pgdb.Check(ctx, pool)
	want := fmt.Sprintf("database schema is at version 0, this relaisd needs %d", pgdb.Version)
	if !errors.Is(err, pgdb.ErrSchemaTooOld) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "run relaisctl db migrate") {
		t.Fatalf("empty database: %v; want ErrSchemaTooOld saying %q and the command", err, want)
	}

	if _, err := pgdb.Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	// A broker login (member of relais_broker) may run the check.
	broker, err := pgdb.Connect(ctx, c.NewLogin(t, dsn, "relais_broker"))
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	if err := pgdb.Check(ctx, broker); err != nil {
		t.Fatalf("Check as relais_broker: %v", err)
	}

	// A migration rolled back (goose's log gets a newer "not applied" row).
	if _, err := pool.Exec(ctx, "INSERT INTO goose_db_version (version_id, is_applied) VALUES (1, false)"); err != nil {
		t.Fatal(err)
	}
	if err := pgdb.Check(ctx, pool); !errors.Is(err, pgdb.ErrSchemaTooOld) || !strings.Contains(err.Error(), "migration 1 is not applied") {
		t.Fatalf("schema without migration 1: %v", err)
	}
	if _, err := pool.Exec(ctx, "INSERT INTO goose_db_version (version_id, is_applied) VALUES (1, true)"); err != nil {
		t.Fatal(err)
	}

	// A newer relaisd migrated further.
	if _, err := pool.Exec(ctx, "INSERT INTO goose_db_version (version_id, is_applied) VALUES ($1, true)", pgdb.Version+1); err != nil {
		t.Fatal(err)
	}
	err = pgdb.Check(ctx, pool)
	if !errors.Is(err, pgdb.ErrSchemaTooNew) || !strings.Contains(err.Error(), "this relaisd is older than the database schema") {
		t.Fatalf("newer schema: %v; want ErrSchemaTooNew", err)
	}
	// An older relaisctl does not claim to have migrated it.
	if v, err := pgdb.Migrate(ctx, dsn); !errors.Is(err, pgdb.ErrSchemaTooNew) || !strings.Contains(err.Error(), "upgrade relaisctl") {
		t.Fatalf("Migrate on a newer schema: %d, %v; want ErrSchemaTooNew", v, err)
	}
}

func TestConnectSetsTimeoutAndApplicationName(t *testing.T) {
	c := pgtest.Shared(t)
	ctx := ctxT(t)
	pool, err := pgdb.Connect(ctx, c.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var timeout, app string
	if err := pool.QueryRow(ctx, "SELECT current_setting('statement_timeout'), current_setting('application_name')").Scan(&timeout, &app); err != nil {
		t.Fatal(err)
	}
	if timeout != "5s" || app != pgdb.ApplicationName {
		t.Fatalf("statement_timeout %q, application_name %q; want 5s, %s", timeout, app, pgdb.ApplicationName)
	}
	// The timeout is enforced by the server (query_canceled), shown with a
	// per-transaction lower value so the test stays fast.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SET LOCAL statement_timeout = '50ms'"); err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx, "SELECT pg_sleep(10)")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
		t.Fatalf("slow statement: %v, want query_canceled (57014)", err)
	}
}

func TestErrorsNeverContainThePassword(t *testing.T) {
	c := pgtest.Shared(t)
	db := c.NewDatabase(t)
	login := c.NewLogin(t, db)
	cfg, err := pgx.ParseConfig(login)
	if err != nil {
		t.Fatal(err)
	}
	const secret = "S3cr3t-Pa55word-never-shown"
	host := fmt.Sprintf("127.0.0.1:%d", c.Port())
	dbName := cfg.Database
	ctx := ctxT(t)
	for name, dsn := range map[string]string{
		"wrong password (url)":       fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", cfg.User, secret, host, dbName),
		"wrong password (key/value)": fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=%s sslmode=disable", c.Port(), cfg.User, secret, dbName),
		"unreachable":                fmt.Sprintf("postgres://%s:%s@127.0.0.1:1/%s?sslmode=disable&connect_timeout=2", cfg.User, secret, dbName),
		"malformed url":              fmt.Sprintf("postgres://%s:%s@%s:notaport/%s", cfg.User, secret, host, dbName),
		"malformed key/value":        fmt.Sprintf("host=127.0.0.1 password=%s port=x'", secret),
		"bad pool setting":           fmt.Sprintf("postgres://%s:%s@%s/%s?pool_max_conns=many", cfg.User, secret, host, dbName),
	} {
		t.Run(name, func(t *testing.T) {
			pool, err := pgdb.Connect(ctx, dsn)
			if err == nil {
				pool.Close()
				t.Fatal("connected")
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(fmt.Sprintf("%+v", err), secret) {
				t.Fatalf("Connect error shows the password: %v", err)
			}
			_, err = pgdb.Migrate(ctx, dsn)
			if err == nil {
				t.Fatal("migrated")
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("Migrate error shows the password: %v", err)
			}
			_, _, err = pgdb.Status(ctx, dsn)
			if err == nil || strings.Contains(err.Error(), secret) {
				t.Fatalf("Status error: %v", err)
			}
		})
	}
}

func TestPasswordLoginConnects(t *testing.T) {
	c := pgtest.Shared(t)
	dsn := c.NewDatabase(t)
	ctx := ctxT(t)
	if _, err := pgdb.Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	pool, err := pgdb.Connect(ctx, c.NewLogin(t, dsn, "relais_broker"))
	if err != nil {
		t.Fatalf("connect with a password: %v", err)
	}
	defer pool.Close()
	// relais_broker gets only what migrations grant: no new tables.
	_, err = pool.Exec(ctx, "CREATE TABLE intruder (x int)")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Fatalf("relais_broker created a table: %v", err)
	}
}

func TestLoadDSN(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/dsn"
	if err := os.WriteFile(file, []byte("  postgres://u:pw@db/relais\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := dir + "/empty"
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(pgdb.DSNEnv, "postgres://env@db/relais")
	if got, err := pgdb.LoadDSN(file); err != nil || got != "postgres://u:pw@db/relais" {
		t.Fatalf("from a file: %q, %v (the file wins over the environment)", got, err)
	}
	if got, err := pgdb.LoadDSN(""); err != nil || got != "postgres://env@db/relais" {
		t.Fatalf("from the environment: %q, %v", got, err)
	}
	if _, err := pgdb.LoadDSN(empty); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Fatalf("empty file: %v", err)
	}
	t.Setenv(pgdb.DSNEnv, "")
	if _, err := pgdb.LoadDSN(""); err == nil || !strings.Contains(err.Error(), pgdb.DSNEnv) {
		t.Fatalf("nothing: %v", err)
	}
}
