package main

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/relais-broker/relais/broker/metrics"
	"github.com/relais-broker/relais/broker/ops"
	"github.com/relais-broker/relais/certs"
)

// observedCA is the CA as the background loops and the admin API use it,
// counting what the alert rules watch: certificate issuance outcomes by
// kind, trust bundle reads and CRL fetches. Every other capability of the
// Authority passes through unchanged.
type observedCA struct {
	certs.Authority
	mets  *metrics.Metrics
	clock func() time.Time
}

func newObservedCA(ca certs.Authority, mets *metrics.Metrics) observedCA {
	return observedCA{Authority: ca, mets: mets, clock: time.Now}
}

// IssueClient implements certs.Issuer.
func (o observedCA) IssueClient(ctx context.Context, req certs.ClientRequest) (*certs.Credential, error) {
	c, err := o.Authority.IssueClient(ctx, req)
	o.issued(ctx, string(req.Kind), err)
	return c, err
}

// SignClientCSR implements certs.Issuer. A refused CSR is the caller's
// error, not the issuer's: only other failures count.
func (o observedCA) SignClientCSR(ctx context.Context, req certs.ClientRequest, csrPEM []byte) (*certs.Credential, error) {
	c, err := o.Authority.SignClientCSR(ctx, req, csrPEM)
	o.issued(ctx, string(req.Kind), err)
	return c, err
}

// IssueServer implements certs.Issuer.
func (o observedCA) IssueServer(ctx context.Context, dnsNames []string, ips []net.IP, ttl time.Duration) (*certs.Credential, error) {
	c, err := o.Authority.IssueServer(ctx, dnsNames, ips, ttl)
	o.issued(ctx, metrics.IssueServer, err)
	return c, err
}

func (o observedCA) issued(ctx context.Context, kind string, err error) {
	if ctx.Err() != nil || isRequestError(err) {
		return
	}
	o.mets.ObserveIssuance(kind, err)
}

func isRequestError(err error) bool {
	return err != nil && (errors.Is(err, certs.ErrInvalidCSR) || errors.Is(err, certs.ErrInvalidRequest))
}

// TrustBundle implements certs.Issuer.
func (o observedCA) TrustBundle(ctx context.Context) ([]byte, error) {
	b, err := o.Authority.TrustBundle(ctx)
	if ctx.Err() == nil {
		o.mets.ObserveTrustReload(o.clock(), err)
	}
	return b, err
}

// RevokedSerials implements certs.CRLSource.
func (o observedCA) RevokedSerials(ctx context.Context) ([]string, error) {
	s, err := o.Authority.RevokedSerials(ctx)
	if ctx.Err() == nil {
		o.mets.ObserveCRLRefresh(o.clock(), err)
	}
	return s, err
}

// readinessResults runs the /readyz checks for metrics.WatchReadiness.
func readinessResults(checks []ops.Check) func(ctx context.Context) map[string]error {
	return func(ctx context.Context) map[string]error {
		out := make(map[string]error, len(checks))
		for _, c := range checks {
			out[c.Name] = c.Fn(ctx)
		}
		return out
	}
}
