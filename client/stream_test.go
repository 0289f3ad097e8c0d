package client_test

import (
	"context"
	"errors"
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
)

// streamAnswers counts, through a stream interceptor, the EnqueueStream
// answers the client receives and the item errors among them by reason.
type streamAnswers struct {
	mu      sync.Mutex
	answers int
	sent    int
	reasons map[raftqv1.ErrorDetail_Reason]int
	streams atomic.Int32
}

type countingStream struct {
	grpc.ClientStream
	a *streamAnswers
}

func (s countingStream) SendMsg(m any) error {
	s.a.mu.Lock()
	s.a.sent++
	s.a.mu.Unlock()
	return s.ClientStream.SendMsg(m)
}

func (s countingStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if r, ok := m.(*raftqv1.EnqueueStreamResponse); ok && err == nil {
		s.a.mu.Lock()
		s.a.answers++
		if e := r.GetError(); e != nil {
			s.a.reasons[e.GetDetail().GetReason()]++
		}
		s.a.mu.Unlock()
	}
	return err
}

func (a *streamAnswers) intercept(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil || method != raftqv1.Broker_EnqueueStream_FullMethodName {
		return s, err
	}
	a.streams.Add(1)
	return countingStream{s, a}, nil
}

// The leader is killed while 16 producers pipeline EnqueueOne calls over
// the client's EnqueueStream. Every call ends with a job id or with an
// error that is definite or INDETERMINATE; every item error the brokers
// sent on the streams is one of those too. Retrying every key afterwards
// returns the first job (duplicate) for each acknowledged one and creates
// no second job for any key: the queue holds exactly one job per key.
func TestStreamedEnqueueSurvivesLeaderKill(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	ans := &streamAnswers{reasons: map[raftqv1.ErrorDetail_Reason]int{}}
	cl, err := client.New(c.Addrs(), client.Options{DialOptions: []grpc.DialOption{grpc.WithChainStreamInterceptor(ans.intercept)}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := testutil.Context(t, 3*time.Minute)

	const producers = 16
	var mu sync.Mutex
	ids := map[string]string{} // key -> job id, for acknowledged enqueues
	var keys []string
	var failed []error
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("p%d-%d", p, i)
				mu.Lock()
				keys = append(keys, key)
				mu.Unlock()
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				id, _, err := cl.EnqueueOne(cctx, "streamed", "t", []byte(key), client.WithIdempotencyKey(key))
				cancel()
				mu.Lock()
				if err != nil {
					failed = append(failed, err)
				} else {
					ids[key] = id
				}
				mu.Unlock()
			}
		}()
	}
	acked := func() int { mu.Lock(); defer mu.Unlock(); return len(ids) }
	testutil.WaitFor(t, time.Minute, "300 acknowledged enqueues", func() bool { return acked() >= 300 })
	old := c.Leader()
	c.Kill(old.ID())
	if nl := c.WaitLeader(30 * time.Second); nl.ID() == old.ID() {
		t.Fatal("same leader after kill")
	}
	before := acked()
	testutil.WaitFor(t, time.Minute, "300 more under the new leader", func() bool { return acked() >= before+300 })
	close(stop)
	wg.Wait()

	// Failed calls: the client's own deadline (it kept retrying), or a
	// definite or indeterminate answer — never anything else.
	for _, err := range failed {
		if !errors.Is(err, context.DeadlineExceeded) && !client.IsIndeterminate(err) && client.Reason(err) != raftqv1.ErrorDetail_NOT_LEADER {
			t.Fatalf("an enqueue failed with an error that is neither definite nor indeterminate: %v", err)
		}
	}
	ans.mu.Lock()
	for reason, n := range ans.reasons {
		if reason != raftqv1.ErrorDetail_NOT_LEADER && reason != raftqv1.ErrorDetail_INDETERMINATE {
			t.Fatalf("%d stream answers refused with %s", n, reason)
		}
	}
	t.Logf("%d keys, %d acknowledged, %d failed calls; %d streams, %d frames sent, %d answered, item errors %v",
		len(keys), len(ids), len(failed), ans.streams.Load(), ans.sent, ans.answers, ans.reasons)
	ans.mu.Unlock()
	if ans.streams.Load() < 2 {
		t.Fatalf("the client opened %d streams: it never moved to the new leader's", ans.streams.Load())
	}

	// Retry every key: the acknowledged ones return their first job.
	for _, key := range keys {
		id, dup, err := cl.EnqueueOne(ctx, "streamed", "t", []byte(key), client.WithIdempotencyKey(key))
		if err != nil {
			t.Fatalf("retry of %s: %v", key, err)
		}
		if first, ok := ids[key]; ok && (id != first || !dup) {
			t.Fatalf("retry of acknowledged %s: job %s duplicate=%v, first was %s", key, id, dup, first)
		}
		ids[key] = id
	}
	st, err := cl.QueueStats(ctx, "streamed")
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].Ready != int64(len(keys)) {
		t.Fatalf("queue holds %v; want exactly one job per key (%d)", st, len(keys))
	}
}
