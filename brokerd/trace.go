package brokerd

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/internal/tracectx"
)

// tracer is brokerd's tracer from otel's global provider: cmd/brokerd
// installs an exporting provider when tracing is configured; otherwise it
// is a no-op and the spans below cost nothing.
func tracer() trace.Tracer { return otel.Tracer("github.com/raftq/raftq/brokerd") }

// startEnqueueSpan starts the leader's span for one Enqueue, child of the
// producer's span that the call carries in its metadata or, failing that
// (a job of an EnqueueStream, whose metadata is the stream's), in the
// first job's trace fields.
func startEnqueueSpan(ctx context.Context, queue string, n int, parent, state string) (context.Context, trace.Span) {
	pctx := tracectx.Incoming(ctx)
	if !trace.SpanContextFromContext(pctx).IsValid() {
		pctx = tracectx.WithRemote(ctx, parent, state)
	}
	return tracer().Start(pctx, "raftq.broker.enqueue "+queue,
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("messaging.destination.name", queue), attribute.Int("messaging.batch.message_count", n)))
}

// traceLeases records one "raftq.lease" span per leased job, in the job's
// own trace (child of its producer's span, from the trace context stored
// with the job) rather than the fetch call's: a trace follows a job, and a
// fetch serves many jobs of many traces. Jobs without trace context get no
// span.
func traceLeases(ctx context.Context, jobs []fsm.Job, worker string) {
	for i := range jobs {
		j := &jobs[i]
		if j.TraceParent == "" {
			continue
		}
		_, span := tracer().Start(tracectx.WithRemote(ctx, j.TraceParent, j.TraceState), "raftq.lease "+j.Queue,
			trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(
				attribute.String("messaging.destination.name", j.Queue),
				attribute.String("messaging.message.id", j.ID),
				attribute.String("raftq.worker_id", worker),
				attribute.Int64("raftq.lease_token", int64(j.LeaseToken)),
				attribute.Int("raftq.job.attempt", int(j.Attempts)),
			))
		span.End()
	}
}
