// Command relaisctl is the Relais operator CLI. Today it prints the
// catalogues operators grant from (scopes, services) and the error
// catalogue; consumer, grant, credential and audit commands arrive with
// the registry, identity and audit work.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/errcat"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

const usage = `usage: relaisctl <command> [-o table|json]

commands:
  scopes    list every service, method and scope consumers can be granted
  errors    list the error catalogue (reasons, gRPC codes, messages)
  version   print the version
`

var version = "dev"

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	output := "table"
	rest := args[1:]
	if len(rest) == 2 && rest[0] == "-o" {
		output, rest = rest[1], nil
	}
	if len(rest) > 0 || (output != "table" && output != "json") {
		fmt.Fprintf(stderr, "relaisctl: bad arguments %q\n\n%s", args[1:], usage)
		return 2
	}
	switch args[0] {
	case "scopes":
		return printScopes(stdout, output)
	case "errors":
		return printErrors(stdout, output)
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
