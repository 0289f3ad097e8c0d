package worker_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/raftqerr"
	"github.com/raftq/raftq/worker"
)

// A start-to-close timeout fails an attempt that keeps its lease alive: the
// handler (on a Consume stream and on Fetch) sees its context cancelled
// with ErrLeaseLost, the worker does not settle it, the attempt counts,
// and after the last attempt the job is dead with the timeout as its
// error. GetJob shows the attempt deadline while the job runs.
func TestStartToCloseFailsALiveAttempt(t *testing.T) {
	for _, useFetch := range []bool{false, true} {
		c := testcluster.New(t, 3, nil)
		cl := newClient(t, c)
		ctx := testutil.Context(t, 2*time.Minute)
		id, _, err := cl.EnqueueOne(ctx, "stc", "hang", nil, client.WithLeaseDuration(time.Second),
			client.WithStartToClose(2*time.Second), client.WithMaxAttempts(2), client.WithRetry(10*time.Millisecond, 10*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		var log settleLog
		w := worker.New(cl, worker.Options{Queues: []worker.QueueConfig{{Name: "stc"}}, Logger: testutil.Logger(t),
			UseFetch: useFetch, OnSettle: log.add})
		var mu sync.Mutex
		var causes []error
		var deadlines []time.Time
		w.Handle("hang", func(ctx context.Context, job *worker.Job) error {
			mu.Lock()
			deadlines = append(deadlines, job.AttemptDeadline)
			mu.Unlock()
			if j := getJob(t, cl, id); j.GetAttemptDeadline() == nil || j.GetStartToClose().AsDuration() != 2*time.Second {
				t.Errorf("GetJob of a running job: attempt deadline %v start_to_close %v", j.GetAttemptDeadline(), j.GetStartToClose())
			}
			<-ctx.Done() // keeps the lease extended until the broker fails the attempt
			mu.Lock()
			causes = append(causes, context.Cause(ctx))
			mu.Unlock()
			return ctx.Err()
		})
		r := start(t, w)
		j := testcluster.WaitJobState(t, cl, id, raftqv1.JobState_JOB_STATE_DEAD)
		r.stop(t)
		if j.LastError != "start-to-close timeout" || j.Attempts != 2 {
			t.Fatalf("useFetch %v: dead job %+v", useFetch, j)
		}
		mu.Lock()
		if len(causes) != 2 || !errors.Is(causes[0], worker.ErrLeaseLost) || deadlines[0].IsZero() {
			t.Fatalf("useFetch %v: handler causes %v deadlines %v", useFetch, causes, deadlines)
		}
		mu.Unlock()
		if n := log.count(worker.ActionDropped); n != 2 {
			t.Fatalf("useFetch %v: %d attempts dropped, want 2 (none settled)", useFetch, n)
		}
		c.Close()
	}
}

// A schedule-to-start timeout kills a job no worker leased in time, with a
// clear reason; a job leased in time is not affected.
func TestScheduleToStartKillsUnstartedJob(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	cl := newClient(t, c)
	ctx := testutil.Context(t, time.Minute)
	late, _, err := cl.EnqueueOne(ctx, "s2s", "t", nil, client.WithScheduleToStart(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if j := getJob(t, cl, late); j.GetStartDeadline() == nil {
		t.Fatal("GetJob shows no start deadline")
	}
	j := testcluster.WaitJobState(t, cl, late, raftqv1.JobState_JOB_STATE_DEAD)
	if j.LastError != "schedule-to-start timeout" || j.Attempts != 0 {
		t.Fatalf("job %+v", j)
	}
	// Delayed: the timeout counts from the run time, so it does not die
	// while it waits for it.
	delayed, _, err := cl.EnqueueOne(ctx, "s2s", "t", nil, client.WithDelay(time.Second), client.WithScheduleToStart(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := cl.Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{"s2s"}, MaxJobs: 1, MaxWait: durationpb.New(10 * time.Second), WorkerId: "w"})
	if err != nil || len(jobs) != 1 || jobs[0].Id != delayed {
		t.Fatalf("fetch %v %v", jobs, err)
	}
	if jobs[0].GetStartDeadline() != nil {
		t.Fatal("a leased job still shows a start deadline")
	}
}

// Uniqueness by state over a real cluster: the default returns the
// existing job, reject answers ALREADY_EXISTS naming it (also through a
// follower), debounce moves a delayed job, and the key is free once the
// job is done. Refusals change no state.
func TestUniqueKeyByState(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	cl := newClient(t, c)
	ctx := testutil.Context(t, time.Minute)
	first, dup, err := cl.EnqueueOne(ctx, "uq", "t", []byte("v1"), client.WithUniqueKey("report-42", client.UniqueDebounce), client.WithDelay(time.Hour))
	if err != nil || dup {
		t.Fatal(err, dup)
	}
	again, dup, err := cl.EnqueueOne(ctx, "uq", "t", nil, client.WithUniqueKey("report-42", client.UniqueReturnExisting))
	if err != nil || !dup || again != first {
		t.Fatalf("return existing: %s %v %v, want %s", again, dup, err, first)
	}
	before := c.WaitConverged(10 * time.Second)
	_, err = cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: "uq", Type: "t", UniqueKey: "report-42", UniqueMode: client.UniqueReject})
	if status.Code(err) != codes.AlreadyExists || raftqerr.ExistingJobID(err) != first {
		t.Fatalf("reject: %v (existing %q), want ALREADY_EXISTS naming %s", err, raftqerr.ExistingJobID(err), first)
	}
	// EnqueueOne (over EnqueueStream) names the holder too.
	_, _, err = cl.EnqueueOne(ctx, "uq", "t", nil, client.WithUniqueKey("report-42", client.UniqueReject))
	if status.Code(err) != codes.AlreadyExists || raftqerr.ExistingJobID(err) != first {
		t.Fatalf("reject over the stream: %v (existing %q), want ALREADY_EXISTS naming %s", err, raftqerr.ExistingJobID(err), first)
	}
	if after := c.WaitConverged(10 * time.Second); after != before {
		t.Fatal("a refused enqueue changed the state")
	}
	// Debounce: the delayed job moves to now with the new payload.
	deb, dup, err := cl.EnqueueOne(ctx, "uq", "t", []byte("v2"), client.WithUniqueKey("report-42", client.UniqueDebounce))
	if err != nil || !dup || deb != first {
		t.Fatalf("debounce: %s %v %v", deb, dup, err)
	}
	jobs, err := cl.Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{"uq"}, MaxJobs: 2, MaxWait: durationpb.New(5 * time.Second), WorkerId: "w"})
	if err != nil || len(jobs) != 1 || jobs[0].Id != first || string(jobs[0].Payload) != "v2" || jobs[0].UniqueKey != "report-42" {
		t.Fatalf("after debounce fetched %v %v", jobs, err)
	}
	if err := cl.Ack(ctx, first, jobs[0].LeaseToken); err != nil {
		t.Fatal(err)
	}
	next, dup, err := cl.EnqueueOne(ctx, "uq", "t", nil, client.WithUniqueKey("report-42", client.UniqueReject))
	if err != nil || dup || next == first {
		t.Fatalf("after the job succeeded: %s %v %v", next, dup, err)
	}
}

// Weighted selection end to end: a worker pool with weights 3:1 over two
// full queues runs about three of the heavy queue's jobs for each of the
// light one's (counted, not timed), and a plain entry keeps strict
// per-queue fetching.
func TestWorkerWeightedPool(t *testing.T) {
	c := testcluster.New(t, 1, nil)
	cl := newClient(t, c)
	ctx := testutil.Context(t, 2*time.Minute)
	var specs []*raftqv1.JobSpec
	for i := 0; i < 200; i++ {
		specs = append(specs, client.NewJob("heavy", "t", nil), client.NewJob("light", "t", nil))
	}
	if _, err := cl.Enqueue(ctx, specs...); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	counts := map[string]int{}
	done := make(chan struct{})
	w := worker.New(cl, worker.Options{Logger: testutil.Logger(t),
		Queues: []worker.QueueConfig{{Name: "pool", Concurrency: 1, Weights: map[string]int{"heavy": 3, "light": 1}}}})
	w.Handle("t", func(ctx context.Context, job *worker.Job) error {
		mu.Lock()
		defer mu.Unlock()
		counts[job.Queue]++
		if counts["heavy"]+counts["light"] == 120 {
			close(done)
		}
		if counts["heavy"]+counts["light"] >= 120 {
			<-ctx.Done() // stop taking jobs: the count is in
		}
		return nil
	})
	r := start(t, w)
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("the pool did not run 120 jobs")
	}
	r.stop(t)
	mu.Lock()
	defer mu.Unlock()
	// Concurrency 1: each job is its own fetch and pick; smooth weighted
	// round-robin keeps the heavy share within a job or two of 3/4.
	if h := counts["heavy"]; h < 88 || h > 92 {
		t.Fatalf("served %v, want about 90 heavy of 120", counts)
	}
}
