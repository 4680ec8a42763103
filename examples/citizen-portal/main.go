// Command citizen-portal is a small town-hall web app showing a
// citizen-initiated call: the citizen logs in with FranceConnect (the dev
// provider of `relaisd dev` here), the portal passes the citizen's access
// token to Relais as `citizen_access_token` over mTLS, and shows the family
// quotient Relais returns, minimised to what the town hall is granted. No
// agent types an identity: the broker reads it from the provider.
//
//	go run ./examples/citizen-portal serve [--listen 127.0.0.1:8450] [--issuer URL] [--relais 127.0.0.1:4443] [--data-dir relais-dev]
//	go run ./examples/citizen-portal token --citizen "DUPONT Zoé" [--client-id citizen-portal]
//
// `token` goes through the real login flow headlessly and prints only the
// access token, for scripts and tests (see the README's grpcurl example).
// The token is never logged or stored: the portal keeps it in memory for the
// one request that uses it.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
	_ "time/tzdata" // Europe/Paris on machines without a zoneinfo database

	"github.com/relais-broker/relais/internal/devidp"
)

// Defaults shared by both modes.
const (
	defaultIssuer   = "https://127.0.0.1:8445"
	defaultDataDir  = "relais-dev"
	defaultClientID = devidp.ClientCitizenPortal
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  citizen-portal serve [flags]              the town-hall web app (citizen login, then a call to Relais)
  citizen-portal token --citizen LABEL      print an access token of a sandbox citizen (real login flow)
run "citizen-portal serve -h" or "citizen-portal token -h" for the flags
`)
}

// run is main without the process: testable.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serveCmd(ctx, args[1:], stdout, stderr)
	case "token":
		err = tokenCmd(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "citizen-portal: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "citizen-portal: %v\n", err)
		return 1
	}
	return 0
}

// idpFlags are the flags both modes need to reach the provider.
type idpFlags struct {
	issuer, clientID, clientSecret, idpCA, dataDir string
}

func (f *idpFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.issuer, "issuer", defaultIssuer, "OpenID provider issuer URL (the dev provider `relaisd dev` prints)")
	fs.StringVar(&f.clientID, "client-id", defaultClientID, "OAuth client id of the portal at the provider")
	fs.StringVar(&f.clientSecret, "client-secret-file", "", "file holding the client secret (confidential clients only)")
	fs.StringVar(&f.idpCA, "idp-ca", "", "CA bundle the provider's certificate chains to (default: the dev CA, DATA-DIR/dev/ca.pem)")
	fs.StringVar(&f.dataDir, "data-dir", defaultDataDir, "data directory of `relaisd dev` (dev CA and demo consumer credentials)")
}

func (f *idpFlags) secret() (string, error) {
	if f.clientSecret == "" {
		return "", nil
	}
	b, err := os.ReadFile(f.clientSecret)
	if err != nil {
		return "", fmt.Errorf("--client-secret-file: %w", err)
	}
	return string(trimNewline(b)), nil
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// httpClient trusts the provider's CA: --idp-ca, else the dev CA of the data
// directory, else the system roots.
func (f *idpFlags) httpClient() (*http.Client, error) {
	caFile := f.idpCA
	if caFile == "" {
		if dir, err := envDir(f.dataDir); err == nil {
			caFile = filepath.Join(dir, "ca.pem")
		}
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := loadPool(caFile)
		if err != nil {
			return nil, fmt.Errorf("provider ca: %w", err)
		}
		cfg.RootCAs = pool
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no certificate", file)
	}
	return pool, nil
}

func tokenCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var idp idpFlags
	idp.register(fs)
	citizen := fs.String("citizen", "", `display label of the sandbox citizen to log in as, e.g. "DUPONT Zoé"`)
	redirect := fs.String("redirect-url", devidp.DefaultLoopbackRedirect, "redirect URI announced to the provider (nothing needs to listen there)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("token: unexpected argument %q", fs.Arg(0))
	}
	if *citizen == "" {
		return errors.New(`token: --citizen is required, e.g. --citizen "DUPONT Zoé"`)
	}
	c, err := idp.httpClient()
	if err != nil {
		return err
	}
	secret, err := idp.secret()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tok, err := loginHeadless(ctx, devidp.HeadlessLogin{
		HTTPClient: c, Issuer: idp.issuer, ClientID: idp.clientID, ClientSecret: secret,
		RedirectURL: *redirect, Citizen: *citizen,
	})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}

func serveCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var idp idpFlags
	idp.register(fs)
	listen := fs.String("listen", "127.0.0.1:8450", "address of the web app (loopback: its redirect URI is http://ADDR/callback)")
	relais := fs.String("relais", "127.0.0.1:4443", "address of the Relais data API (gRPC over mTLS)")
	relaisName := fs.String("relais-server-name", "", "name to verify in the broker's certificate (default: the host of --relais)")
	consumer := fs.String("consumer", "mairie-exemple", "demo consumer whose credential (DATA-DIR/dev/consumers/NAME) the portal presents")
	certFile := fs.String("cert", "", "consumer certificate (default: the demo consumer's)")
	keyFile := fs.String("key", "", "consumer key (default: the demo consumer's)")
	caFile := fs.String("ca", "", "CA bundle of the broker (default: DATA-DIR/dev/ca.pem)")
	recipient := fs.String("recipient", "21990000100005", "SIRET of the body the data is for (access_context.recipient)")
	purpose := fs.String("purpose", "tarification_sociale", "purpose code granted for the service (access_context.purpose)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	idpClient, err := idp.httpClient()
	if err != nil {
		return err
	}
	secret, err := idp.secret()
	if err != nil {
		return err
	}
	creds, err := consumerCredentials(idp.dataDir, *consumer, *certFile, *keyFile, *caFile)
	if err != nil {
		return err
	}
	conn, err := dialRelais(*relais, *relaisName, creds)
	if err != nil {
		return err
	}
	defer conn.Close()
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	p, err := newPortal(portalConfig{
		Issuer: idp.issuer, ClientID: idp.clientID, ClientSecret: secret,
		RedirectURL: "http://" + lis.Addr().String() + "/callback",
		HTTPClient:  idpClient,
		Relais:      newRelaisClient(conn),
		Recipient:   *recipient, Purpose: *purpose,
		Logger: logger,
	})
	if err != nil {
		lis.Close()
		return err
	}
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	fmt.Fprintf(stdout, "citizen-portal: http://%s/ (provider %s, Relais %s)\n", lis.Addr(), idp.issuer, *relais)
	if err := srv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
