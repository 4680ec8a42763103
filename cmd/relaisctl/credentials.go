package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/certs"
	"github.com/relais-broker/relais/certs/renewer"
	adminv1 "github.com/relais-broker/relais/proto/relais/admin/v1"
)

// callTimeout bounds every network call of a command.
const callTimeout = 30 * time.Second

func credentialsCmd() *cobra.Command {
	return group("credentials", "Consumer and operator certificates: issue, sign a CSR, renew, revoke, list",
		issueCmd("issue"), issueCmd("sign"), renewCmd(), revokeCmd(), credentialsListCmd())
}

// issueCmd issues a credential (issue: the CA makes the key; sign: over
// the holder's CSR) and writes it to --out. A consumer must be in the
// broker's registry first (--force to skip the check).
func issueCmd(verb string) *cobra.Command {
	use, short, example := "issue (--consumer SIRET | --operator ID) --out DIR", "Issue a certificate and its key (the CA makes the key)",
		`  relaisctl credentials issue --consumer 21750000500012 --name 'Mairie de Paris' --out paris/
  relaisctl credentials issue --dev-ca relais-dev/dev --operator alice --out alice/`
	if verb == "sign" {
		use, short, example = "sign (--consumer SIRET | --operator ID) --csr FILE --out DIR", "Sign a consumer's CSR (the consumer keeps its key; recommended)",
			`  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout mairie/key.pem -out mairie/req.csr \
    -subj "/CN=Mairie" -addext "subjectAltName=URI:urn:relais:consumer:21990000100005"
  relaisctl credentials sign --consumer 21990000100005 --name Mairie --csr mairie/req.csr --out mairie/
  relaisctl credentials renew --dir mairie/      # the directory is ready as is`
	}
	return leaf(use, short, example, func(fs *pflag.FlagSet) body {
		ca := addCAFlags(fs)
		af := addConnFlags(fs)
		record := fs.Bool("record", true, "record the certificate in the broker's registry through the admin API (best effort)")
		force := fs.Bool("force", false, "issue for a SIRET the broker's registry does not hold (or without asking it)")
		consumer := fs.String("consumer", "", "SIRET of the consumer the certificate is for")
		operator := fs.String("operator", "", "id of the operator the certificate is for (instead of --consumer)")
		name := fs.String("name", "", "name in the certificate subject (the body's name); defaults to the id")
		ttl := fs.Duration("ttl", certs.DefaultTTL, "certificate lifetime (at most "+certs.MaxTTL.String()+"; keep it within the grant)")
		out := fs.String("out", "", "directory to write cert.pem, ca.pem (and key.pem for issue) into")
		var csrFile, keyFile string
		if verb == "sign" {
			fs.StringVar(&csrFile, "csr", "", "PEM CSR file from the certificate holder")
			fs.StringVar(&keyFile, "key", "", "the holder's private key, copied to DIR/key.pem (0600) so that renew --dir works as is (default: key.pem of --out, else next to the CSR)")
		}
		return func(ctx context.Context, stdout, stderr io.Writer) int {
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
			if req.Kind == identity.KindConsumer && !*force {
				if err := checkRegistered(ctx, af, req.ID); err != nil {
					fmt.Fprintf(stderr, "relaisctl credentials %s: %v\n", verb, err)
					return 1
				}
			}
			var csr, holderKey []byte
			if verb == "sign" {
				if csr, err = os.ReadFile(csrFile); err == nil {
					holderKey, err = findHolderKey(keyFile, *out, csrFile)
				}
				if err != nil {
					fmt.Fprintf(stderr, "relaisctl credentials sign: %v\n", err)
					return 1
				}
			}
			authority, closeCA, err := ca.open(ctx, req)
			if err != nil {
				fmt.Fprintf(stderr, "relaisctl credentials %s: %v\n", verb, err)
				return 1
			}
			defer closeCA()
			var cred *certs.Credential
			if verb == "sign" {
				cred, err = authority.SignClientCSR(ctx, req, csr)
				if err == nil && holderKey != nil {
					if _, perr := tls.X509KeyPair(cred.CertPEM, holderKey); perr != nil {
						err = errors.New("the private key given (--key, or key.pem found) is not the one of the CSR: nothing written")
					} else {
						cred.KeyPEM = holderKey
					}
				}
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
			if verb == "sign" && holderKey == nil {
				fmt.Fprintf(stderr, "relaisctl credentials sign: note: no private key next to the CSR nor in %s: put the holder's key at %s for credentials renew --dir\n", *out, filepath.Join(*out, certs.KeyFile))
			}
			if *record {
				recordIssued(ctx, af, cred.CertPEM, stderr)
			}
			return 0
		}
	})
}

// checkRegistered refuses a consumer the broker's registry does not
// hold: a certificate for a body nobody onboarded is a mistake (a typo
// in the SIRET) more often than not.
func checkRegistered(ctx context.Context, af *adminFlags, siret string) error {
	conn, err := af.dial()
	if err == nil {
		defer conn.Close()
		_, err = adminv1.NewConsumerAdminServiceClient(conn).GetConsumer(ctx, &adminv1.GetConsumerRequest{Siret: siret})
	}
	switch {
	case err == nil:
		return nil
	case status.Code(err) == codes.NotFound:
		return fmt.Errorf("consumer %s is not in the broker's registry: add it first (relaisctl consumers add %s --name …), or give --force", siret, siret)
	default:
		return fmt.Errorf("cannot check that consumer %s is in the broker's registry (%s): give --admin-addr/--operator-dir or a context, or --force", siret, describe(err))
	}
}

// findHolderKey returns the private key that made the CSR: --key, else
// key.pem of the output directory, else key.pem next to the CSR; nil
// when there is none (the holder keeps it elsewhere).
func findHolderKey(keyFile, out, csrFile string) ([]byte, error) {
	if keyFile != "" {
		return os.ReadFile(keyFile)
	}
	for _, p := range []string{filepath.Join(out, certs.KeyFile), filepath.Join(filepath.Dir(csrFile), certs.KeyFile)} {
		raw, err := os.ReadFile(p)
		if err == nil {
			return raw, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	return nil, nil
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

// renewCmd renews the credential in --dir through the broker's
// CredentialService, as a consumer's software would.
func renewCmd() *cobra.Command {
	return leaf("renew --dir DIR [--broker ADDR]", "Renew a consumer credential through the broker (consumer side)",
		"  relaisctl credentials renew --dir mairie/ --broker relais.example.fr:4443", func(fs *pflag.FlagSet) body {
			dir := fs.String("dir", "", "the consumer's credential directory (cert.pem, key.pem, ca.pem); rewritten in place")
			fs.String("broker", defaultBrokerAddr, "address of the broker's data API (else $"+envBrokerAddr+", else the context)")
			fs.String("server-name", defaultServerName, "name the broker's certificate must carry (else $"+envServerName+", else the context)")
			ctxName := fs.String("context", "", "the named context of the config file to use")
			return func(ctx context.Context, stdout, stderr io.Writer) int {
				if *dir == "" || fs.NArg() > 0 {
					fmt.Fprintln(stderr, "relaisctl credentials renew: --dir is required, and nothing else")
					return 2
				}
				s, err := resolveConn(fs, *ctxName)
				if err != nil {
					fmt.Fprintf(stderr, "relaisctl credentials renew: %v\n", err)
					return 1
				}
				src, conn, err := dialWith(*dir, s.BrokerAddr.Value, s.ServerName.Value)
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
		})
}

// revokeCmd revokes through the broker's admin API, which revokes in the
// CA and in the running broker at once.
func revokeCmd() *cobra.Command {
	return adminLeaf("revoke (SERIAL | --consumer SIRET) [--reason R]", "Revoke a certificate, or all of a consumer's, in the CA and the broker at once",
		"  relaisctl credentials revoke 4554043b5466c480 --reason 'poste compromis'\n  relaisctl credentials revoke --consumer 21750000500012",
		func(fs *pflag.FlagSet, af *adminFlags) func(context.Context, *grpc.ClientConn, io.Writer) error {
			consumer := fs.String("consumer", "", "revoke every unexpired certificate of this SIRET (instead of a SERIAL argument)")
			reason := fs.String("reason", "", "why, for the audit log (no personal data)")
			return func(ctx context.Context, conn *grpc.ClientConn, out io.Writer) error {
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
				if af.format() == outJSON || af.format() == outJSONL {
					return render(out, af.format(), view{whole: resp, items: []any{resp}})
				}
				if len(resp.GetSerials()) == 0 {
					fmt.Fprintln(out, "nothing to revoke: no unexpired certificate")
				}
				for _, s := range resp.GetSerials() {
					fmt.Fprintf(out, "revoked %s\n", s)
				}
				return nil
			}
		})
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
