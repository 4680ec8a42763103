package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/certs"
	"github.com/relais-broker/relais/certs/renewer"
	adminv1 "github.com/relais-broker/relais/proto/relais/admin/v1"
)

// callTimeout bounds every network call of a command.
const callTimeout = 30 * time.Second

func runCredentials(ctx context.Context, verb string, args []string, stdout, stderr io.Writer) int {
	switch verb {
	case "issue", "sign":
		return runIssue(ctx, verb, args, stdout, stderr)
	case "renew":
		return runRenew(ctx, args, stdout, stderr)
	case "revoke":
		return runRevoke(ctx, args, stdout, stderr)
	case "list":
		return runCredentialsList(ctx, args, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "relaisctl: unknown credentials command %q (issue, sign, renew, revoke, list)\n", verb)
		return 2
	}
}

// runIssue issues a credential (issue: the CA makes the key; sign: over
// the holder's CSR) and writes it to --out.
func runIssue(ctx context.Context, verb string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relaisctl credentials "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	ca := addCAFlags(fs)
	af := addAdminFlags(fs)
	record := fs.Bool("record", true, "record the certificate in the broker's registry through the admin API (best effort)")
	consumer := fs.String("consumer", "", "SIRET of the consumer the certificate is for")
	operator := fs.String("operator", "", "id of the operator the certificate is for (instead of --consumer)")
	name := fs.String("name", "", "name in the certificate subject (the body's name); defaults to the id")
	ttl := fs.Duration("ttl", certs.DefaultTTL, "certificate lifetime (at most "+certs.MaxTTL.String()+"; keep it within the grant)")
	out := fs.String("out", "", "directory to write cert.pem, ca.pem (and key.pem for issue) into")
	csrFile := ""
	if verb == "sign" {
		fs.StringVar(&csrFile, "csr", "", "PEM CSR file from the certificate holder")
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	req, err := clientRequest(*consumer, *operator, *name, *ttl)
	if err == nil && *out == "" {
		err = errors.New("--out is required")
	}
	if err == nil && verb == "sign" && csrFile == "" {
		err = errors.New("--csr is required")
	}
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err != nil {
		fmt.Fprintf(stderr, "relaisctl credentials %s: %v\n", verb, err)
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	authority, closeCA, err := ca.open(ctx, req)
	if err != nil {
		fmt.Fprintf(stderr, "relaisctl credentials %s: %v\n", verb, err)
		return 1
	}
	defer closeCA()
	var cred *certs.Credential
	if verb == "sign" {
		csr, rerr := os.ReadFile(csrFile)
		if rerr != nil {
			fmt.Fprintf(stderr, "relaisctl credentials sign: %v\n", rerr)
			return 1
		}
		cred, err = authority.SignClientCSR(ctx, req, csr)
	} else {
		cred, err = authority.IssueClient(ctx, req)
	}
	if err != nil {
		fmt.Fprintf(stderr, "relaisctl credentials %s: %v\n", verb, err)
		return 1
	}
	bundle, err := authority.TrustBundle(ctx)
	if err == nil {
		err = certs.WriteCredential(*out, cred, bundle)
	}
	if err != nil {
		fmt.Fprintf(stderr, "relaisctl credentials %s: %v\n", verb, err)
		return 1
	}
	fmt.Fprintf(stdout, "issued %s for %s, serial %s, valid until %s\n", filepath.Join(*out, certs.CertFile),
		identity.URI(req.Kind, req.ID), cred.Serial, cred.NotAfter.UTC().Format(time.RFC3339))
	if *record {
		recordIssued(ctx, af, cred.CertPEM, stderr)
	}
	return 0
}

func clientRequest(consumer, operator, name string, ttl time.Duration) (certs.ClientRequest, error) {
	switch {
	case consumer != "" && operator != "":
		return certs.ClientRequest{}, errors.New("give --consumer or --operator, not both")
	case consumer != "":
		if err := certs.ValidSIRET(consumer); err != nil {
			return certs.ClientRequest{}, fmt.Errorf("--consumer: %w", err)
		}
		return certs.ClientRequest{Kind: identity.KindConsumer, ID: consumer, CommonName: name, TTL: ttl}, nil
	case operator != "":
		return certs.ClientRequest{Kind: identity.KindOperator, ID: operator, CommonName: name, TTL: ttl}, nil
	default:
		return certs.ClientRequest{}, errors.New("--consumer SIRET or --operator ID is required")
	}
}

// runRenew renews the credential in --dir through the broker's
// CredentialService, as a consumer's software would.
func runRenew(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relaisctl credentials renew", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "the consumer's credential directory (cert.pem, key.pem, ca.pem); rewritten in place")
	addr := fs.String("broker", "127.0.0.1:4443", "address of the broker's data API")
	serverName := fs.String("server-name", "localhost", "name the broker's certificate must carry")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "relaisctl credentials renew: --dir is required, and nothing else")
		return 2
	}
	src, conn, err := dialWith(*dir, *addr, *serverName)
	if err != nil {
		fmt.Fprintf(stderr, "relaisctl credentials renew: %v\n", err)
		return 1
	}
	defer conn.Close()
	r, err := renewer.New(renewer.Config{Source: src, Conn: conn, Dir: *dir})
	if err == nil {
		ctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		err = r.RenewNow(ctx)
	}
	if err != nil {
		fmt.Fprintf(stderr, "relaisctl credentials renew: %v\n", err)
		return 1
	}
	leaf := src.Certificate().Leaf
	fmt.Fprintf(stdout, "renewed %s: serial %s, valid until %s\n", filepath.Join(*dir, certs.CertFile), identity.SerialHex(leaf), leaf.NotAfter.UTC().Format(time.RFC3339))
	return 0
}

// runRevoke revokes through the broker's admin API, which revokes in the
// CA and in the running broker at once.
func runRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relaisctl credentials revoke", flag.ContinueOnError)
	af := addAdminFlags(fs)
	consumer := fs.String("consumer", "", "revoke every unexpired certificate of this SIRET (instead of a SERIAL argument)")
	reason := fs.String("reason", "", "why, for the audit log (no personal data)")
	c := command{flags: fs, admin: af, run: func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error {
		req := &adminv1.RevokeCredentialRequest{Reason: *reason}
		switch {
		case *consumer != "" && fs.NArg() == 0:
			req.Target = &adminv1.RevokeCredentialRequest_ConsumerSiret{ConsumerSiret: *consumer}
		case *consumer == "" && fs.NArg() == 1:
			req.Target = &adminv1.RevokeCredentialRequest_Serial{Serial: fs.Arg(0)}
		default:
			return usageError{"give one SERIAL or --consumer SIRET"}
		}
		resp, err := adminv1.NewCredentialAdminServiceClient(conn).RevokeCredential(ctx, req)
		if err != nil {
			return err
		}
		if len(resp.GetSerials()) == 0 {
			fmt.Fprintln(out, "nothing to revoke: no unexpired certificate")
		}
		for _, s := range resp.GetSerials() {
			fmt.Fprintf(out, "revoked %s\n", s)
		}
		return nil
	}}
	return runAdmin(ctx, "credentials revoke", c, args, stdout, stderr)
}

// dialWith connects to addr over mTLS with the credential in dir.
func dialWith(dir, addr, serverName string) (*certs.CertSource, *grpc.ClientConn, error) {
	src := certs.NewCertSource()
	certPEM, err := os.ReadFile(filepath.Join(dir, certs.CertFile))
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, certs.KeyFile))
	if err != nil {
		return nil, nil, err
	}
	if err := src.Set(certPEM, keyPEM); err != nil {
		return nil, nil, err
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, certs.CAFile))
	if err != nil {
		return nil, nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, nil, fmt.Errorf("%s holds no certificate", filepath.Join(dir, certs.CAFile))
	}
	cfg := certs.ClientConfig(src, roots, serverName)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return nil, nil, err
	}
	return src, conn, nil
}

// reorderFlags moves flags after positional arguments to the front, so
// that `revoke SERIAL --reason x` works like `revoke --reason x SERIAL`.
func reorderFlags(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if len(a) > 1 && a[0] == '-' {
			flags = append(flags, a)
			name := a[1:]
			if name != "" && name[0] == '-' {
				name = name[1:]
			}
			if f := fs.Lookup(name); f != nil && i+1 < len(args) && !strings.Contains(a, "=") {
				if _, isBool := f.Value.(interface{ IsBoolFlag() bool }); !isBool {
					flags = append(flags, args[i+1])
					i++
				}
			}
			continue
		}
		pos = append(pos, a)
	}
	return append(flags, pos...)
}
