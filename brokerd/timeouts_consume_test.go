package brokerd_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/testcluster"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/raftqerr"
)

// A start-to-close expiry on a Consume stream is pushed as LEASE_LOST,
// like an expired lease, although the worker extended the lease all
// along; its token is then stale for extend and ack. A Consume stream may
// ask for weighted selection, and a bad weight ends the open with
// InvalidArgument.
func TestConsumeStartToCloseIsLeaseLost(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	consumeEnqueue(t, ctx, cl, "stc", 1, client.WithLeaseDuration(2*time.Second), client.WithStartToClose(3*time.Second))
	bc := plainBroker(t, c.Leader().GRPCAddr())
	st, err := consumeFirst(t, ctx, bc, openFrame(&raftqv1.ConsumeOpen{Queues: []string{"stc"}, WorkerId: "w", Credit: 1}))
	if err != nil {
		t.Fatal(err)
	}
	j := recvFrame(t, st).GetJob()
	if j == nil || j.GetAttemptDeadline() == nil {
		t.Fatalf("pushed job %v, want one with an attempt deadline", j)
	}
	// Keep the lease alive well past the attempt deadline (extended 8
	// times a lease, so a slow machine does not let it expire first).
	stopExtending := make(chan struct{})
	extended := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stopExtending:
				extended <- nil
				return
			case <-time.After(250 * time.Millisecond):
			}
			if _, err := cl.ExtendLease(ctx, &raftqv1.ExtendLeaseRequest{JobId: j.Id, LeaseToken: j.LeaseToken}); err != nil {
				extended <- err
				return
			}
		}
	}()
	n := recvFrame(t, st).GetNotice()
	close(stopExtending)
	if n.GetJobId() != j.Id || n.GetLeaseToken() != j.LeaseToken || n.GetKind() != raftqv1.ConsumeNotice_KIND_LEASE_LOST {
		t.Fatalf("notice %v, want LEASE_LOST of %s", n, j.Id)
	}
	if err := <-extended; err != nil && raftqerr.Reason(err) != raftqv1.ErrorDetail_STALE_TOKEN {
		t.Fatalf("extension after the timeout: %v, want STALE_TOKEN", err)
	}
	if err := cl.Ack(ctx, j.Id, j.LeaseToken); raftqerr.Reason(err) != raftqv1.ErrorDetail_STALE_TOKEN {
		t.Fatalf("ack after the timeout: %v, want STALE_TOKEN", err)
	}
	got, err := cl.GetJob(ctx, j.Id, 0)
	if err != nil || got.LastError != "start-to-close timeout" || got.Attempts != 1 {
		t.Fatalf("job %+v %v", got, err)
	}

	// Weighted open: jobs from both queues come on one stream.
	consumeEnqueue(t, ctx, cl, "wa", 3)
	consumeEnqueue(t, ctx, cl, "wb", 3)
	ws, err := consumeFirst(t, ctx, bc, openFrame(&raftqv1.ConsumeOpen{QueueWeights: map[string]int32{"wa": 1, "wb": 1}, WorkerId: "w", Credit: 4}))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for i := 0; i < 4; i++ {
		if j := recvFrame(t, ws).GetJob(); j != nil {
			seen[j.Queue]++
		}
	}
	if seen["wa"] != 2 || seen["wb"] != 2 {
		t.Fatalf("weighted stream served %v, want 2 of each", seen)
	}
	bad, err := bc.Consume(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.Send(openFrame(&raftqv1.ConsumeOpen{Queues: []string{"wa"}, QueueWeights: map[string]int32{"wa": 0}})); err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("open with weight 0: %v, want InvalidArgument", err)
	}
}
