package worker_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/testcluster"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/worker"
)

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func testLogger() *slog.Logger {
	if os.Getenv("RAFTQ_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// waitFor polls cond until it holds; the timeout is a hang guard, not a
// performance assertion.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

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
	j, err := cl.GetJob(ctxT(t, 30*time.Second), id, 0)
	if err != nil {
		t.Fatalf("GetJob %s: %v", id, err)
	}
	return j
}

func waitState(t testing.TB, cl *client.Client, id string, st raftqv1.JobState) *raftqv1.Job {
	t.Helper()
	var j *raftqv1.Job
	waitFor(t, 60*time.Second, "job "+id+" in state "+st.String(), func() bool {
		j = getJob(t, cl, id)
		return j.State == st
	})
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
