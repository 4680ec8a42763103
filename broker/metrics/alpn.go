package metrics

import (
	"crypto/tls"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relais-broker/relais/broker/identity"
)

// NoALPNMessage is the log line of a TLS connection on a gRPC port that
// negotiated no ALPN protocol: gRPC closes it without a word to the
// client, so this line is the only trace of why the client failed.
const NoALPNMessage = "tls connection closed: the client negotiated no ALPN protocol (gRPC needs h2; see docs/clients.md)"

// RegisterNoALPN registers relais_tls_no_alpn_total and returns the hook
// for certs.OnNoALPN on the gRPC listeners' TLS configuration: it counts
// the connection and logs one line with the TLS version, the certificate
// serial and, for a consumer, its SIRET (a public body, never a person).
// Call it once per Metrics.
func (m *Metrics) RegisterNoALPN(logger *slog.Logger) func(tls.ConnectionState) {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "relais_tls_no_alpn_total",
		Help: "TLS connections on the gRPC listeners closed because the client negotiated no ALPN protocol (it must offer h2)."})
	m.reg.MustRegister(c)
	return func(cs tls.ConnectionState) {
		c.Inc()
		attrs := []any{"tls_version", tls.VersionName(cs.Version)}
		if len(cs.PeerCertificates) > 0 {
			id, err := identity.FromCertificate(cs.PeerCertificates[0])
			switch {
			case err != nil:
			case id.Kind == identity.KindConsumer:
				attrs = append(attrs, "consumer", id.ID, "serial", id.Serial)
			default:
				// An operator's identifier may be a person's login: the
				// serial is enough to find the credential.
				attrs = append(attrs, "kind", string(id.Kind), "serial", id.Serial)
			}
		}
		logger.Warn(NoALPNMessage, attrs...)
	}
}
