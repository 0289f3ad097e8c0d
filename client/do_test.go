package client_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/raftqerr"
)

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
