package worker_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/internal/placement"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/worker"
)

// A worker pool whose queues are in different Raft groups runs every
// queue's jobs: the broker will not stream them together, so the pool
// fetches, and a Fetch over several groups serves them all.
func TestWorkerPoolAcrossGroups(t *testing.T) {
	const groups = 3
	c := testcluster.New(t, 3, func(cfg *brokerd.Config) { cfg.Groups = groups })
	c.WaitGroupLeaders(30 * time.Second)
	cl := newClient(t, c)
	ctx := testutil.Context(t, 2*time.Minute)
	qs := placement.QueuesPerGroup("pool", groups)
	want := map[string]bool{}
	for _, q := range qs {
		for i := 0; i < 5; i++ {
			id, _, err := cl.EnqueueOne(ctx, q, "t", nil)
			if err != nil {
				t.Fatal(err)
			}
			want[id] = true
		}
	}
	var mu sync.Mutex
	ran := map[string]bool{}
	done := make(chan struct{})
	weights := map[string]int{}
	for i, q := range qs {
		weights[q] = i + 1
	}
	w := worker.New(cl, worker.Options{Logger: testutil.Logger(t),
		Queues: []worker.QueueConfig{{Name: "pool", Concurrency: 2, Weights: weights}}})
	w.Handle("t", func(ctx context.Context, job *worker.Job) error {
		mu.Lock()
		defer mu.Unlock()
		ran[job.ID] = true
		if len(ran) == len(want) {
			close(done)
		}
		return nil
	})
	r := start(t, w)
	select {
	case <-done:
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("the pool ran %d of %d jobs", len(ran), len(want))
	}
	r.stop(t)
	for id := range want {
		testcluster.WaitJobState(t, cl, id, raftqv1.JobState_JOB_STATE_SUCCEEDED)
	}
}
