package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/metrics"
	"github.com/relais-broker/relais/broker/reminders"
	"github.com/relais-broker/relais/broker/reminders/boltrem"
	"github.com/relais-broker/relais/broker/reminders/pgrem"
)

// RemindersConfig is the `reminders:` section of the configuration: the
// expiry reminders mailed to the consumers' registry contacts.
type RemindersConfig struct {
	// Enabled turns the job on; off, nothing is mailed.
	Enabled bool `yaml:"enabled"`
	// ScheduleDays are the steps in days before an end (30, 15, 7, 1).
	ScheduleDays []int `yaml:"schedule_days"`
	// Interval between passes (1h); RetryInterval after a failed mail (5m).
	Interval      time.Duration `yaml:"interval"`
	RetryInterval time.Duration `yaml:"retry_interval"`
	// From is the sender; Operator signs the mails; Contact is who the
	// bodies should ask; RenewCommand and GrantHint say what to do.
	From         string `yaml:"from"`
	Operator     string `yaml:"operator"`
	Contact      string `yaml:"contact"`
	RenewCommand string `yaml:"renew_command"`
	GrantHint    string `yaml:"grant_hint"`
	// SMTP is the relay (STARTTLS required). CaptureDir, instead, writes
	// each mail as an .eml file there (dev mode: <data-dir>/dev/outbox).
	SMTP       ReminderSMTPConfig `yaml:"smtp"`
	CaptureDir string             `yaml:"capture_dir"`
	// anyLifetime: dev mode sends the step due at once, whatever the
	// demo certificates' lifetime (reminders.Config.AnyLifetime).
	anyLifetime bool
}

// ReminderSMTPConfig is how the broker reaches its mail relay. The
// password is in a file, never in the configuration.
type ReminderSMTPConfig struct {
	Addr         string        `yaml:"addr"`
	Username     string        `yaml:"username"`
	PasswordFile string        `yaml:"password_file"`
	CAFile       string        `yaml:"ca_file"`
	ServerName   string        `yaml:"server_name"`
	HelloName    string        `yaml:"hello_name"`
	Timeout      time.Duration `yaml:"timeout"`
}

// validate checks the section; the messages name the keys.
func (c RemindersConfig) validate() error {
	if !c.Enabled {
		return nil
	}
	var errs []error
	if _, err := mail.ParseAddress(c.From); err != nil {
		errs = append(errs, errors.New("reminders.from: not an email address"))
	}
	if len(c.ScheduleDays) > 0 {
		if err := reminders.ValidateSchedule(c.ScheduleDays); err != nil {
			errs = append(errs, fmt.Errorf("reminders.schedule_days: %w", err))
		}
	}
	switch {
	case c.SMTP.Addr == "" && c.CaptureDir == "":
		errs = append(errs, errors.New("reminders: set smtp.addr (a mail relay) or capture_dir"))
	case c.SMTP.Addr != "" && c.CaptureDir != "":
		errs = append(errs, errors.New("reminders: smtp.addr and capture_dir are exclusive"))
	case c.SMTP.Addr != "":
		if _, err := c.mailer(); err != nil {
			errs = append(errs, fmt.Errorf("reminders.smtp: %w", err))
		}
	}
	if c.Interval < 0 || c.RetryInterval < 0 {
		errs = append(errs, errors.New("reminders: interval and retry_interval must not be negative"))
	}
	return errors.Join(errs...)
}

// mailer builds the SMTP mailer or the capture.
func (c RemindersConfig) mailer() (reminders.Mailer, error) {
	if c.CaptureDir != "" {
		return reminders.NewCapture(c.CaptureDir)
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.SMTP.ServerName}
	if c.SMTP.CAFile != "" {
		pem, err := os.ReadFile(c.SMTP.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("ca_file: no PEM certificate")
		}
		tlsCfg.RootCAs = pool
	}
	return reminders.NewSMTP(reminders.SMTPConfig{Addr: c.SMTP.Addr, TLS: tlsCfg, Username: c.SMTP.Username, PasswordFile: c.SMTP.PasswordFile,
		HelloName: c.SMTP.HelloName, Timeout: c.SMTP.Timeout})
}

// devReminders is dev mode's section: on, mails captured under dataDir.
func devReminders(dataDir string) RemindersConfig {
	return RemindersConfig{Enabled: true, From: "Relais dev <relais-dev@localhost>", Operator: "Relais (dev mode, fictitious data)",
		Contact: "the operator of this dev broker", RenewCommand: "relaisctl credentials renew --dir DIR --broker ADDR",
		CaptureDir: filepath.Join(dataDir, "dev", "outbox"), anyLifetime: true}
}

// ReminderFile is the bbolt file of the reminders in data_dir.
const ReminderFile = "reminders.db"

// startReminders builds the reminder job of cfg over the stores and runs
// it in g under the "reminders" lease (one replica mails; the others
// stand by). It returns the job for the admin API, nil when disabled, and
// what to close once g is done.
func startReminders(ctx context.Context, g *errgroup.Group, cfg RemindersConfig, st *stores, dataDir string, auditLog audit.Recorder,
	mets *metrics.Metrics, logger *slog.Logger) (*reminders.Job, func() error, error) {
	noop := func() error { return nil }
	if !cfg.Enabled {
		return nil, noop, nil
	}
	if err := cfg.validate(); err != nil {
		return nil, noop, err
	}
	var store reminders.Store
	closeStore := noop
	if st.Pool != nil {
		store = pgrem.New(st.Pool)
	} else {
		b, err := boltrem.Open(filepath.Join(dataDir, ReminderFile))
		if err != nil {
			return nil, noop, err
		}
		store, closeStore = b, b.Close
	}
	mailer, err := cfg.mailer()
	if err != nil {
		_ = closeStore()
		return nil, noop, err
	}
	job, err := reminders.New(reminders.Config{Registry: st.Registry, Store: store, Mailer: mailer, Audit: auditLog, Metrics: mets,
		Schedule: cfg.ScheduleDays, AnyLifetime: cfg.anyLifetime, Interval: cfg.Interval, RetryInterval: cfg.RetryInterval, Logger: logger,
		Text: reminders.Text{From: cfg.From, Operator: cfg.Operator, Contact: cfg.Contact, RenewCommand: cfg.RenewCommand, GrantHint: cfg.GrantHint}})
	if err != nil {
		_ = closeStore()
		return nil, noop, err
	}
	g.Go(func() error { return st.Cluster.Lease("reminders").Run(ctx, job.Run) })
	return job, closeStore, nil
}
