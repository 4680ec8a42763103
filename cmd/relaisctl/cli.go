package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// body is what a leaf command does once its flags are parsed: it prints
// its own messages and returns the exit code (0 ok, 1 failure, 2 usage).
type body func(ctx context.Context, stdout, stderr io.Writer) int

// exitError carries a leaf's exit code through cobra, its message
// already printed.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// usageError is a wrong command line: exit code 2 and a pointer to --help.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func exitWith(code int) error {
	if code == 0 {
		return nil
	}
	return exitError{code}
}

// leaf builds a command whose flags define declares on the command's
// own flag set: each verb lists only its own flags in --help.
func leaf(use, short, example string, define func(fs *pflag.FlagSet) body) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Example: strings.TrimRight(example, "\n")}
	run := define(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return exitWith(run(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr()))
	}
	return cmd
}

// group builds a command that only holds sub-commands: an unknown verb
// is a usage error (cobra would print the help and exit 0).
func group(use, short string, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short}
	cmd.AddCommand(subs...)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var names []string
		for _, c := range cmd.Commands() {
			if c.IsAvailableCommand() {
				names = append(names, c.Name())
			}
		}
		usage := fmt.Sprintf("usage: %s %s [flags]", cmd.CommandPath(), strings.Join(names, "|"))
		if len(args) == 0 {
			return usageError{usage}
		}
		return usageError{fmt.Sprintf("unknown %s command %q; %s", cmd.Name(), args[0], usage)}
	}
	return cmd
}

// Output formats of the -o flag.
const (
	outTable = "table"
	outWide  = "wide"
	outJSON  = "json"
	outJSONL = "jsonl"
	outCSV   = "csv"
)

var allOutputs = []string{outTable, outWide, outJSON, outJSONL, outCSV}

// outputFlag is the -o flag: one of a fixed set, checked at parse time.
type outputFlag struct {
	v       string
	allowed []string
}

func (o *outputFlag) String() string { return o.v }
func (o *outputFlag) Type() string   { return "format" }
func (o *outputFlag) Set(s string) error {
	if !slices.Contains(o.allowed, s) {
		return fmt.Errorf("want %s", strings.Join(o.allowed, ", "))
	}
	o.v = s
	return nil
}

// addOutputFlag declares -o on fs (table by default).
func addOutputFlag(fs *pflag.FlagSet, allowed ...string) *outputFlag {
	if len(allowed) == 0 {
		allowed = allOutputs
	}
	o := &outputFlag{v: outTable, allowed: allowed}
	fs.VarP(o, "output", "o", "output format: "+strings.Join(allowed, "|"))
	return o
}

// maxTableWidth is what -o table fits in; -o wide shows everything.
const maxTableWidth = 120

// column is one column of a listing: max truncates its cells in -o
// table (0: never), wide keeps it for -o wide and csv only.
type column struct {
	name string
	max  int
	wide bool
}

// view is a listing in every output format: the whole answer for -o
// json, one item per line for -o jsonl, and rows for the tables and csv.
type view struct {
	whole any
	items []any
	cols  []column
	rows  [][]string
}

// render prints v in the chosen format.
func render(w io.Writer, format string, v view) error {
	switch format {
	case outJSON:
		return writeIndented(w, v.whole)
	case outJSONL:
		for _, it := range v.items {
			b, err := compactJSON(it)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintf(w, "%s\n", b); err != nil {
				return err
			}
		}
		return nil
	case outCSV:
		cw := csv.NewWriter(w)
		var head []string
		for _, c := range v.cols {
			head = append(head, strings.ReplaceAll(strings.ToLower(c.name), " ", "_"))
		}
		_ = cw.Write(head)
		for _, r := range v.rows {
			_ = cw.Write(r)
		}
		cw.Flush()
		return cw.Error()
	default:
		wide := format == outWide
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		line := func(cells []string, truncate bool) {
			var out []string
			for i, c := range v.cols {
				if c.wide && !wide {
					continue
				}
				cell := ""
				if i < len(cells) {
					cell = cells[i]
				}
				if truncate && !wide && c.max > 0 {
					cell = ellipsis(cell, c.max)
				}
				out = append(out, cell)
			}
			fmt.Fprintln(tw, strings.Join(out, "\t"))
		}
		var head []string
		for _, c := range v.cols {
			head = append(head, c.name)
		}
		line(head, false)
		for _, r := range v.rows {
			line(r, true)
		}
		return tw.Flush()
	}
}

// ellipsis cuts s to n runes, the last one an ellipsis.
func ellipsis(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// compactJSON marshals v on one line: protojson for messages (then
// compacted: protojson varies its spacing on purpose), encoding/json
// otherwise.
func compactJSON(v any) ([]byte, error) {
	var raw []byte
	var err error
	if m, ok := v.(proto.Message); ok {
		raw, err = protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	} else {
		raw, err = json.Marshal(v)
	}
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeIndented prints v as JSON indented by two spaces, the same for
// every command.
func writeIndented(w io.Writer, v any) error {
	raw, err := compactJSON(v)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err = w.Write(buf.Bytes())
	return err
}

// protoItems turns a repeated message field into view items.
func protoItems[M proto.Message](list []M) []any {
	out := make([]any, 0, len(list))
	for _, m := range list {
		out = append(out, m)
	}
	return out
}

// shortService keeps the last element of a full proto service name, for
// tables: relais.healthcover.v1.SolidarityHealthCoverService → SolidarityHealthCoverService.
func shortService(s string) string {
	if i := strings.LastIndexByte(s, '.'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// shortMethod keeps the service's short name and the method of a full
// gRPC method name.
func shortMethod(m string) string {
	svc, name, ok := strings.Cut(strings.TrimPrefix(m, "/"), "/")
	if !ok {
		return m
	}
	return shortService(svc) + "/" + name
}

// errorCode maps what cobra returned to an exit code, printing what was
// not printed yet.
func errorCode(err error, cmd *cobra.Command, stderr io.Writer) int {
	var ex exitError
	if errors.As(err, &ex) {
		return ex.code
	}
	path := "relaisctl"
	if cmd != nil {
		path = cmd.CommandPath()
	}
	var u usageError
	if errors.As(err, &u) {
		fmt.Fprintf(stderr, "%s: %v\nRun '%s --help' for usage.\n", path, err, path)
		return 2
	}
	fmt.Fprintf(stderr, "%s: %v\n", path, err)
	return 1
}

func flush(tw *tabwriter.Writer) int {
	if err := tw.Flush(); err != nil {
		return 1
	}
	return 0
}
