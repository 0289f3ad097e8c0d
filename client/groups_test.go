package client_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/placement"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// groupCluster starts a 3-node cluster running groups Raft groups (no
// more than 3) and waits until the brokers have spread the groups'
// leaderships over the nodes, each node leading one group, so that calls
// routed to different groups go to different nodes. leaderOf(g) is the
// gRPC address of group g's ready leader ("" while it has none).
func groupCluster(t *testing.T, groups int) (c *testcluster.Cluster, leaderOf func(g int) string) {
	t.Helper()
	c = testcluster.New(t, 3, func(cfg *brokerd.Config) { cfg.Groups = groups })
	leaderOf = func(g int) string {
		if n := c.GroupLeader(g); n != nil {
			return n.GRPCAddr()
		}
		return ""
	}
	waitSpread(t, groups, leaderOf)
	return c, leaderOf
}

// waitSpread waits until each of the nodes leads one of the groups.
func waitSpread(t *testing.T, groups int, leaderOf func(g int) string) {
	t.Helper()
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
}

// On a cluster of several Raft groups the client sends each call to the
// leader of its queue's or job's group, learns the route map by itself,
// and corrects a stale entry when a group's leadership moves.
func TestClientRoutesToGroupLeaders(t *testing.T) {
	const groups = 3
	c, leaderOf := groupCluster(t, groups)
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

// A queue an operator moved to another group: the client's route map
// carries the placement table (from WatchRoutes, without a call), and the
// queue's calls go straight to the leader of the group that takes its new
// jobs, while the move drains and after it is done, not to the leader of
// the group its name hashes to (which would route them on).
func TestClientRoutesMovedQueue(t *testing.T) {
	const groups = 3
	// Distinct leaders, so the hashed group's leader is not the new one's.
	c, leaderOf := groupCluster(t, groups)
	q := placement.QueuesPerGroup("moved", groups)[0] // hashes to group 0
	const to = 2
	// Where the last Enqueue went, and whether the broker there forwarded
	// it (it names the group's leader in the response header then).
	var mu sync.Mutex
	var sentTo string
	var forwarded bool
	rec := grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		var md metadata.MD
		err := invoker(ctx, method, req, reply, cc, append(opts, grpc.Header(&md))...)
		if _, ok := req.(*raftqv1.EnqueueRequest); ok && err == nil {
			mu.Lock()
			sentTo, forwarded = cc.Target(), len(md.Get(brokerd.GroupLeaderHeader)) > 0
			mu.Unlock()
		}
		return err
	})
	cl, err := client.New(c.Addrs(), client.Options{DialOptions: []grpc.DialOption{rec}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := testutil.Context(t, 90*time.Second)
	// enqueue reports whether an Enqueue of q went straight to group g's
	// leader (and, with unforwarded, was served there without a hop) and
	// landed in group g.
	enqueue := func(g int, unforwarded bool) bool {
		res, err := cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: q, Type: "t"})
		if err != nil {
			t.Fatalf("enqueue %s: %v", q, err)
		}
		if jg, err := placement.Job(res[0].JobId, groups); err != nil || int(jg) != g {
			t.Logf("job %s of %s is in group %d (%v), want %d", res[0].JobId, q, jg, err, g)
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		return sentTo == leaderOf(g) && (!unforwarded || !forwarded)
	}
	// The client learns the route map after its first call.
	testutil.WaitFor(t, 10*time.Second, "the client routes the queue to its hashed group", func() bool {
		if !enqueue(0, true) {
			return false
		}
		g, ok := cl.QueueGroup(q)
		return ok && g == 0
	})
	// A route watcher of its own, on a node that may lead no group
	// involved: it is sent the routes again when the table changes.
	cc, err := grpc.NewClient(c.Addrs()[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
	defer wcancel()
	watch, err := raftqv1.NewClusterClient(cc).WatchRoutes(wctx, &raftqv1.WatchRoutesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || len(r.GetPlacements()) != 0 {
		t.Fatalf("first routes before any move: %v %v", r, err)
	}
	// The jobs above stay queued in group 0, so the move drains until
	// they are served.
	p, err := cl.MoveQueue(ctx, q, to)
	if err != nil {
		t.Fatal(err)
	}
	if p.GetGroup() != to {
		t.Fatalf("MoveQueue answered %v", p)
	}
	for {
		r, err := watch.Recv()
		if err != nil {
			t.Fatalf("WatchRoutes sent no routes with the placement: %v", err)
		}
		if ps := r.GetPlacements(); len(ps) == 1 && ps[0].GetQueue() == q && ps[0].GetGroup() == to {
			break
		}
	}
	wcancel()
	// No call: the client's route watch brings the placement.
	testutil.WaitFor(t, 10*time.Second, "the client's route map places the queue in the new group", func() bool {
		g, ok := cl.QueueGroup(q)
		return ok && g == to
	})
	if g, _ := cl.QueueGroup(placement.QueuesPerGroup("moved", groups)[1]); g != 1 {
		t.Fatalf("a queue never moved routes to group %d, want 1 (its hash)", g)
	}
	testutil.WaitFor(t, 10*time.Second, "the move drains (jobs are left in the old group)", func() bool {
		ps, err := cl.Placements(ctx)
		return err == nil && len(ps) == 1 && ps[0].GetPhase() == "draining"
	})
	// While it drains, the queue's enqueues go to the new group's leader
	// (whose router asks the old group about their keys itself).
	testutil.WaitFor(t, 10*time.Second, "the client sends a moving queue's enqueues to the new group's leader", func() bool {
		return enqueue(to, false)
	})
	// Status carries the placements too (a follower's replica of group 0
	// may be a heartbeat behind).
	testutil.WaitFor(t, 5*time.Second, "Status shows the move", func() bool {
		st, err := cl.Status(ctx, c.Addrs()[0])
		if err != nil {
			t.Fatal(err)
		}
		sp := st.GetPlacements()
		return len(sp) == 1 && sp[0].GetQueue() == q && sp[0].GetGroup() == to && sp[0].GetFromGroup() == 0 && sp[0].GetPhase() == "draining"
	})

	// Serve every job (Fetch goes to the new group's leader, which covers
	// both groups while the queue drains): the move finishes.
	testutil.WaitFor(t, 30*time.Second, "the move is done", func() bool {
		jobs, err := cl.Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{q}, MaxJobs: 100, WorkerId: "w",
			MaxWait: durationpb.New(100 * time.Millisecond)})
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		for _, j := range jobs {
			if err := cl.Ack(ctx, j.Id, j.LeaseToken); err != nil {
				t.Fatalf("ack %s: %v", j.Id, err)
			}
		}
		ps, err := cl.Placements(ctx)
		return err == nil && len(ps) == 1 && ps[0].GetPhase() == "done"
	})
	// Done: the new group's leader serves them without a hop.
	testutil.WaitFor(t, 10*time.Second, "the client sends a moved queue's enqueues to the new group's leader, unforwarded", func() bool {
		return enqueue(to, true)
	})
	if g, ok := cl.QueueGroup(q); !ok || g != to {
		t.Fatalf("QueueGroup(%s) after the move = %d, %v; want %d", q, g, ok, to)
	}
}

// A worker's AckBatch spans jobs of two Raft groups, and one group's
// leadership moves as it is sent, handed over by a leadership transfer as
// the brokers' leader balancer does. The broker that takes the batch
// splits it by group; the moving group answers its items NOT_LEADER while
// the other group acks its own. The client sends those items again until
// their group has a leader: every item is acked, and no job waits out its
// lease to run a second time. (A transfer, not a kill: on the old client
// the transfer had an item refused in every run, a kill of b's leader in
// about one in three, as the broker's forwarding mostly rides out an
// election. Rounds, because each transfer is over in milliseconds.)
func TestClientAckBatchAcrossGroupsWhileLeaderMoves(t *testing.T) {
	const groups, rounds = 3, 3
	// The batch's first job is of group a: the client sends it to a's
	// leader. Group b's leadership moves; b's leader is another node.
	const a, b = 0, 1
	c, leaderOf := groupCluster(t, groups)
	// The AckBatch calls the client makes, and their items.
	var mu sync.Mutex
	var calls, items int
	rec := grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if r, ok := req.(*raftqv1.AckBatchRequest); ok {
			mu.Lock()
			calls, items = calls+1, items+len(r.Items)
			mu.Unlock()
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	})
	cl, err := client.New(c.Addrs(), client.Options{DialOptions: []grpc.DialOption{rec}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := testutil.Context(t, 2*time.Minute)
	qs := placement.QueuesPerGroup("acks", groups)
	for r := 0; r < rounds; r++ {
		// Lease a job of each group; the client learns the route map on
		// the way, so the batch goes straight to a's leader.
		var acks []*raftqv1.AckRequest
		for _, g := range []int{a, b} {
			if _, err := cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: qs[g], Type: "t"}); err != nil {
				t.Fatalf("enqueue %s: %v", qs[g], err)
			}
			jobs, err := cl.Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{qs[g]}, MaxJobs: 1, WorkerId: "w"})
			if err != nil || len(jobs) != 1 {
				t.Fatalf("fetch %s: %v %v", qs[g], jobs, err)
			}
			acks = append(acks, &raftqv1.AckRequest{JobId: jobs[0].Id, LeaseToken: jobs[0].LeaseToken})
		}
		testutil.WaitFor(t, 10*time.Second, "the client knows each group's leader", func() bool {
			gl := cl.GroupLeaders()
			return len(gl) == groups && gl[a] == leaderOf(a) && gl[b] == leaderOf(b)
		})
		na, nb := c.GroupLeader(a), c.GroupLeader(b)
		if na == nil || nb == nil || na == nb {
			t.Fatalf("round %d: leaders moved under the test: group %d %v, group %d %v", r, a, na, b, nb)
		}
		// To a's leader, the broker that takes the batch: its replica of
		// b becomes the leader while it splits the batch. It then leads
		// two groups, and the balancer hands b back (the last of its
		// groups) before the next round.
		transfer := nb.Groups()[b].Raft().LeadershipTransferToServer(raft.ServerID(na.ID()), raft.ServerAddress(na.RaftAddr()))
		mu.Lock()
		calls, items = 0, 0
		mu.Unlock()
		actx, cancel := context.WithTimeout(ctx, 20*time.Second)
		errs, err := cl.AckBatch(actx, acks)
		cancel()
		if err != nil {
			t.Fatalf("round %d: AckBatch: %v", r, err)
		}
		mu.Lock()
		t.Logf("round %d: %d AckBatch calls, %d items sent", r, calls, items)
		mu.Unlock()
		for i, err := range errs {
			if err != nil {
				t.Errorf("round %d: ack of job %s (group %d): %v", r, acks[i].JobId, []int{a, b}[i], err)
			}
		}
		// Acked, so not left leased until its lease expires to run again.
		for _, it := range acks {
			j, err := cl.GetJob(ctx, it.JobId, raftqv1.Consistency_CONSISTENCY_LINEARIZABLE)
			if err != nil {
				t.Fatalf("GetJob %s: %v", it.JobId, err)
			}
			if j.State != raftqv1.JobState_JOB_STATE_SUCCEEDED {
				t.Errorf("round %d: job %s is %s after its ack, want SUCCEEDED", r, it.JobId, j.State)
			}
		}
		if t.Failed() {
			return
		}
		if err := transfer.Error(); err != nil {
			t.Fatalf("round %d: transfer group %d from %s to %s: %v", r, b, nb.ID(), na.ID(), err)
		}
		waitSpread(t, groups, leaderOf)
	}
}
