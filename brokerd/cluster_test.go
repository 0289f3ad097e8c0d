package brokerd_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/internal/testcluster"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestEnqueueFetchAck(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	cl := c.Client()
	ctx := ctxT(t, 30*time.Second)
	res, err := cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: "q", Type: "echo", Payload: []byte("hi")})
	if err != nil {
		t.Fatal(err)
	}
	id := res[0].JobId
	jobs, err := cl.Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{"q"}, MaxJobs: 5, MaxWait: durationpb.New(time.Second), WorkerId: "w1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 1 || jobs[0].Id != id || string(jobs[0].Payload) != "hi" || jobs[0].LeaseToken == 0 {
		t.Fatalf("fetch got %v", jobs)
	}
	if err := cl.Ack(ctx, id, jobs[0].LeaseToken); err != nil {
		t.Fatal(err)
	}
	j, err := cl.GetJob(ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != raftqv1.JobState_JOB_STATE_SUCCEEDED || j.Attempts != 1 {
		t.Fatalf("job after ack: %v", j)
	}
	c.WaitConverged(10 * time.Second)
}
