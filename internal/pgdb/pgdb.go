// Package pgdb opens the broker's PostgreSQL connection pool and owns the
// database schema: versioned SQL migrations embedded in the binary, applied
// by `relaisctl db migrate` (pressly/goose), and checked by relaisd at start
// so that a broker never runs against a schema older or newer than the one
// it was built for.
//
// A DSN may hold a password: no error of this package contains it. The
// DSN is libpq's (URL or key=value) as pgx reads it, so TLS to the
// database is set there — sslmode=verify-full with sslrootcert=CA.pem
// checks the server's certificate chain and name (sslcert/sslkey add a
// client certificate) — and the password may instead come from a passfile
// (passfile=… or $PGPASSFILE) or $PGPASSWORD.
package pgdb

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// StatementTimeout bounds every statement of the broker's pool, so a stuck
// query fails a call instead of holding it.
const StatementTimeout = 5 * time.Second

// ApplicationName tags the broker's sessions in pg_stat_activity.
const ApplicationName = "relaisd"

//go:embed migrations/*.sql
var embedded embed.FS

// Migrations is the embedded migration files (NNNNN_name.sql), for tools
// that list them.
func Migrations() fs.FS {
	sub, err := fs.Sub(embedded, "migrations")
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return sub
}

// Connect opens a pgx pool on dsn (statement_timeout 5 s, application_name
// relaisd unless the DSN sets one) and pings it. Pool settings
// (pool_max_conns…) may be given in the DSN.
func Connect(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, errInvalidDSN
	}
	rp := cfg.ConnConfig.RuntimeParams
	rp["statement_timeout"] = fmt.Sprint(StatementTimeout.Milliseconds())
	if rp["application_name"] == "" {
		rp["application_name"] = ApplicationName
	}
	password := cfg.ConnConfig.Password
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, Redact(fmt.Errorf("open database pool: %w", err), password)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, Redact(fmt.Errorf("connect to database: %w", err), password)
	}
	return pool, nil
}

// errInvalidDSN is all a parse error says: the parser's own messages may
// quote the DSN, password included.
var errInvalidDSN = errors.New("invalid database dsn (not shown: it may hold a password)")

// parseConn parses dsn for the migration tools.
func parseConn(dsn string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, errInvalidDSN
	}
	return cfg, nil
}

// Redact removes password from err's text, keeping the chain for
// errors.Is and errors.As: every error about a connection goes through it
// before it is returned or logged.
func Redact(err error, password string) error {
	if err == nil || password == "" || !strings.Contains(err.Error(), password) {
		return err
	}
	return &redactedError{msg: strings.ReplaceAll(err.Error(), password, "xxxxx"), cause: err}
}

type redactedError struct {
	msg   string
	cause error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.cause }

// DSNEnv is the environment variable that holds the DSN when no file is
// given.
const DSNEnv = "RELAIS_DATABASE_DSN"

// LoadDSN reads the DSN from file (its whole content, trimmed), else from
// $RELAIS_DATABASE_DSN. Neither its content nor the variable's appears in
// an error.
func LoadDSN(file string) (string, error) {
	if file != "" {
		raw, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("read dsn file: %w", err)
		}
		dsn := strings.TrimSpace(string(raw))
		if dsn == "" {
			return "", fmt.Errorf("dsn file %s is empty", file)
		}
		return dsn, nil
	}
	if dsn := strings.TrimSpace(os.Getenv(DSNEnv)); dsn != "" {
		return dsn, nil
	}
	return "", fmt.Errorf("no database dsn: give a dsn file or set %s", DSNEnv)
}
