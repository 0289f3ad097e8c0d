package client_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/raftqerr"
)

// dropResponses lets Enqueue calls reach the broker and then loses the
// first n answers, returning Unavailable instead: what a producer sees when
// a connection dies after the broker committed.
func dropResponses(n int32, reached *atomic.Int32) grpc.DialOption {
	left := new(atomic.Int32)
	left.Store(n)
	return grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		if method != raftqv1.Broker_Enqueue_FullMethodName {
			return err
		}
		reached.Add(1)
		if err == nil && left.Add(-1) >= 0 {
			return status.Error(codes.Unavailable, "test: response lost")
		}
		return err
	})
}

// A producer whose enqueue answers are lost retries with the same
// idempotency key and gets the first job back: exactly one job exists, for
// a single job and for a batch.
func TestEnqueueLostResponseYieldsOneJob(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	var reached atomic.Int32
	cl, err := client.New(c.Addrs(), client.Options{DialOptions: []grpc.DialOption{dropResponses(2, &reached)}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := testutil.Context(t, time.Minute)

	// Enqueue (unary; EnqueueOne streams, see stream_test.go).
	res, err := cl.Enqueue(ctx, client.NewJob("lost", "echo", []byte("once")))
	if err != nil {
		t.Fatal(err)
	}
	id, dup := res[0].JobId, res[0].Duplicate
	if reached.Load() != 3 || !dup {
		t.Fatalf("enqueue reached the broker %d times (want 3: two lost answers, one kept), duplicate=%v", reached.Load(), dup)
	}
	stats, err := cl.QueueStats(ctx, "lost")
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) != 1 || stats[0].Ready != 1 {
		t.Fatalf("queue holds %v; want exactly one job", stats)
	}
	j, err := cl.GetJob(ctx, id, 0)
	if err != nil || string(j.Payload) != "once" {
		t.Fatalf("job %s: %v %v", id, j, err)
	}

	// A batch: the same all-or-nothing de-duplication.
	var reachedB atomic.Int32
	clB, err := client.New(c.Addrs(), client.Options{DialOptions: []grpc.DialOption{dropResponses(1, &reachedB)}})
	if err != nil {
		t.Fatal(err)
	}
	defer clB.Close()
	var specs []*raftqv1.JobSpec
	for i := 0; i < 5; i++ {
		specs = append(specs, client.NewJob("lost-batch", "echo", nil))
	}
	res, err = clB.Enqueue(ctx, specs...)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 5 || !res[0].Duplicate {
		t.Fatalf("batch results %v", res)
	}
	stats, err = clB.QueueStats(ctx, "lost-batch")
	if err != nil || len(stats) != 1 || stats[0].Ready != 5 {
		t.Fatalf("batch queue holds %v (%v); want exactly five jobs", stats, err)
	}

	// A producer-level retry with the same specs (after its own timeout,
	// say) is de-duplicated as well, because Enqueue wrote the keys into
	// them.
	again, err := clB.Enqueue(ctx, specs...)
	if err != nil {
		t.Fatal(err)
	}
	for i := range again {
		if again[i].JobId != res[i].JobId || !again[i].Duplicate {
			t.Fatalf("retried batch item %d: %v, first %v", i, again[i], res[i])
		}
	}
}

// NewJob's options set the wire fields; delay and run_at exclude each
// other.
func TestNewJobOptions(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	s := client.NewJob("q", "t", []byte("p"),
		client.WithPriority(7), client.WithDelay(time.Minute), client.WithRunAt(at),
		client.WithMaxAttempts(3), client.WithLeaseDuration(10*time.Second),
		client.WithIdempotencyKey("k1"), client.WithDedupWindow(time.Hour),
		client.WithRetry(time.Second, time.Minute))
	if s.Queue != "q" || s.Type != "t" || string(s.Payload) != "p" || s.Priority != 7 || s.Delay != nil ||
		!s.RunAt.AsTime().Equal(at) || s.MaxAttempts != 3 || s.LeaseDuration.AsDuration() != 10*time.Second ||
		s.IdempotencyKey != "k1" || s.DedupWindow.AsDuration() != time.Hour ||
		s.Retry.InitialBackoff.AsDuration() != time.Second || s.Retry.MaxBackoff.AsDuration() != time.Minute {
		t.Fatalf("spec: %v", s)
	}
	if s := client.NewJob("q", "t", nil, client.WithRunAt(at), client.WithDelay(time.Second)); s.RunAt != nil || s.Delay.AsDuration() != time.Second {
		t.Fatalf("delay after run_at: %v", s)
	}
}

// Calls on a closed client fail at once instead of redialling or retrying.
func TestClosedClient(t *testing.T) {
	cl, err := client.New([]string{"127.0.0.1:1"}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cl.Close()
	if _, _, err := cl.EnqueueOne(testutil.Context(t, time.Minute), "q", "t", nil); err != client.ErrClosed {
		t.Fatalf("enqueue on a closed client: %v", err)
	}
}

// Keys Enqueue makes are UUIDv7, increasing across a batch and across
// calls: the broker's store keeps idempotency keys in key order, and keys
// arriving in order are appended instead of dirtying a random page each.
// Status leaves the state hash out (it costs the broker a full read of its
// store) and StatusWithHash carries the node's FSM hash.
func TestAutoKeysTimeOrderedAndStatusHashOnRequest(t *testing.T) {
	c := testcluster.New(t, 1, nil)
	cl := c.Client()
	ctx := testutil.Context(t, time.Minute)
	var keys []string
	for range 3 {
		specs := []*raftqv1.JobSpec{{Queue: "k", Type: "t"}, {Queue: "k", Type: "t"}, {Queue: "k", Type: "t"}}
		if _, err := cl.Enqueue(ctx, specs...); err != nil {
			t.Fatal(err)
		}
		for _, s := range specs {
			keys = append(keys, s.IdempotencyKey)
		}
	}
	for i, k := range keys {
		rest, ok := strings.CutPrefix(k, "auto-")
		id, err := uuid.Parse(rest)
		if !ok || err != nil || id.Version() != 7 {
			t.Fatalf("key %q: not auto-<UUIDv7> (%v)", k, err)
		}
		if i > 0 && k <= keys[i-1] {
			t.Fatalf("key %d %q does not sort after %q", i, k, keys[i-1])
		}
	}

	addr := c.Members()[0].GRPCAddr
	st, err := cl.Status(ctx, addr)
	if err != nil || st.StateHash != "" || st.AppliedIndex == 0 {
		t.Fatalf("Status: %v, %v; want no hash", st, err)
	}
	st, err = cl.StatusWithHash(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	if want := c.Leader().FSM().Hash(); st.StateHash != want {
		t.Fatalf("StatusWithHash hash %q, FSM's %q", st.StateHash, want)
	}
}

// Do is the client's own retry for calls it has no method for: given only
// a follower, it follows the follower's NOT_LEADER hint to the leader;
// an INDETERMINATE answer runs the call again; a definite error ends it
// after one try.
func TestDoFollowsLeaderAndRetriesOnlyUnavailable(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	leader := c.WaitLeader(10 * time.Second)
	var follower string
	for _, n := range c.Up() {
		if n.ID() != leader.ID() {
			follower = n.GRPCAddr()
			break
		}
	}
	cl, err := client.New([]string{follower}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := testutil.Context(t, 30*time.Second)

	// A call only a leader does: a follower answers NOT_LEADER naming it,
	// as brokers do for what they do not forward.
	var ranOn []string
	err = cl.Do(ctx, func(ctx context.Context, cc *grpc.ClientConn) error {
		st, err := raftqv1.NewClusterClient(cc).Status(ctx, &raftqv1.StatusRequest{})
		if err != nil {
			return err
		}
		ranOn = append(ranOn, st.NodeId)
		if st.State != "Leader" {
			return raftqerr.NotLeader(st.LeaderId, st.LeaderAddr)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ranOn) < 2 || ranOn[0] == leader.ID() || ranOn[len(ranOn)-1] != leader.ID() {
		t.Fatalf("ran on %v, want the follower, then (hinted) the leader %s", ranOn, leader.ID())
	}

	tries := 0
	err = cl.Do(ctx, func(ctx context.Context, cc *grpc.ClientConn) error {
		if tries++; tries == 1 {
			return raftqerr.New(codes.Unavailable, raftqv1.ErrorDetail_INDETERMINATE, "test: answer lost")
		}
		return nil
	})
	if err != nil || tries != 2 {
		t.Fatalf("after an INDETERMINATE answer: %v after %d tries, want success on the 2nd", err, tries)
	}

	tries = 0
	err = cl.Do(ctx, func(ctx context.Context, cc *grpc.ClientConn) error {
		tries++
		return status.Error(codes.FailedPrecondition, "test: definite")
	})
	if status.Code(err) != codes.FailedPrecondition || tries != 1 {
		t.Fatalf("definite error: %v after %d tries, want it after one", err, tries)
	}
}
