package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/relais-broker/relais/broker/admin"
	"github.com/relais-broker/relais/broker/audit/boltlog"
	"github.com/relais-broker/relais/broker/audit/seal"
	"github.com/relais-broker/relais/internal/devenv"
	"github.com/relais-broker/relais/internal/keyfile"
	adminv1 "github.com/relais-broker/relais/proto/relais/admin/v1"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
)

// runAudit dispatches the audit sub-commands.
func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "verify":
			return runAuditVerifyCtx(ctx, args[1:], stdout, stderr)
		case "export":
			return runAuditExport(ctx, args[1:], stdout, stderr)
		case "query":
			return runAuditQuery(ctx, args[1:], stdout, stderr)
		case "checkpoints":
			return runAuditCheckpointsCtx(ctx, args[1:], stdout, stderr)
		case "subject":
			return runAuditSubject(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintln(stderr, "relaisctl: usage: relaisctl audit verify|export|query|subject|checkpoints [flags]")
	return 2
}

// exportTimeout bounds an online export: a whole log, not one call.
const exportTimeout = 30 * time.Minute

// logSource is where an audit command reads the log: a file of a stopped
// broker (--db), an export file (--file), or a running broker (--online).
type logSource struct {
	db, file *string
	online   *bool
	admin    *adminFlags
}

func addLogSource(fs *flag.FlagSet, withFile bool) *logSource {
	src := &logSource{
		db:     fs.String("db", "relais-dev/audit.db", "the audit log file of a stopped broker (or a copy)"),
		online: fs.Bool("online", false, "read the log of the running broker through the admin API (one consistent read)"),
		admin:  addAdminFlags(fs),
	}
	if withFile {
		src.file = fs.String("file", "", "an export file (JSON lines from relaisctl audit export)")
	} else {
		src.file = new(string)
	}
	return src
}

// check refuses two sources at once.
func (src *logSource) check(fs *flag.FlagSet) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	n := 0
	for _, name := range []string{"db", "file", "online"} {
		if set[name] {
			n++
		}
	}
	if n > 1 {
		return fmt.Errorf("give one of --db, --file and --online")
	}
	if !*src.online {
		for _, name := range []string{"admin-addr", "operator-dir", "server-name"} {
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
	default:
		st, err := boltlog.OpenStoreReadOnly(*src.db)
		if err != nil {
			return err
		}
		defer st.Close()
		return st.Export(ctx, fn)
	}
}

// runAuditVerify verifies an audit log with the public key alone: what a
// third party does.
func runAuditVerify(args []string, stdout, stderr io.Writer) int {
	return runAuditVerifyCtx(context.Background(), args, stdout, stderr)
}

// runAuditVerifyCtx verifies the log of a stopped broker (--db), an
// export (--file) or a running broker (--online) with the same checks:
// the broker only streams what it stores; the verification runs here.
func runAuditVerifyCtx(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relaisctl audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	src := addLogSource(fs, true)
	pubFile := fs.String("public-key", "relais-dev/keys/"+devenv.AuditPublicKeyFile, "the operator's Ed25519 public key (PEM)")
	exported := fs.String("checkpoints", "", "also check the log against checkpoints exported earlier (relaisctl audit checkpoints)")
	if err := fs.Parse(reorderFlags(fs, args)); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "relaisctl audit verify: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if err := src.check(fs); err != nil {
		fmt.Fprintf(stderr, "relaisctl audit verify: %v\n", err)
		return 2
	}
	pub, err := keyfile.ReadPublicKey(*pubFile)
	if err != nil {
		fmt.Fprintf(stderr, "relaisctl audit verify: %v\n", err)
		return 1
	}
	v := seal.NewVerifier(pub)
	if *exported != "" {
		f, err := os.Open(*exported)
		if err != nil {
			fmt.Fprintf(stderr, "relaisctl audit verify: %v\n", err)
			return 1
		}
		cps, err := seal.ReadCheckpoints(f)
		f.Close()
		if err != nil {
			fmt.Fprintf(stderr, "relaisctl audit verify: %s: %v\n", *exported, err)
			return 1
		}
		for _, c := range cps {
			v.Expect(c)
		}
	}
	errStop := errors.New("stop")
	err = src.each(ctx, func(e seal.Entry) error {
		if !v.Add(e) {
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		fmt.Fprintf(stderr, "relaisctl audit verify: %v\n", err)
		return 1
	}
	rep := v.Report()
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

// runAuditExport writes the whole log as JSON lines of records and
// checkpoints, from a stopped broker's file or a running broker, for
// archiving or for verification elsewhere (audit verify --file).
func runAuditExport(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relaisctl audit export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	src := addLogSource(fs, false)
	out := fs.String("out", "", "write to this file (0600) instead of the standard output")
	if err := fs.Parse(reorderFlags(fs, args)); err != nil {
		return 2
	}
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

// runAuditQuery lists audit records through the admin API, as a table,
// JSON lines or CSV.
func runAuditQuery(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relaisctl audit query", flag.ContinueOnError)
	af := addAdminFlags(fs)
	consumer := fs.String("consumer", "", "only this consumer SIRET")
	method := fs.String("method", "", "only this method, e.g. /relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient")
	code := fs.String("code", "", "only this outcome, e.g. OK or PermissionDenied")
	from := fs.String("from", "", "from this time (RFC 3339 or YYYY-MM-DD)")
	to := fs.String("to", "", "before this time (RFC 3339 or YYYY-MM-DD)")
	limit := fs.Int("limit", 1000, "at most this many records")
	format := fs.String("format", "table", "table, jsonl or csv")
	c := command{flags: fs, admin: af, run: func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error {
		req := &adminv1.QueryAuditRequest{ConsumerSiret: *consumer, Method: *method, Code: *code, Limit: int32(*limit)}
		for _, t := range []struct {
			flag, v string
			dst     **timestamppb.Timestamp
		}{{"--from", *from, &req.From}, {"--to", *to, &req.To}} {
			if t.v != "" {
				tm, err := parseTime(t.flag, t.v)
				if err != nil {
					return err
				}
				*t.dst = timestamppb.New(tm)
			}
		}
		resp, err := adminv1.NewAuditAdminServiceClient(conn).QueryAudit(ctx, req)
		if err != nil {
			return err
		}
		return printAudit(out, *format, resp.GetRecords())
	}}
	return runAdmin(ctx, "audit query", c, args, stdout, stderr)
}

func printAudit(w io.Writer, format string, recs []*adminv1.AuditRecord) error {
	switch format {
	case "jsonl":
		for _, r := range recs {
			b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(r)
			if err != nil {
				return err
			}
			fmt.Fprintln(w, string(b))
		}
		return nil
	case "csv":
		cw := csv.NewWriter(w)
		_ = cw.Write([]string{"time", "request_id", "consumer_siret", "operator", "recipient_siret", "method", "purpose", "case_reference", "subject_pseudonym", "fields_returned", "code", "reason", "latency_ms", "note"})
		for _, r := range recs {
			_ = cw.Write([]string{r.GetTime().AsTime().Format(time.RFC3339Nano), r.GetRequestId(), r.GetConsumerSiret(), r.GetOperator(), r.GetRecipientSiret(),
				r.GetMethod(), r.GetPurpose(), r.GetCaseReference(), r.GetSubjectPseudonym(), strings.Join(r.GetFieldsReturned(), " "), r.GetCode(), r.GetReason(),
				fmt.Sprintf("%.3f", float64(r.GetLatency().AsDuration())/float64(time.Millisecond)), r.GetNote()})
		}
		cw.Flush()
		return cw.Error()
	case "table":
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tWHO\tMETHOD\tPURPOSE\tFIELDS\tCODE")
		for _, r := range recs {
			who := r.GetConsumerSiret()
			if r.GetOperator() != "" {
				who = "operator " + r.GetOperator()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.GetTime().AsTime().Format(time.RFC3339), who, r.GetMethod(), r.GetPurpose(), strings.Join(r.GetFieldsReturned(), ","), r.GetCode())
		}
		return tw.Flush()
	default:
		return usageError{fmt.Sprintf("--format %q: want table, jsonl or csv", format)}
	}
}

// runAuditSubject answers a citizen's request: which bodies accessed the
// data of this person, when, why and which fields.
func runAuditSubject(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relaisctl audit subject", flag.ContinueOnError)
	af := addAdminFlags(fs)
	birthName := fs.String("birth-name", "", "birth name")
	given := fs.String("given-names", "", "given names, comma-separated")
	sex := fs.String("sex", "", "F or M")
	birthDate := fs.String("birth-date", "", "YYYY-MM-DD")
	place := fs.String("birth-place", "", "INSEE COG code of the birth commune (births in France)")
	country := fs.String("birth-country", "99100", "INSEE COG code of the birth country")
	ine := fs.String("ine", "", "or: the student's INE")
	ftid := fs.String("france-travail-id", "", "or: the France Travail identifier")
	c := command{flags: fs, admin: af, run: func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error {
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
		if af.output == "json" {
			return writeProtoJSON(out, resp)
		}
		if len(resp.GetAccesses()) == 0 {
			fmt.Fprintln(out, "no access recorded for this person within the retention period")
			return nil
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "WHEN\tBODY\tSIRET\tPURPOSE\tFIELDS\tOUTCOME")
		for _, a := range resp.GetAccesses() {
			purpose := a.GetPurposeLabel()
			if purpose == "" {
				purpose = a.GetPurpose()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.GetTime().AsTime().Format(time.RFC3339), a.GetConsumerName(), a.GetConsumerSiret(), purpose, strings.Join(a.GetFieldsReturned(), ","), a.GetCode())
		}
		return tw.Flush()
	}}
	return runAdmin(ctx, "audit subject", c, args, stdout, stderr)
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

// runAuditCheckpoints exports the signed checkpoints of the log, for a
// third party or an archive.
func runAuditCheckpoints(args []string, stdout, stderr io.Writer) int {
	return runAuditCheckpointsCtx(context.Background(), args, stdout, stderr)
}

// runAuditCheckpointsCtx writes the checkpoints of a stopped broker's
// file (--db) or of a running broker (--online) as JSON lines.
func runAuditCheckpointsCtx(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relaisctl audit checkpoints", flag.ContinueOnError)
	fs.SetOutput(stderr)
	src := addLogSource(fs, false)
	if err := fs.Parse(reorderFlags(fs, args)); err != nil {
		return 2
	}
	if err := src.check(fs); err != nil {
		fmt.Fprintf(stderr, "relaisctl audit checkpoints: %v\n", err)
		return 2
	}
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
