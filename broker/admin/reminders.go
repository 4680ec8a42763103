package admin

import (
	"context"

	"github.com/relais-broker/relais/broker/reminders"
	adminv1 "github.com/relais-broker/relais/proto/relais/admin/v1"
)

// ReminderLister shows the expiry reminders (reminders.Job).
type ReminderLister interface {
	Overview(ctx context.Context) (reminders.Overview, error)
}

// reminderList implements ReminderAdminService.
type reminderList struct {
	adminv1.UnimplementedReminderAdminServiceServer
	list ReminderLister
}

func (r *reminderList) ListReminders(ctx context.Context, req *adminv1.ListRemindersRequest) (*adminv1.ListRemindersResponse, error) {
	ov, err := r.list.Overview(ctx)
	if err != nil {
		return nil, err
	}
	keep := func(siret string) bool { return req.GetConsumerSiret() == "" || siret == req.GetConsumerSiret() }
	resp := &adminv1.ListRemindersResponse{}
	for _, x := range ov.Records {
		if !keep(x.Consumer) {
			continue
		}
		resp.Sent = append(resp.Sent, &adminv1.ReminderAttempt{
			Kind: x.Kind, ConsumerSiret: x.Consumer, Ref: x.Ref, Service: x.Service, NotAfter: ts(x.NotAfter), StepDays: int32(x.Step),
			State: x.State, Attempts: int32(x.Attempts), Recipients: int32(x.Recipients), FirstAttempt: ts(x.FirstAttempt),
			LastAttempt: ts(x.LastAttempt), SentAt: ts(x.SentAt), LastError: x.LastError,
		})
	}
	for _, x := range ov.Upcoming {
		if !keep(x.Consumer) {
			continue
		}
		resp.Upcoming = append(resp.Upcoming, &adminv1.UpcomingReminder{
			Kind: x.Kind, ConsumerSiret: x.Consumer, Ref: x.Ref, Service: x.Service, NotAfter: ts(x.NotAfter),
			DueStepDays: int32(x.DueStep), NextStepDays: int32(x.NextStep), NextAt: ts(x.NextAt), NoContact: x.NoContact,
		})
	}
	return resp, nil
}
