package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"

	adminv1 "github.com/relais-broker/relais/proto/relais/admin/v1"
)

// remindersCmd shows the expiry reminders mailed to the consumers'
// contacts and what is due (admin API): the operator's view of what
// reminders already told the bodies.
func remindersCmd() *cobra.Command {
	list := leaf("list [--consumer SIRET]", "List the expiry reminders mailed to consumers' contacts and those due",
		"  relaisctl reminders list\n  relaisctl reminders list --consumer 21750000500012 -o json", func(fs *pflag.FlagSet) body {
			consumer := fs.String("consumer", "", "keep this consumer SIRET's reminders")
			af := addConnFlags(fs)
			af.out = addOutputFlag(fs, outTable, outWide, outJSON)
			return adminBody("reminders list", command{flags: fs, admin: af, run: func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error {
				if fs.NArg() > 0 {
					return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
				}
				resp, err := adminv1.NewReminderAdminServiceClient(conn).ListReminders(ctx, &adminv1.ListRemindersRequest{ConsumerSiret: *consumer})
				if err != nil {
					return err
				}
				if af.format() == outJSON {
					return writeIndented(out, resp)
				}
				return printReminders(out, resp)
			}})
		})
	return group("reminders", "The expiry reminders mailed to consumers' contacts (admin API)", list)
}

func printReminders(w io.Writer, resp *adminv1.ListRemindersResponse) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SENT\nLAST ATTEMPT\tCONSUMER\tKIND\tREF\tENDS\tSTEP\tSTATE\tATTEMPTS\tRECIPIENTS\tLAST ERROR")
	for _, a := range resp.GetSent() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%dd\t%s\t%d\t%d\t%s\n", reminderTime(a.GetLastAttempt().AsTime()), a.GetConsumerSiret(), a.GetKind(),
			reminderRef(a.GetRef(), a.GetService()), reminderTime(a.GetNotAfter().AsTime()), a.GetStepDays(), a.GetState(), a.GetAttempts(), a.GetRecipients(), orDash(a.GetLastError()))
	}
	fmt.Fprintln(tw, "\nUPCOMING\nENDS\tCONSUMER\tKIND\tREF\tDUE NOW\tNEXT")
	for _, u := range resp.GetUpcoming() {
		due, next := "-", "-"
		if u.GetDueStepDays() != 0 {
			due = fmt.Sprintf("%dd step", u.GetDueStepDays())
		}
		if u.GetNoContact() {
			due += " (no contact address: add one)"
		}
		if u.GetNextStepDays() != 0 {
			next = fmt.Sprintf("%dd step on %s", u.GetNextStepDays(), reminderTime(u.GetNextAt().AsTime()))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", reminderTime(u.GetNotAfter().AsTime()), u.GetConsumerSiret(), u.GetKind(), reminderRef(u.GetRef(), u.GetService()), due, next)
	}
	return tw.Flush()
}

func reminderTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04") }

func reminderRef(ref, service string) string {
	if service == "" {
		return ref
	}
	return ref + " (" + service + ")"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
