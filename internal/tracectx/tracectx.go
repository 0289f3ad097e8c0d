// Package tracectx carries OpenTelemetry trace context across raftq's gRPC
// calls in W3C Trace Context form (traceparent/tracestate metadata). It is
// linked by the public SDK (client, results) and by the daemons, so it
// depends on the otel API only, never on the SDK or an exporter: with no
// tracer provider installed it costs a span-context check per call.
package tracectx

import (
	"context"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// Propagator is the one format raftq uses for trace context, in gRPC
// metadata and in jobs: W3C Trace Context. It is fixed, not otel's global
// propagator (a no-op unless a program sets one), so that every raftq
// process agrees on it without configuration.
var Propagator = propagation.TraceContext{}

// mdCarrier adapts gRPC metadata to a TextMapCarrier.
type mdCarrier metadata.MD

func (c mdCarrier) Get(key string) string {
	if v := metadata.MD(c).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c mdCarrier) Set(key, value string) { metadata.MD(c).Set(key, value) }

func (c mdCarrier) Keys() []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	return out
}

// Outgoing returns ctx with its span context added to the outgoing gRPC
// metadata; ctx unchanged when it carries no valid span context.
func Outgoing(ctx context.Context) context.Context {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	md := metadata.MD{}
	Propagator.Inject(ctx, mdCarrier(md))
	kv := make([]string, 0, 2*len(md))
	for k, vs := range md {
		for _, v := range vs {
			kv = append(kv, k, v)
		}
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

// UnaryClientInterceptor sends the caller's span context with every unary
// call, so that the server's spans join the caller's trace.
func UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return invoker(Outgoing(ctx), method, req, reply, cc, opts...)
	}
}

// Incoming returns ctx with the remote span context the caller sent in the
// incoming gRPC metadata (by UnaryClientInterceptor); ctx unchanged when
// there is none.
func Incoming(ctx context.Context) context.Context {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok || len(md.Get("traceparent")) == 0 {
		return ctx
	}
	return Propagator.Extract(ctx, mdCarrier(md))
}

// UnaryServerInterceptor starts a server span named after the method for
// every unary call, child of the caller's span context when it sent one,
// with tracer (the daemon's; a no-op tracer makes it free).
func UnaryServerInterceptor(tracer trace.Tracer) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, span := tracer.Start(Incoming(ctx), info.FullMethod, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		resp, err := handler(ctx, req)
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		return resp, err
	}
}

// fieldCarrier holds a traceparent and a tracestate, the form in which a
// job stores its producer's trace context.
type fieldCarrier struct{ parent, state *string }

func (c fieldCarrier) Get(key string) string {
	switch key {
	case "traceparent":
		return *c.parent
	case "tracestate":
		return *c.state
	}
	return ""
}

func (c fieldCarrier) Set(key, value string) {
	switch key {
	case "traceparent":
		*c.parent = value
	case "tracestate":
		*c.state = value
	}
}

func (fieldCarrier) Keys() []string { return []string{"traceparent", "tracestate"} }

// Fields returns the span context of ctx as W3C traceparent and
// tracestate values; empty strings when ctx carries no valid span context.
func Fields(ctx context.Context) (parent, state string) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return "", ""
	}
	Propagator.Inject(ctx, fieldCarrier{&parent, &state})
	return parent, state
}

// WithRemote returns ctx with the remote span context that parent and
// state (as Fields made them) describe; ctx unchanged when parent is empty
// or malformed.
func WithRemote(ctx context.Context, parent, state string) context.Context {
	if parent == "" {
		return ctx
	}
	return Propagator.Extract(ctx, fieldCarrier{&parent, &state})
}
