package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// leaves lists every runnable command without sub-commands.
func leaves(c *cobra.Command) []*cobra.Command {
	var out []*cobra.Command
	for _, s := range c.Commands() {
		if s.HasSubCommands() {
			out = append(out, leaves(s)...)
		} else if s.Runnable() && s.Name() != "help" {
			out = append(out, s)
		}
	}
	return out
}

var helpFlag = regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9-]+)`)

// TestEveryVerbHelpListsItsOwnFlags runs --help of every verb: it
// succeeds, shows an example, and lists exactly the verb's flags, none
// borrowed from a sibling.
func TestEveryVerbHelpListsItsOwnFlags(t *testing.T) {
	root := newRoot()
	for _, c := range leaves(root) {
		path := strings.Fields(c.CommandPath())[1:]
		code, out, errOut := runIn(context.Background(), append(path, "--help")...)
		if code != 0 {
			t.Errorf("%s --help: %d %s", c.CommandPath(), code, errOut)
			continue
		}
		var listed []string
		for _, m := range helpFlag.FindAllStringSubmatch(out[strings.Index(out, "Flags:"):], -1) {
			listed = append(listed, m[1])
		}
		var want []string
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if !f.Hidden {
				want = append(want, f.Name)
			}
		})
		want = append(want, "help")
		slices.Sort(listed)
		slices.Sort(want)
		if !slices.Equal(listed, want) {
			t.Errorf("%s --help lists %v, want %v", c.CommandPath(), listed, want)
		}
		if c.Name() != "version" && !strings.Contains(out, "Examples:") {
			t.Errorf("%s --help has no example", c.CommandPath())
		}
	}
	// The cases.
	for _, tc := range []struct {
		args    []string
		has     []string
		hasNot  []string
		comment string
	}{
		{[]string{"consumers", "add", "--help"}, []string{"--name", "--contact"}, []string{"--reason", "--scopes"}, "add takes no reason"},
		{[]string{"consumers", "suspend", "--help"}, []string{"--reason"}, []string{"--name", "--contact"}, ""},
		{[]string{"grants", "revoke", "--help"}, []string{"--reason"}, []string{"--scopes", "--until", "--expiring"}, ""},
		{[]string{"audit", "query", "--help"}, []string{"-o, --output"}, []string{"--format"}, "--format is a hidden alias"},
		{[]string{"vault", "init", "--help"}, []string{"--vault-addr"}, []string{"--admin-addr", "--dev-ca", "--output"}, ""},
	} {
		code, out, _ := runIn(context.Background(), tc.args...)
		for _, h := range tc.has {
			if code != 0 || !strings.Contains(out, h) {
				t.Errorf("%v: want %s in:\n%s", tc.args, h, out)
			}
		}
		for _, h := range tc.hasNot {
			if strings.Contains(out, h+" ") {
				t.Errorf("%v: %s listed (%s):\n%s", tc.args, h, tc.comment, out)
			}
		}
	}
	if code, out, errOut := runIn(context.Background(), "consumers", "--help"); code != 0 || !strings.Contains(out, "suspend") || errOut != "" {
		t.Errorf("consumers --help: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := runIn(context.Background(), "consumers", "frobnicate"); code != 2 || !strings.Contains(errOut, `unknown consumers command "frobnicate"`) {
		t.Errorf("unknown verb: %d %q", code, errOut)
	}
	if code, _, errOut := runIn(context.Background(), "consumers", "add", "--bogus"); code != 2 || !strings.Contains(errOut, "unknown flag: --bogus") {
		t.Errorf("unknown flag: %d %q", code, errOut)
	}
}

// TestCompletionScriptsParse checks each shell's script with the shell
// itself where it is installed (bash always is here).
func TestCompletionScriptsParse(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		code, out, errOut := runIn(context.Background(), "completion", sh)
		if code != 0 || !strings.Contains(out, "relaisctl") {
			t.Fatalf("completion %s: %d %s", sh, code, errOut)
		}
		bin, err := exec.LookPath(sh)
		if err != nil {
			if sh == "bash" {
				t.Fatal("bash is required")
			}
			t.Logf("%s not installed: script generated (%d bytes), not parsed", sh, len(out))
			continue
		}
		cmd := exec.Command(bin, "-n")
		cmd.Stdin = strings.NewReader(out)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s -n on the completion script: %v\n%s", sh, err, b)
		}
	}
	// Completion of sub-commands through cobra's hidden __complete.
	code, out, _ := runIn(context.Background(), "__complete", "grants", "")
	for _, v := range []string{"add", "list", "revoke", "extend"} {
		if code != 0 || !strings.Contains(out, v) {
			t.Errorf("__complete grants: %d %q", code, out)
		}
	}
}

func TestManPages(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "man1")
	if code, _, errOut := runIn(context.Background(), "man", "--dir", dir); code != 0 {
		t.Fatalf("man: %d %s", code, errOut)
	}
	for _, f := range []string{"relaisctl.1", "relaisctl-consumers-add.1", "relaisctl-backup.1", "relaisctl-audit-verify.1"} {
		raw, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || !bytes.Contains(raw, []byte(".TH ")) {
			t.Errorf("%s: %v", f, err)
		}
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "relaisctl-consumers-add.1"))
	if bytes.Contains(raw, []byte("reason")) || !bytes.Contains(raw, []byte("contact")) {
		t.Errorf("consumers add man page:\n%s", raw)
	}
}

// TestOutputFormats runs every listing against a real admin API in each
// format: json decodes and is indented the same way everywhere, jsonl is
// one object a line, csv parses, tables fit 120 columns.
func TestOutputFormats(t *testing.T) {
	t.Setenv(envConfig, filepath.Join(t.TempDir(), "none.yaml"))
	b := startBroker(t, t.TempDir(), newKeys(t), t.TempDir())
	const siret = "21750000500012"
	b.seed(t, siret, 12)
	if code, _, errOut := b.ctl(t, "grants", "add", "--consumer", siret, "--service", "relais.healthcover.v1.SolidarityHealthCoverService",
		"--scopes", "solidarity_health_cover.status,solidarity_health_cover.participation,solidarity_health_cover.rights",
		"--purpose", "aide_sociale_facultative_avec_un_long_code:Aide facultative du CCAS de la commune:CASF art. L123-5", "--until", "2030-01-01"); code != 0 {
		t.Fatalf("grants add: %s", errOut)
	}
	listings := [][]string{{"consumers", "list"}, {"consumers", "show", siret}, {"grants", "list"}, {"credentials", "list"}, {"sources", "list"},
		{"anomalies", "list"}, {"audit", "query"}, {"audit", "deferred"}}
	offline := [][]string{{"scopes"}, {"errors"}}
	for i, l := range append(listings, offline...) {
		args := l
		if i < len(listings) {
			args = append(slices.Clone(l), b.admin()...)
		}
		for _, format := range allOutputs {
			code, out, errOut := runIn(context.Background(), append(slices.Clone(args), "-o", format)...)
			if code != 0 {
				if strings.Contains(errOut, "Unimplemented") || strings.Contains(errOut, "service_not_configured") {
					continue // not served by this fixture (sources, anomalies)
				}
				t.Errorf("%v -o %s: %d %s", l, format, code, errOut)
				continue
			}
			switch format {
			case outJSON:
				var v any
				if err := json.Unmarshal([]byte(out), &v); err != nil {
					t.Errorf("%v -o json does not decode: %v\n%s", l, err, out)
				}
				var again, compact bytes.Buffer
				_ = json.Compact(&compact, []byte(out))
				_ = json.Indent(&again, compact.Bytes(), "", "  ")
				if again.String()+"\n" != out {
					t.Errorf("%v -o json is not indented by two spaces:\n%s", l, out)
				}
			case outJSONL:
				for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
					var v map[string]any
					if line != "" && json.Unmarshal([]byte(line), &v) != nil {
						t.Errorf("%v -o jsonl: line %q", l, line)
					}
				}
			case outCSV:
				recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
				if err != nil || len(recs) == 0 {
					t.Errorf("%v -o csv: %v\n%s", l, err, out)
				}
			case outTable:
				for _, line := range strings.Split(out, "\n") {
					if n := utf8.RuneCountInString(line); n > maxTableWidth {
						t.Errorf("%v: a %d-column line:\n%s", l, n, line)
					}
				}
			}
		}
	}
	// The wide table shows what the table leaves out.
	_, table, _ := b.ctl(t, "grants", "list")
	_, wide, _ := b.ctl(t, "grants", "list", "-o", "wide")
	if strings.Contains(table, "relais.healthcover.v1.SolidarityHealthCoverService") || !strings.Contains(wide, "relais.healthcover.v1.SolidarityHealthCoverService") ||
		!strings.Contains(wide, "aide_sociale_facultative_avec_un_long_code") {
		t.Errorf("table:\n%s\nwide:\n%s", table, wide)
	}
	// --format stays accepted, with a note.
	code, out, errOut := b.ctl(t, "audit", "query", "--format", "csv")
	if code != 0 || !strings.HasPrefix(out, "time,request_id,consumer_siret,operator,") || !strings.Contains(errOut, "--format is deprecated, use -o") {
		t.Errorf("audit query --format csv: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := b.ctl(t, "audit", "query", "--format", "xml"); code != 2 || !strings.Contains(errOut, "want table") {
		t.Errorf("--format xml: %d %s", code, errOut)
	}
}
