// Package reminders mails a consuming body's registry contacts before its
// certificate or one of its grants ends, on a schedule of days before the
// end (30, 15, 7 and 1 by default), once per step, with what to do; it
// keeps what it sent (or failed to send) in a Store, traces every attempt
// as an admin event in the audit log, and counts them for the alert rules.
//
// # Design
//
// One pass reads the registry, and for each thing that ends (a consumer's
// newest active certificate, an unrevoked grant not outlived by another
// grant of the same consumer and service) finds the current step: the
// smallest step of the schedule whose day has come. The step is mailed
// unless it, or a more urgent step, was already sent for that end date:
// a consumer whose certificate ends in 6 days gets the 7-day reminder
// only, never the 30- and 15-day ones it missed, and a grant extended to
// a new date starts a new schedule. Steps in the first half of a
// lifetime are skipped: a 7-day certificate renewed automatically is not
// reminded at each renewal, only at its 1-day step. A failed mail stays due and is retried
// at the next pass (RetryInterval after a failed pass, Interval
// otherwise); it never blocks a call: the job runs in its own goroutine,
// on one replica (cmd/relaisd runs it under a cluster lease, and a pass is
// idempotent: at worst two replicas in a lease hand-over mail one step
// twice), and the mailer is bounded by its own timeout.
//
// Each mail goes to one consumer's contacts only, and no stored byte, log
// line or audit record holds a contact's name or address: records hold
// the SIRET, the certificate serial or grant id, the step and a sanitised
// error class.
package reminders

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/registry"
)

// Kinds of things that end.
const (
	KindCertificate = "certificate"
	KindGrant       = "grant"
)

// States of a reminder record.
const (
	StateSent   = "sent"
	StateFailed = "failed"
)

// DefaultSchedule is when reminders go out, in days before the end.
var DefaultSchedule = []int{30, 15, 7, 1}

// Errors of the reminder contracts.
var (
	// ErrNotFound is returned by Store.Get for an unknown key.
	ErrNotFound = errors.New("reminder not found")
	// ErrInvalid is wrapped by every refused record or configuration,
	// with the field and why.
	ErrInvalid = errors.New("invalid")
)

// Record is what the job keeps of one step of one end date: whether its
// mail went out, how many attempts it took, the last error class.
type Record struct {
	Kind     string
	Consumer string // SIRET
	// Ref is the certificate serial or the grant id; Service the grant's
	// service (empty for certificates).
	Ref, Service string
	NotAfter     time.Time
	// Step is the schedule step, in days before NotAfter.
	Step     int
	State    string
	Attempts int
	// FirstAttempt and LastAttempt bound the attempts; SentAt is set once
	// the mail went out.
	FirstAttempt, LastAttempt, SentAt time.Time
	// Recipients is how many contacts the mail was addressed to.
	Recipients int
	// LastError is a sanitised error class (never an address).
	LastError string
}

// Key identifies a record: one step of one end date of one thing.
func (r Record) Key() string {
	return fmt.Sprintf("%s/%s/%d/%d", r.Kind, r.Ref, r.NotAfter.Unix(), r.Step)
}

// Store keeps the records. Implementations (boltrem, pgrem) pass
// remindertest; both call Validate before any write, so bad input is
// refused the same way and changes nothing. Times are kept to the
// microsecond.
type Store interface {
	// Get returns the record of key, or ErrNotFound.
	Get(ctx context.Context, key string) (Record, error)
	// Put creates or replaces the record of r.Key().
	Put(ctx context.Context, r Record) error
	// List returns every record, by NotAfter, then Kind, Ref and Step.
	List(ctx context.Context) ([]Record, error)
	// Purge deletes the records whose NotAfter is before t and returns how
	// many.
	Purge(ctx context.Context, before time.Time) (int, error)
}

// Validate checks a record before a store writes it.
func Validate(r Record) error {
	switch {
	case r.Kind != KindCertificate && r.Kind != KindGrant:
		return fmt.Errorf("%w: kind %q: want certificate or grant", ErrInvalid, r.Kind)
	case r.Consumer == "" || len(r.Consumer) > 64:
		return fmt.Errorf("%w: consumer must be 1 to 64 bytes", ErrInvalid)
	case r.Ref == "" || len(r.Ref) > 128 || strings.Contains(r.Ref, "/"):
		return fmt.Errorf("%w: ref must be 1 to 128 bytes without '/'", ErrInvalid)
	case len(r.Service) > 256:
		return fmt.Errorf("%w: service is longer than 256 bytes", ErrInvalid)
	case r.NotAfter.IsZero():
		return fmt.Errorf("%w: not_after is not set", ErrInvalid)
	case r.Step <= 0 || r.Step > 366:
		return fmt.Errorf("%w: step %d: want 1 to 366 days", ErrInvalid, r.Step)
	case r.State != StateSent && r.State != StateFailed:
		return fmt.Errorf("%w: state %q: want sent or failed", ErrInvalid, r.State)
	case r.Attempts < 1:
		return fmt.Errorf("%w: attempts must be at least 1", ErrInvalid)
	case r.State == StateSent && r.SentAt.IsZero():
		return fmt.Errorf("%w: a sent record needs sent_at", ErrInvalid)
	case r.Recipients < 0:
		return fmt.Errorf("%w: recipients is negative", ErrInvalid)
	case len(r.LastError) > 256:
		return fmt.Errorf("%w: last_error is longer than 256 bytes", ErrInvalid)
	}
	return nil
}

// ValidateSchedule checks a schedule: days in (0, 366], no duplicates.
func ValidateSchedule(days []int) error {
	seen := map[int]bool{}
	for _, d := range days {
		if d <= 0 || d > 366 {
			return fmt.Errorf("%w: schedule step %d: want 1 to 366 days", ErrInvalid, d)
		}
		if seen[d] {
			return fmt.Errorf("%w: schedule step %d is listed twice", ErrInvalid, d)
		}
		seen[d] = true
	}
	if len(days) == 0 {
		return fmt.Errorf("%w: schedule is empty", ErrInvalid)
	}
	return nil
}

// Registry is what the job reads of the registry (registry.Store has it).
type Registry interface {
	ListConsumers(ctx context.Context) ([]registry.Consumer, error)
	ListCredentials(ctx context.Context, subject string) ([]registry.CredentialRecord, error)
	ListGrants(ctx context.Context, f registry.GrantFilter) ([]registry.Grant, error)
}

// Observer counts reminders for the alert rules (broker/metrics has it).
type Observer interface {
	ObserveReminder(kind string, sent bool)
	SetRemindersDue(n int, at time.Time)
}

// Operator and Method name the job in the audit records of its attempts.
const (
	Operator = "relais-reminders"
	Method   = "/relais.internal.v1.Reminders/Send"
)

// Config configures a Job.
type Config struct {
	Registry Registry
	Store    Store
	Mailer   Mailer
	// Audit traces every attempt; Metrics counts them (optional).
	Audit   audit.Recorder
	Metrics Observer
	// Schedule in days before the end (DefaultSchedule when empty).
	Schedule []int
	// Interval between passes (1 h when zero); RetryInterval after a pass
	// with a failure (5 min when zero).
	Interval, RetryInterval time.Duration
	// Text tells the contacts what to do.
	Text Text
	// AnyLifetime sends every step whatever the certificate's lifetime
	// (dev mode, to show the flow at once). Otherwise a step comes only
	// in the second half of a lifetime: a short-lived certificate renewed
	// automatically (7 days by default) is reminded at its last steps
	// only, not at each renewal.
	AnyLifetime bool
	// Clock is time.Now when nil.
	Clock  func() time.Time
	Logger *slog.Logger
}

// Text is what the mails say beyond the facts.
type Text struct {
	// From is the sender address.
	From string
	// Operator names who runs the broker (signature), Contact who to ask
	// (an address or a desk).
	Operator, Contact string
	// RenewCommand is the command a consumer runs to renew its certificate
	// (with its current one); GrantHint what to do for a grant.
	RenewCommand, GrantHint string
}

// Job sends the reminders.
type Job struct {
	cfg Config
	log *slog.Logger
}

// New checks cfg and returns a job.
func New(cfg Config) (*Job, error) {
	if cfg.Registry == nil || cfg.Store == nil || cfg.Mailer == nil || cfg.Audit == nil {
		return nil, fmt.Errorf("%w: reminders need a registry, a store, a mailer and an audit log", ErrInvalid)
	}
	if len(cfg.Schedule) == 0 {
		cfg.Schedule = DefaultSchedule
	}
	if err := ValidateSchedule(cfg.Schedule); err != nil {
		return nil, err
	}
	cfg.Schedule = append([]int(nil), cfg.Schedule...)
	sort.Sort(sort.Reverse(sort.IntSlice(cfg.Schedule)))
	if cfg.Text.From == "" {
		return nil, fmt.Errorf("%w: reminders need a sender address (from)", ErrInvalid)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Hour
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = 5 * time.Minute
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Job{cfg: cfg, log: log}, nil
}

// item is one thing that ends, with its current step.
type item struct {
	Kind, Consumer, Ref, Service string
	// Name is the consumer's name (a public body's, for the mail).
	Name     string
	NotAfter time.Time
	// Life is NotAfter minus NotBefore (0: unknown, every step applies).
	Life time.Duration
	// Step is the current step (0: none yet, the first is in NextAt).
	Step int
	// NextStep and NextAt are the step after the current one and when it
	// comes (zero when none is left).
	NextStep int
	NextAt   time.Time
	contacts []registry.Contact
}

// items reads what ends from the registry, with each one's step at now.
func (j *Job) items(ctx context.Context, now time.Time) ([]item, error) {
	consumers, err := j.cfg.Registry.ListConsumers(ctx)
	if err != nil {
		return nil, fmt.Errorf("reminders: consumers: %w", err)
	}
	creds, err := j.cfg.Registry.ListCredentials(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("reminders: credentials: %w", err)
	}
	grants, err := j.cfg.Registry.ListGrants(ctx, registry.GrantFilter{})
	if err != nil {
		return nil, fmt.Errorf("reminders: grants: %w", err)
	}
	active := map[string]registry.Consumer{}
	for _, c := range consumers {
		if c.Status == registry.StatusActive {
			active[c.SIRET] = c
		}
	}
	var out []item
	newest := map[string]registry.CredentialRecord{}
	for _, r := range creds {
		if _, ok := active[r.Subject]; !ok || r.Kind != "consumer" || r.Status != registry.CredentialActive || !r.NotAfter.After(now) {
			continue
		}
		if cur, ok := newest[r.Subject]; !ok || r.NotAfter.After(cur.NotAfter) {
			newest[r.Subject] = r
		}
	}
	for siret, r := range newest {
		out = append(out, item{Kind: KindCertificate, Consumer: siret, Ref: r.Serial, NotAfter: r.NotAfter, Life: lifetime(r.NotBefore, r.NotAfter)})
	}
	latest := map[string]time.Time{} // consumer + service → the latest end of a live grant
	for _, g := range grants {
		if g.RevokedAt.IsZero() && g.NotAfter.After(now) {
			k := g.Consumer + "\x00" + g.Service
			if g.NotAfter.After(latest[k]) {
				latest[k] = g.NotAfter
			}
		}
	}
	for _, g := range grants {
		if _, ok := active[g.Consumer]; !ok || !g.RevokedAt.IsZero() || !g.NotAfter.After(now) || g.NotAfter.Before(latest[g.Consumer+"\x00"+g.Service]) {
			continue
		}
		out = append(out, item{Kind: KindGrant, Consumer: g.Consumer, Ref: g.ID, Service: g.Service, NotAfter: g.NotAfter, Life: lifetime(g.NotBefore, g.NotAfter)})
	}
	for i := range out {
		it := &out[i]
		c := active[it.Consumer]
		it.Name, it.contacts = c.Name, c.Contacts
		it.Step, it.NextStep = j.steps(it.NotAfter.Sub(now), it.Life)
		if it.NextStep != 0 {
			it.NextAt = it.NotAfter.Add(-time.Duration(it.NextStep) * 24 * time.Hour)
		}
	}
	sort.Slice(out, func(a, b int) bool {
		if !out[a].NotAfter.Equal(out[b].NotAfter) {
			return out[a].NotAfter.Before(out[b].NotAfter)
		}
		return out[a].Kind+out[a].Ref < out[b].Kind+out[b].Ref
	})
	return out, nil
}

func lifetime(from, to time.Time) time.Duration {
	if from.IsZero() || !to.After(from) {
		return 0
	}
	return to.Sub(from)
}

// steps returns, for an end left away of a thing that lives life, the
// current step (the most urgent whose day has come; 0 before the first)
// and the next one (0: none). Steps in the first half of life are
// skipped unless AnyLifetime.
func (j *Job) steps(left, life time.Duration) (current, next int) {
	var schedule []int
	for _, s := range j.cfg.Schedule {
		if j.cfg.AnyLifetime || life == 0 || 2*time.Duration(s)*24*time.Hour < life {
			schedule = append(schedule, s)
		}
	}
	for _, s := range schedule { // most distant first
		if left <= time.Duration(s)*24*time.Hour {
			current = s
		} else if current == 0 && next == 0 {
			next = s
		}
	}
	if current != 0 {
		next = 0
		for _, s := range schedule {
			if s < current {
				next = s
				break
			}
		}
	}
	return current, next
}

// settled reports whether step (or a more urgent one) of it was sent.
func settled(recs map[string]Record, it item) (bool, Record) {
	var failed Record
	for _, s := range recsFor(recs, it) {
		if s.State == StateSent && s.Step <= it.Step {
			return true, s
		}
		if s.Step == it.Step {
			failed = s
		}
	}
	return false, failed
}

func recsFor(recs map[string]Record, it item) []Record {
	var out []Record
	prefix := fmt.Sprintf("%s/%s/%d/", it.Kind, it.Ref, it.NotAfter.Unix())
	for k, r := range recs {
		if strings.HasPrefix(k, prefix) {
			out = append(out, r)
		}
	}
	return out
}

// Report is what one pass did.
type Report struct {
	Sent, Failed, Due int
	// NoContact counts the reminders due to consumers without any contact
	// address: not attempted.
	NoContact int
}

// Pass sends every reminder due at the clock's now, and records each
// attempt. It returns an error only when it could not read what is due;
// failed mails are in the report (and retried at the next pass).
func (j *Job) Pass(ctx context.Context) (Report, error) {
	now := j.cfg.Clock()
	items, err := j.items(ctx, now)
	if err != nil {
		return Report{}, err
	}
	recs, err := j.records(ctx)
	if err != nil {
		return Report{}, err
	}
	var rep Report
	for _, it := range items {
		if it.Step == 0 {
			continue
		}
		done, prev := settled(recs, it)
		if done {
			continue
		}
		if len(emails(it.contacts)) == 0 {
			// A registry gap, not a mail failure: nothing to retry until a
			// contact is added; the expiry alerts still tell the operator.
			rep.NoContact++
			j.log.Warn("reminders: due but the consumer has no contact with an email address", "consumer", it.Consumer, "kind", it.Kind, "ref", it.Ref, "step_days", it.Step)
			continue
		}
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
		if j.send(ctx, it, prev) {
			rep.Sent++
		} else {
			rep.Failed++
		}
	}
	rep.Due = rep.Failed
	if j.cfg.Metrics != nil {
		j.cfg.Metrics.SetRemindersDue(rep.Due, j.cfg.Clock())
	}
	return rep, nil
}

func (j *Job) records(ctx context.Context) (map[string]Record, error) {
	list, err := j.cfg.Store.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("reminders: store: %w", err)
	}
	recs := make(map[string]Record, len(list))
	for _, r := range list {
		recs[r.Key()] = r
	}
	return recs, nil
}

// send mails one step to the item's contacts and records the attempt; it
// reports whether the mail went out.
func (j *Job) send(ctx context.Context, it item, prev Record) bool {
	start := j.cfg.Clock()
	rec := prev
	if rec.Attempts == 0 {
		rec = Record{Kind: it.Kind, Consumer: it.Consumer, Ref: it.Ref, Service: it.Service, NotAfter: it.NotAfter, Step: it.Step, FirstAttempt: start}
	}
	rec.Attempts++
	rec.LastAttempt = start
	to := emails(it.contacts)
	rec.Recipients = len(to)
	err := j.cfg.Mailer.Send(ctx, j.message(it, to, start))
	if err == nil {
		rec.State, rec.SentAt, rec.LastError = StateSent, j.cfg.Clock(), ""
	} else {
		rec.State, rec.LastError = StateFailed, errorClass(err)
	}
	code := "OK"
	if err != nil {
		code = "Unavailable"
	}
	arec := audit.Record{Time: start, RequestID: audit.NewRequestID(), Operator: Operator, Method: Method, Target: it.Consumer, Code: code,
		Reason: it.Kind + "_expiry", Latency: j.cfg.Clock().Sub(start),
		Note: fmt.Sprintf("%s %s, %d-day reminder, ends %s, %d recipient(s), attempt %d%s", it.Kind, it.Ref, it.Step, it.NotAfter.UTC().Format(time.RFC3339), len(to), rec.Attempts, errNote(rec.LastError))}
	if aerr := j.cfg.Audit.Append(ctx, arec); aerr != nil {
		j.log.Error("reminders: the attempt could not be traced", "request_id", arec.RequestID, "consumer", it.Consumer, "error", aerr.Error())
	}
	if perr := j.cfg.Store.Put(ctx, rec); perr != nil {
		j.log.Error("reminders: the attempt could not be recorded", "consumer", it.Consumer, "kind", it.Kind, "step", it.Step, "error", perr.Error())
	}
	if j.cfg.Metrics != nil {
		j.cfg.Metrics.ObserveReminder(it.Kind, err == nil)
	}
	if err != nil {
		j.log.Warn("reminders: mail failed, retried at the next pass", "consumer", it.Consumer, "kind", it.Kind, "ref", it.Ref, "step_days", it.Step, "error", rec.LastError)
		return false
	}
	j.log.Info("reminders: mail sent", "consumer", it.Consumer, "kind", it.Kind, "ref", it.Ref, "step_days", it.Step, "recipients", len(to))
	return true
}

func errNote(class string) string {
	if class == "" {
		return ""
	}
	return ": " + class
}

// emails are the contacts' addresses.
func emails(contacts []registry.Contact) []string {
	var to []string
	for _, c := range contacts {
		if c.Email != "" {
			to = append(to, c.Email)
		}
	}
	return to
}

// Run makes passes until ctx ends (then nil): at once, then every
// Interval, or every RetryInterval after a pass with a failure.
func (j *Job) Run(ctx context.Context) error {
	for {
		rep, err := j.Pass(ctx)
		wait := j.cfg.Interval
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			j.log.Error("reminders: pass failed", "error", err.Error())
			wait = j.cfg.RetryInterval
		case rep.Failed > 0:
			wait = j.cfg.RetryInterval
		}
		if _, err := j.cfg.Store.Purge(ctx, j.cfg.Clock().Add(-90*24*time.Hour)); err != nil && ctx.Err() == nil {
			j.log.Warn("reminders: purge of old records failed", "error", err.Error())
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// Overview is what `relaisctl reminders list` shows.
type Overview struct {
	// Records are the attempts kept (sent and failed).
	Records []Record
	// Upcoming are the things that end, each with its current step (due
	// now when not yet sent) and the next one.
	Upcoming []Upcoming
}

// Upcoming is one thing that ends, as the overview shows it.
type Upcoming struct {
	Kind, Consumer, Ref, Service string
	NotAfter                     time.Time
	// DueStep is the step due now and not yet sent (0: none).
	DueStep int
	// NextStep comes at NextAt (0: none left).
	NextStep int
	NextAt   time.Time
	// NoContact: the consumer has no contact address, so nothing is
	// mailed (add one to the registry).
	NoContact bool
}

// Overview lists the records and what is due, at the clock's now.
func (j *Job) Overview(ctx context.Context) (Overview, error) {
	now := j.cfg.Clock()
	items, err := j.items(ctx, now)
	if err != nil {
		return Overview{}, err
	}
	recs, err := j.records(ctx)
	if err != nil {
		return Overview{}, err
	}
	ov := Overview{}
	ov.Records, _ = j.cfg.Store.List(ctx)
	for _, it := range items {
		u := Upcoming{Kind: it.Kind, Consumer: it.Consumer, Ref: it.Ref, Service: it.Service, NotAfter: it.NotAfter, NextStep: it.NextStep, NextAt: it.NextAt,
			NoContact: len(emails(it.contacts)) == 0}
		if it.Step != 0 {
			if done, _ := settled(recs, it); !done {
				u.DueStep = it.Step
			}
		}
		ov.Upcoming = append(ov.Upcoming, u)
	}
	return ov, nil
}

// SortRecords sorts records the way Store.List returns them: by
// NotAfter, then Kind, Ref and Step.
func SortRecords(recs []Record) {
	sort.Slice(recs, func(a, b int) bool {
		x, y := recs[a], recs[b]
		switch {
		case !x.NotAfter.Equal(y.NotAfter):
			return x.NotAfter.Before(y.NotAfter)
		case x.Kind != y.Kind:
			return x.Kind < y.Kind
		case x.Ref != y.Ref:
			return x.Ref < y.Ref
		}
		return x.Step > y.Step
	})
}
