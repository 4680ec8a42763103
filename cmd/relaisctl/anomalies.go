package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"

	adminv1 "github.com/relais-broker/relais/proto/relais/admin/v1"
)

// anomaliesCmd lists the abnormal use the broker detected (admin API),
// for the operator to follow up.
func anomaliesCmd() *cobra.Command {
	list := adminLeaf("list [--consumer SIRET]", "List the abnormal use detected (enumeration, volume) and the action taken",
		"  relaisctl anomalies list\n  relaisctl anomalies list --consumer 21750000500012 -o json",
		func(fs *pflag.FlagSet, af *adminFlags) func(context.Context, *grpc.ClientConn, io.Writer) error {
			consumer := fs.String("consumer", "", "keep this consumer SIRET's anomalies")
			return func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error {
				if fs.NArg() > 0 {
					return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
				}
				resp, err := adminv1.NewAnomalyAdminServiceClient(conn).ListAnomalies(ctx, &adminv1.ListAnomaliesRequest{ConsumerSiret: *consumer})
				if err != nil {
					return err
				}
				return printAnomalies(out, af.format(), resp)
			}
		})
	return group("anomalies", "The abnormal use the broker detected (admin API)", list)
}

func printAnomalies(w io.Writer, output string, resp *adminv1.ListAnomaliesResponse) error {
	v := view{whole: resp, items: protoItems(resp.GetAnomalies()),
		cols: []column{{name: "WINDOW END", max: 20}, {name: "CONSUMER"}, {name: "SERVICE", max: 18}, {name: "KIND", max: 11}, {name: "MEASURED", max: 24},
			{name: "THRESHOLD", max: 12}, {name: "WINDOW", wide: true}, {name: "ACTION", max: 14}}}
	for _, a := range resp.GetAnomalies() {
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
		service := a.GetService()
		if output == outTable {
			service = shortService(service)
		}
		v.rows = append(v.rows, []string{end.Format(time.RFC3339), a.GetConsumerSiret(), service, a.GetKind(),
			measured, threshold, end.Sub(a.GetWindowStart().AsTime()).Round(time.Second).String(), action})
	}
	return render(w, output, v)
}
