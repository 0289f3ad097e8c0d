package worker_test

import (
	"context"
	"fmt"
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

// The broker leader is killed while 4 workers drain 10,000 jobs: every job
// completes, none is acked twice (a job may run twice: a fetch answer lost
// with the leader strands its jobs until their lease expires), and each
// worker's SDK found the new leader by itself. Both ways of taking jobs:
// Consume streams (the default; they end with the leader and are opened
// again on the new one) and Fetch long polls.
func TestFailoverLeaderKilledWhileDraining(t *testing.T) {
	for _, mode := range []struct {
		name     string
		useFetch bool
	}{{"consume", false}, {"fetch", true}} {
		t.Run(mode.name, func(t *testing.T) { testLeaderKilledWhileDraining(t, mode.useFetch) })
	}
}

func testLeaderKilledWhileDraining(t *testing.T, useFetch bool) {
	const (
		total   = 10000
		workers = 4
		queue   = "drain"
	)
	c := testcluster.New(t, 3, nil)
	prod := newClient(t, c)
	ctx := testutil.Context(t, 3*time.Minute)
	for b := 0; b < total/1000; b++ {
		var specs []*raftqv1.JobSpec
		for i := 0; i < 1000; i++ {
			specs = append(specs, client.NewJob(queue, "work", []byte(fmt.Sprint(b*1000+i)),
				client.WithLeaseDuration(3*time.Second), client.WithRetry(50*time.Millisecond, 500*time.Millisecond)))
		}
		if _, err := prod.Enqueue(ctx, specs...); err != nil {
			t.Fatal(err)
		}
	}

	var (
		mu       sync.Mutex
		acks     = map[string]int{}
		runs     = map[string]int{}
		killedAt atomic.Int64 // unix nanos, 0 before the kill
		acked    atomic.Int64
	)
	acksAfterKill := make([]atomic.Int64, workers)
	var clients []*client.Client
	var rs []*running
	for i := 0; i < workers; i++ {
		cl := newClient(t, c)
		clients = append(clients, cl)
		w := worker.New(cl, worker.Options{
			Queues:   []worker.QueueConfig{{Name: queue, Concurrency: 16}},
			WorkerID: fmt.Sprintf("w%d", i),
			PollWait: 2 * time.Second,
			UseFetch: useFetch,
			Logger:   testutil.Logger(t),
			OnSettle: func(job *worker.Job, s worker.Settlement) {
				if s.Action != worker.ActionAcked {
					return
				}
				mu.Lock()
				acks[job.ID]++
				mu.Unlock()
				acked.Add(1)
				if killedAt.Load() != 0 {
					acksAfterKill[i].Add(1)
				}
			},
		})
		w.Handle("work", func(ctx context.Context, job *worker.Job) error {
			mu.Lock()
			runs[job.ID]++
			mu.Unlock()
			return nil
		})
		rs = append(rs, start(t, w))
	}

	testutil.WaitFor(t, 2*time.Minute, "a quarter of the jobs acked", func() bool { return acked.Load() >= total/4 })
	old := c.Leader()
	killedAt.Store(time.Now().UnixNano())
	c.Kill(old.ID())
	t.Logf("killed leader %s after %d acks", old.ID(), acked.Load())
	nl := c.WaitLeader(30 * time.Second)
	t.Logf("new leader %s", nl.ID())

	testutil.WaitFor(t, 2*time.Minute, "every job acked", func() bool { return acked.Load() >= total })
	for _, r := range rs {
		r.stop(t)
	}
	stats, err := prod.QueueStats(ctx, queue)
	if err != nil {
		t.Fatal(err)
	}
	if s := stats[0]; s.Succeeded != total || s.Leased+s.Ready+s.Scheduled+s.Dead != 0 {
		t.Fatalf("queue after drain: %+v", s)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(acks) != total {
		t.Fatalf("%d distinct jobs acked, want %d", len(acks), total)
	}
	reruns := 0
	for id, n := range acks {
		if n != 1 {
			t.Fatalf("job %s acked %d times", id, n)
		}
		if runs[id] > 1 {
			reruns++
		}
	}
	t.Logf("jobs run more than once (at-least-once redeliveries): %d", reruns)
	for i, cl := range clients {
		if a := acksAfterKill[i].Load(); a == 0 {
			t.Errorf("worker %d acked nothing after the leader was killed", i)
		}
		// Followers forward calls, so a client may briefly talk to one; its
		// leader probe then moves it to the real leader.
		testutil.WaitFor(t, 30*time.Second, fmt.Sprintf("worker %d's client to follow the new leader", i), func() bool {
			return cl.Leader() == nl.GRPCAddr()
		})
		t.Logf("worker %d: %d acks after the kill", i, acksAfterKill[i].Load())
	}
}

// With no broker answering (two of three nodes down), a running worker
// keeps retrying with back-off and resumes by itself once a quorum is back.
func TestFailoverWorkerResumesAfterQuorumLoss(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	prod := newClient(t, c)
	ctx := testutil.Context(t, 3*time.Minute)
	var acked atomic.Int64
	w := worker.New(newClient(t, c), worker.Options{
		Queues:   []worker.QueueConfig{{Name: "q", Concurrency: 4}},
		PollWait: time.Second,
		Logger:   testutil.Logger(t),
		OnSettle: countAcked(&acked),
	})
	w.Handle("t", func(context.Context, *worker.Job) error { return nil })
	r := start(t, w)
	enqueue := func(n int) {
		specs := make([]*raftqv1.JobSpec, n)
		for i := range specs {
			specs[i] = client.NewJob("q", "t", nil)
		}
		if _, err := prod.Enqueue(ctx, specs...); err != nil {
			t.Fatal(err)
		}
	}
	enqueue(50)
	testutil.WaitFor(t, time.Minute, "first jobs acked", func() bool { return acked.Load() == 50 })

	leader := c.Leader().ID()
	down := []string{leader}
	for _, m := range c.Members() {
		if m.ID != leader && len(down) < 2 {
			down = append(down, m.ID)
		}
	}
	for _, id := range down {
		c.Kill(id)
	}
	time.Sleep(3 * time.Second) // the worker's fetches fail and back off meanwhile
	for _, id := range down {
		c.Restart(id)
	}
	c.WaitLeader(30 * time.Second)
	enqueue(50)
	testutil.WaitFor(t, time.Minute, "jobs enqueued after the outage acked", func() bool { return acked.Load() == 100 })
	r.stop(t)
}
