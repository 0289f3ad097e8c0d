package worker_test

import (
	"context"
	"github.com/raftq/raftq/internal/testutil"
	"slices"
	"testing"
	"time"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/worker"
)

// A handler sees a workflow job's parents (to read their results) and,
// under RunAnyway, that a parent failed.
func TestJobParents(t *testing.T) {
	c := testcluster.New(t, 1, nil)
	cl := newClient(t, c)
	ctx := testutil.Context(t, time.Minute)
	res, err := cl.Enqueue(ctx,
		client.NewJob("wfw", "parent", nil, client.WithName("p")),
		client.NewJob("wfw", "doomed", nil, client.WithName("x"), client.WithMaxAttempts(1)),
		client.NewJob("wfw", "child", nil, client.DependsOnNames("p", "x"), client.RunAnyway()),
	)
	if err != nil {
		t.Fatal(err)
	}
	w := worker.New(cl, worker.Options{Queues: []worker.QueueConfig{{Name: "wfw"}}, Logger: testutil.Logger(t)})
	seen := make(chan *worker.Job, 1)
	w.Handle("parent", func(ctx context.Context, job *worker.Job) error { return nil })
	w.Handle("doomed", func(ctx context.Context, job *worker.Job) error { return worker.Permanent(context.Canceled) })
	w.Handle("child", func(ctx context.Context, job *worker.Job) error {
		seen <- job
		return nil
	})
	r := start(t, w)
	defer r.stop(t)
	select {
	case j := <-seen:
		if !slices.Equal(j.Parents, []string{res[0].JobId, res[1].JobId}) || !j.ParentFailed {
			t.Fatalf("child sees parents %v, failed %v", j.Parents, j.ParentFailed)
		}
	case <-ctx.Done():
		t.Fatal("the child never ran")
	}
}
