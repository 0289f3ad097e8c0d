// Package tracing sets up OpenTelemetry tracing for the raftq daemons
// (brokerd, workerd, svcd): off unless an OTLP endpoint is configured,
// then an OTLP/gRPC exporter behind a batch span processor, installed as
// otel's global tracer provider (which brokerd and svcd take their tracer
// from) with the W3C Trace Context propagator.
//
// It links the otel SDK and exporter, so only daemons import it; the
// public SDK depends on the otel API alone (internal/tracectx).
package tracing

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/raftq/raftq/internal/config"
	"github.com/raftq/raftq/internal/tracectx"
)

// Config is a daemon's tracing configuration (key tracing.*).
type Config struct {
	// OTLPEndpoint is the collector's OTLP/gRPC host:port; empty turns
	// tracing off (the default).
	OTLPEndpoint string
	// Insecure sends spans in plaintext (a collector on localhost or a
	// sidecar); otherwise the exporter uses TLS with the system roots.
	Insecure bool
	// ServiceName is the service.name resource attribute ("brokerd"...).
	ServiceName string
	// Version is the service.version attribute (may be empty).
	Version string
}

// Setup installs the tracer provider cfg describes as otel's global and
// returns it with a shutdown func that flushes buffered spans (call it
// last, with a deadline). With no endpoint it installs nothing and returns
// a no-op provider and shutdown.
func Setup(ctx context.Context, cfg Config) (trace.TracerProvider, func(context.Context) error, error) {
	if cfg.OTLPEndpoint == "" {
		return otel.GetTracerProvider(), func(context.Context) error { return nil }, nil
	}
	opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(cfg.OTLPEndpoint)}
	if cfg.Insecure {
		opts = append(opts, otlptracegrpc.WithInsecure())
	}
	// The exporter connects lazily: an unreachable collector costs
	// dropped spans, never a daemon that fails to start.
	exp, err := otlptracegrpc.New(ctx, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: OTLP exporter for %s: %w", cfg.OTLPEndpoint, err)
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", cfg.ServiceName)}
	if cfg.Version != "" {
		attrs = append(attrs, attribute.String("service.version", cfg.Version))
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attrs...))
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(tracectx.Propagator)
	return tp, tp.Shutdown, nil
}

// Keys are the tracing settings every daemon declares, alike in each.
func Keys() []config.Key {
	return []config.Key{
		{Name: "tracing.otlp_endpoint", Flag: "tracing-otlp-endpoint", Kind: config.String,
			Usage: "send OpenTelemetry spans to this OTLP/gRPC collector host:port (empty: tracing off)",
			Check: func(v any) error {
				if s := v.(string); s != "" {
					if _, _, err := net.SplitHostPort(s); err != nil || strings.Contains(s, "://") {
						return fmt.Errorf("%q: want host:port (like localhost:4317)", s)
					}
				}
				return nil
			}},
		{Name: "tracing.insecure", Flag: "tracing-insecure", Kind: config.Bool,
			Usage: "send spans to the collector in plaintext (default TLS)"},
	}
}

// FromValues is the tracing Config of loaded values, for service.
func FromValues(v *config.Values, service string) Config {
	return Config{OTLPEndpoint: v.String("tracing.otlp_endpoint"), Insecure: v.Bool("tracing.insecure"), ServiceName: service}
}

// Start is Setup for a daemon: it returns a stop func, for a defer, that
// flushes buffered spans within a few seconds and returns what failed.
func Start(ctx context.Context, cfg Config) (stop func() error, err error) {
	_, shutdown, err := Setup(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return func() error {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return shutdown(sctx)
	}, nil
}
