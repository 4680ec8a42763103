// Command relaisctl is the Relais operator CLI: the catalogues operators
// grant from (scopes) and the error catalogue; consumers, grants and the
// declarative apply; the Vault PKI bootstrap and the credential lifecycle
// (issue, sign a CSR, renew, revoke) and the issuer rotation; the audit
// log (verify, export, query, a citizen's report); the audit keys; online
// backups and restores; the PostgreSQL schema and the store migration.
//
// It is built on cobra: each verb has its own flags, help and examples;
// `relaisctl completion bash|zsh|fish` and `relaisctl man --dir D` come
// from the same command tree. Commands that reach a broker take their
// address and operator credential from a flag, else the environment
// (RELAIS_ADMIN_ADDR, RELAIS_OPERATOR_DIR), else the current context of
// the config file (`relaisctl context`).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
	"github.com/spf13/pflag"

	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/errcat"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

var version = "dev"

// run executes one command line: the whole CLI, for main and for tests.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err != nil {
		return errorCode(err, cmd, stderr)
	}
	return 0
}

// newRoot builds the command tree.
func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "relaisctl",
		Short: "Operate a Relais broker: consumers, grants, credentials, audit log, keys, backups",
		Long: `relaisctl operates a Relais broker.

Commands that reach a running broker (admin API) find it, in this order,
from --admin-addr/--operator-dir/--server-name, from $RELAIS_ADMIN_ADDR,
$RELAIS_OPERATOR_DIR and $RELAIS_SERVER_NAME, from the current context of
the config file (relaisctl context --help), else the dev defaults
(127.0.0.1:4444, relais-dev/dev/operators/admin).`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Sprintf("unknown command %q", args[0])}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SetOut(cmd.ErrOrStderr())
			_ = cmd.Help()
			return exitError{2}
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err.Error()} })
	root.AddGroup(&cobra.Group{ID: "registry", Title: "Consumers and grants (admin API):"},
		&cobra.Group{ID: "pki", Title: "Certificates (Vault PKI or the dev CA):"},
		&cobra.Group{ID: "audit", Title: "Audit log, keys and backups:"},
		&cobra.Group{ID: "store", Title: "Storage (PostgreSQL schema, migration):"})
	add := func(id string, cmds ...*cobra.Command) {
		for _, c := range cmds {
			c.GroupID = id
			root.AddCommand(c)
		}
	}
	add("registry", consumersCmd(), grantsCmd(), applyCmd(), scopesCmd(), sourcesCmd(), anomaliesCmd(), remindersCmd())
	add("pki", credentialsCmd(), vaultCmd(), issuerCmd())
	add("audit", auditCmd(), keysCmd(), backupCmd(), restoreCmd())
	add("store", dbCmd(), storeCmd())
	root.AddCommand(errorsCmd(), contextCmd(), manCmd(root), versionCmd())
	return root
}

func versionCmd() *cobra.Command {
	return leaf("version", "Print the version", "", func(fs *pflag.FlagSet) body {
		return func(_ context.Context, stdout, _ io.Writer) int {
			fmt.Fprintln(stdout, "relaisctl", version)
			return 0
		}
	})
}

// manCmd writes one man page per command (relaisctl.1,
// relaisctl-consumers-add.1, …), generated from the command tree.
func manCmd(root *cobra.Command) *cobra.Command {
	return leaf("man --dir DIR", "Write the man pages of every command into a directory", "  relaisctl man --dir /usr/local/share/man/man1", func(fs *pflag.FlagSet) body {
		dir := fs.String("dir", "", "directory to write the pages into (created)")
		return func(_ context.Context, stdout, stderr io.Writer) int {
			if *dir == "" || fs.NArg() > 0 {
				fmt.Fprintln(stderr, "relaisctl man: --dir is required, and nothing else")
				return 2
			}
			if err := os.MkdirAll(*dir, 0o755); err != nil {
				fmt.Fprintf(stderr, "relaisctl man: %v\n", err)
				return 1
			}
			root.DisableAutoGenTag = true
			hdr := &doc.GenManHeader{Title: "RELAISCTL", Section: "1", Source: "Relais " + version, Manual: "Relais operator manual"}
			if err := doc.GenManTree(root, hdr, *dir); err != nil {
				fmt.Fprintf(stderr, "relaisctl man: %v\n", err)
				return 1
			}
			fmt.Fprintf(stdout, "man pages written to %s\n", *dir)
			return 0
		}
	})
}

func scopesCmd() *cobra.Command {
	return leaf("scopes", "List every service, method and scope consumers can be granted", "  relaisctl scopes\n  relaisctl scopes -o json", func(fs *pflag.FlagSet) body {
		out := addOutputFlag(fs)
		return func(_ context.Context, stdout, stderr io.Writer) int {
			if fs.NArg() > 0 {
				fmt.Fprintf(stderr, "relaisctl scopes: unexpected argument %q\n", fs.Arg(0))
				return 2
			}
			return printed(stderr, "scopes", render(stdout, out.v, scopesView()))
		}
	})
}

type scopeRow struct {
	Service string `json:"service"`
	Method  string `json:"method"`
	Scope   string `json:"scope"`
}

func scopesView() view {
	v := view{cols: []column{{name: "SERVICE", max: 40}, {name: "SCOPE", max: 60}, {name: "METHOD", wide: true}}}
	var rows []scopeRow
	for _, m := range catalog.Default().Methods() {
		for _, s := range m.Scopes.Sorted() {
			r := scopeRow{Service: m.Service, Method: m.FullMethod, Scope: s}
			rows = append(rows, r)
			v.items = append(v.items, r)
			v.rows = append(v.rows, []string{r.Service, r.Scope, r.Method})
		}
	}
	v.whole = rows
	return v
}

func errorsCmd() *cobra.Command {
	return leaf("errors", "List the error catalogue (reasons, gRPC codes, messages)", "  relaisctl errors\n  relaisctl errors -o json", func(fs *pflag.FlagSet) body {
		out := addOutputFlag(fs)
		return func(_ context.Context, stdout, stderr io.Writer) int {
			if fs.NArg() > 0 {
				fmt.Fprintf(stderr, "relaisctl errors: unexpected argument %q\n", fs.Arg(0))
				return 2
			}
			v := view{cols: []column{{name: "REASON", max: 30}, {name: "CODE", max: 18}, {name: "MESSAGE", max: 66}}}
			var rows []errorRow
			for _, e := range errcat.Entries() {
				r := errorRow{Reason: string(e.Reason), Code: e.Code.String(), Message: e.Message}
				rows = append(rows, r)
				v.items = append(v.items, r)
				v.rows = append(v.rows, []string{r.Reason, r.Code, r.Message})
			}
			v.whole = rows
			return printed(stderr, "errors", render(stdout, out.v, v))
		}
	})
}

type errorRow struct {
	Reason  string `json:"reason"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// printed turns a printing error into an exit code.
func printed(stderr io.Writer, name string, err error) int {
	if err != nil {
		fmt.Fprintf(stderr, "relaisctl %s: %v\n", name, err)
		return 1
	}
	return 0
}
