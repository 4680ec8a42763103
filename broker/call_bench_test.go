package broker_test

import (
	"context"
	"testing"

	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/registry"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
)

// BenchmarkCall is one whole data-API call in process, over real TLS on
// loopback: the chain (authentication, decoding, validation, grants, rate
// limit, quota), the source adapter (an in-memory answer), minimisation,
// the response check, the audit record (in memory: the durable log has
// its own benchmarks) and the log line. Its ns/op, B/op and allocs/op are
// the broker's own cost per call, the client's included.
func BenchmarkCall(b *testing.B) {
	h := newHarness(b, registry.Quota{})
	client := familyquotientv1.NewFamilyQuotientServiceClient(h.conn(b, identity.KindConsumer, sirenFull))
	req := validFQ()
	ctx := context.Background()
	if _, err := client.GetFamilyQuotient(ctx, req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.GetFamilyQuotient(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
