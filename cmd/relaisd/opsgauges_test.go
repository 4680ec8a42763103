package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/metrics"
	"github.com/relais-broker/relais/broker/ops"
	"github.com/relais-broker/relais/certs"
)

// unreachableCA is a real dev CA whose issuer endpoints fail, as a sealed
// Vault does.
type unreachableCA struct{ certs.Authority }

var errSealed = errors.New("vault is sealed")

func (unreachableCA) IssueServer(context.Context, []string, []net.IP, time.Duration) (*certs.Credential, error) {
	return nil, errSealed
}
func (unreachableCA) TrustBundle(context.Context) ([]byte, error)      { return nil, errSealed }
func (unreachableCA) RevokedSerials(context.Context) ([]string, error) { return nil, errSealed }

func scrapeText(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	raw, _ := io.ReadAll(rec.Body)
	return string(raw)
}

func TestObservedCACountsWhatTheAlertsWatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dev, err := certs.OpenDevCA(t.TempDir(), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	mets := metrics.New()
	ca := newObservedCA(dev, mets)
	ca.clock = func() time.Time { return time.Unix(1_800_000_000, 0) }
	if _, err := ca.IssueClient(ctx, certs.ClientRequest{Kind: identity.KindConsumer, ID: "21990000100005"}); err != nil {
		t.Fatal(err)
	}
	// A bad request is the caller's error: not an issuer failure.
	if _, err := ca.IssueClient(ctx, certs.ClientRequest{Kind: identity.KindConsumer, ID: "123"}); err == nil {
		t.Fatal("a bad SIRET was issued a certificate")
	}
	if _, err := ca.IssueServer(ctx, []string{"localhost"}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.TrustBundle(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.RevokedSerials(ctx); err != nil {
		t.Fatal(err)
	}
	down := newObservedCA(unreachableCA{dev}, mets)
	_, _ = down.IssueServer(ctx, []string{"localhost"}, nil, time.Hour)
	_, _ = down.TrustBundle(ctx)
	_, _ = down.RevokedSerials(ctx)
	text := scrapeText(t, mets)
	for _, want := range []string{
		`relais_certificate_issuances_total{kind="consumer",outcome="ok"} 1`,
		`relais_certificate_issuances_total{kind="server",outcome="ok"} 1`,
		`relais_certificate_issuances_total{kind="server",outcome="error"} 1`,
		`relais_trust_bundle_last_success_timestamp_seconds 1.8e+09`,
		`relais_trust_bundle_reload_failures_total 1`,
		`relais_crl_last_success_timestamp_seconds 1.8e+09`,
		`relais_crl_refresh_failures_total 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %s", want)
		}
	}
	if strings.Contains(text, `kind="consumer",outcome="error"`) {
		t.Error("a refused request counted as an issuer failure")
	}
}

func TestReadinessResults(t *testing.T) {
	t.Parallel()
	bad := errors.New("audit log cannot commit")
	got := readinessResults([]ops.Check{{Name: "registry", Fn: func(context.Context) error { return nil }}, {Name: "audit_log", Fn: func(context.Context) error { return bad }}})(context.Background())
	if len(got) != 2 || got["registry"] != nil || !errors.Is(got["audit_log"], bad) {
		t.Fatalf("results %v", got)
	}
}
