// Package tracing sets up OpenTelemetry for relaisd: every call gets a
// trace (its id goes into the audit record and the log line), exported
// over OTLP/gRPC when an endpoint is configured, kept local otherwise.
// Spans carry method and status only — otelgrpc records no message
// content, so no personal data leaves in traces.
package tracing

import (
	"context"
	"fmt"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
)

// Config chooses the exporter.
type Config struct {
	// Exporter is "none" (ids only, the default) or "otlp".
	Exporter string `yaml:"exporter"`
	// Endpoint is the OTLP/gRPC collector, host:port.
	Endpoint string `yaml:"endpoint"`
	// Insecure sends to the collector without TLS (a collector on loopback).
	Insecure bool `yaml:"insecure"`
}

// Tracing is a configured tracer provider.
type Tracing struct {
	tp *sdktrace.TracerProvider
}

// Setup builds the provider; Shutdown flushes it.
func Setup(ctx context.Context, cfg Config) (*Tracing, error) {
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName("relaisd")))}
	switch cfg.Exporter {
	case "", "none":
	case "otlp":
		if cfg.Endpoint == "" {
			return nil, fmt.Errorf("tracing: the otlp exporter needs an endpoint")
		}
		eo := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(cfg.Endpoint)}
		if cfg.Insecure {
			eo = append(eo, otlptracegrpc.WithInsecure())
		}
		exp, err := otlptracegrpc.New(ctx, eo...)
		if err != nil {
			return nil, fmt.Errorf("tracing: %w", err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	default:
		return nil, fmt.Errorf("tracing: exporter %q: want none or otlp", cfg.Exporter)
	}
	return &Tracing{tp: sdktrace.NewTracerProvider(opts...)}, nil
}

// ServerOption instruments a gRPC server.
func (t *Tracing) ServerOption() grpc.ServerOption {
	return grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(t.tp)))
}

// Shutdown flushes pending spans.
func (t *Tracing) Shutdown(ctx context.Context) error { return t.tp.Shutdown(ctx) }

// TracerProvider is the provider the gRPC servers use, for the spans
// started outside them (the HTTPS/JSON gateway).
func (t *Tracing) TracerProvider() trace.TracerProvider { return t.tp }
