// Command relaisctl is the Relais operator CLI: the catalogues operators
// grant from (scopes) and the error catalogue; the Vault PKI bootstrap;
// the credential lifecycle (issue, sign a CSR, renew, revoke) and the
// issuer rotation. Consumer, grant and audit commands arrive with the
// registry and audit work.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/errcat"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: relaisctl <command> [flags]

commands:
  scopes [-o table|json]       list every service, method and scope consumers can be granted
  errors [-o table|json]       list the error catalogue (reasons, gRPC codes, messages)
  consumers add SIRET --name N [--contact 'Name <email>']
  consumers list|show SIRET|suspend SIRET|resume SIRET
                               manage the consuming bodies (admin API)
  grants add --consumer SIRET --service S --scopes a,b --purpose code:label:legal basis --until DATE
  grants list [--consumer S] [--service S] [--expiring 720h] | revoke ID | extend ID --until DATE
                               manage habilitations (admin API)
  apply -f grants.yaml [--dry-run]
                               make the listed consumers' grants match a declarative file, showing the diff
  audit verify (--db FILE | --file EXPORT | --online) [--checkpoints FILE]
                               check the audit log's hash chains and signed checkpoints with the public key alone
  audit export (--db FILE | --online) [--out FILE]
                               the whole log as JSON lines (records and checkpoints), for archives and offline checks
  audit checkpoints (--db FILE | --online)
                               export the signed checkpoints (JSON lines) for a third party
  audit query                  list audit records (--consumer, --method, --code, --from, --to; --format table|jsonl|csv)
  audit subject                a citizen's access report: who accessed this person's data, when, why, which fields
  db migrate|status [--dsn-file F]
                               apply or list the PostgreSQL schema migrations (DSN from the file or $RELAIS_DATABASE_DSN)
  store migrate --from bbolt:DIR --to postgres [--to-dsn-file F] --public-key FILE [--resume]
                               copy a stopped broker's registry and audit log into an empty PostgreSQL database, then verify it
  vault init                   set up the Vault PKI for Relais (idempotent)
  credentials issue            issue a certificate and its key (the CA makes the key)
  credentials sign             sign a consumer's CSR (the consumer keeps its key; recommended)
  credentials renew            renew a consumer credential through the broker (consumer side)
  credentials revoke           revoke a certificate, or all of a consumer's, in the CA and the broker at once
  credentials list             list the certificates recorded in the registry (admin API)
  sources list                 list the typed services and their source adapters (admin API)
  anomalies list [--consumer S] [-o table|json]
                               list the abnormal use detected (enumeration, volume) and the action taken (admin API)
  issuer rotate                start a new intermediate issuing CA (Vault); old certificates stay valid
  version                      print the version

Run 'relaisctl <command> -h' for the flags of a command.
`

var version = "dev"

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "scopes", "errors":
		return runCatalog(args, stdout, stderr)
	case "db":
		return runDB(ctx, args[1:], stdout, stderr)
	case "store":
		return runStore(ctx, args[1:], stdout, stderr)
	case "vault":
		if len(args) < 2 || args[1] != "init" {
			fmt.Fprintf(stderr, "relaisctl: usage: relaisctl vault init [flags]\n")
			return 2
		}
		return runVaultInit(ctx, args[2:], stdout, stderr)
	case "credentials":
		if len(args) < 2 {
			fmt.Fprintf(stderr, "relaisctl: usage: relaisctl credentials issue|sign|renew|revoke [flags]\n")
			return 2
		}
		return runCredentials(ctx, args[1], args[2:], stdout, stderr)
	case "consumers", "grants":
		if len(args) < 2 {
			fmt.Fprintf(stderr, "relaisctl: usage: relaisctl %s <command> [flags]\n", args[0])
			return 2
		}
		if args[0] == "consumers" {
			return runConsumers(ctx, args[1], args[2:], stdout, stderr)
		}
		return runGrants(ctx, args[1], args[2:], stdout, stderr)
	case "sources":
		if len(args) < 2 {
			fmt.Fprintln(stderr, "relaisctl: usage: relaisctl sources list [flags]")
			return 2
		}
		return runSources(ctx, args[1], args[2:], stdout, stderr)
	case "audit":
		return runAudit(ctx, args[1:], stdout, stderr)
	case "anomalies":
		if len(args) < 2 {
			fmt.Fprintln(stderr, "relaisctl: usage: relaisctl anomalies list [flags]")
			return 2
		}
		return runAnomalies(ctx, args[1], args[2:], stdout, stderr)
	case "apply":
		return runApply(ctx, args[1:], stdout, stderr)
	case "issuer":
		if len(args) < 2 || args[1] != "rotate" {
			fmt.Fprintf(stderr, "relaisctl: usage: relaisctl issuer rotate [flags]\n")
			return 2
		}
		return runIssuerRotate(ctx, args[2:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "relaisctl", version)
		return 0
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "relaisctl: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

func runCatalog(args []string, stdout, stderr io.Writer) int {
	output := "table"
	rest := args[1:]
	if len(rest) == 2 && rest[0] == "-o" {
		output, rest = rest[1], nil
	}
	if len(rest) > 0 || (output != "table" && output != "json") {
		fmt.Fprintf(stderr, "relaisctl: bad arguments %q\n\n%s", args[1:], usage)
		return 2
	}
	if args[0] == "scopes" {
		return printScopes(stdout, output)
	}
	return printErrors(stdout, output)
}

type scopeRow struct {
	Service string `json:"service"`
	Method  string `json:"method"`
	Scope   string `json:"scope"`
}

func printScopes(w io.Writer, output string) int {
	var rows []scopeRow
	for _, m := range catalog.Default().Methods() {
		for _, s := range m.Scopes.Sorted() {
			rows = append(rows, scopeRow{Service: m.Service, Method: m.FullMethod, Scope: s})
		}
	}
	if output == "json" {
		return writeJSON(w, rows)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tSCOPE")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\n", r.Service, r.Scope)
	}
	return flush(tw)
}

type errorRow struct {
	Reason  string `json:"reason"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func printErrors(w io.Writer, output string) int {
	var rows []errorRow
	for _, e := range errcat.Entries() {
		rows = append(rows, errorRow{Reason: string(e.Reason), Code: e.Code.String(), Message: e.Message})
	}
	if output == "json" {
		return writeJSON(w, rows)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REASON\tCODE\tMESSAGE")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Reason, r.Code, r.Message)
	}
	return flush(tw)
}

func writeProtoJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", UseProtoNames: true}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

func writeJSON(w io.Writer, v any) int {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return 1
	}
	return 0
}

func flush(tw *tabwriter.Writer) int {
	if err := tw.Flush(); err != nil {
		return 1
	}
	return 0
}
