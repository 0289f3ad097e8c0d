package worker_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/worker"
)

// methodCounter counts the broker calls a client makes, by method name
// (the last part: "GetJob", "Fetch", "Consume", ...).
type methodCounter struct {
	mu sync.Mutex
	n  map[string]int
	// refuse makes these streaming methods fail with UNIMPLEMENTED before
	// they reach the broker: how a broker without them answers.
	refuse map[string]bool
	// refuseCode, when set, is the code refused streams fail with instead.
	refuseCode codes.Code
}

func (c *methodCounter) add(method string) {
	c.mu.Lock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[method[strings.LastIndex(method, "/")+1:]]++
	c.mu.Unlock()
}

func (c *methodCounter) get(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[name]
}

func (c *methodCounter) options() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			c.add(method)
			return invoker(ctx, method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			c.add(method)
			if c.refuse[method[strings.LastIndex(method, "/")+1:]] {
				code := codes.Unimplemented
				if c.refuseCode != codes.OK {
					code = c.refuseCode
				}
				return nil, status.Error(code, "refused "+method)
			}
			return streamer(ctx, desc, cc, method, opts...)
		}),
	}
}

func countingClient(t *testing.T, c *testcluster.Cluster, cc *methodCounter) *client.Client {
	cl, err := client.New(c.Addrs(), client.Options{DialOptions: cc.options()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// A worker consumes by default, and the cancel of a running job reaches
// its handler from the stream's notice: the worker made no GetJob poll
// and no lease extension before the handler's context was cancelled.
func TestConsumeCancelNotice(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	prod := newClient(t, c)
	ctx := testutil.Context(t, 2*time.Minute)
	id, _, err := prod.EnqueueOne(ctx, "cancel", "block", nil, client.WithLeaseDuration(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	var calls methodCounter
	w := worker.New(countingClient(t, c, &calls), worker.Options{Queues: []worker.QueueConfig{{Name: "cancel"}}, Logger: testutil.Logger(t)})
	b := blocker(w)
	r := start(t, w)
	<-b.started
	time.Sleep(time.Second) // two CancelPoll periods: a fetched job would have polled twice
	if _, err := prod.CancelJob(ctx, id); err != nil {
		t.Fatal(err)
	}
	b.cancelled(t)
	if calls.get("Consume") == 0 || calls.get("Fetch") != 0 {
		t.Fatalf("calls %v: want Consume and no Fetch", calls.n)
	}
	if n := calls.get("GetJob") + calls.get("ExtendLease") + calls.get("ExtendLeaseBatch"); n != 0 {
		t.Fatalf("calls %v: the cancel came by polling, not from the stream", calls.n)
	}
	testcluster.WaitJobState(t, prod, id, raftqv1.JobState_JOB_STATE_CANCELLED)
	r.stop(t)
}

// A broker without Consume (UNIMPLEMENTED) gets Fetch long polls instead,
// and jobs flow as before.
func TestConsumeFallsBackToFetch(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	prod := newClient(t, c)
	ctx := testutil.Context(t, 2*time.Minute)
	calls := methodCounter{refuse: map[string]bool{"Consume": true}}
	var acked atomic.Int64
	w := worker.New(countingClient(t, c, &calls), worker.Options{
		Queues:   []worker.QueueConfig{{Name: "old", Concurrency: 2}, {Name: "old2"}},
		PollWait: time.Second,
		Logger:   testutil.Logger(t),
		OnSettle: countAcked(&acked),
	})
	w.Handle("t", func(context.Context, *worker.Job) error { return nil })
	r := start(t, w)
	for i := 0; i < 20; i++ {
		q := "old"
		if i%2 == 1 {
			q = "old2"
		}
		if _, _, err := prod.EnqueueOne(ctx, q, "t", nil); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, time.Minute, "every job acked", func() bool { return acked.Load() == 20 })
	r.stop(t)
	if calls.get("Fetch") == 0 || calls.get("Consume") == 0 || calls.get("Consume") > 2 {
		t.Fatalf("calls %v: want Consume tried once per queue at most, then Fetch", calls.n)
	}
}

// A consuming worker never runs more handlers of a queue than its
// concurrency, and never holds more of its leases than twice that
// (running plus settling), however many jobs are ready.
func TestConsumeKeepsToConcurrency(t *testing.T) {
	const conc, total = 3, 60
	c := testcluster.New(t, 3, nil)
	prod := newClient(t, c)
	ctx := testutil.Context(t, 2*time.Minute)
	specs := make([]*raftqv1.JobSpec, total)
	for i := range specs {
		specs[i] = client.NewJob("conc", "t", nil)
	}
	if _, err := prod.Enqueue(ctx, specs...); err != nil {
		t.Fatal(err)
	}
	var running, maxRunning, acked atomic.Int64
	w := worker.New(newClient(t, c), worker.Options{
		Queues:   []worker.QueueConfig{{Name: "conc", Concurrency: conc}},
		Logger:   testutil.Logger(t),
		OnSettle: countAcked(&acked),
	})
	w.Handle("t", func(context.Context, *worker.Job) error {
		n := running.Add(1)
		for {
			m := maxRunning.Load()
			if n <= m || maxRunning.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		running.Add(-1)
		return nil
	})
	r := start(t, w)
	var maxLeased int64
	for acked.Load() < total {
		st, err := prod.QueueStats(ctx, "conc")
		if err != nil {
			t.Fatal(err)
		}
		maxLeased = max(maxLeased, st[0].Leased)
		if ctx.Err() != nil {
			t.Fatal("jobs not all acked")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.stop(t)
	if maxRunning.Load() > conc || maxLeased > 2*conc {
		t.Fatalf("%d handlers ran at once and %d jobs were leased at once; concurrency %d", maxRunning.Load(), maxLeased, conc)
	}
	t.Logf("at most %d handlers ran and %d jobs were leased at once", maxRunning.Load(), maxLeased)
}

// A broker whose stream cap (limits.max_streams) refuses a queue's
// Consume stream gets Fetch long polls for that queue; the other queue
// keeps its stream, and every job of both is acked.
func TestConsumeStreamCapFallsBackToFetch(t *testing.T) {
	c := testcluster.New(t, 3, func(cfg *brokerd.Config) { cfg.Limits.MaxStreams = 1 })
	prod := newClient(t, c)
	ctx := testutil.Context(t, 2*time.Minute)
	var calls methodCounter
	var acked atomic.Int64
	w := worker.New(countingClient(t, c, &calls), worker.Options{
		Queues:   []worker.QueueConfig{{Name: "a"}, {Name: "b"}},
		PollWait: time.Second,
		Logger:   testutil.Logger(t),
		OnSettle: countAcked(&acked),
	})
	w.Handle("t", func(context.Context, *worker.Job) error { return nil })
	r := start(t, w)
	var specs []*raftqv1.JobSpec
	for i := 0; i < 10; i++ {
		specs = append(specs, client.NewJob("a", "t", nil), client.NewJob("b", "t", nil))
	}
	if _, err := prod.Enqueue(ctx, specs...); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, time.Minute, "every job acked", func() bool { return acked.Load() == 20 })
	r.stop(t)
	if calls.get("Consume") < 2 || calls.get("Fetch") == 0 {
		t.Fatalf("calls %v: want both queues to try Consume and one to fetch", calls.n)
	}
}
