package reminders

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Message is one mail: to one consumer's contacts, never another's.
type Message struct {
	From     string
	To       []string
	Subject  string
	Body     string
	Date     time.Time
	Consumer string // SIRET, for the capture's file names
}

// Mailer sends a message. Send must return within its own bound (a
// timeout), so that a hanging mail server delays only the next reminder.
type Mailer interface {
	Send(ctx context.Context, m Message) error
}

// message writes the reminder of it's current step.
func (j *Job) message(it item, to []string, now time.Time) Message {
	t := j.cfg.Text
	day := it.NotAfter.UTC().Format("2006-01-02 15:04 MST")
	left := it.NotAfter.Sub(now)
	days := int(left.Hours() / 24)
	var subject string
	var b strings.Builder
	name := it.Name
	if name == "" {
		name = it.Consumer
	}
	switch it.Kind {
	case KindCertificate:
		subject = fmt.Sprintf("Relais: the certificate of %s ends in %s", name, daysText(days))
		fmt.Fprintf(&b, "The certificate %s of %s (SIRET %s) for the Relais data exchange broker ends on %s (in %s).\n", it.Ref, name, it.Consumer, day, daysText(days))
		b.WriteString("After that date every call made with it is refused.\n\nWhat to do:\n")
		if t.RenewCommand != "" {
			fmt.Fprintf(&b, "- renew it with your current certificate, before it ends:\n    %s\n", t.RenewCommand)
		}
		b.WriteString("- or ask your Relais operator for a new certificate (send a certificate signing request; keep your private key).\n")
	default:
		subject = fmt.Sprintf("Relais: a habilitation of %s ends in %s", name, daysText(days))
		fmt.Fprintf(&b, "The habilitation %s of %s (SIRET %s) to call %s through Relais ends on %s (in %s).\n", it.Ref, name, it.Consumer, it.Service, day, daysText(days))
		b.WriteString("After that date calls to this service are refused.\n\nWhat to do:\n")
		if t.GrantHint != "" {
			fmt.Fprintf(&b, "- %s\n", t.GrantHint)
		}
		b.WriteString("- if your agreement is renewed, ask your Relais operator to extend the habilitation; otherwise no action is needed.\n")
	}
	if t.Contact != "" {
		fmt.Fprintf(&b, "\nWho to ask: %s\n", t.Contact)
	}
	fmt.Fprintf(&b, "\nThis is the %d-day reminder; you receive one per step (%s days before the end).\n", it.Step, joinInts(j.cfg.Schedule))
	if t.Operator != "" {
		fmt.Fprintf(&b, "-- \n%s\n", t.Operator)
	}
	return Message{From: t.From, To: to, Subject: subject, Body: b.String(), Date: now, Consumer: it.Consumer}
}

func daysText(d int) string {
	switch {
	case d <= 0:
		return "less than a day"
	case d == 1:
		return "1 day"
	default:
		return fmt.Sprintf("%d days", d)
	}
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ", ")
}

// Bytes renders the message in the Internet Message Format (RFC 5322),
// UTF-8 text in quoted-printable.
func (m Message) Bytes() ([]byte, error) {
	from, err := mail.ParseAddress(m.From)
	if err != nil {
		return nil, fmt.Errorf("%w: sender address: %v", ErrInvalid, err)
	}
	var to []string
	for _, a := range m.To {
		addr, err := mail.ParseAddress(a)
		if err != nil {
			return nil, fmt.Errorf("%w: a recipient address does not parse", ErrInvalid)
		}
		to = append(to, addr.String())
	}
	var id [12]byte
	_, _ = rand.Read(id[:])
	var buf bytes.Buffer
	host := "relais"
	if i := strings.LastIndexByte(from.Address, '@'); i >= 0 {
		host = from.Address[i+1:]
	}
	fmt.Fprintf(&buf, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s@%s>\r\nMIME-Version: 1.0\r\n",
		from.String(), strings.Join(to, ", "), mime.QEncoding.Encode("utf-8", m.Subject), m.Date.Format(time.RFC1123Z), hex.EncodeToString(id[:]), host)
	buf.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	qp := quotedprintable.NewWriter(&buf)
	if _, err := qp.Write([]byte(strings.ReplaceAll(m.Body, "\n", "\r\n"))); err != nil {
		return nil, err
	}
	if err := qp.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// SMTPConfig configures the SMTP mailer.
type SMTPConfig struct {
	// Addr is the relay's host:port (submission, usually 587).
	Addr string
	// TLS verifies the relay after STARTTLS (RootCAs, ServerName; the
	// host of Addr when ServerName is empty). STARTTLS is required: a
	// relay that does not offer it is refused, nothing is sent in clear.
	TLS *tls.Config
	// Username and PasswordFile authenticate (PLAIN, over TLS only); the
	// file is read at each connection, so a rotated secret is picked up.
	Username, PasswordFile string
	// HelloName is the name given in EHLO (localhost when empty).
	HelloName string
	// Timeout bounds one whole mail: connection, dialogue, data (30 s when
	// zero).
	Timeout time.Duration
}

// SMTP sends mail through a relay with STARTTLS.
type SMTP struct {
	cfg  SMTPConfig
	host string
}

// NewSMTP checks cfg and returns a mailer; nothing is dialled yet.
func NewSMTP(cfg SMTPConfig) (*SMTP, error) {
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil || host == "" {
		return nil, fmt.Errorf("%w: smtp address %q is not host:port", ErrInvalid, cfg.Addr)
	}
	if (cfg.Username == "") != (cfg.PasswordFile == "") {
		return nil, fmt.Errorf("%w: smtp username and password_file go together", ErrInvalid)
	}
	if cfg.PasswordFile != "" {
		if _, err := readSecret(cfg.PasswordFile); err != nil {
			return nil, err
		}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.HelloName == "" {
		cfg.HelloName = "localhost"
	}
	return &SMTP{cfg: cfg, host: host}, nil
}

func readSecret(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%w: smtp password_file: %v", ErrInvalid, errors.Unwrap(err))
	}
	s := strings.TrimRight(string(raw), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%w: smtp password_file is empty", ErrInvalid)
	}
	return s, nil
}

// smtpError is a failed step of the SMTP dialogue: its class is what
// records and logs keep (the server's text may name an address).
type smtpError struct {
	stage string
	code  int
	err   error
}

func (e *smtpError) Error() string {
	if e.code != 0 {
		return fmt.Sprintf("smtp %s: %d", e.stage, e.code)
	}
	return fmt.Sprintf("smtp %s: %v", e.stage, e.err)
}

func (e *smtpError) Unwrap() error { return e.err }

func stageErr(stage string, err error) error {
	var tp *textproto.Error
	if errors.As(err, &tp) {
		return &smtpError{stage: stage, code: tp.Code, err: err}
	}
	return &smtpError{stage: stage, err: err}
}

// errorClass is the part of err that may be stored and logged: the SMTP
// stage and reply code, or the stage and a generic cause.
func errorClass(err error) string {
	var se *smtpError
	switch {
	case errors.As(err, &se) && se.code != 0:
		return se.Error()
	case errors.As(err, &se):
		cause := "failed"
		var ne net.Error
		switch {
		case errors.As(se.err, &ne) && ne.Timeout(), errors.Is(se.err, context.DeadlineExceeded):
			cause = "timeout"
		case errors.Is(se.err, errNoStartTLS):
			cause = errNoStartTLS.Error()
		case errors.As(se.err, new(*net.OpError)):
			cause = "connection failed"
		case errors.As(se.err, new(*tls.CertificateVerificationError)):
			cause = "certificate not trusted"
		}
		return "smtp " + se.stage + ": " + cause
	case errors.Is(err, ErrInvalid):
		return "invalid message"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "cancelled"
	default:
		return "mail failed"
	}
}

var errNoStartTLS = errors.New("server does not offer STARTTLS")

// Send delivers m, bounded by the timeout and ctx.
func (s *SMTP) Send(ctx context.Context, m Message) error {
	body, err := m.Bytes()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	d := net.Dialer{}
	conn, err := d.DialContext(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return stageErr("dial", err)
	}
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	// Closing the connection when ctx ends unblocks any read or write.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	c, err := smtp.NewClient(conn, s.host)
	if err != nil {
		conn.Close()
		return stageErr("greeting", err)
	}
	defer c.Close()
	if err := c.Hello(s.cfg.HelloName); err != nil {
		return stageErr("ehlo", err)
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		return stageErr("starttls", errNoStartTLS)
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.cfg.TLS != nil {
		tlsCfg = s.cfg.TLS.Clone()
	}
	if tlsCfg.ServerName == "" {
		tlsCfg.ServerName = s.host
	}
	if err := c.StartTLS(tlsCfg); err != nil {
		return stageErr("starttls", err)
	}
	if s.cfg.Username != "" {
		pass, err := readSecret(s.cfg.PasswordFile)
		if err != nil {
			return stageErr("auth", err)
		}
		if err := c.Auth(smtp.PlainAuth("", s.cfg.Username, pass, s.host)); err != nil {
			return stageErr("auth", err)
		}
	}
	from, _ := mail.ParseAddress(m.From)
	if err := c.Mail(from.Address); err != nil {
		return stageErr("mail from", err)
	}
	for _, a := range m.To {
		addr, _ := mail.ParseAddress(a)
		if err := c.Rcpt(addr.Address); err != nil {
			return stageErr("rcpt to", err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return stageErr("data", err)
	}
	if _, err := w.Write(body); err != nil {
		return stageErr("data", err)
	}
	if err := w.Close(); err != nil {
		return stageErr("data", err)
	}
	if err := c.Quit(); err != nil {
		return stageErr("quit", err)
	}
	return nil
}

// Capture writes each message as an .eml file into a directory instead of
// sending it: the dev mode's mailbox, so the whole flow can be tried
// without a mail server.
type Capture struct {
	dir string
}

// NewCapture creates dir (0700) if needed.
func NewCapture(dir string) (*Capture, error) {
	if dir == "" {
		return nil, fmt.Errorf("%w: capture directory is empty", ErrInvalid)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return &Capture{dir: dir}, nil
}

// Dir is where the messages are written.
func (c *Capture) Dir() string { return c.dir }

// Send writes m as <date>-<SIRET>-<random>.eml (written aside, then
// renamed: a reader never sees half a message).
func (c *Capture) Send(_ context.Context, m Message) error {
	body, err := m.Bytes()
	if err != nil {
		return err
	}
	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	name := fmt.Sprintf("%s-%s-%s.eml", m.Date.UTC().Format("20060102T150405Z"), safeName(m.Consumer), hex.EncodeToString(suffix[:]))
	tmp := filepath.Join(c.dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, body, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(c.dir, name))
}

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-' {
			return r
		}
		return '_'
	}, s)
}
