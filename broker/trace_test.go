package broker_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"

	"github.com/relais-broker/relais/broker"
	"github.com/relais-broker/relais/broker/audit"
	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/identity"
	"github.com/relais-broker/relais/broker/registry"
	"github.com/relais-broker/relais/broker/scope"
	"github.com/relais-broker/relais/internal/tlstest"
	familyquotientv1 "github.com/relais-broker/relais/proto/relais/familyquotient/v1"
)

// TestTraceIDInAuditAndLog: with the otelgrpc stats handler, each call's
// trace id is in its audit record and its log line, and is the id of the
// server span.
func TestTraceIDInAuditAndLog(t *testing.T) {
	rec := newSpanSink()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	pki := tlstest.New(t)
	now := time.Now()
	reg := registry.NewMemory([]registry.Consumer{{SIRET: sirenFull, Name: "Full", Status: registry.StatusActive}},
		[]registry.Grant{{Consumer: sirenFull, Service: fqService, Scopes: allFQScopes(), Purposes: []registry.Purpose{{Code: "cantine"}},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}})
	var logs bytes.Buffer
	auditLog := &audit.Memory{}
	b, err := broker.New(broker.Config{Registry: reg, Audit: auditLog, Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
		Sources: map[string]broker.Source{fqService: {ID: "fake", Adapter: &fakeAdapter{}}}})
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := b.NewGRPCServer(pki.ServerCreds(), grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tp))))
	addr := tlstest.Serve(t, srv)
	client := familyquotientv1.NewFamilyQuotientServiceClient(pki.Dial(t, addr, pki.Issue(t, identity.KindConsumer, sirenFull)))
	if _, err := client.GetFamilyQuotient(context.Background(), validFQ()); err != nil {
		t.Fatal(err)
	}
	// The server span ends after the client has its answer (the stats
	// handler closes it once the status is written): wait for it.
	want := rec.wait(t, func(sdktrace.ReadOnlySpan) bool { return true }).SpanContext().TraceID().String()
	recs := auditLog.Records()
	if len(recs) != 1 || recs[0].TraceID != want {
		t.Fatalf("audit trace id %q, want %q", recs[0].TraceID, want)
	}
	if !strings.Contains(logs.String(), `"trace_id":"`+want+`"`) {
		t.Fatalf("log line without the trace id: %s", logs.String())
	}
}

func allFQScopes() scope.Set {
	s, _ := catalog.Default().ServiceScopes(fqService)
	return s
}
