package worker_test

import (
	"context"
	"errors"
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

// running is a worker started in the background.
type running struct {
	w      *worker.Worker
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// stop cancels the worker's context and waits for Run to return.
func (r *running) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		if r.err != nil {
			t.Errorf("Run: %v", r.err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("worker did not stop")
	}
}

func start(t testing.TB, w *worker.Worker) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{w: w, cancel: cancel, done: make(chan struct{})}
	go func() {
		r.err = w.Run(ctx)
		close(r.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(2 * time.Minute):
		}
	})
	return r
}

func newClient(t testing.TB, c *testcluster.Cluster) *client.Client {
	cl, err := client.New(c.Addrs(), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func getJob(t testing.TB, cl *client.Client, id string) *raftqv1.Job {
	t.Helper()
	j, err := cl.GetJob(testutil.Context(t, 30*time.Second), id, 0)
	if err != nil {
		t.Fatalf("GetJob %s: %v", id, err)
	}
	return j
}

// settleLog collects settlements, for assertions.
type settleLog struct {
	mu  sync.Mutex
	all []settled
}

type settled struct {
	job *worker.Job
	s   worker.Settlement
}

func (l *settleLog) add(j *worker.Job, s worker.Settlement) {
	l.mu.Lock()
	l.all = append(l.all, settled{j, s})
	l.mu.Unlock()
}

func (l *settleLog) count(action worker.Action) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.all {
		if s.s.Action == action {
			n++
		}
	}
	return n
}

// countAcked is an OnSettle that counts the acked settlements in n.
func countAcked(n *atomic.Int64) func(*worker.Job, worker.Settlement) {
	return func(_ *worker.Job, s worker.Settlement) {
		if s.Action == worker.ActionAcked {
			n.Add(1)
		}
	}
}

// blocking is a "block" handler (blocker) that holds its job until the
// job's context ends: started is closed when it begins, stopped gets the
// context's cause (why the worker stopped the handler).
type blocking struct {
	started <-chan struct{}
	stopped <-chan error
}

func blocker(w *worker.Worker) blocking {
	begun := make(chan struct{})
	cause := make(chan error, 1)
	w.Handle("block", func(ctx context.Context, job *worker.Job) error {
		close(begun)
		<-ctx.Done()
		cause <- context.Cause(ctx)
		return ctx.Err()
	})
	return blocking{started: begun, stopped: cause}
}

// cancelled fails t unless the handler's context ends because its job was
// cancelled (the 30 s are a hang guard).
func (b blocking) cancelled(t testing.TB) {
	t.Helper()
	select {
	case cause := <-b.stopped:
		if !errors.Is(cause, worker.ErrJobCancelled) {
			t.Fatalf("cause %v, want ErrJobCancelled", cause)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("handler context never cancelled")
	}
}
