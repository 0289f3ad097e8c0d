package brokerd_test

import (
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/raftqerr"
)

// A write sent to a follower while its leader has just died is held until
// the new leader is elected and then forwarded there: one call, no
// NOT_LEADER, no client back-off. Raw gRPC (no SDK retries), so a follower
// that answered at once (NOT_LEADER without a hint, or a failed forward to
// the dead leader) fails the test. Nothing is sent to the dead leader, so
// the job exists exactly once.
func TestFollowerHoldsWriteThroughElection(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	ctx := testutil.Context(t, time.Minute)
	leader := c.WaitLeader(30 * time.Second)
	var follower *testcluster.Member
	for _, m := range c.Members() {
		if m.Node != leader {
			follower = m
			break
		}
	}
	conn, err := grpc.NewClient(follower.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	b := raftqv1.NewBrokerClient(conn)
	// Warm the follower's forwarding path while the leader lives.
	if _, err := b.Enqueue(ctx, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{client.NewJob("fo", "warm", nil)}}); err != nil {
		t.Fatal(err)
	}
	dead := c.Member(leader.ID()).GRPCAddr
	c.Kill(leader.ID())
	// Gone for real: its port refuses connections (as after a SIGKILL).
	// A call sent while it was still closing would rightly be
	// INDETERMINATE; this test is about the election after.
	for {
		cn, err := net.DialTimeout("tcp", dead, time.Second)
		if err != nil {
			break
		}
		cn.Close()
		time.Sleep(5 * time.Millisecond)
	}
	spec := client.NewJob("fo", "t", nil, client.WithIdempotencyKey("held-through-election"))
	req := &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{spec}}
	res, err := b.Enqueue(ctx, req)
	if _, hint := raftqerr.LeaderHint(err); err != nil && hint == follower.GRPCAddr {
		// The follower itself won the election while it held the call:
		// it says so, and the same call again is served there.
		res, err = b.Enqueue(ctx, req)
	}
	if err != nil {
		t.Fatalf("enqueue on a follower right after the leader died: %v", err)
	}
	if res.Results[0].Duplicate {
		t.Fatal("first enqueue answered as a duplicate")
	}
	newLeader := c.WaitLeader(30 * time.Second)
	if newLeader.ID() == leader.ID() {
		t.Fatal("no new leader")
	}
	// Exactly one job under the key.
	cl := c.Client()
	again, err := cl.Enqueue(ctx, spec)
	if err != nil || !again[0].Duplicate || again[0].JobId != res.Results[0].JobId {
		t.Fatalf("the held write was not committed exactly once: %v %v", again, err)
	}
}
