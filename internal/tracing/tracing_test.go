package tracing

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Tracing is off by default: no endpoint installs nothing.
func TestNoEndpointInstallsNothing(t *testing.T) {
	before := otel.GetTracerProvider()
	tp, shutdown, err := Setup(context.Background(), Config{ServiceName: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if _, sdk := tp.(*sdktrace.TracerProvider); sdk || otel.GetTracerProvider() != before {
		t.Fatalf("no endpoint installed a provider: %T", tp)
	}
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// An endpoint installs an SDK provider as the global one, which exports
// (here to nowhere) and shuts down within its deadline.
func TestEndpointInstallsSDKProvider(t *testing.T) {
	before := otel.GetTracerProvider()
	defer otel.SetTracerProvider(before)
	tp, shutdown, err := Setup(context.Background(), Config{OTLPEndpoint: "127.0.0.1:1", Insecure: true, ServiceName: "brokerd"})
	if err != nil {
		t.Fatal(err)
	}
	sdk, ok := tp.(*sdktrace.TracerProvider)
	if !ok || otel.GetTracerProvider() != tp {
		t.Fatalf("provider %T not installed", tp)
	}
	_, span := sdk.Tracer("t").Start(context.Background(), "s")
	if !span.SpanContext().IsValid() {
		t.Fatal("span of the installed provider has no valid context")
	}
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	_ = shutdown(ctx) // the collector is unreachable: the error is expected
}

// The endpoint key wants host:port.
func TestEndpointKeyChecked(t *testing.T) {
	k := Keys()[0]
	if k.Check("localhost:4317") != nil || k.Check("") != nil {
		t.Fatal("valid endpoints refused")
	}
	if k.Check("collector") == nil || k.Check("http://collector:4317") == nil {
		t.Fatal("an endpoint without a port accepted")
	}
}
