package client_test

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// A client that knows only a follower opens Consume on the leader (the
// follower's NOT_LEADER names it), gets no job before it grants credit,
// and gets the job after; CloseSend ends the stream with io.EOF.
func TestConsumeFollowsLeaderHint(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	c.WaitAnnounced(20 * time.Second)
	ctx := testutil.Context(t, time.Minute)
	leader := c.Leader()
	var follower string
	for _, n := range c.Up() {
		if n.ID() != leader.ID() {
			follower = n.GRPCAddr()
		}
	}
	cl, err := client.New([]string{follower}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	id, _, err := cl.EnqueueOne(ctx, "cq", "t", nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := cl.Consume(ctx, &raftqv1.ConsumeOpen{Queues: []string{"cq"}, WorkerId: "w"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if cl.Leader() != leader.GRPCAddr() || s.MaxCredit <= 0 {
		t.Fatalf("consuming through %q (max credit %d), want the leader %s", cl.Leader(), s.MaxCredit, leader.GRPCAddr())
	}
	if st, err := cl.QueueStats(ctx, "cq"); err != nil || st[0].Leased != 0 {
		t.Fatalf("before any credit: %v %v", st, err)
	}
	if err := s.Credit(1); err != nil {
		t.Fatal(err)
	}
	r, err := s.Recv()
	if err != nil || r.GetJob().GetId() != id {
		t.Fatalf("recv %v %v, want job %s", r, err, id)
	}
	if err := cl.Ack(ctx, id, r.GetJob().GetLeaseToken()); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after CloseSend: %v %v, want EOF", r, err)
	}
}
