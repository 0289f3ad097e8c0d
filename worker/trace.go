package worker

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/raftq/raftq/client"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// startSpan starts the attempt's consumer span as a child of the trace
// context the producer stored in the job (a new trace when it has none)
// and returns base carrying it. The span is kept on the task and ended
// when the task is done, after its ack or nack.
func (t *task) startSpan(base context.Context, pj *raftqv1.Job) context.Context {
	job := t.job
	ctx, span := client.Tracer(t.w.opts.TracerProvider).Start(client.JobTraceContext(base, pj), "raftq.run "+job.Type,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "raftq"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.destination.name", job.Queue),
			attribute.String("messaging.message.id", job.ID),
			attribute.String("raftq.job.type", job.Type),
			attribute.Int("raftq.job.attempt", int(job.Attempt)),
			attribute.Int64("raftq.lease_token", int64(job.LeaseToken)),
		))
	t.span = span
	return ctx
}

// childSpan starts a span under the attempt's span on ctx (a settle
// context, which derives from the worker's base context and not from the
// handler's, so it lacks the run span by itself).
func (t *task) childSpan(ctx context.Context, name string, kind trace.SpanKind) (context.Context, trace.Span) {
	return client.Tracer(t.w.opts.TracerProvider).Start(trace.ContextWithSpan(ctx, t.span), name, trace.WithSpanKind(kind))
}

// endSpan records err on span and ends it.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
