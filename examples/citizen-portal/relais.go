package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
)

// envDir finds where `relaisd dev` wrote the trust bundle and the demo
// credentials: DATA/dev (embedded CA) or DATA/vault (Vault), or DATA itself.
func envDir(dataDir string) (string, error) {
	for _, d := range []string{filepath.Join(dataDir, "dev"), filepath.Join(dataDir, "vault"), dataDir} {
		if _, err := os.Stat(filepath.Join(d, "ca.pem")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("no ca.pem under %s/dev, %s/vault or %s: start `relaisd dev --data-dir %s` first, or pass --ca/--cert/--key", dataDir, dataDir, dataDir, dataDir)
}

// mtlsCredentials is the consumer's identity and the broker's trust anchor.
type mtlsCredentials struct {
	cert  tls.Certificate
	roots *x509.CertPool
}

// consumerCredentials loads the consumer credential as the other examples
// do: DATA/dev/consumers/NAME/{cert,key}.pem and DATA/dev/ca.pem, each
// overridable.
func consumerCredentials(dataDir, consumer, certFile, keyFile, caFile string) (*mtlsCredentials, error) {
	if certFile == "" || keyFile == "" || caFile == "" {
		dir, err := envDir(dataDir)
		if err != nil {
			return nil, err
		}
		if certFile == "" {
			certFile = filepath.Join(dir, "consumers", consumer, "cert.pem")
		}
		if keyFile == "" {
			keyFile = filepath.Join(dir, "consumers", consumer, "key.pem")
		}
		if caFile == "" {
			caFile = filepath.Join(dir, "ca.pem")
		}
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("consumer credential: %w", err)
	}
	roots, err := loadPool(caFile)
	if err != nil {
		return nil, fmt.Errorf("broker ca: %w", err)
	}
	return &mtlsCredentials{cert: pair, roots: roots}, nil
}

// dialRelais opens the mTLS connection to the data API (lazily: grpc
// connects on the first call).
func dialRelais(addr, serverName string, c *mtlsCredentials) (*grpc.ClientConn, error) {
	if serverName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("--relais: %w", err)
		}
		serverName = host
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{c.cert},
		RootCAs:      c.roots,
		ServerName:   serverName,
		MinVersion:   tls.VersionTLS12,
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return nil, fmt.Errorf("--relais: %w", err)
	}
	return conn, nil
}

// familyQuotient is the one call the portal makes.
type familyQuotient interface {
	GetFamilyQuotient(ctx context.Context, recipient, purpose, caseRef, citizenToken string) (*familyquotientv1.GetFamilyQuotientResponse, error)
}

type relaisClient struct {
	c familyquotientv1.FamilyQuotientServiceClient
}

func newRelaisClient(conn grpc.ClientConnInterface) familyQuotient {
	return relaisClient{c: familyquotientv1.NewFamilyQuotientServiceClient(conn)}
}

// GetFamilyQuotient designates the subject by the citizen's login: the
// token goes in the request and nowhere else.
func (r relaisClient) GetFamilyQuotient(ctx context.Context, recipient, purpose, caseRef, token string) (*familyquotientv1.GetFamilyQuotientResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return r.c.GetFamilyQuotient(ctx, &familyquotientv1.GetFamilyQuotientRequest{
		AccessContext:      &commonv1.AccessContext{Recipient: recipient, Purpose: purpose, CaseReference: caseRef},
		CitizenAccessToken: token,
	})
}

// refusal is a Relais error decoded from its status details.
type refusal struct {
	Code        codes.Code
	Reason      string // ErrorInfo.reason, "" when the broker sent none
	Message     string
	RetryAfter  time.Duration
	Violations  []string
	Explanation string // for the citizen, in French
}

// decodeError reads the gRPC status Relais answers: code, ErrorInfo reason,
// RetryInfo delay, BadRequest field violations.
func decodeError(err error) refusal {
	st, ok := status.FromError(err)
	if !ok {
		if errors.Is(err, context.DeadlineExceeded) {
			st = status.New(codes.DeadlineExceeded, "relais did not answer in time")
		} else {
			st = status.New(codes.Unknown, "relais call failed")
		}
	}
	r := refusal{Code: st.Code(), Message: st.Message()}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			r.Reason = d.GetReason()
		case *errdetails.RetryInfo:
			r.RetryAfter = d.GetRetryDelay().AsDuration()
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				r.Violations = append(r.Violations, v.GetField())
			}
		}
	}
	r.Explanation = explain(r)
	return r
}

// explanations says, for the reasons a citizen-initiated call can meet,
// what the citizen should understand.
var explanations = map[string]string{
	"citizen_token_invalid":              "Votre connexion n'a pas pu être vérifiée. Reconnectez-vous.",
	"citizen_token_expired":              "Votre connexion a expiré. Reconnectez-vous.",
	"citizen_token_wrong_audience":       "Cette connexion n'a pas été délivrée pour interroger Relais.",
	"citizen_token_wrong_issuer":         "Cette connexion vient d'un fournisseur d'identité que Relais ne connaît pas.",
	"citizen_login_too_weak":             "Le niveau de votre connexion est insuffisant pour ce service.",
	"citizen_claims_invalid":             "Le fournisseur d'identité a transmis une identité incomplète.",
	"citizen_login_not_configured":       "La connexion citoyenne n'est pas configurée sur ce Relais.",
	"identity_provider_unavailable":      "Le fournisseur d'identité est momentanément indisponible. Réessayez dans un instant.",
	"identity_provider_invalid_response": "Le fournisseur d'identité a répondu de façon inattendue.",
	"designation_not_granted":            "La mairie n'est pas habilitée à vous désigner par votre connexion pour ce service.",
	"subject_not_found":                  "L'organisme source ne vous connaît pas : aucune donnée à afficher.",
	"subject_not_identifiable":           "Plusieurs personnes correspondent à votre identité : l'organisme source ne peut pas répondre.",
	"source_unavailable":                 "L'organisme source est momentanément indisponible. Réessayez plus tard.",
	"source_timeout":                     "L'organisme source n'a pas répondu à temps. Réessayez plus tard.",
	"no_grant":                           "La mairie n'est pas habilitée à consulter ce service.",
	"purpose_not_granted":                "La finalité de cette démarche n'est pas accordée à la mairie.",
	"rate_limited":                       "Trop de demandes en même temps. Réessayez dans un instant.",
}

func explain(r refusal) string {
	if e, ok := explanations[r.Reason]; ok {
		return e
	}
	if r.Code == codes.Unavailable || r.Code == codes.DeadlineExceeded {
		return "Relais est momentanément injoignable. Réessayez plus tard."
	}
	return "La demande a été refusée."
}
