package reminders_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// mailServer is a real SMTP server (github.com/emersion/go-smtp) on a
// loopback port, with STARTTLS on a certificate for 127.0.0.1, that keeps
// what it receives.
type mailServer struct {
	Addr  string
	Roots *x509.CertPool

	mu       sync.Mutex
	received []received
	// failRcpt, when not 0, refuses every recipient with that code.
	failRcpt int
	// user/pass, when set, are required (AUTH PLAIN).
	user, pass string
	authed     []string
}

// received is one delivered message.
type received struct {
	From string
	To   []string
	Msg  *mail.Message
	Body string
}

type serverOpts struct {
	noTLS      bool
	user, pass string
}

func startMailServer(t *testing.T, o serverOpts) *mailServer {
	t.Helper()
	ms := &mailServer{user: o.user, pass: o.pass}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{ms: ms}, nil }))
	srv.Domain = "mail.test"
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	if !o.noTLS {
		cert, roots := loopbackCert(t)
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		ms.Roots = roots
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ms.Addr = l.Addr().String()
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }()
	// Closing the listener too: a Close that runs before Serve has
	// registered it would leave Serve accepting.
	t.Cleanup(func() { _ = srv.Close(); _ = l.Close(); <-done })
	return ms
}

func (ms *mailServer) setFailRcpt(code int) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.failRcpt = code
}

func (ms *mailServer) messages() []received {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return append([]received(nil), ms.received...)
}

type session struct {
	ms     *mailServer
	authed bool
	from   string
	to     []string
}

func (s *session) AuthMechanisms() []string {
	if s.ms.user == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != s.ms.user || pass != s.ms.pass {
			return errors.New("invalid credentials")
		}
		s.authed = true
		s.ms.mu.Lock()
		s.ms.authed = append(s.ms.authed, user)
		s.ms.mu.Unlock()
		return nil
	}), nil
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if s.ms.user != "" && !s.authed {
		return smtp.ErrAuthRequired
	}
	s.from = from
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.ms.mu.Lock()
	code := s.ms.failRcpt
	s.ms.mu.Unlock()
	if code != 0 {
		return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "mailbox <" + to + "> unavailable"}
	}
	s.to = append(s.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	msg, err := mail.ReadMessage(r)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		return err
	}
	to := append([]string(nil), s.to...)
	sort.Strings(to)
	s.ms.mu.Lock()
	s.ms.received = append(s.ms.received, received{From: s.from, To: to, Msg: msg, Body: strings.ReplaceAll(string(body), "\r\n", "\n")})
	s.ms.mu.Unlock()
	return nil
}

func (s *session) Reset()        { s.from, s.to = "", nil }
func (s *session) Logout() error { return nil }

// loopbackCert makes a self-signed certificate for 127.0.0.1 and the pool
// that trusts it.
func loopbackCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mail.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
