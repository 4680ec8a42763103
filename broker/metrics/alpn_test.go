package metrics_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"math/big"
	"net/url"
	"strings"
	"testing"

	"github.com/relais-broker/relais/broker/metrics"
)

func TestNoALPNCountsAndLogs(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	var logs bytes.Buffer
	hook := m.RegisterNoALPN(slog.New(slog.NewTextHandler(&logs, nil)))
	if got := values(families(t, m)["relais_tls_no_alpn_total"]); got[""] != 0 || len(got) != 1 {
		t.Fatalf("before any connection: %v, want one sample at 0", got)
	}
	consumer := &x509.Certificate{SerialNumber: big.NewInt(0x2a), URIs: []*url.URL{{Scheme: "urn", Opaque: "relais:consumer:21990000100005"}}}
	operator := &x509.Certificate{SerialNumber: big.NewInt(0x2b), URIs: []*url.URL{{Scheme: "urn", Opaque: "relais:operator:jdupont"}}}
	hook(tls.ConnectionState{Version: tls.VersionTLS13, PeerCertificates: []*x509.Certificate{consumer}})
	hook(tls.ConnectionState{Version: tls.VersionTLS12, PeerCertificates: []*x509.Certificate{operator}})
	if got := values(families(t, m)["relais_tls_no_alpn_total"]); got[""] != 2 {
		t.Fatalf("after two connections: %v", got)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want one line per connection, got:\n%s", logs.String())
	}
	for _, want := range []string{metrics.NoALPNMessage, `tls_version="TLS 1.3"`, "consumer=21990000100005", "serial=2a"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("missing %q in %s", want, lines[0])
		}
	}
	if strings.Contains(lines[1], "jdupont") || !strings.Contains(lines[1], "kind=operator") {
		t.Errorf("an operator's login must not be logged: %s", lines[1])
	}
}
