package workerd_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/svcd/server"
	"github.com/raftq/raftq/svcd/svcdtest"
	"github.com/raftq/raftq/worker"
	"github.com/raftq/raftq/workerd"
)

// One job's trace, recorded in memory across a real three-node cluster, a
// worker and svcd in this process: the producer's enqueue span is the root;
// the broker's enqueue and lease spans, the worker's run span, and under the
// run span the store-result and ack spans (and svcd's StoreResult server
// span under store-result) all share its trace id.
func TestOneTraceSpansProducerWorkerSvcd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	// brokerd and svcd use the global provider, as their daemons do.
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	defer otel.SetTracerProvider(prev)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := testcluster.New(t, 3, nil)
	b := svcdtest.SQLite(t)
	srv := svcdtest.StartWith(t, server.Config{DB: b.Driver, DSN: b.DSN, DataDir: b.DataDir, ReadyInterval: 50 * time.Millisecond,
		Brokers: server.BrokerCheck{Addrs: c.Addrs()}})
	rc := svcdtest.Dial(t, srv)

	cl, err := client.New(c.Addrs(), client.Options{TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	spec := &raftqv1.JobSpec{Queue: "traced", Type: "echo", Payload: []byte("hi")}
	res, err := cl.Enqueue(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	jobID := res[0].JobId
	if !strings.HasPrefix(spec.TraceParent, "00-") {
		t.Fatalf("enqueued job has no traceparent: %q", spec.TraceParent)
	}

	acked := make(chan struct{}, 1)
	w := worker.New(cl, worker.Options{Queues: []worker.QueueConfig{{Name: "traced", Concurrency: 1}},
		Recorder: workerd.ResultsRecorder{Client: rc}, Logger: testutil.Logger(t), TracerProvider: tp,
		OnSettle: func(j *worker.Job, s worker.Settlement) {
			if j.ID == jobID && s.Action == worker.ActionAcked {
				acked <- struct{}{}
			}
		}})
	var handlerSpan trace.SpanContext
	w.Handle("echo", func(ctx context.Context, j *worker.Job) error {
		handlerSpan = trace.SpanContextFromContext(ctx)
		j.SetOutput(j.Payload)
		return nil
	})
	wctx, wcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	select {
	case <-acked:
	case <-ctx.Done():
		t.Fatal("job not acked")
	}
	wcancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	byName := map[string]sdktrace.ReadOnlySpan{}
	var root sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		name := s.Name()
		if name == "raftq.enqueue traced" {
			root = s
		}
		if _, dup := byName[name]; !dup {
			byName[name] = s
		}
	}
	if root == nil {
		t.Fatalf("no producer span among %v", names(rec.Ended()))
	}
	tid := root.SpanContext().TraceID()
	if root.Parent().IsValid() || root.SpanKind() != trace.SpanKindProducer {
		t.Fatalf("producer span: parent %v kind %v", root.Parent(), root.SpanKind())
	}
	// Every span of the job's trace, with its expected parent.
	want := []struct{ name, parent string }{
		{"raftq.broker.enqueue traced", "raftq.enqueue traced"},
		{"raftq.lease traced", "raftq.enqueue traced"},
		{"raftq.run echo", "raftq.enqueue traced"},
		{"raftq.store_result", "raftq.run echo"},
		{"/raftq.v1.Results/StoreResult", "raftq.store_result"},
		{"raftq.ack", "raftq.run echo"},
	}
	for _, w := range want {
		s, ok := byName[w.name]
		if !ok {
			t.Fatalf("no span %q among %v", w.name, names(rec.Ended()))
		}
		p := byName[w.parent]
		if s.SpanContext().TraceID() != tid {
			t.Errorf("%s: trace %s, want %s", w.name, s.SpanContext().TraceID(), tid)
		}
		if s.Parent().SpanID() != p.SpanContext().SpanID() {
			t.Errorf("%s: parent %s, want %s (%s)", w.name, s.Parent().SpanID(), w.parent, p.SpanContext().SpanID())
		}
	}
	if handlerSpan.SpanID() != byName["raftq.run echo"].SpanContext().SpanID() {
		t.Errorf("handler context carries span %s, want the run span", handlerSpan.SpanID())
	}
	if got := byName["raftq.run echo"].SpanKind(); got != trace.SpanKindConsumer {
		t.Errorf("run span kind %v", got)
	}
	j, err := cl.GetJob(ctx, jobID, 0)
	if err != nil || j.TraceParent != spec.TraceParent {
		t.Fatalf("stored job trace parent %q, want %q (%v)", j.GetTraceParent(), spec.TraceParent, err)
	}
}

// With no tracer provider set (otel's default no-op), a job carries no
// trace context: tracing off adds nothing to jobs.
func TestNoTracingAddsNothingToJobs(t *testing.T) {
	c := testcluster.New(t, 1, nil)
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	spec := &raftqv1.JobSpec{Queue: "plain", Type: "echo"}
	res, err := cl.Enqueue(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if spec.TraceParent != "" || spec.TraceState != "" {
		t.Fatalf("untraced enqueue wrote trace context %q %q", spec.TraceParent, spec.TraceState)
	}
	j, err := cl.GetJob(ctx, res[0].JobId, 0)
	if err != nil {
		t.Fatal(err)
	}
	if j.TraceParent != "" || j.TraceState != "" {
		t.Fatalf("stored job has trace context %q %q", j.TraceParent, j.TraceState)
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name()+"("+s.SpanContext().TraceID().String()[:8]+")")
	}
	return out
}

// EnqueueOne (the streamed path) puts the producer span's context in the
// job too, the broker stores it, and the broker's span joins the trace.
func TestEnqueueOneCarriesTrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	defer otel.SetTracerProvider(prev)
	c := testcluster.New(t, 1, nil)
	cl, err := client.New(c.Addrs(), client.Options{TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, _, err := cl.EnqueueOne(ctx, "one", "echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	j, err := cl.GetJob(ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	var prod, broker sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		switch s.Name() {
		case "raftq.enqueue one":
			prod = s
		case "raftq.broker.enqueue one":
			broker = s
		}
	}
	if prod == nil || broker == nil {
		t.Fatalf("spans %v", names(rec.Ended()))
	}
	want := "00-" + prod.SpanContext().TraceID().String() + "-" + prod.SpanContext().SpanID().String() + "-01"
	if j.TraceParent != want {
		t.Fatalf("stored traceparent %q, want %q", j.TraceParent, want)
	}
	// The stream's metadata is not the job's: the broker's span takes its
	// parent from the job.
	if broker.Parent().SpanID() != prod.SpanContext().SpanID() || broker.SpanContext().TraceID() != prod.SpanContext().TraceID() {
		t.Fatalf("broker span parent %s, want the producer span %s", broker.Parent().SpanID(), prod.SpanContext().SpanID())
	}
}
