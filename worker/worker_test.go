package worker_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/worker"
)

// A handler panic is a retryable nack carrying the panic message; the job
// is delivered again and succeeds.
func TestPanicIsRedelivered(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	cl := newClient(t, c)
	ctx := testutil.Context(t, 2*time.Minute)
	id, _, err := cl.EnqueueOne(ctx, "panics", "boom", nil, client.WithRetry(50*time.Millisecond, 100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	var log settleLog
	w := worker.New(cl, worker.Options{Queues: []worker.QueueConfig{{Name: "panics", Concurrency: 2}}, Logger: testutil.Logger(t), OnSettle: log.add})
	var runs atomic.Int32
	w.Handle("boom", func(ctx context.Context, job *worker.Job) error {
		if runs.Add(1) == 1 {
			panic("kaboom on first attempt")
		}
		return nil
	})
	r := start(t, w)
	j := testcluster.WaitJobState(t, cl, id, raftqv1.JobState_JOB_STATE_SUCCEEDED)
	r.stop(t)
	if j.Attempts != 2 || runs.Load() != 2 {
		t.Fatalf("attempts %d, runs %d; want 2 and 2", j.Attempts, runs.Load())
	}
	if !strings.Contains(j.LastError, "panic: kaboom on first attempt") {
		t.Fatalf("last error %q does not carry the panic message", j.LastError)
	}
	var pe *worker.PanicError
	if len(log.all) != 2 || !errors.As(log.all[0].s.HandlerErr, &pe) || log.all[0].s.Action != worker.ActionNacked {
		t.Fatalf("settlements: %+v", log.all)
	}
}

// Permanent(err) dead-letters the job after one attempt, whatever attempts
// are left; a plain error is retried.
func TestPermanentErrorGoesDead(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	cl := newClient(t, c)
	ctx := testutil.Context(t, 2*time.Minute)
	id, _, err := cl.EnqueueOne(ctx, "perm", "bad", []byte("x"), client.WithMaxAttempts(10))
	if err != nil {
		t.Fatal(err)
	}
	w := worker.New(cl, worker.Options{Queues: []worker.QueueConfig{{Name: "perm"}}, Logger: testutil.Logger(t)})
	var runs atomic.Int32
	w.Handle("bad", func(ctx context.Context, job *worker.Job) error {
		runs.Add(1)
		return worker.Permanent(errors.New("payload is malformed"))
	})
	r := start(t, w)
	j := testcluster.WaitJobState(t, cl, id, raftqv1.JobState_JOB_STATE_DEAD)
	r.stop(t)
	if j.Attempts != 1 || runs.Load() != 1 || !strings.Contains(j.LastError, "payload is malformed") {
		t.Fatalf("dead job: attempts %d runs %d last error %q", j.Attempts, runs.Load(), j.LastError)
	}
}

// A job running for three times its lease duration completes on its first
// attempt, because the worker extends the lease in the background.
func TestLeaseExtendedForLongJob(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	cl := newClient(t, c)
	ctx := testutil.Context(t, 2*time.Minute)
	const lease = time.Second
	id, _, err := cl.EnqueueOne(ctx, "long", "slow", nil, client.WithLeaseDuration(lease))
	if err != nil {
		t.Fatal(err)
	}
	reg := newRegistry()
	w := worker.New(cl, worker.Options{Queues: []worker.QueueConfig{{Name: "long"}}, Logger: testutil.Logger(t), Registerer: reg})
	var runs atomic.Int32
	var causes []error
	w.Handle("slow", func(ctx context.Context, job *worker.Job) error {
		runs.Add(1)
		select {
		case <-time.After(3 * lease):
			return nil
		case <-ctx.Done():
			causes = append(causes, context.Cause(ctx))
			return ctx.Err()
		}
	})
	r := start(t, w)
	j := testcluster.WaitJobState(t, cl, id, raftqv1.JobState_JOB_STATE_SUCCEEDED)
	r.stop(t)
	if j.Attempts != 1 || runs.Load() != 1 {
		t.Fatalf("attempts %d runs %d (causes %v); the lease should have been extended", j.Attempts, runs.Load(), causes)
	}
	if n := counterValue(t, reg, "raftq_worker_lease_extensions_total", map[string]string{"queue": "long", "result": "ok"}); n < 3 {
		t.Fatalf("%v lease extensions, want at least 3 over three lease durations", n)
	}
}

// CancelJob of a running job cancels the handler's context with
// ErrJobCancelled; the worker nacks it and the broker finishes it as
// cancelled. The latency is logged (the design target is under a second:
// Options.CancelPoll), not asserted. This is the Fetch path, where the
// worker polls the cancel flag; TestConsumeCancelNotice is the Consume
// path's.
func TestCancelRunningJob(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	cl := newClient(t, c)
	ctx := testutil.Context(t, 2*time.Minute)
	id, _, err := cl.EnqueueOne(ctx, "cancel", "block", nil, client.WithLeaseDuration(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	w := worker.New(cl, worker.Options{Queues: []worker.QueueConfig{{Name: "cancel"}}, UseFetch: true, Logger: testutil.Logger(t)})
	b := blocker(w)
	r := start(t, w)
	<-b.started
	t0 := time.Now()
	st, err := cl.CancelJob(ctx, id)
	if err != nil || st != raftqv1.JobState_JOB_STATE_LEASED {
		t.Fatalf("CancelJob: %v %v", st, err)
	}
	b.cancelled(t)
	t.Logf("handler context cancelled %s after CancelJob returned", time.Since(t0))
	testcluster.WaitJobState(t, cl, id, raftqv1.JobState_JOB_STATE_CANCELLED)
	r.stop(t)
}

// RetryAfter overrides the job's back-off; unknown job types fail with a
// retryable error and other types keep flowing.
func TestRetryAfterAndUnknownType(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	cl := newClient(t, c)
	ctx := testutil.Context(t, 2*time.Minute)
	id, _, err := cl.EnqueueOne(ctx, "ra", "later", nil, client.WithRetry(time.Hour, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	unknown, _, err := cl.EnqueueOne(ctx, "ra", "nobody-handles-this", nil, client.WithRetry(time.Hour, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	w := worker.New(cl, worker.Options{Queues: []worker.QueueConfig{{Name: "ra", Concurrency: 2}}, Logger: testutil.Logger(t)})
	var runs atomic.Int32
	w.Handle("later", func(ctx context.Context, job *worker.Job) error {
		if runs.Add(1) == 1 {
			return worker.RetryAfter(errors.New("rate limited"), 200*time.Millisecond)
		}
		return nil
	})
	r := start(t, w)
	// With the job's own back-off of an hour, only RetryAfter can bring it
	// back this soon.
	testcluster.WaitJobState(t, cl, id, raftqv1.JobState_JOB_STATE_SUCCEEDED)
	u := testcluster.WaitJobState(t, cl, unknown, raftqv1.JobState_JOB_STATE_SCHEDULED)
	r.stop(t)
	if !strings.Contains(u.LastError, "no handler registered") {
		t.Fatalf("unknown type's last error: %q", u.LastError)
	}
}

// The Recorder sees every attempt before its ack or nack, with the lease
// token, output and status; alreadySucceeded turns a failure into an ack.
func TestRecorderBeforeSettle(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	cl := newClient(t, c)
	ctx := testutil.Context(t, 2*time.Minute)
	okID, _, err := cl.EnqueueOne(ctx, "rec", "ok", []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	dupID, _, err := cl.EnqueueOne(ctx, "rec", "fails", nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	recorded := map[string]worker.Outcome{}
	rec := worker.RecorderFunc(func(ctx context.Context, o worker.Outcome) (bool, error) {
		// The job must still be leased under this token: no settle yet.
		j, err := cl.GetJob(ctx, o.JobID, 0)
		if err != nil {
			return false, err
		}
		if j.State != raftqv1.JobState_JOB_STATE_LEASED || j.LeaseToken != o.LeaseToken {
			t.Errorf("record of %s: job is %v with token %d (recording %d)", o.JobID, j.State, j.LeaseToken, o.LeaseToken)
		}
		mu.Lock()
		recorded[o.JobID] = o
		mu.Unlock()
		// Pretend an earlier lease of the failing job stored a success.
		return o.JobID == dupID, nil
	})
	w := worker.New(cl, worker.Options{Queues: []worker.QueueConfig{{Name: "rec", Concurrency: 2}}, Logger: testutil.Logger(t), Recorder: rec, WorkerID: "rec-worker"})
	w.Handle("ok", func(ctx context.Context, job *worker.Job) error {
		job.SetOutput(append([]byte("out:"), job.Payload...))
		return nil
	})
	w.Handle("fails", func(ctx context.Context, job *worker.Job) error { return errors.New("nope") })
	r := start(t, w)
	okJob := testcluster.WaitJobState(t, cl, okID, raftqv1.JobState_JOB_STATE_SUCCEEDED)
	testcluster.WaitJobState(t, cl, dupID, raftqv1.JobState_JOB_STATE_SUCCEEDED)
	r.stop(t)
	mu.Lock()
	defer mu.Unlock()
	o := recorded[okID]
	if string(o.Output) != "out:hello" || o.Status != worker.StatusSucceeded || o.LeaseToken != okJob.LeaseToken ||
		o.WorkerID != "rec-worker" || o.Attempt != 1 || o.Queue != "rec" || o.Type != "ok" || o.FinishedAt.Before(o.StartedAt) {
		t.Fatalf("recorded outcome: %+v (job token %d)", o, okJob.LeaseToken)
	}
	if d := recorded[dupID]; d.Status != worker.StatusFailed || d.Error != "nope" {
		t.Fatalf("recorded failure: %+v", d)
	}
}

// Graceful shutdown under load: Run returns with no job of the queue left
// leased; jobs whose handlers outlive ShutdownTimeout are nacked back to
// ready at once, and handlers that finish in time are acked.
func TestGracefulShutdownUnderLoad(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	cl := newClient(t, c)
	ctx := testutil.Context(t, 2*time.Minute)
	var specs []*raftqv1.JobSpec
	for i := 0; i < 300; i++ {
		typ := "quick"
		switch i % 10 {
		case 0:
			typ = "stubborn" // ignores its context
		case 1:
			typ = "slow" // honours its context
		}
		specs = append(specs, client.NewJob("drain", typ, nil, client.WithLeaseDuration(10*time.Second)))
	}
	if _, err := cl.Enqueue(ctx, specs...); err != nil {
		t.Fatal(err)
	}
	var log settleLog
	w := worker.New(cl, worker.Options{
		Queues:          []worker.QueueConfig{{Name: "drain", Concurrency: 16}},
		Logger:          testutil.Logger(t),
		ShutdownTimeout: 300 * time.Millisecond,
		OnSettle:        log.add,
	})
	var ran atomic.Int32
	w.Handle("quick", func(ctx context.Context, job *worker.Job) error {
		ran.Add(1)
		time.Sleep(5 * time.Millisecond)
		return nil
	})
	w.Handle("slow", func(ctx context.Context, job *worker.Job) error {
		ran.Add(1)
		select {
		case <-time.After(time.Minute):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	w.Handle("stubborn", func(ctx context.Context, job *worker.Job) error {
		ran.Add(1)
		time.Sleep(3 * time.Second)
		return nil
	})
	r := start(t, w)
	testutil.WaitFor(t, 60*time.Second, "some jobs run", func() bool { return ran.Load() >= 50 })
	r.stop(t)
	stats, err := cl.QueueStats(ctx, "drain")
	if err != nil || len(stats) != 1 {
		t.Fatalf("stats %v %v", stats, err)
	}
	s := stats[0]
	t.Logf("after shutdown: ready %d scheduled %d leased %d succeeded %d; acked %d nacked %d dropped %d",
		s.Ready, s.Scheduled, s.Leased, s.Succeeded, log.count(worker.ActionAcked), log.count(worker.ActionNacked), log.count(worker.ActionDropped))
	if s.Leased != 0 {
		t.Fatalf("%d jobs still leased after graceful shutdown", s.Leased)
	}
	if s.Scheduled != 0 {
		t.Fatalf("%d jobs scheduled: shutdown nacks must not back off", s.Scheduled)
	}
	if s.Ready+s.Succeeded != 300 || log.count(worker.ActionDropped) != 0 {
		t.Fatalf("ready %d + succeeded %d != 300, dropped %d", s.Ready, s.Succeeded, log.count(worker.ActionDropped))
	}
}
