package reminders_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/reminders"
	"github.com/relais-broker/relais/broker/reminders/boltrem"
)

// fakeRegistry is a hand-written registry for these logic tests.
type fakeRegistry struct {
	mu        sync.Mutex
	consumers []registry.Consumer
	creds     []registry.CredentialRecord
	grants    []registry.Grant
	fail      error
}

func (f *fakeRegistry) ListConsumers(context.Context) ([]registry.Consumer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]registry.Consumer(nil), f.consumers...), f.fail
}

func (f *fakeRegistry) ListCredentials(context.Context, string) ([]registry.CredentialRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]registry.CredentialRecord(nil), f.creds...), f.fail
}

func (f *fakeRegistry) ListGrants(context.Context, registry.GrantFilter) ([]registry.Grant, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]registry.Grant(nil), f.grants...), f.fail
}

// counter is a hand-written reminders.Observer.
type counter struct {
	mu         sync.Mutex
	sent, fail map[string]int
	due        int
}

func (c *counter) ObserveReminder(kind string, sent bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sent == nil {
		c.sent, c.fail = map[string]int{}, map[string]int{}
	}
	if sent {
		c.sent[kind]++
	} else {
		c.fail[kind]++
	}
}

func (c *counter) SetRemindersDue(n int, _ time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.due = n
}

// clock is an injected clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

const (
	mairie = "21990000100005"
	ccas   = "21990000200003"
	lycee  = "19990000300008"
	day    = 24 * time.Hour
)

var t0 = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

type env struct {
	reg   *fakeRegistry
	store *boltrem.Store
	audit *audit.Memory
	obs   *counter
	clock *clock
	mail  *mailServer
	job   *reminders.Job
}

func newEnv(t *testing.T, o serverOpts, smtpCfg func(*reminders.SMTPConfig)) *env {
	t.Helper()
	e := &env{reg: &fakeRegistry{}, audit: &audit.Memory{}, obs: &counter{}, clock: &clock{now: t0}, mail: startMailServer(t, o)}
	var err error
	e.store, err = boltrem.Open(filepath.Join(t.TempDir(), "reminders.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.store.Close() })
	cfg := reminders.SMTPConfig{Addr: e.mail.Addr, TLS: &tls.Config{RootCAs: e.mail.Roots, MinVersion: tls.VersionTLS12}, Timeout: 5 * time.Second}
	if smtpCfg != nil {
		smtpCfg(&cfg)
	}
	mailer, err := reminders.NewSMTP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.job, err = reminders.New(reminders.Config{Registry: e.reg, Store: e.store, Mailer: mailer, Audit: e.audit, Metrics: e.obs, Clock: e.clock.Now,
		Text: reminders.Text{From: "Relais <relais@operateur.example>", Operator: "Relais operations", Contact: "support@operateur.example",
			RenewCommand: "relaisctl credentials renew --dir DIR --broker relais.example:443"}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func consumer(siret, name string, emails ...string) registry.Consumer {
	c := registry.Consumer{SIRET: siret, Name: name, Status: registry.StatusActive}
	for i, m := range emails {
		c.Contacts = append(c.Contacts, registry.Contact{Name: "Contact " + string(rune('A'+i)), Email: m})
	}
	return c
}

func cert(serial, siret string, notAfter time.Time) registry.CredentialRecord {
	return registry.CredentialRecord{Serial: serial, Kind: "consumer", Subject: siret, NotBefore: notAfter.Add(-90 * day), NotAfter: notAfter, Status: registry.CredentialActive}
}

func pass(t *testing.T, e *env) reminders.Report {
	t.Helper()
	rep, err := e.job.Pass(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestSixDaysLeftGetsExactlyOneSevenDayReminder: the 30- and 15-day steps
// it missed are not sent, the 7-day one once, the next day nothing, the
// 1-day one when its day comes; each consumer's mail goes to its own
// contacts only.
func TestSixDaysLeftGetsExactlyOneSevenDayReminder(t *testing.T) {
	t.Parallel()
	e := newEnv(t, serverOpts{}, nil)
	e.reg.consumers = []registry.Consumer{
		consumer(mairie, "Mairie d'Exemple", "dsi@mairie.example", "dpo@mairie.example"),
		consumer(ccas, "CCAS de Limite", "accueil@ccas.example"),
		consumer(lycee, "Lycée Lointain", "cpe@lycee.example"),
	}
	e.reg.creds = []registry.CredentialRecord{
		cert("0a01", mairie, t0.Add(6*day)),
		// An older certificate of the mairie, still valid, is not what
		// will stop its calls: only the newest is reminded.
		cert("0a00", mairie, t0.Add(2*day)),
		cert("0b01", ccas, t0.Add(6*day+time.Hour)),
		cert("0c01", lycee, t0.Add(40*day)),
		{Serial: "0d01", Kind: "operator", Subject: "alice", NotAfter: t0.Add(3 * day), Status: registry.CredentialActive},
	}
	if rep := pass(t, e); rep.Sent != 2 || rep.Failed != 0 {
		t.Fatalf("first pass: %+v, want 2 sent", rep)
	}
	msgs := e.mail.messages()
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want 2", len(msgs))
	}
	want := map[string][]string{mairie: {"dpo@mairie.example", "dsi@mairie.example"}, ccas: {"accueil@ccas.example"}}
	others := map[string][]string{mairie: {"ccas.example", "lycee.example"}, ccas: {"mairie.example", "lycee.example"}}
	seen := map[string]bool{}
	for _, m := range msgs {
		var siret string
		for s := range want {
			if strings.Contains(m.Body, "(SIRET "+s+")") {
				siret = s
			}
		}
		if siret == "" {
			t.Fatalf("message names no expected consumer:\n%s", m.Body)
		}
		seen[siret] = true
		if strings.Join(m.To, ",") != strings.Join(want[siret], ",") {
			t.Errorf("%s: envelope recipients %v, want %v", siret, m.To, want[siret])
		}
		header := m.Msg.Header.Get("To")
		for _, other := range others[siret] {
			if strings.Contains(header, other) || strings.Contains(m.Body, other) || strings.Contains(strings.Join(m.To, ","), other) {
				t.Errorf("%s's mail names another body's contact (%s)", siret, other)
			}
		}
		for _, w := range []string{"7-day reminder", "relaisctl credentials renew --dir DIR --broker relais.example:443", "support@operateur.example", "in 6 days"} {
			if !strings.Contains(m.Body, w) {
				t.Errorf("%s: body misses %q:\n%s", siret, w, m.Body)
			}
		}
		if m.From != "relais@operateur.example" {
			t.Errorf("envelope sender %q", m.From)
		}
	}
	if len(seen) != 2 {
		t.Fatalf("consumers mailed: %v", seen)
	}
	recs, err := e.store.List(context.Background())
	if err != nil || len(recs) != 2 {
		t.Fatalf("records: %+v %v", recs, err)
	}
	for _, r := range recs {
		if r.Step != 7 || r.State != reminders.StateSent || r.Attempts != 1 || r.Kind != reminders.KindCertificate {
			t.Errorf("record %+v", r)
		}
	}

	// The next day (5 days left): nothing new.
	e.clock.Add(day)
	if rep := pass(t, e); rep.Sent != 0 || rep.Failed != 0 {
		t.Fatalf("second pass: %+v, want nothing", rep)
	}
	// 20 hours before the end: the 1-day step, once per consumer.
	e.clock.Add(4*day + 4*time.Hour)
	if rep := pass(t, e); rep.Sent != 2 {
		t.Fatalf("1-day pass: %+v, want 2 sent", rep)
	}
	if rep := pass(t, e); rep.Sent != 0 {
		t.Fatalf("repeated pass: %+v, want nothing", rep)
	}
	if n := len(e.mail.messages()); n != 4 {
		t.Fatalf("%d messages in all, want 4", n)
	}
	// Every attempt is an admin event, with no contact in it.
	got := e.audit.Records()
	if len(got) != 4 {
		t.Fatalf("%d audit records, want 4", len(got))
	}
	for _, r := range got {
		if r.Operator != reminders.Operator || r.Method != reminders.Method || r.Code != "OK" || (r.Target != mairie && r.Target != ccas) {
			t.Errorf("audit record %+v", r)
		}
		if strings.Contains(r.Note, "@") || strings.Contains(r.Note, "Contact") {
			t.Errorf("audit note names a contact: %q", r.Note)
		}
	}
	if e.obs.sent[reminders.KindCertificate] != 4 {
		t.Errorf("metrics: %+v", e.obs.sent)
	}
}

// TestFailingSMTPIsRetriedAndReported: a refused mail is recorded failed
// with a class that names no address, traced and counted, retried at the
// next pass, and sent once the server accepts again.
func TestFailingSMTPIsRetriedAndReported(t *testing.T) {
	t.Parallel()
	e := newEnv(t, serverOpts{}, nil)
	e.reg.consumers = []registry.Consumer{consumer(mairie, "Mairie d'Exemple", "dsi@mairie.example")}
	e.reg.creds = []registry.CredentialRecord{cert("0a01", mairie, t0.Add(6*day))}
	e.mail.setFailRcpt(451)
	if rep := pass(t, e); rep.Sent != 0 || rep.Failed != 1 || rep.Due != 1 {
		t.Fatalf("failing pass: %+v", rep)
	}
	recs, _ := e.store.List(context.Background())
	if len(recs) != 1 || recs[0].State != reminders.StateFailed || recs[0].LastError != "smtp rcpt to: 451" || recs[0].Attempts != 1 {
		t.Fatalf("records after failure: %+v", recs)
	}
	ar := e.audit.Records()
	if len(ar) != 1 || ar[0].Code != "Unavailable" || !strings.Contains(ar[0].Note, "smtp rcpt to: 451") || strings.Contains(ar[0].Note, "@") {
		t.Fatalf("audit after failure: %+v", ar)
	}
	if e.obs.fail[reminders.KindCertificate] != 1 || e.obs.due != 1 {
		t.Fatalf("metrics after failure: %+v due %d", e.obs.fail, e.obs.due)
	}
	ov, err := e.job.Overview(context.Background())
	if err != nil || len(ov.Upcoming) != 1 || ov.Upcoming[0].DueStep != 7 || ov.Upcoming[0].NextStep != 1 {
		t.Fatalf("overview while failing: %+v %v", ov, err)
	}

	e.mail.setFailRcpt(0)
	e.clock.Add(5 * time.Minute)
	if rep := pass(t, e); rep.Sent != 1 || rep.Failed != 0 || rep.Due != 0 {
		t.Fatalf("retry pass: %+v", rep)
	}
	recs, _ = e.store.List(context.Background())
	if len(recs) != 1 || recs[0].State != reminders.StateSent || recs[0].Attempts != 2 || recs[0].LastError != "" || !recs[0].FirstAttempt.Equal(t0) {
		t.Fatalf("records after retry: %+v", recs)
	}
	if n := len(e.mail.messages()); n != 1 {
		t.Fatalf("%d messages delivered, want 1", n)
	}
	if ov, _ := e.job.Overview(context.Background()); ov.Upcoming[0].DueStep != 0 {
		t.Fatalf("overview after retry: %+v", ov)
	}
}

// TestHangingSMTPIsBounded: a server that accepts and never answers costs
// one timeout per pass, and Run stops at once when its context ends.
func TestHangingSMTPIsBounded(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	hold := make(chan struct{})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Go(func() { <-hold; c.Close() })
		}
	}()
	t.Cleanup(func() { l.Close(); close(hold); conns.Wait() })
	e := newEnv(t, serverOpts{}, func(c *reminders.SMTPConfig) { c.Addr, c.Timeout = l.Addr().String(), 300*time.Millisecond })
	e.reg.consumers = []registry.Consumer{consumer(mairie, "Mairie d'Exemple", "dsi@mairie.example")}
	e.reg.creds = []registry.CredentialRecord{cert("0a01", mairie, t0.Add(6*day))}
	start := time.Now()
	rep := pass(t, e)
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("a pass against a hanging server took %s", took)
	}
	recs, _ := e.store.List(context.Background())
	if rep.Failed != 1 || len(recs) != 1 || recs[0].LastError != "smtp greeting: timeout" {
		t.Fatalf("report %+v, records %+v", rep, recs)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.job.Run(ctx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop within 5s of its context ending")
	}
}

// TestSTARTTLSIsRequired: a relay that does not offer STARTTLS gets
// nothing, not even the envelope.
func TestSTARTTLSIsRequired(t *testing.T) {
	t.Parallel()
	e := newEnv(t, serverOpts{noTLS: true}, nil)
	e.reg.consumers = []registry.Consumer{consumer(mairie, "Mairie d'Exemple", "dsi@mairie.example")}
	e.reg.creds = []registry.CredentialRecord{cert("0a01", mairie, t0.Add(6*day))}
	if rep := pass(t, e); rep.Failed != 1 {
		t.Fatalf("report %+v", rep)
	}
	recs, _ := e.store.List(context.Background())
	if len(recs) != 1 || recs[0].LastError != "smtp starttls: server does not offer STARTTLS" || len(e.mail.messages()) != 0 {
		t.Fatalf("records %+v, %d messages", recs, len(e.mail.messages()))
	}
}

// TestAuthenticatesWithThePasswordFile: PLAIN over TLS, the secret read
// from its file; a wrong one is refused and reported by reply code.
func TestAuthenticatesWithThePasswordFile(t *testing.T) {
	t.Parallel()
	secret := filepath.Join(t.TempDir(), "smtp-password")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, serverOpts{user: "relais", pass: "s3cret"}, func(c *reminders.SMTPConfig) { c.Username, c.PasswordFile = "relais", secret })
	e.reg.consumers = []registry.Consumer{consumer(mairie, "Mairie d'Exemple", "dsi@mairie.example")}
	e.reg.creds = []registry.CredentialRecord{cert("0a01", mairie, t0.Add(6*day))}
	if rep := pass(t, e); rep.Sent != 1 {
		t.Fatalf("report %+v", rep)
	}
	if len(e.mail.authed) != 1 || len(e.mail.messages()) != 1 {
		t.Fatalf("authenticated %v, %d messages", e.mail.authed, len(e.mail.messages()))
	}
	// A rotated secret that the server does not know: refused at AUTH.
	if err := os.WriteFile(secret, []byte("other"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.reg.creds = append(e.reg.creds, cert("0a02", mairie, t0.Add(6*day+time.Hour)))
	if rep := pass(t, e); rep.Failed != 1 {
		t.Fatalf("report with a wrong secret %+v", rep)
	}
	recs, _ := e.store.List(context.Background())
	if last := recs[len(recs)-1]; !regexp.MustCompile(`^smtp auth: [45]\d\d$`).MatchString(last.LastError) {
		t.Fatalf("last record %+v", last)
	}
}

// TestGrantReminders: a grant ending in 14 days gets its 15-day step; a
// grant outlived by another grant of the same service gets none; an
// extended grant starts a new schedule.
func TestGrantReminders(t *testing.T) {
	t.Parallel()
	e := newEnv(t, serverOpts{}, nil)
	const fq, js = "relais.familyquotient.v1.FamilyQuotientService", "relais.jobseeker.v1.JobSeekerStatusService"
	e.reg.consumers = []registry.Consumer{consumer(mairie, "Mairie d'Exemple", "dsi@mairie.example"), {SIRET: ccas, Status: registry.StatusSuspended,
		Contacts: []registry.Contact{{Email: "accueil@ccas.example"}}}}
	e.reg.grants = []registry.Grant{
		{ID: "g1", Consumer: mairie, Service: fq, NotAfter: t0.Add(14 * day)},
		{ID: "g2", Consumer: mairie, Service: js, NotAfter: t0.Add(10 * day)},
		{ID: "g3", Consumer: mairie, Service: js, NotAfter: t0.Add(300 * day)},
		{ID: "g4", Consumer: mairie, Service: fq, NotAfter: t0.Add(3 * day), RevokedAt: t0.Add(-day)},
		{ID: "g5", Consumer: ccas, Service: fq, NotAfter: t0.Add(3 * day)}, // suspended consumer
	}
	if rep := pass(t, e); rep.Sent != 1 {
		t.Fatalf("report %+v", rep)
	}
	m := e.mail.messages()[0]
	if !strings.Contains(m.Body, "habilitation g1") || !strings.Contains(m.Body, fq) || !strings.Contains(m.Body, "15-day reminder") {
		t.Fatalf("grant mail:\n%s", m.Body)
	}
	// Extended by 60 days: a new end date, a new schedule (30 days step
	// comes later, nothing now).
	e.reg.grants[0].NotAfter = t0.Add(74 * day)
	if rep := pass(t, e); rep.Sent != 0 {
		t.Fatalf("after extension: %+v", rep)
	}
	e.clock.Add(45 * day)
	if rep := pass(t, e); rep.Sent != 1 {
		t.Fatalf("30 days before the new end: %+v", rep)
	}
	ov, err := e.job.Overview(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var g1 *reminders.Upcoming
	for i := range ov.Upcoming {
		if ov.Upcoming[i].Ref == "g1" {
			g1 = &ov.Upcoming[i]
		}
	}
	if g1 == nil || g1.DueStep != 0 || g1.NextStep != 15 || !g1.NextAt.Equal(t0.Add(59*day)) || len(ov.Records) != 2 {
		t.Fatalf("overview: %+v", ov)
	}
}

func TestCaptureWritesMessages(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "outbox")
	c, err := reminders.NewCapture(dir)
	if err != nil {
		t.Fatal(err)
	}
	msg := reminders.Message{From: "relais@operateur.example", To: []string{"Zoé Exemple <dsi@mairie.example>"}, Subject: "Relais: échéance",
		Body: "Le certificat arrive à échéance.\n", Date: t0, Consumer: mairie}
	if err := c.Send(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	if len(files) != 1 || !strings.Contains(filepath.Base(files[0]), mairie) {
		t.Fatalf("files %v", files)
	}
	raw, _ := os.ReadFile(files[0])
	for _, w := range []string{"To: =?utf-8?q?Zo=C3=A9_Exemple?= <dsi@mairie.example>", "Subject: =?utf-8?q?Relais:_=C3=A9ch=C3=A9ance?=", "Content-Transfer-Encoding: quoted-printable"} {
		if !strings.Contains(string(raw), w) {
			t.Errorf("missing %q in\n%s", w, raw)
		}
	}
	if err := c.Send(context.Background(), reminders.Message{From: "relais@operateur.example", To: []string{"not an address"}, Date: t0}); !errors.Is(err, reminders.ErrInvalid) {
		t.Fatalf("bad recipient: %v", err)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "*")); len(files) != 1 {
		t.Fatalf("a refused message left files: %v", files)
	}
}

func TestConfigIsChecked(t *testing.T) {
	t.Parallel()
	store, err := boltrem.Open(filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	capture, _ := reminders.NewCapture(t.TempDir())
	base := reminders.Config{Registry: &fakeRegistry{}, Store: store, Mailer: capture, Audit: &audit.Memory{}, Text: reminders.Text{From: "relais@operateur.example"}}
	for name, mutate := range map[string]func(*reminders.Config){
		"no registry":    func(c *reminders.Config) { c.Registry = nil },
		"no sender":      func(c *reminders.Config) { c.Text.From = "" },
		"zero step":      func(c *reminders.Config) { c.Schedule = []int{30, 0} },
		"duplicate step": func(c *reminders.Config) { c.Schedule = []int{7, 7} },
		"step too far":   func(c *reminders.Config) { c.Schedule = []int{400} },
	} {
		cfg := base
		mutate(&cfg)
		if _, err := reminders.New(cfg); !errors.Is(err, reminders.ErrInvalid) {
			t.Errorf("%s: New = %v, want ErrInvalid", name, err)
		}
	}
	for name, cfg := range map[string]reminders.SMTPConfig{
		"no port":           {Addr: "mail.example"},
		"user without file": {Addr: "mail.example:587", Username: "relais"},
		"missing secret":    {Addr: "mail.example:587", Username: "relais", PasswordFile: filepath.Join(t.TempDir(), "absent")},
		"file without user": {Addr: "mail.example:587", PasswordFile: "/dev/null"},
	} {
		if _, err := reminders.NewSMTP(cfg); !errors.Is(err, reminders.ErrInvalid) {
			t.Errorf("%s: NewSMTP = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := reminders.New(base); err != nil {
		t.Fatal(err)
	}
}

// TestRegistryFailureSendsNothing: a pass that cannot read the registry
// reports it and records nothing.
func TestRegistryFailureSendsNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, serverOpts{}, nil)
	e.reg.fail = registry.ErrUnavailable
	if _, err := e.job.Pass(context.Background()); !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("Pass = %v", err)
	}
	if recs, _ := e.store.List(context.Background()); len(recs) != 0 || len(e.audit.Records()) != 0 {
		t.Fatalf("records %v", recs)
	}
}

// TestNoContactIsNotAMailFailure: a consumer without any contact address
// is reported as such, nothing is attempted nor counted as failed.
func TestNoContactIsNotAMailFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t, serverOpts{}, nil)
	e.reg.consumers = []registry.Consumer{{SIRET: mairie, Name: "Mairie", Status: registry.StatusActive, Contacts: []registry.Contact{{Name: "Standard", Phone: "0100000000"}}}}
	e.reg.creds = []registry.CredentialRecord{cert("0a01", mairie, t0.Add(6*day))}
	if rep := pass(t, e); rep != (reminders.Report{NoContact: 1}) {
		t.Fatalf("report %+v", rep)
	}
	if recs, _ := e.store.List(context.Background()); len(recs) != 0 || len(e.audit.Records()) != 0 || len(e.obs.fail) != 0 {
		t.Fatalf("records %v, audit %v, failures %v", recs, e.audit.Records(), e.obs.fail)
	}
	ov, err := e.job.Overview(context.Background())
	if err != nil || len(ov.Upcoming) != 1 || !ov.Upcoming[0].NoContact || ov.Upcoming[0].DueStep != 7 {
		t.Fatalf("overview %+v %v", ov, err)
	}
}

// TestShortLivedCertificatesAreRemindedLate: a 7-day certificate (the
// default lifetime, renewed automatically) gets no reminder in the first
// half of its life, so no mail at each renewal, only the 1-day step;
// AnyLifetime (dev mode) sends the step due at once.
func TestShortLivedCertificatesAreRemindedLate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, serverOpts{}, nil)
	e.reg.consumers = []registry.Consumer{consumer(mairie, "Mairie d'Exemple", "dsi@mairie.example")}
	short := cert("0a01", mairie, t0.Add(6*day))
	short.NotBefore = short.NotAfter.Add(-7 * day)
	e.reg.creds = []registry.CredentialRecord{short}
	if rep := pass(t, e); rep.Sent != 0 {
		t.Fatalf("6 days left of 7: %+v, want nothing", rep)
	}
	ov, _ := e.job.Overview(context.Background())
	if len(ov.Upcoming) != 1 || ov.Upcoming[0].NextStep != 1 || ov.Upcoming[0].DueStep != 0 {
		t.Fatalf("overview %+v", ov)
	}
	e.clock.Add(5*day + 12*time.Hour)
	if rep := pass(t, e); rep.Sent != 1 {
		t.Fatalf("half a day left: %+v, want the 1-day step", rep)
	}

	capture, _ := reminders.NewCapture(t.TempDir())
	fresh, err := boltrem.Open(filepath.Join(t.TempDir(), "dev.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	dev, err := reminders.New(reminders.Config{Registry: e.reg, Store: fresh, Mailer: capture, Audit: e.audit, Clock: func() time.Time { return t0 },
		AnyLifetime: true, Text: reminders.Text{From: "relais@operateur.example"}})
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := dev.Pass(context.Background()); err != nil || rep.Sent != 1 {
		t.Fatalf("any lifetime: %+v %v, want the 7-day step", rep, err)
	}
}
