package client

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/raftq/raftq/internal/tracectx"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// TracerName is the instrumentation scope of the SDK's spans (client and
// worker).
const TracerName = "github.com/raftq/raftq"

// tracerOf returns tp's raftq tracer, or the global provider's when tp is
// nil: a no-op unless the program installed one with otel.SetTracerProvider.
func tracerOf(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return tp.Tracer(TracerName)
}

// Tracer returns the tracer for tp (nil: otel's global provider), named
// like the SDK's own; the worker uses it so that its spans share a scope
// with the producer's.
func Tracer(tp trace.TracerProvider) trace.Tracer { return tracerOf(tp) }

// InjectTrace writes the span context of ctx into spec's trace fields, so
// the worker that runs the job continues the trace. It writes nothing when
// ctx carries no valid span context (tracing off), and leaves a spec that
// already has a trace parent alone (a job re-enqueued on purpose keeps its
// original trace).
func InjectTrace(ctx context.Context, spec *raftqv1.JobSpec) {
	if spec == nil || spec.TraceParent != "" {
		return
	}
	spec.TraceParent, spec.TraceState = tracectx.Fields(ctx)
}

// JobTraceContext returns ctx with the remote span context stored in job
// (by the producer's InjectTrace) as its parent; ctx unchanged when the
// job carries none or a malformed one.
func JobTraceContext(ctx context.Context, job *raftqv1.Job) context.Context {
	return tracectx.WithRemote(ctx, job.GetTraceParent(), job.GetTraceState())
}

// startEnqueueSpan starts the producer span of one Enqueue call and
// injects it into every job.
func (c *Client) startEnqueueSpan(ctx context.Context, jobs []*raftqv1.JobSpec) (context.Context, trace.Span) {
	queue := ""
	if len(jobs) > 0 && jobs[0] != nil {
		queue = jobs[0].Queue
	}
	ctx, span := tracerOf(c.opts.TracerProvider).Start(ctx, "raftq.enqueue "+queue,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.system", "raftq"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.destination.name", queue),
			attribute.Int("messaging.batch.message_count", len(jobs)),
		))
	for _, j := range jobs {
		InjectTrace(ctx, j)
	}
	return ctx, span
}

// endSpan records err on span and ends it.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
