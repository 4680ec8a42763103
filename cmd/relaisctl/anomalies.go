package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"

	adminv1 "github.com/relais-broker/relais/proto/relais/admin/v1"
)

// runAnomalies lists the abnormal use the broker detected (admin API),
// for the operator to follow up.
func runAnomalies(ctx context.Context, verb string, args []string, stdout, stderr io.Writer) int {
	if verb != "list" {
		fmt.Fprintf(stderr, "relaisctl: unknown anomalies command %q (list)\n", verb)
		return 2
	}
	fs := flag.NewFlagSet("relaisctl anomalies list", flag.ContinueOnError)
	consumer := fs.String("consumer", "", "keep this consumer SIRET's anomalies")
	af := addAdminFlags(fs)
	c := command{flags: fs, admin: af, run: func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error {
		if fs.NArg() > 0 {
			return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
		}
		resp, err := adminv1.NewAnomalyAdminServiceClient(conn).ListAnomalies(ctx, &adminv1.ListAnomaliesRequest{ConsumerSiret: *consumer})
		if err != nil {
			return err
		}
		if af.output == "json" {
			return writeProtoJSON(out, resp)
		}
		return printAnomalies(out, resp.GetAnomalies())
	}}
	return runAdmin(ctx, "anomalies list", c, args, stdout, stderr)
}

func printAnomalies(w io.Writer, list []*adminv1.Anomaly) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WINDOW END\tCONSUMER\tSERVICE\tKIND\tMEASURED\tTHRESHOLD\tWINDOW\tACTION")
	for _, a := range list {
		var measured, threshold string
		switch a.GetTrigger() {
		case "not_found_ratio":
			measured = fmt.Sprintf("%.0f%% not found (%d/%d)", 100*a.GetNotFoundRatio(), a.GetNotFound(), a.GetCalls())
			threshold = fmt.Sprintf("> %.0f%%", 100*a.GetThresholds().GetMaxNotFoundRatio())
		case "distinct_subjects":
			measured = fmt.Sprintf("%d distinct subjects in %d calls", a.GetDistinctSubjects(), a.GetCalls())
			threshold = fmt.Sprintf("> %d", a.GetThresholds().GetMaxDistinctSubjects())
		default:
			measured = fmt.Sprintf("%d calls today", a.GetCalls())
			threshold = fmt.Sprintf("> %d (declared %d)", a.GetThresholds().GetVolumeLimit(), a.GetThresholds().GetExpectedDailyVolume())
		}
		action := a.GetAction()
		if a.GetActionError() != "" {
			action += " (failed: " + a.GetActionError() + ")"
		}
		end := a.GetWindowEnd().AsTime()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", end.Format(time.RFC3339), a.GetConsumerSiret(), a.GetService(), a.GetKind(),
			measured, threshold, end.Sub(a.GetWindowStart().AsTime()).Round(time.Second), action)
	}
	return tw.Flush()
}
