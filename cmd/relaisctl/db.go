package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/relais-broker/relais/internal/pgdb"
)

// dbCmd groups the PostgreSQL schema commands.
func dbCmd() *cobra.Command {
	mk := func(verb, short, example string) *cobra.Command {
		return leaf(verb+" [--dsn-file FILE]", short, example, func(fs *pflag.FlagSet) body {
			dsnFile := fs.String("dsn-file", "", "file holding the database DSN of the schema owner (else $"+pgdb.DSNEnv+")")
			return func(ctx context.Context, stdout, stderr io.Writer) int {
				if fs.NArg() > 0 {
					fmt.Fprintf(stderr, "relaisctl db %s: unexpected argument %q\n", verb, fs.Arg(0))
					return 2
				}
				return runDB(ctx, verb, *dsnFile, stdout, stderr)
			}
		})
	}
	return group("db", "The PostgreSQL schema: apply or list the migrations (as the database's owner)",
		mk("migrate", "Apply the pending schema migrations", "  relaisctl db migrate --dsn-file /etc/relais/owner.dsn"),
		mk("status", "List the schema migrations, applied and pending", "  RELAIS_DATABASE_DSN=… relaisctl db status"))
}

// runDB is `relaisctl db migrate|status`: the PostgreSQL schema, applied by
// the operator (as the database's owner) before relaisd starts on it. The
// DSN comes from --dsn-file or $RELAIS_DATABASE_DSN and is never printed.
func runDB(ctx context.Context, verb, dsnFileV string, stdout, stderr io.Writer) int {
	dsnFile := &dsnFileV
	dsn, err := pgdb.LoadDSN(*dsnFile)
	if err != nil {
		fmt.Fprintf(stderr, "relaisctl db %s: %v\n", verb, err)
		return 2
	}
	if verb == "migrate" {
		v, err := pgdb.Migrate(ctx, dsn)
		if err != nil {
			fmt.Fprintf(stderr, "relaisctl db migrate: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "OK: database schema at version %d\n", v)
		return 0
	}
	current, migrations, err := pgdb.Status(ctx, dsn)
	if err != nil {
		fmt.Fprintf(stderr, "relaisctl db status: %v\n", err)
		return 1
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tMIGRATION\tSTATE")
	pending := 0
	for _, m := range migrations {
		state := "applied"
		if !m.Applied {
			state, pending = "pending", pending+1
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\n", m.Version, m.Name, state)
	}
	if code := flush(tw); code != 0 {
		return code
	}
	switch {
	case current > pgdb.Version:
		fmt.Fprintf(stdout, "database schema at version %d, newer than this relaisctl (%d): upgrade relaisctl and relaisd\n", current, pgdb.Version)
	case pending > 0:
		fmt.Fprintf(stdout, "database schema at version %d, %d pending: run relaisctl db migrate\n", current, pending)
	default:
		fmt.Fprintf(stdout, "database schema at version %d: up to date\n", current)
	}
	return 0
}
