package client_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/placement"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// On a cluster of several Raft groups the client sends each call to the
// leader of its queue's or job's group, learns the route map by itself,
// and corrects a stale entry when a group's leadership moves.
func TestClientRoutesToGroupLeaders(t *testing.T) {
	const groups = 3
	c := testcluster.New(t, 3, func(cfg *brokerd.Config) { cfg.Groups = groups })
	leaderOf := func(g int) string {
		if n := c.GroupLeader(g); n != nil {
			return n.GRPCAddr()
		}
		return ""
	}
	// The brokers spread the groups' leaderships over the nodes (so the
	// routes below differ by group).
	testutil.WaitFor(t, 30*time.Second, "each node leads one group", func() bool {
		seen := map[string]bool{}
		for g := 0; g < groups; g++ {
			l := leaderOf(g)
			if l == "" || seen[l] {
				return false
			}
			seen[l] = true
		}
		return true
	})
	qs := placement.QueuesPerGroup("q", groups)
	// Where each call went: the broker address per queue (Enqueue) and
	// per job (Ack).
	var mu sync.Mutex
	sentTo := map[string]string{}
	rec := grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		mu.Lock()
		defer mu.Unlock()
		switch r := req.(type) {
		case *raftqv1.EnqueueRequest:
			sentTo[r.Jobs[0].Queue] = cc.Target()
		case *raftqv1.AckRequest:
			sentTo[r.JobId] = cc.Target()
		}
		return err
	})
	cl, err := client.New(c.Addrs(), client.Options{DialOptions: []grpc.DialOption{rec}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := testutil.Context(t, 60*time.Second)
	direct := func() bool {
		for g, q := range qs {
			if _, err := cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: q, Type: "t"}); err != nil {
				t.Fatalf("enqueue %s: %v", q, err)
			}
			mu.Lock()
			to := sentTo[q]
			mu.Unlock()
			if to != leaderOf(g) {
				return false
			}
		}
		return true
	}
	testutil.WaitFor(t, 10*time.Second, "the client sends each group's enqueues to that group's leader", direct)

	// Acks too go to the job's group's leader.
	for g, q := range qs {
		jobs, err := cl.Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{q}, MaxJobs: 1, WorkerId: "w"})
		if err != nil || len(jobs) != 1 {
			t.Fatalf("fetch %s: %v %v", q, jobs, err)
		}
		if err := cl.Ack(ctx, jobs[0].Id, jobs[0].LeaseToken); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		to := sentTo[jobs[0].Id]
		mu.Unlock()
		if to != leaderOf(g) {
			t.Fatalf("ack of a job of group %d went to %s, its leader is %s", g, to, leaderOf(g))
		}
	}

	// Group 1's leadership moves: the client's route is stale; the old
	// leader forwards its next call and names the new leader, and the
	// client goes there from then on.
	old := leaderOf(1)
	for _, n := range c.Up() {
		if n.GRPCAddr() == old {
			if err := n.Groups()[1].Raft().LeadershipTransfer().Error(); err != nil {
				t.Fatal(err)
			}
		}
	}
	testutil.WaitFor(t, 10*time.Second, "group 1 has a new ready leader", func() bool {
		l := leaderOf(1)
		return l != "" && l != old
	})
	testutil.WaitFor(t, 10*time.Second, "the client follows group 1's new leader", direct)

	// Group 2's leader dies while the client makes no call: its route
	// watch tells it who leads group 2 now.
	old = leaderOf(2)
	for _, n := range c.Up() {
		if n.GRPCAddr() == old {
			c.Kill(n.ID())
		}
	}
	testutil.WaitFor(t, 20*time.Second, "the client's map names group 2's new leader without a call", func() bool {
		l := leaderOf(2)
		gl := cl.GroupLeaders()
		return l != "" && l != old && len(gl) == groups && gl[2] == l
	})
}
