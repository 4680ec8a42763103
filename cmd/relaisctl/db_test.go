package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/relais-broker/relais/internal/pgdb"
	"github.com/relais-broker/relais/internal/pgtest"
)

func relaisctl(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestDBMigrateAndStatus(t *testing.T) {
	// A cluster of the test's own: this package has no pgtest TestMain.
	c := pgtest.Start(t)
	admin := c.NewDatabase(t)
	// The schema owner logs in with a password; the DSN (with it) is in a file.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	var db string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	ownerDSN := c.NewLogin(t, db)
	owner, _ := pgx.ParseConfig(ownerDSN)
	if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s OWNER TO %s; ALTER SCHEMA public OWNER TO %s; ALTER ROLE %s CREATEROLE", db, owner.User, owner.User, owner.User)); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	dsnFile := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(dsnFile, []byte(ownerDSN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noSecret := func(t *testing.T, outs ...string) {
		t.Helper()
		for _, o := range outs {
			if strings.Contains(o, owner.Password) {
				t.Fatalf("output shows the DSN password:\n%s", o)
			}
		}
	}

	code, out, errOut := relaisctl(t, "db", "status", "--dsn-file", dsnFile)
	noSecret(t, out, errOut)
	if code != 0 || !strings.Contains(out, "00001_roles.sql") || !strings.Contains(out, "pending: run relaisctl db migrate") {
		t.Fatalf("status before migrate: %d\n%s%s", code, out, errOut)
	}

	code, out, errOut = relaisctl(t, "db", "migrate", "--dsn-file", dsnFile)
	noSecret(t, out, errOut)
	if want := fmt.Sprintf("OK: database schema at version %d\n", pgdb.Version); code != 0 || out != want {
		t.Fatalf("migrate: %d %q %s; want %q", code, out, errOut, want)
	}

	t.Setenv(pgdb.DSNEnv, ownerDSN)
	code, out, errOut = relaisctl(t, "db", "status")
	noSecret(t, out, errOut)
	if code != 0 || strings.Contains(out, "pending") || !strings.Contains(out, fmt.Sprintf("at version %d: up to date", pgdb.Version)) {
		t.Fatalf("status after migrate (dsn from the environment): %d\n%s%s", code, out, errOut)
	}
}

func TestDBRefusesBadInvocations(t *testing.T) {
	t.Setenv(pgdb.DSNEnv, "")
	secretFile := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(secretFile, []byte("postgres://u:Sup3rS3cret@127.0.0.1:1:x/db"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"db"}, 2, "usage: relaisctl db migrate|status"},
		{[]string{"db", "drop"}, 2, "usage: relaisctl db migrate|status"},
		{[]string{"db", "migrate"}, 2, "no database dsn: give a dsn file or set RELAIS_DATABASE_DSN"},
		{[]string{"db", "migrate", "--dsn-file", filepath.Join(t.TempDir(), "missing")}, 2, "read dsn file"},
		{[]string{"db", "status", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"db", "migrate", "--dsn-file", secretFile}, 1, "invalid database dsn"},
	} {
		code, out, errOut := relaisctl(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) || strings.Contains(out+errOut, "Sup3rS3cret") {
			t.Errorf("%v: exit %d, stderr %q; want exit %d saying %q, never the password", tc.args, code, errOut, tc.code, tc.want)
		}
	}
}
