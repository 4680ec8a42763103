package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/relais-broker/relais/broker/admin"
	"github.com/relais-broker/relais/broker/audit/boltlog"
	"github.com/relais-broker/relais/broker/audit/seal"
	"github.com/relais-broker/relais/broker/audit/seglog"
	"github.com/relais-broker/relais/internal/devenv"
	adminv1 "github.com/relais-broker/relais/proto/relais/admin/v1"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
)

// runAudit runs "relaisctl audit ARGS…" (for tests of the audit verbs).
func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return run(ctx, append([]string{"audit"}, args...), stdout, stderr)
}

func auditCmd() *cobra.Command {
	return group("audit", "The audit log: verify, export, checkpoints, query, a citizen's access report",
		auditVerifyCmd(), auditExportCmd(), auditCheckpointsCmd(), auditQueryCmd(), auditDeferredCmd(), auditSubjectCmd())
}

// exportTimeout bounds an online export: a whole log, not one call.
const exportTimeout = 30 * time.Minute

// logSource is where an audit command reads the log: the audit directory
// of a stopped broker (--dir, the default), the audit.db file of an
// earlier version or of an old backup (--db), an export file (--file), or
// a running broker (--online).
type logSource struct {
	dir, db, file *string
	online        *bool
	admin         *adminFlags
}

func addLogSource(fs *pflag.FlagSet, withFile bool) *logSource {
	src := &logSource{
		dir:    fs.String("dir", "relais-dev/"+devenv.AuditDir, "the audit log directory of a stopped broker (DATA/audit, or a copy of it)"),
		db:     fs.String("db", "", "an audit.db file: the log of a broker before the audit directory, or of an old backup"),
		online: fs.Bool("online", false, "read the log of the running broker through the admin API (one consistent read)"),
		admin:  addConnFlags(fs),
	}
	if withFile {
		src.file = fs.String("file", "", "an export file (JSON lines from relaisctl audit export)")
	} else {
		src.file = new(string)
	}
	return src
}

// check refuses two sources at once.
func (src *logSource) check(fs *pflag.FlagSet) error {
	set := map[string]bool{}
	fs.Visit(func(f *pflag.Flag) { set[f.Name] = true })
	n := 0
	for _, name := range []string{"dir", "db", "file", "online"} {
		if set[name] {
			n++
		}
	}
	if n > 1 {
		return fmt.Errorf("give one of --dir, --db, --file and --online")
	}
	if !*src.online {
		for _, name := range []string{"admin-addr", "operator-dir", "server-name", "context"} {
			if set[name] {
				return fmt.Errorf("--%s is for --online", name)
			}
		}
	}
	return nil
}

// each calls fn with every entry of the log, in order.
func (src *logSource) each(ctx context.Context, fn func(seal.Entry) error) error {
	switch {
	case *src.online:
		conn, err := src.admin.dial()
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(ctx, exportTimeout)
		defer cancel()
		stream, err := adminv1.NewAuditAdminServiceClient(conn).ExportAudit(ctx, &adminv1.ExportAuditRequest{})
		if err != nil {
			return errors.New(describe(err))
		}
		for {
			resp, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return errors.New(describe(err))
			}
			for _, pb := range resp.GetEntries() {
				e, err := admin.EntryFromPB(pb)
				if err != nil {
					return err
				}
				if err := fn(e); err != nil {
					return err
				}
			}
		}
	case *src.file != "":
		f, err := os.Open(*src.file)
		if err != nil {
			return err
		}
		defer f.Close()
		return seal.ReadExport(f, fn)
	case *src.db != "":
		st, err := boltlog.OpenStoreReadOnly(*src.db)
		if err != nil {
			return err
		}
		defer st.Close()
		return st.Export(ctx, fn)
	default:
		if err := src.checkDir(); err != nil {
			return err
		}
		st, err := seglog.OpenStoreReadOnly(*src.dir)
		if err != nil {
			return err
		}
		defer st.Close()
		return st.Export(ctx, fn)
	}
}

// checkDir explains a missing audit directory: a data directory of an
// earlier version holds audit.db instead, until relaisd migrates it.
func (src *logSource) checkDir() error {
	_, err := os.Stat(*src.dir)
	if err == nil {
		return nil
	}
	if old := filepath.Join(filepath.Dir(filepath.Clean(*src.dir)), devenv.AuditFile); errors.Is(err, os.ErrNotExist) {
		if _, oerr := os.Stat(old); oerr == nil {
			return fmt.Errorf("%s does not exist, %s does: the log of a broker before the audit directory (relaisd migrates it at start); read it with --db %s", *src.dir, old, old)
		}
		return fmt.Errorf("%s does not exist: give the audit directory of the broker with --dir (DATA/%s), or --online", *src.dir, devenv.AuditDir)
	}
	return err
}

func auditVerifyCmd() *cobra.Command {
	return leaf("verify [--dir DIR | --db FILE | --file EXPORT | --online] [--public-key FILE]… [--checkpoints FILE]",
		"Check the audit log's hash chains and signed checkpoints with the public key alone",
		`  relaisctl audit verify --dir /var/lib/relais/audit --public-key keys/audit-signing.pub
  relaisctl audit verify --db old-backup/audit.db --public-key keys/audit-signing.pub
  relaisctl audit verify --online --public-key keys/audit-signing.pub
  relaisctl audit verify --file export.jsonl --public-key new.pub --public-key old.pub   # after a key rotation`,
		func(fs *pflag.FlagSet) body {
			src := addLogSource(fs, true)
			pubFiles := fs.StringArray("public-key", []string{"relais-dev/keys/" + devenv.AuditPublicKeyFile},
				"the operator's Ed25519 public key (PEM); a file may hold several keys (relaisctl keys rotate keeps the earlier ones), and the flag may repeat")
			exported := fs.String("checkpoints", "", "also check the log against checkpoints exported earlier (relaisctl audit checkpoints)")
			return func(ctx context.Context, stdout, stderr io.Writer) int {
				return auditVerify(ctx, fs, src, *pubFiles, *exported, stdout, stderr)
			}
		})
}

// auditVerify verifies the log of a stopped broker (--dir, --db), an
// export (--file) or a running broker (--online) with the same checks:
// the broker only streams what it stores; the verification runs here. A
// directory is verified by seglog, which also names a damaged frame (its
// segment and offset).
func auditVerify(ctx context.Context, fs *pflag.FlagSet, src *logSource, pubFiles []string, exportedV string, stdout, stderr io.Writer) int {
	exported := &exportedV
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "relaisctl audit verify: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if err := src.check(fs); err != nil {
		fmt.Fprintf(stderr, "relaisctl audit verify: %v\n", err)
		return 2
	}
	keys, err := readPublicKeys(pubFiles)
	if err != nil {
		fmt.Fprintf(stderr, "relaisctl audit verify: %v\n", err)
		return 1
	}
	var cps []seal.Checkpoint
	if *exported != "" {
		f, err := os.Open(*exported)
		if err != nil {
			fmt.Fprintf(stderr, "relaisctl audit verify: %v\n", err)
			return 1
		}
		cps, err = seal.ReadCheckpoints(f)
		f.Close()
		if err != nil {
			fmt.Fprintf(stderr, "relaisctl audit verify: %s: %v\n", *exported, err)
			return 1
		}
	}
	var rep *seal.Report
	if src.isDir() {
		rep, err = verifyDir(*src, keys, cps)
	} else {
		rep, err = verifyEntries(ctx, src, keys, cps)
	}
	if err != nil {
		fmt.Fprintf(stderr, "relaisctl audit verify: %v\n", err)
		return 1
	}
	if !rep.OK() {
		where := ""
		if rep.Chain != "" {
			where = fmt.Sprintf(" of chain %q", rep.Chain)
		}
		fmt.Fprintf(stdout, "FAILED at seq %d%s: %s\n", rep.BadSeq, where, rep.Problem)
		return 1
	}
	if len(rep.Chains) <= 1 {
		fmt.Fprintf(stdout, "OK: %d records (seq %d to %d), %d signed checkpoints verified\n", rep.Records, rep.FirstSeq, rep.LastSeq, rep.Checkpoints)
		return 0
	}
	fmt.Fprintf(stdout, "OK: %d records in %d chains, %d signed checkpoints verified\n", rep.Records, len(rep.Chains), rep.Checkpoints)
	for _, c := range rep.Chains {
		fmt.Fprintf(stdout, "  chain %q: %d records (seq %d to %d), %d checkpoints\n", c.Chain, c.Records, c.FirstSeq, c.LastSeq, c.Checkpoints)
	}
	return 0
}

// isDir says the log is read from an audit directory (no other source).
func (src *logSource) isDir() bool { return !*src.online && *src.file == "" && *src.db == "" }

// verifyDir verifies an audit directory with seglog.VerifyWith.
func verifyDir(src logSource, keys []ed25519.PublicKey, cps []seal.Checkpoint) (*seal.Report, error) {
	if err := src.checkDir(); err != nil {
		return nil, err
	}
	var exported io.Reader
	if len(cps) > 0 {
		var b bytes.Buffer
		for _, c := range cps {
			raw, err := json.Marshal(c)
			if err != nil {
				return nil, err
			}
			b.Write(append(raw, '\n'))
		}
		exported = &b
	}
	return seglog.VerifyWith(*src.dir, keys[0], exported, keys[1:]...)
}

// verifyEntries verifies the entries of any other source as they stream.
func verifyEntries(ctx context.Context, src *logSource, keys []ed25519.PublicKey, cps []seal.Checkpoint) (*seal.Report, error) {
	v := seal.NewVerifier(keys[0], keys[1:]...)
	for _, c := range cps {
		v.Expect(c)
	}
	errStop := errors.New("stop")
	err := src.each(ctx, func(e seal.Entry) error {
		if !v.Add(e) {
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, err
	}
	return v.Report(), nil
}

func auditExportCmd() *cobra.Command {
	return leaf("export [--dir DIR | --db FILE | --online] [--out FILE]", "The whole log as JSON lines (records and checkpoints), for archives and offline checks",
		"  relaisctl audit export --online --out audit-2027-01.jsonl\n  relaisctl audit export --dir /var/lib/relais/audit > audit.jsonl",
		func(fs *pflag.FlagSet) body {
			src := addLogSource(fs, false)
			out := fs.String("out", "", "write to this file (0600) instead of the standard output")
			return func(ctx context.Context, stdout, stderr io.Writer) int {
				return auditExport(ctx, fs, src, *out, stdout, stderr)
			}
		})
}

// auditExport writes the whole log as JSON lines of records and
// checkpoints, from a stopped broker's directory or file or a running broker, for
// archiving or for verification elsewhere (audit verify --file).
func auditExport(ctx context.Context, fs *pflag.FlagSet, src *logSource, outV string, stdout, stderr io.Writer) int {
	out := &outV
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "relaisctl audit export: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if err := src.check(fs); err != nil {
		fmt.Fprintf(stderr, "relaisctl audit export: %v\n", err)
		return 2
	}
	w := stdout
	var f *os.File
	if *out != "" {
		var err error
		if f, err = os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err != nil {
			fmt.Fprintf(stderr, "relaisctl audit export: %v\n", err)
			return 1
		}
		w = f
	}
	bw := bufio.NewWriter(w)
	sw := seal.NewWriter(bw)
	err := src.each(ctx, sw.Write)
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	if f != nil {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "relaisctl audit export: %v\n", err)
		return 1
	}
	if *out != "" {
		fmt.Fprintf(stderr, "relaisctl audit export: %d entries written to %s\n", sw.N, *out)
	}
	return 0
}

func auditQueryCmd() *cobra.Command {
	return adminLeaf("query [--consumer S] [--method M] [--code C] [--from T] [--to T] [--deferred]", "List audit records (admin API)",
		"  relaisctl audit query --consumer 21750000500012 --code PermissionDenied\n  relaisctl audit query --from 2027-01-01 -o csv > janvier.csv",
		func(fs *pflag.FlagSet, af *adminFlags) func(context.Context, *grpc.ClientConn, io.Writer) error {
			deferred := fs.Bool("deferred", false, "only the accesses whose disclosure to the citizen is deferred (relaisctl audit deferred lists them)")
			consumer := fs.String("consumer", "", "only this consumer SIRET")
			method := fs.String("method", "", "only this method, e.g. /relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient")
			code := fs.String("code", "", "only this outcome, e.g. OK or PermissionDenied")
			from := fs.String("from", "", "from this time (RFC 3339 or YYYY-MM-DD)")
			to := fs.String("to", "", "before this time (RFC 3339 or YYYY-MM-DD)")
			limit := fs.Int("limit", 1000, "at most this many records")
			format := fs.String("format", "", "deprecated: use -o")
			_ = fs.MarkHidden("format")
			return func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error {
				output := af.format()
				if fs.Changed("format") {
					fmt.Fprintln(af.stderr(), "relaisctl audit query: --format is deprecated, use -o (same values)")
					if fs.Changed("output") && *format != output {
						return usageError{"give -o or its deprecated spelling --format, not both"}
					}
					if !slices.Contains(allOutputs, *format) {
						return usageError{fmt.Sprintf("--format %q: want %s", *format, strings.Join(allOutputs, ", "))}
					}
					output = *format
				}
				if fs.NArg() > 0 {
					return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
				}
				req := &adminv1.QueryAuditRequest{ConsumerSiret: *consumer, Method: *method, Code: *code, Limit: int32(*limit), DeferredOnly: *deferred}
				if err := setPeriod(req, *from, *to); err != nil {
					return err
				}
				resp, err := adminv1.NewAuditAdminServiceClient(conn).QueryAudit(ctx, req)
				if err != nil {
					return err
				}
				return printAudit(out, output, resp)
			}
		})
}

func printAudit(w io.Writer, format string, resp *adminv1.QueryAuditResponse) error {
	v := view{whole: resp, items: protoItems(resp.GetRecords()), cols: []column{
		{name: "TIME"}, {name: "REQUEST ID", wide: true}, {name: "CONSUMER SIRET", wide: true}, {name: "WHO", max: 16}, {name: "OPERATOR", wide: true}, {name: "RECIPIENT SIRET", wide: true},
		{name: "METHOD", max: 26}, {name: "PURPOSE", max: 18}, {name: "CASE REFERENCE", wide: true}, {name: "SUBJECT PSEUDONYM", wide: true},
		{name: "FIELDS RETURNED", max: 12}, {name: "CODE", max: 18}, {name: "REASON", wide: true}, {name: "LATENCY MS", wide: true}, {name: "NOTE", wide: true},
		{name: "SUBJECT ORIGIN", wide: true}, {name: "DISCLOSE AFTER", wide: true}, {name: "DISCLOSURE REFERENCE", wide: true}}}
	for _, r := range resp.GetRecords() {
		who := r.GetConsumerSiret()
		if r.GetOperator() != "" {
			who = "operator " + r.GetOperator()
		}
		method, sep := r.GetMethod(), " "
		when := r.GetTime().AsTime().Format(time.RFC3339Nano)
		if format == outTable {
			method, sep, when = shortMethod(method), ",", r.GetTime().AsTime().Format(time.RFC3339)
		}
		v.rows = append(v.rows, []string{when, r.GetRequestId(), r.GetConsumerSiret(), who, r.GetOperator(), r.GetRecipientSiret(),
			method, r.GetPurpose(), r.GetCaseReference(), r.GetSubjectPseudonym(), strings.Join(r.GetFieldsReturned(), sep), r.GetCode(), r.GetReason(),
			fmt.Sprintf("%.3f", float64(r.GetLatency().AsDuration())/float64(time.Millisecond)), r.GetNote(),
			r.GetSubjectOrigin(), rfc3339(r.GetDiscloseAfter()), r.GetDisclosureReference()})
	}
	if format == outCSV {
		// The columns of the csv are the record's fields, WHO aside.
		cols := slices.Delete(slices.Clone(v.cols), 3, 4)
		rows := make([][]string, len(v.rows))
		for i, r := range v.rows {
			rows[i] = slices.Delete(slices.Clone(r), 3, 4)
		}
		v.cols, v.rows = cols, rows
	}
	return render(w, format, v)
}

// rfc3339 prints an optional time, empty when unset.
func rfc3339(t *timestamppb.Timestamp) string {
	if t == nil {
		return ""
	}
	return t.AsTime().Format(time.RFC3339)
}

// auditDeferredCmd lists the accesses a citizen does not see yet: each
// with its disclosure date and the legal reference of the deferral.
func auditDeferredCmd() *cobra.Command {
	return adminLeaf("deferred [--consumer S] [--from T] [--to T] [--pending]",
		"List the accesses whose disclosure to the citizen is deferred, with their disclosure date and legal reference (admin API)",
		"  relaisctl audit deferred\n  relaisctl audit deferred --consumer 21750000500012 --pending -o csv",
		func(fs *pflag.FlagSet, af *adminFlags) func(context.Context, *grpc.ClientConn, io.Writer) error {
			consumer := fs.String("consumer", "", "only this consumer SIRET")
			from := fs.String("from", "", "accesses from this time (RFC 3339 or YYYY-MM-DD)")
			to := fs.String("to", "", "accesses before this time (RFC 3339 or YYYY-MM-DD)")
			pending := fs.Bool("pending", false, "only those not disclosed yet (disclosure date in the future)")
			limit := fs.Int("limit", 1000, "at most this many records")
			return func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error {
				if fs.NArg() > 0 {
					return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
				}
				req := &adminv1.QueryAuditRequest{ConsumerSiret: *consumer, DeferredOnly: true, Limit: int32(*limit)}
				if err := setPeriod(req, *from, *to); err != nil {
					return err
				}
				resp, err := adminv1.NewAuditAdminServiceClient(conn).QueryAudit(ctx, req)
				if err != nil {
					return err
				}
				now := time.Now()
				var recs []*adminv1.AuditRecord
				for _, r := range resp.GetRecords() {
					if !*pending || r.GetDiscloseAfter().AsTime().After(now) {
						recs = append(recs, r)
					}
				}
				output := af.format()
				if len(recs) == 0 && (output == outTable || output == outWide) {
					fmt.Fprintln(out, "no deferred access recorded")
					return nil
				}
				v := view{whole: &adminv1.QueryAuditResponse{Records: recs}, items: protoItems(recs), cols: []column{
					{name: "TIME"}, {name: "REQUEST ID", wide: true}, {name: "CONSUMER SIRET"}, {name: "METHOD", max: 26}, {name: "PURPOSE", max: 18},
					{name: "ORIGIN", wide: true}, {name: "DISCLOSE AFTER"}, {name: "STATE"}, {name: "REFERENCE", max: 30}}}
				for _, r := range recs {
					method := r.GetMethod()
					if output == outTable {
						method = shortMethod(method)
					}
					origin, state := "typed", "disclosed"
					if r.GetSubjectOrigin() != "" {
						origin = r.GetSubjectOrigin()
					}
					if r.GetDiscloseAfter().AsTime().After(now) {
						state = "hidden"
					}
					// The tables give the day the citizen sees it; csv and json the instant.
					after := rfc3339(r.GetDiscloseAfter())
					if output == outTable || output == outWide {
						after = day(r.GetDiscloseAfter())
					}
					v.rows = append(v.rows, []string{r.GetTime().AsTime().Format(time.RFC3339), r.GetRequestId(), r.GetConsumerSiret(), method, r.GetPurpose(),
						origin, after, state, r.GetDisclosureReference()})
				}
				return render(out, output, v)
			}
		})
}

// runAuditSubject answers a citizen's request: which bodies accessed the
// data of this person, when, why and which fields.
func auditSubjectCmd() *cobra.Command {
	return adminLeaf("subject (--birth-name N --given-names G --sex F|M --birth-date D --birth-place COG | --ine INE | --france-travail-id ID)",
		"A citizen's access report: who accessed this person's data, when, why, which fields",
		"  relaisctl audit subject --birth-name dupont --given-names zoe --sex F --birth-date 1984-03-12 --birth-place 75056\n  relaisctl audit subject --ine SBXINE00001 -o json",
		func(fs *pflag.FlagSet, af *adminFlags) func(context.Context, *grpc.ClientConn, io.Writer) error {
			birthName := fs.String("birth-name", "", "birth name")
			given := fs.String("given-names", "", "given names, comma-separated")
			sex := fs.String("sex", "", "F or M")
			birthDate := fs.String("birth-date", "", "YYYY-MM-DD")
			place := fs.String("birth-place", "", "INSEE COG code of the birth commune (births in France)")
			country := fs.String("birth-country", "99100", "INSEE COG code of the birth country")
			ine := fs.String("ine", "", "or: the student's INE")
			ftid := fs.String("france-travail-id", "", "or: the France Travail identifier")
			return func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error {
				if fs.NArg() > 0 {
					return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
				}
				req := &adminv1.SubjectAccessesRequest{}
				switch {
				case *ine != "":
					req.Subject = &adminv1.SubjectAccessesRequest_Ine{Ine: *ine}
				case *ftid != "":
					req.Subject = &adminv1.SubjectAccessesRequest_FranceTravailId{FranceTravailId: *ftid}
				default:
					sx := map[string]commonv1.Sex{"F": commonv1.Sex_SEX_FEMALE, "M": commonv1.Sex_SEX_MALE}[strings.ToUpper(*sex)]
					req.Subject = &adminv1.SubjectAccessesRequest_Identity{Identity: &commonv1.SubjectIdentity{
						BirthName: *birthName, GivenNames: splitList(*given), Sex: sx, BirthDate: *birthDate, BirthPlaceCog: *place, BirthCountryCog: *country,
					}}
				}
				resp, err := adminv1.NewAuditAdminServiceClient(conn).SubjectAccesses(ctx, req)
				if err != nil {
					return err
				}
				if len(resp.GetAccesses()) == 0 && (af.format() == outTable || af.format() == outWide) {
					fmt.Fprintln(out, "no access recorded for this person within the retention period")
					return nil
				}
				if af.format() == outTable || af.format() == outWide {
					return printAccesses(out, resp.GetAccesses())
				}
				v := view{whole: resp, items: protoItems(resp.GetAccesses()),
					cols: []column{{name: "WHEN"}, {name: "BODY"}, {name: "SIRET"}, {name: "PURPOSE"}, {name: "LEGAL BASIS"}, {name: "FIELDS"}, {name: "OUTCOME"},
						{name: "INITIATED BY"}, {name: "DISCLOSED FROM"}}}
				for _, a := range resp.GetAccesses() {
					v.rows = append(v.rows, []string{a.GetTime().AsTime().Format(time.RFC3339), a.GetConsumerName(), a.GetConsumerSiret(), accessPurpose(a), a.GetLegalBasis(),
						strings.Join(a.GetFieldsReturned(), ","), a.GetCode(), initiatedBy(a), rfc3339(a.GetDiscloseAfter())})
				}
				return render(out, af.format(), v)
			}
		})
}

// printAccesses prints a citizen's report one access a block, complete
// (nothing cut) and within 120 columns for ordinary names.
func printAccesses(w io.Writer, list []*adminv1.SubjectAccess) error {
	for i, a := range list {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s  %s (SIRET %s)  %s\n", a.GetTime().AsTime().Format(time.RFC3339), a.GetConsumerName(), a.GetConsumerSiret(), a.GetCode())
		fmt.Fprintf(w, "  purpose: %s\n", accessPurpose(a))
		if a.GetLegalBasis() != "" {
			fmt.Fprintf(w, "  legal basis: %s\n", a.GetLegalBasis())
		}
		if a.GetSubjectOrigin() != "" {
			fmt.Fprintf(w, "  initiated by: %s\n", initiatedBy(a))
		}
		if a.GetDiscloseAfter() != nil {
			fmt.Fprintf(w, "  disclosed to the citizen from: %s\n", rfc3339(a.GetDiscloseAfter()))
		}
		line := "  fields:  "
		for j, f := range a.GetFieldsReturned() {
			if j > 0 {
				line += ","
			}
			if utf8.RuneCountInString(line)+len(f) > maxTableWidth-1 && j > 0 {
				fmt.Fprintln(w, line)
				line = "           "
			}
			line += f
		}
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	return nil
}

// initiatedBy says who designated the subject: the citizen by logging in,
// or the body typing an identity or identifier.
func initiatedBy(a *adminv1.SubjectAccess) string {
	if a.GetSubjectOrigin() == "citizen_login" {
		return "the citizen (login)"
	}
	return "the body"
}

func accessPurpose(a *adminv1.SubjectAccess) string {
	if a.GetPurposeLabel() != "" {
		return a.GetPurposeLabel()
	}
	return a.GetPurpose()
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func auditCheckpointsCmd() *cobra.Command {
	return leaf("checkpoints [--dir DIR | --db FILE | --online]", "Export the signed checkpoints (JSON lines) for a third party",
		"  relaisctl audit checkpoints --online > checkpoints-2027-01.jsonl", func(fs *pflag.FlagSet) body {
			src := addLogSource(fs, false)
			return func(ctx context.Context, stdout, stderr io.Writer) int {
				if fs.NArg() > 0 {
					fmt.Fprintf(stderr, "relaisctl audit checkpoints: unexpected argument %q\n", fs.Arg(0))
					return 2
				}
				if err := src.check(fs); err != nil {
					fmt.Fprintf(stderr, "relaisctl audit checkpoints: %v\n", err)
					return 2
				}
				return auditCheckpoints(ctx, src, stdout, stderr)
			}
		})
}

// auditCheckpoints writes the checkpoints of a stopped broker's directory
// (--dir) or file (--db) or of a running broker (--online) as JSON lines.
func auditCheckpoints(ctx context.Context, src *logSource, stdout, stderr io.Writer) int {
	bw := bufio.NewWriter(stdout)
	err := src.each(ctx, func(e seal.Entry) error {
		if e.Checkpoint == nil {
			return nil
		}
		raw, err := json.Marshal(e.Checkpoint)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(bw, "%s\n", raw)
		return err
	})
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		fmt.Fprintf(stderr, "relaisctl audit checkpoints: %v\n", err)
		return 1
	}
	return 0
}

// setPeriod sets the query's --from and --to (each optional).
func setPeriod(req *adminv1.QueryAuditRequest, from, to string) error {
	for _, t := range []struct {
		flag, v string
		dst     **timestamppb.Timestamp
	}{{"--from", from, &req.From}, {"--to", to, &req.To}} {
		if t.v == "" {
			continue
		}
		tm, err := parseTime(t.flag, t.v)
		if err != nil {
			return err
		}
		*t.dst = timestamppb.New(tm)
	}
	return nil
}
