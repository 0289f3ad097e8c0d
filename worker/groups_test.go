package worker_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/internal/placement"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/worker"
)

// runPoolAcrossGroups runs a worker pool of concurrency 2 over one queue
// in each of 3 Raft groups, through a client counting its calls, until
// every job of every queue ran; it fails the test if more than 2
// handlers ran at once.
func runPoolAcrossGroups(t *testing.T, calls *methodCounter) {
	t.Helper()
	const groups, conc = 3, 2
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
	var running, maxRunning atomic.Int64
	w := worker.New(countingClient(t, c, calls), worker.Options{Logger: testutil.Logger(t), PollWait: time.Second,
		Queues: []worker.QueueConfig{{Name: "pool", Concurrency: conc, Weights: weights}}})
	w.Handle("t", func(ctx context.Context, job *worker.Job) error {
		n := running.Add(1)
		defer running.Add(-1)
		for m := maxRunning.Load(); n > m && !maxRunning.CompareAndSwap(m, n); m = maxRunning.Load() {
		}
		time.Sleep(10 * time.Millisecond)
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
	if m := maxRunning.Load(); m > conc {
		t.Fatalf("%d handlers ran at once; concurrency %d", m, conc)
	}
}

// A worker pool whose queues are in different Raft groups runs every
// queue's jobs on one Consume stream (the broker fans it out over the
// groups): no Fetch.
func TestWorkerPoolAcrossGroups(t *testing.T) {
	var calls methodCounter
	runPoolAcrossGroups(t, &calls)
	if calls.get("Consume") == 0 || calls.get("Fetch") != 0 {
		t.Fatalf("calls %v: want Consume and no Fetch for a pool across groups", calls.n)
	}
}

// A broker that refuses a Consume stream over several groups with
// INVALID_ARGUMENT (one from before the fan-in) gets Fetch long polls
// for the pool, which serve every group.
func TestWorkerPoolAcrossGroupsFetchesWhenRefused(t *testing.T) {
	calls := methodCounter{refuse: map[string]bool{"Consume": true}, refuseCode: codes.InvalidArgument}
	runPoolAcrossGroups(t, &calls)
	if calls.get("Consume") != 1 || calls.get("Fetch") == 0 {
		t.Fatalf("calls %v: want one refused Consume, then Fetch", calls.n)
	}
}
