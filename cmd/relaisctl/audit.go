package main

import (
	"context"
	"encoding/csv"
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

	"github.com/relais-broker/relais/broker/audit/boltlog"
	"github.com/relais-broker/relais/internal/devenv"
	"github.com/relais-broker/relais/internal/keyfile"
	adminv1 "github.com/relais-broker/relais/proto/relais/admin/v1"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
)

// runAuditVerify verifies an audit log file offline with the public key
// alone: what a third party does.
func runAuditVerify(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relaisctl audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := fs.String("db", "relais-dev/audit.db", "the audit log file (stop the broker, or verify a copy taken while it is stopped)")
	pubFile := fs.String("public-key", "relais-dev/keys/"+devenv.AuditPublicKeyFile, "the operator's Ed25519 public key (PEM)")
	exported := fs.String("checkpoints", "", "also check the log against checkpoints exported earlier (relaisctl audit checkpoints)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "relaisctl audit verify: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	pub, err := keyfile.ReadPublicKey(*pubFile)
	if err != nil {
		fmt.Fprintf(stderr, "relaisctl audit verify: %v\n", err)
		return 1
	}
	var rep *boltlog.Report
	if *exported != "" {
		f, ferr := os.Open(*exported)
		if ferr != nil {
			fmt.Fprintf(stderr, "relaisctl audit verify: %v\n", ferr)
			return 1
		}
		defer f.Close()
		rep, err = boltlog.VerifyWith(*db, pub, f)
	} else {
		rep, err = boltlog.Verify(*db, pub)
	}
	if err != nil {
		fmt.Fprintf(stderr, "relaisctl audit verify: %v\n", err)
		return 1
	}
	if !rep.OK() {
		fmt.Fprintf(stdout, "FAILED at seq %d: %s\n", rep.BadSeq, rep.Problem)
		return 1
	}
	fmt.Fprintf(stdout, "OK: %d records (seq %d to %d), %d signed checkpoints verified\n", rep.Records, rep.FirstSeq, rep.LastSeq, rep.Checkpoints)
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
		_ = cw.Write([]string{"time", "request_id", "consumer_siret", "operator", "recipient_siret", "method", "purpose", "case_reference", "subject_pseudonym", "fields_returned", "code", "reason", "latency_ms"})
		for _, r := range recs {
			_ = cw.Write([]string{r.GetTime().AsTime().Format(time.RFC3339Nano), r.GetRequestId(), r.GetConsumerSiret(), r.GetOperator(), r.GetRecipientSiret(),
				r.GetMethod(), r.GetPurpose(), r.GetCaseReference(), r.GetSubjectPseudonym(), strings.Join(r.GetFieldsReturned(), " "), r.GetCode(), r.GetReason(),
				fmt.Sprintf("%.3f", float64(r.GetLatency().AsDuration())/float64(time.Millisecond))})
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

// runAuditCheckpoints exports the signed checkpoints of a stopped
// broker's log, for a third party or an archive.
func runAuditCheckpoints(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relaisctl audit checkpoints", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := fs.String("db", "relais-dev/audit.db", "the audit log file (broker stopped)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if _, err := boltlog.ExportCheckpointsFile(*db, stdout); err != nil {
		fmt.Fprintf(stderr, "relaisctl audit checkpoints: %v\n", err)
		return 1
	}
	return 0
}
