package pgtest_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/relais-broker/relais/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestSharedServesQueriesWithDurableSettings(t *testing.T) {
	c := pgtest.Shared(t)
	if c2 := pgtest.Shared(t); c2 != c {
		t.Fatal("Shared started a second cluster")
	}
	conn := connect(t, c.NewDatabase(t))
	ctx := context.Background()
	for setting, want := range map[string]string{
		"fsync":              "on",
		"synchronous_commit": "on",
		"listen_addresses":   "127.0.0.1",
		"server_version_num": "", // any: just readable
	} {
		var got string
		if err := conn.QueryRow(ctx, "SELECT current_setting($1)", setting).Scan(&got); err != nil {
			t.Fatalf("%s: %v", setting, err)
		}
		if want != "" && got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}
	var user string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != pgtest.AdminRole {
		t.Fatalf("current_user = %q, %v; want %s", user, err, pgtest.AdminRole)
	}
	if os.Geteuid() == 0 {
		fi, err := os.Stat(c.DataDir())
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid == 0 {
			t.Fatal("running as root, the data directory is owned by root: the server must run unprivileged")
		}
	}
}

func TestDatabasesAreIsolatedAndDropped(t *testing.T) {
	c := pgtest.Shared(t)
	ctx := context.Background()
	var nameA string
	t.Run("create", func(t *testing.T) {
		dsnA, dsnB := c.NewDatabase(t), c.NewDatabase(t)
		if dsnA == dsnB {
			t.Fatal("two databases with one DSN")
		}
		a, b := connect(t, dsnA), connect(t, dsnB)
		if _, err := a.Exec(ctx, "CREATE TABLE only_in_a (x int); INSERT INTO only_in_a VALUES (1)"); err != nil {
			t.Fatal(err)
		}
		_, err := b.Exec(ctx, "SELECT x FROM only_in_a")
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42P01" {
			t.Fatalf("table of database A visible from B: %v", err)
		}
		if err := a.QueryRow(ctx, "SELECT current_database()").Scan(&nameA); err != nil {
			t.Fatal(err)
		}
	})
	conn := connect(t, c.DSN("postgres"))
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", nameA).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if nameA == "" || n != 0 {
		t.Fatalf("database %q still exists after its test (count %d)", nameA, n)
	}
}

func TestStopRestartKeepsDataAndPortThenCleanupRemovesAll(t *testing.T) {
	var dataDir string
	t.Run("own cluster", func(t *testing.T) {
		c := pgtest.Start(t)
		if c == pgtest.Shared(t) {
			t.Fatal("Start returned the shared cluster")
		}
		dataDir = c.DataDir()
		dsn := c.NewDatabase(t)
		ctx := context.Background()
		conn := connect(t, dsn)
		if _, err := conn.Exec(ctx, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('survives')"); err != nil {
			t.Fatal(err)
		}
		conn.Close(ctx)

		c.Stop(t)
		if _, err := pgx.Connect(ctx, dsn); err == nil {
			t.Fatal("connected to a stopped server")
		}
		port := c.Port()
		c.Restart(t)
		if c.Port() != port {
			t.Fatalf("port changed across restart: %d → %d", port, c.Port())
		}
		var v string
		if err := connect(t, dsn).QueryRow(ctx, "SELECT v FROM kept").Scan(&v); err != nil || v != "survives" {
			t.Fatalf("after restart: %q, %v", v, err)
		}
		if _, err := os.Stat(filepath.Join(c.DataDir(), "PG_VERSION")); err != nil {
			t.Fatalf("DataDir is not a data directory: %v", err)
		}
	})
	if _, err := os.Stat(dataDir); dataDir == "" || !os.IsNotExist(err) {
		t.Fatalf("data directory %q left behind: %v", dataDir, err)
	}
}

func TestLoginRoleNeedsItsPassword(t *testing.T) {
	c := pgtest.Shared(t)
	db := c.NewDatabase(t)
	dsn := c.NewLogin(t, db)
	ctx := context.Background()
	var user string
	if err := connect(t, dsn).QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || !strings.HasPrefix(user, "login_") {
		t.Fatalf("login role: %q, %v", user, err)
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = "wrong"
	_, err = pgx.ConnectConfig(ctx, cfg)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Fatalf("wrong password: %v, want invalid_password (28P01)", err)
	}
}

func TestLoginRoleGetsMembership(t *testing.T) {
	c := pgtest.Shared(t)
	db := c.NewDatabase(t)
	admin := connect(t, db)
	ctx := context.Background()
	if _, err := admin.Exec(ctx, `DO $$ BEGIN CREATE ROLE pgtest_group NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
		CREATE TABLE granted (x int); GRANT SELECT ON granted TO pgtest_group; CREATE TABLE private (x int)`); err != nil {
		t.Fatal(err)
	}
	login := connect(t, c.NewLogin(t, db, "pgtest_group"))
	if _, err := login.Exec(ctx, "SELECT x FROM granted"); err != nil {
		t.Fatalf("member cannot use its group's grant: %v", err)
	}
	_, err := login.Exec(ctx, "SELECT x FROM private")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Fatalf("member read a table not granted: %v", err)
	}
}
