package worker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/worker"
)

// A handler's Job.Progress reaches the job through a lease extension and
// GetJob shows it; bad progress is refused (by the SDK, and by the broker
// for a raw request) and a stale lease token cannot report. The next
// attempt starts without the old attempt's progress.
func TestProgressVisibleThroughGetJob(t *testing.T) {
	c := testcluster.New(t, 1, nil)
	cl := newClient(t, c)
	ctx := testutil.Context(t, 2*time.Minute)
	id, _, err := cl.EnqueueOne(ctx, "prog", "slow", nil, client.WithLeaseDuration(time.Minute), client.WithMaxAttempts(2))
	if err != nil {
		t.Fatal(err)
	}
	w := worker.New(cl, worker.Options{Queues: []worker.QueueConfig{{Name: "prog"}}, Logger: testutil.Logger(t)})
	reported := make(chan *worker.Job, 1)
	release := make(chan error)
	w.Handle("slow", func(ctx context.Context, job *worker.Job) error {
		if job.Attempt == 1 {
			if err := job.Progress(ctx, 0.5, "half way"); err != nil {
				t.Errorf("Progress: %v", err)
			}
			if err := job.Progress(ctx, 1.5, ""); err == nil {
				t.Error("Progress(1.5) accepted")
			}
			if err := job.Progress(ctx, 0.6, strings.Repeat("x", worker.MaxProgressMessage+1)); err == nil {
				t.Error("overlong progress message accepted")
			}
		}
		reported <- job
		return <-release
	})
	r := start(t, w)
	job := <-reported
	j := getJob(t, cl, id)
	if p := j.GetProgress(); p == nil || p.GetFraction() != 0.5 || p.GetMessage() != "half way" {
		t.Fatalf("GetJob progress %v, want 0.5 \"half way\"", p)
	}

	// The broker refuses bad progress on a raw request and keeps the report.
	_, err = cl.ExtendLease(ctx, &raftqv1.ExtendLeaseRequest{JobId: id, LeaseToken: job.LeaseToken, Progress: &raftqv1.Progress{Fraction: -1}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("ExtendLease with progress -1: %v, want InvalidArgument", err)
	}
	if p := getJob(t, cl, id).GetProgress(); p.GetFraction() != 0.5 {
		t.Fatalf("refused progress changed the job: %v", p)
	}

	// Fail the first attempt; the second starts without progress, and the
	// first attempt's token cannot report any more.
	release <- worker.RetryAfter(errors.New("try again"), 0)
	second := <-reported
	if second.Attempt != 2 {
		t.Fatalf("attempt %d, want 2", second.Attempt)
	}
	if p := getJob(t, cl, id).GetProgress(); p != nil {
		t.Fatalf("second attempt shows the first's progress %v", p)
	}
	_, err = cl.ExtendLease(ctx, &raftqv1.ExtendLeaseRequest{JobId: id, LeaseToken: job.LeaseToken, Progress: &raftqv1.Progress{Fraction: 0.9, Message: "stale"}})
	if err == nil {
		t.Fatal("stale token reported progress")
	}
	if p := getJob(t, cl, id).GetProgress(); p != nil {
		t.Fatalf("stale report stored %v", p)
	}
	release <- nil
	testcluster.WaitJobState(t, cl, id, raftqv1.JobState_JOB_STATE_SUCCEEDED)
	r.stop(t)
}
