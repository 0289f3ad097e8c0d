package worker_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/worker"
)

// callCounter counts the client's settle calls and the acks they carry.
// Its first AckBatch call waits until every handler has returned, so the
// acks of the other jobs are waiting behind it whatever the scheduling.
type callCounter struct {
	allReturned <-chan struct{}
	first       sync.Once

	acks, ackBatches, ackedItems atomic.Int32
}

func (c *callCounter) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	switch method {
	case "/raftq.v1.Broker/Ack":
		c.acks.Add(1)
	case "/raftq.v1.Broker/AckBatch":
		c.first.Do(func() { <-c.allReturned })
		c.ackBatches.Add(1)
		c.ackedItems.Add(int32(len(req.(*raftqv1.AckBatchRequest).Items)))
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// N jobs that finish together are acked in fewer than N broker calls (the
// worker group-commits its acks into AckBatch calls), each job is acked
// exactly once and ends SUCCEEDED.
func TestConcurrentAcksAreCoalesced(t *testing.T) {
	const n = 16
	c := testcluster.New(t, 3, nil)
	allReturned := make(chan struct{})
	counter := &callCounter{allReturned: allReturned}
	cl, err := client.New(c.Addrs(), client.Options{DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(counter.intercept)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	ctx := testutil.Context(t, 2*time.Minute)
	var ids []string
	for i := range n {
		id, _, err := cl.EnqueueOne(ctx, "coalesce", "job", []byte(fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	var log settleLog
	w := worker.New(cl, worker.Options{Queues: []worker.QueueConfig{{Name: "coalesce", Concurrency: n}}, Logger: testutil.Logger(t), OnSettle: log.add})
	allStarted := make(chan struct{})
	var started, returned atomic.Int32
	w.Handle("job", func(ctx context.Context, job *worker.Job) error {
		if started.Add(1) == n {
			close(allStarted)
		}
		<-allStarted
		defer func() {
			if returned.Add(1) == n {
				close(allReturned)
			}
		}()
		return nil
	})
	r := start(t, w)
	for _, id := range ids {
		testcluster.WaitJobState(t, cl, id, raftqv1.JobState_JOB_STATE_SUCCEEDED)
	}
	testutil.WaitFor(t, time.Minute, "every job settled", func() bool { return log.count(worker.ActionAcked) == n })
	r.stop(t)
	calls := counter.acks.Load() + counter.ackBatches.Load()
	t.Logf("%d jobs acked in %d AckBatch calls and %d Ack calls", n, counter.ackBatches.Load(), counter.acks.Load())
	if calls >= n || counter.acks.Load() != 0 {
		t.Fatalf("%d jobs took %d ack calls (%d single); want fewer than %d batch calls", n, calls, counter.acks.Load(), n)
	}
	if got := counter.ackedItems.Load(); got != n {
		t.Fatalf("%d acks sent for %d jobs", got, n)
	}
}
