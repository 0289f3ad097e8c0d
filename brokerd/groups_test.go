package brokerd_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/placement"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/raftqerr"
)

// groupsCluster starts 3 nodes running groups Raft groups each and waits
// until every group has one ready leader known to every node and the
// leaderships are balanced.
func groupsCluster(t *testing.T, groups int) *testcluster.Cluster {
	t.Helper()
	c := testcluster.New(t, 3, func(cfg *brokerd.Config) { cfg.Groups = groups })
	// Settled, not only led: the leader balance moves leaderships in the
	// first seconds, and a call caught in a move is refused (CI saw it).
	c.WaitGroupsSettled(30 * time.Second)
	return c
}

// queuesPerGroup names one queue placed in each group.
func queuesPerGroup(groups int) []string { return placement.QueuesPerGroup("q", groups) }

// dial is a plain connection to one node: what a client without any
// routing of its own sees.
func dial(t *testing.T, addr string) raftqv1.BrokerClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return raftqv1.NewBrokerClient(cc)
}

// Every node serves every queue, whichever group holds it and whoever
// leads that group: a job enqueued through one node is stored only in its
// queue's group (on every replica), fetched and acked through another
// node, and its id names its group.
func TestGroupsEveryNodeServesEveryQueue(t *testing.T) {
	const groups = 3
	c := groupsCluster(t, groups)
	ctx := testutil.Context(t, 60*time.Second)
	qs := queuesPerGroup(groups)
	addrs := c.Addrs()
	for g, q := range qs {
		for i, addr := range addrs {
			in := dial(t, addr)
			res, err := in.Enqueue(ctx, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{{Queue: q, Type: "t", Payload: []byte(addr)}}})
			if err != nil {
				t.Fatalf("enqueue %s (group %d) via %s: %v", q, g, addr, err)
			}
			id := res.Results[0].JobId
			if got, err := placement.Job(id, groups); err != nil || got != uint32(g) {
				t.Fatalf("job id %q names group %d (%v), its queue is in group %d", id, got, err, g)
			}
			// Fetched and acked through the next node.
			out := dial(t, addrs[(i+1)%len(addrs)])
			f, err := out.Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{q}, MaxJobs: 1, MaxWait: durationpb.New(5 * time.Second), WorkerId: "w"})
			if err != nil || len(f.Jobs) != 1 || f.Jobs[0].Id != id || string(f.Jobs[0].Payload) != addr {
				t.Fatalf("fetch %s via %s: %v %v (want %s)", q, addrs[(i+1)%len(addrs)], f, err, id)
			}
			if _, err := out.Ack(ctx, &raftqv1.AckRequest{JobId: id, LeaseToken: f.Jobs[0].LeaseToken}); err != nil {
				t.Fatalf("ack %s: %v", id, err)
			}
			j, err := dial(t, addrs[(i+2)%len(addrs)]).GetJob(ctx, &raftqv1.GetJobRequest{JobId: id, Consistency: raftqv1.Consistency_CONSISTENCY_LINEARIZABLE})
			if err != nil || j.Job.State != raftqv1.JobState_JOB_STATE_SUCCEEDED {
				t.Fatalf("job %s after ack: %v %v", id, j, err)
			}
			// Stored in its group only, on every replica.
			testutil.WaitFor(t, 10*time.Second, "every replica of group "+fmt.Sprint(g)+" has the job", func() bool {
				for _, n := range c.Up() {
					for og, gn := range n.Groups() {
						_, ok := gn.FSM().Get(id)
						if ok != (og == g) {
							return false
						}
					}
				}
				return true
			})
		}
	}
	// QueueStats without queues lists every group's queues.
	st, err := dial(t, addrs[0]).QueueStats(ctx, &raftqv1.QueueStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range st.Queues {
		names = append(names, s.Queue)
		if s.Succeeded != int64(len(addrs)) {
			t.Errorf("queue %s: %d succeeded, want %d", s.Queue, s.Succeeded, len(addrs))
		}
	}
	if len(names) != groups {
		t.Fatalf("QueueStats listed %v, want the %d queues %v", names, groups, qs)
	}
	// Status names every group's leader, and each is the ready one.
	s, err := raftqv1.NewClusterClient(mustConn(t, addrs[1])).Status(ctx, &raftqv1.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if s.GroupCount != groups || len(s.Groups) != groups {
		t.Fatalf("status: group_count %d, %d groups", s.GroupCount, len(s.Groups))
	}
	for _, gs := range s.Groups {
		var leader *brokerd.Node
		for _, n := range c.Up() {
			if n.Groups()[gs.Group].IsLeaderReady() {
				leader = n
			}
		}
		if leader == nil || gs.LeaderId != leader.ID() || gs.LeaderAddr != leader.GRPCAddr() || len(gs.Members) != 3 {
			t.Fatalf("status of group %d: %v (ready leader %v)", gs.Group, gs, leader)
		}
	}
}

func mustConn(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// Calls that would put a job where its queue's workers never look, or
// that one group cannot answer, are refused with a clear error and change
// nothing; batches whose items are independent are split by group.
func TestGroupsRoutingRefusalsAndSplits(t *testing.T) {
	const groups = 2
	c := groupsCluster(t, groups)
	ctx := testutil.Context(t, 60*time.Second)
	qs := queuesPerGroup(groups)
	b := dial(t, c.Addrs()[0])

	// A group header that does not hold the queue.
	wrong := metadata.AppendToOutgoingContext(ctx, placement.Header, "1")
	if qs[1] == "" || placement.Queue(qs[0], groups) != 0 {
		t.Fatal("queues not placed as expected")
	}
	_, err := b.Enqueue(wrong, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{{Queue: qs[0], Type: "t"}}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "group 0") {
		t.Fatalf("enqueue to the wrong group: %v", err)
	}
	// A header naming no group of the cluster.
	_, err = b.Enqueue(metadata.AppendToOutgoingContext(ctx, placement.Header, "7"), &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{{Queue: qs[0], Type: "t"}}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("enqueue to group 7: %v", err)
	}
	// One Enqueue (one Raft entry) for queues of two groups.
	_, err = b.Enqueue(ctx, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{{Queue: qs[0], Type: "t"}, {Queue: qs[1], Type: "t"}}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "different Raft groups") {
		t.Fatalf("enqueue across groups: %v", err)
	}
	// A bad Fetch over queues of two groups is refused as a whole.
	_, err = b.Fetch(ctx, &raftqv1.FetchRequest{Queues: qs, MaxJobs: 1, WorkerId: "w", QueueWeights: map[string]int32{qs[0]: 1}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("fetch across groups with a weight missing: %v", err)
	}
	for _, n := range c.Up() {
		for g, gn := range n.Groups() {
			if st := gn.FSM().Stats(nil); len(st) != 0 {
				t.Fatalf("refused calls left state in group %d: %v", g, st)
			}
		}
	}

	// An enqueue stream mixing the groups' queues: every outcome is
	// answered, each job in its queue's group.
	es, err := b.EnqueueStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const perQueue = 20
	for i := 0; i < perQueue*groups; i++ {
		if err := es.Send(&raftqv1.EnqueueStreamRequest{Seq: uint64(i + 1), Job: &raftqv1.JobSpec{Queue: qs[i%groups], Type: "t"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := es.CloseSend(); err != nil {
		t.Fatal(err)
	}
	ids := map[uint64]string{}
	for {
		r, err := es.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if r.Error != nil {
			t.Fatalf("seq %d: %v", r.Seq, r.Error)
		}
		ids[r.Seq] = r.Result.JobId
	}
	if len(ids) != perQueue*groups {
		t.Fatalf("%d outcomes for %d jobs", len(ids), perQueue*groups)
	}
	for seq, id := range ids {
		if g, _ := placement.Job(id, groups); g != uint32((seq-1)%groups) {
			t.Fatalf("seq %d (queue %s) got job %s of group %d", seq, qs[(seq-1)%groups], id, g)
		}
	}

	// One AckBatch settling leases of both groups, with one stale token
	// and one id of no group: each item answered on its own.
	var items []*raftqv1.AckRequest
	for _, q := range qs {
		f, err := b.Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{q}, MaxJobs: 2, MaxWait: durationpb.New(5 * time.Second), WorkerId: "w"})
		if err != nil || len(f.Jobs) != 2 {
			t.Fatalf("fetch %s: %v %v", q, f, err)
		}
		items = append(items, &raftqv1.AckRequest{JobId: f.Jobs[0].Id, LeaseToken: f.Jobs[0].LeaseToken},
			&raftqv1.AckRequest{JobId: f.Jobs[1].Id, LeaseToken: f.Jobs[1].LeaseToken + 100})
	}
	items = append(items, &raftqv1.AckRequest{JobId: "x.g9", LeaseToken: 1})
	ab, err := b.AckBatch(ctx, &raftqv1.AckBatchRequest{Items: items})
	if err != nil {
		t.Fatal(err)
	}
	if len(ab.Results) != len(items) {
		t.Fatalf("%d results for %d items", len(ab.Results), len(items))
	}
	for i, r := range ab.Results {
		switch {
		case i == len(items)-1:
			if r.Error.GetDetail().GetReason() != raftqv1.ErrorDetail_INVALID_ARGUMENT {
				t.Errorf("item %d (no group): %v", i, r.Error)
			}
		case i%2 == 0:
			if r.Error != nil {
				t.Errorf("item %d (valid): %v", i, r.Error)
			}
		default:
			if r.Error.GetDetail().GetReason() != raftqv1.ErrorDetail_STALE_TOKEN {
				t.Errorf("item %d (stale token): %v", i, r.Error)
			}
		}
	}
}

// A group's leader dies: that group elects another and serves again
// through every surviving node, no acknowledged job of any group is lost,
// and the other groups never stop.
func TestGroupsLeaderKilled(t *testing.T) {
	const groups = 2
	c := groupsCluster(t, groups)
	ctx := testutil.Context(t, 90*time.Second)
	qs := queuesPerGroup(groups)
	cl := c.Client()
	acked := map[string]string{}
	enqueue := func(round int) {
		for _, q := range qs {
			res, err := cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: q, Type: "t", IdempotencyKey: fmt.Sprintf("%s-%d", q, round)})
			if err != nil {
				t.Fatalf("enqueue %s round %d: %v", q, round, err)
			}
			acked[res[0].JobId] = q
		}
	}
	for i := 0; i < 5; i++ {
		enqueue(i)
	}
	var victim string
	for _, n := range c.Up() {
		if n.Groups()[1].IsLeaderReady() {
			victim = n.ID()
		}
	}
	c.Kill(victim)
	for i := 5; i < 10; i++ {
		enqueue(i)
	}
	c.WaitGroupLeaders(30 * time.Second)
	for id, q := range acked {
		j, err := cl.GetJob(ctx, id, raftqv1.Consistency_CONSISTENCY_LINEARIZABLE)
		if err != nil || j.Queue != q || j.State != raftqv1.JobState_JOB_STATE_READY {
			t.Fatalf("acked job %s of %s after the kill: %v %v", id, q, j, err)
		}
	}
	c.Restart(victim)
	c.WaitGroupLeaders(30 * time.Second)
	testutil.WaitFor(t, 20*time.Second, "the restarted node holds every job", func() bool {
		n := c.Member(victim).Node
		for id := range acked {
			g, _ := placement.Job(id, groups)
			if _, ok := n.Groups()[g].FSM().Get(id); !ok {
				return false
			}
		}
		return true
	})
}

// A data dir keeps the group count it was made with.
func TestGroupCountKeptByDataDir(t *testing.T) {
	c := testcluster.New(t, 1, func(cfg *brokerd.Config) { cfg.Groups = 2 })
	m := c.Members()[0]
	c.Kill(m.ID)
	cfg := brokerd.DefaultConfig()
	cfg.NodeID, cfg.DataDir, cfg.RaftAddr, cfg.GRPCAddr = m.ID, m.Dir, m.RaftAddr, m.GRPCAddr
	cfg.Logger = testutil.Logger(t)
	for _, groups := range []int{1, 3} {
		cfg.Groups = groups
		n, err := brokerd.Open(cfg)
		if err == nil {
			n.Close()
			t.Fatalf("a data dir made with 2 groups opened with %d", groups)
		}
		if !strings.Contains(err.Error(), "made with 2 groups") {
			t.Fatalf("groups %d: %v", groups, err)
		}
	}
	cfg.Groups = 2
	n, err := brokerd.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if len(n.Groups()) != 2 {
		t.Fatalf("%d groups", len(n.Groups()))
	}
}

// Raft elects whoever times out first, so one node may lead every group;
// the hosts hand leaderships on until each node leads its share, and keep
// it so after a leader dies and comes back.
func TestGroupsLeadersBalance(t *testing.T) {
	const groups = 3
	c := groupsCluster(t, groups)
	balanced := func() bool {
		per := map[string]int{}
		for _, n := range c.Up() {
			for _, gn := range n.Groups() {
				if gn.IsLeaderReady() {
					per[n.ID()]++
				}
			}
		}
		if len(per) != len(c.Up()) {
			return false
		}
		for _, k := range per {
			if k != groups/len(c.Up()) {
				return false
			}
		}
		return true
	}
	testutil.WaitFor(t, 30*time.Second, "each node leads one group", balanced)
	victim := c.Up()[0].ID()
	c.Kill(victim)
	testutil.WaitFor(t, 30*time.Second, "the two survivors lead every group, neither more than two", func() bool {
		per := map[string]int{}
		total := 0
		for _, n := range c.Up() {
			for _, gn := range n.Groups() {
				if gn.IsLeaderReady() {
					per[n.ID()]++
					total++
				}
			}
		}
		return total == groups && per[c.Up()[0].ID()] <= 2 && per[c.Up()[1].ID()] <= 2
	})
	c.Restart(victim)
	testutil.WaitFor(t, 30*time.Second, "each node leads one group again", balanced)
}

// A Consume stream opened on a node that does not lead its queue's group
// is relayed to that group's leader: the worker gets the group's jobs and
// its cancel notices through the node it connected to.
func TestGroupsConsumeThroughAnyNode(t *testing.T) {
	const groups = 3
	c := groupsCluster(t, groups)
	ctx := testutil.Context(t, 60*time.Second)
	qs := queuesPerGroup(groups)
	for g, q := range qs {
		// A node that is not group g's leader.
		var via *brokerd.Node
		for _, n := range c.Up() {
			if !n.Groups()[g].IsLeaderReady() {
				via = n
				break
			}
		}
		b := dial(t, via.GRPCAddr())
		st, err := b.Consume(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&raftqv1.ConsumeRequest{Frame: &raftqv1.ConsumeRequest_Open{Open: &raftqv1.ConsumeOpen{Queues: []string{q}, WorkerId: "w", Credit: 2}}}); err != nil {
			t.Fatal(err)
		}
		if m, err := st.Recv(); err != nil || m.GetOpened() == nil {
			t.Fatalf("group %d via %s: open answered %v %v", g, via.ID(), m, err)
		}
		res, err := b.Enqueue(ctx, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{{Queue: q, Type: "t"}}})
		if err != nil {
			t.Fatal(err)
		}
		id := res.Results[0].JobId
		m, err := st.Recv()
		if err != nil || m.GetJob().GetId() != id {
			t.Fatalf("group %d via %s: pushed %v %v, want job %s", g, via.ID(), m, err, id)
		}
		if _, err := b.CancelJob(ctx, &raftqv1.CancelJobRequest{JobId: id}); err != nil {
			t.Fatal(err)
		}
		m, err = st.Recv()
		if err != nil || m.GetNotice().GetJobId() != id {
			t.Fatalf("group %d via %s: after cancel %v %v", g, via.ID(), m, err)
		}
		if err := st.CloseSend(); err != nil {
			t.Fatal(err)
		}
	}
}

// A node that will not forward a call (here: one already forwarded once,
// which is never forwarded again) answers NOT_LEADER naming the leader of
// the call's group, and the group.
func TestGroupsNotLeaderNamesTheGroup(t *testing.T) {
	const groups = 2
	c := groupsCluster(t, groups)
	ctx := metadata.AppendToOutgoingContext(testutil.Context(t, 30*time.Second), "raftq-forwarded", "test")
	q := queuesPerGroup(groups)[1]
	var leader, other *brokerd.Node
	for _, n := range c.Up() {
		if n.Groups()[1].IsLeaderReady() {
			leader = n
		} else {
			other = n
		}
	}
	_, err := dial(t, other.GRPCAddr()).Enqueue(ctx, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{{Queue: q, Type: "t"}}})
	d := raftqerr.Detail(err)
	if status.Code(err) != codes.Unavailable || d.GetReason() != raftqv1.ErrorDetail_NOT_LEADER ||
		d.GetGroup() != 1 || d.GetLeaderAddr() != leader.GRPCAddr() || !strings.Contains(err.Error(), "group 1") {
		t.Fatalf("enqueue to group 1 via a follower of it: %v (detail %v; leader %s)", err, d, leader.GRPCAddr())
	}
}

// A write that a group's leader refuses because it is handing its
// leadership over (its proposer answers not-leader) names the group too,
// so that a client knows whose leader moved.
func TestGroupsNotLeaderDuringTransferNamesTheGroup(t *testing.T) {
	const groups = 2
	c := groupsCluster(t, groups)
	q := queuesPerGroup(groups)[1]
	refused := 0
	for round := 0; round < 20 && refused < 3; round++ {
		var leader *brokerd.Node
		testutil.WaitFor(t, 20*time.Second, "a ready leader of group 1", func() bool {
			for _, n := range c.Up() {
				if n.Groups()[1].IsLeaderReady() {
					leader = n
					return true
				}
			}
			return false
		})
		b := dial(t, leader.GRPCAddr())
		// Not forwarded again: the leader's own answer comes back.
		ctx := metadata.AppendToOutgoingContext(testutil.Context(t, 10*time.Second), "raftq-forwarded", "test")
		fut := leader.Groups()[1].Raft().LeadershipTransfer()
		_, err := b.Enqueue(ctx, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{{Queue: q, Type: "t"}}})
		_ = fut.Error()
		if err == nil {
			continue // proposed before the transfer began
		}
		d := raftqerr.Detail(err)
		if status.Code(err) != codes.Unavailable || d.GetReason() != raftqv1.ErrorDetail_NOT_LEADER || d.GetGroup() != 1 {
			t.Fatalf("round %d: enqueue to group 1's leader as it hands over: %v (detail %v)", round, err, d)
		}
		if d.GetLeaderAddr() == leader.GRPCAddr() {
			t.Fatalf("round %d: the refusing node names itself as leader: %v", round, err)
		}
		refused++
	}
	if refused == 0 {
		t.Fatal("no enqueue met a leadership transfer in 20 rounds")
	}
}

// A Fetch over queues of several groups (a worker pool whose queues hash
// apart) takes what is ready in every group, up to max_jobs, and, with
// nothing ready, waits for a job in any of them.
func TestGroupsFetchAcrossGroups(t *testing.T) {
	const groups = 3
	c := groupsCluster(t, groups)
	ctx := testutil.Context(t, 60*time.Second)
	qs := queuesPerGroup(groups)
	b := dial(t, c.Addrs()[0])
	fetch := func(max int32, wait time.Duration) []*raftqv1.Job {
		t.Helper()
		f, err := b.Fetch(ctx, &raftqv1.FetchRequest{Queues: qs, MaxJobs: max, MaxWait: durationpb.New(wait), WorkerId: "pool",
			QueueWeights: map[string]int32{qs[0]: 1, qs[1]: 2, qs[2]: 3}})
		if err != nil {
			t.Fatal(err)
		}
		return f.Jobs
	}
	// Nothing ready: an empty answer once max_wait has passed.
	if jobs := fetch(4, 300*time.Millisecond); len(jobs) != 0 {
		t.Fatalf("empty queues answered %v", jobs)
	}
	// A job arriving in group 2 while the Fetch waits is handed over.
	go func() {
		time.Sleep(500 * time.Millisecond)
		_, _ = b.Enqueue(ctx, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{{Queue: qs[2], Type: "t"}}})
	}()
	jobs := fetch(4, 10*time.Second)
	if len(jobs) != 1 || jobs[0].Queue != qs[2] {
		t.Fatalf("waiting pool got %v", jobs)
	}
	// Two ready jobs in every group and max_jobs 4: four jobs, leased once
	// each; the next Fetch takes the other two.
	for _, q := range qs {
		for i := 0; i < 2; i++ {
			if _, err := b.Enqueue(ctx, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{{Queue: q, Type: "t"}}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	first := fetch(4, 0)
	second := fetch(4, 0)
	if len(first) != 4 || len(second) != 2 {
		t.Fatalf("fetched %d then %d of 6 ready jobs (max 4)", len(first), len(second))
	}
	seen := map[string]bool{}
	for _, j := range append(first, second...) {
		if seen[j.Id] {
			t.Fatalf("job %s leased twice", j.Id)
		}
		seen[j.Id] = true
	}
}

// EnqueueOne calls (the SDK's enqueue stream, fanned out over the groups
// by the node it reached) all finish while the groups' leaderships move
// again and again. Each client here sends one group's jobs only, so when
// that group's part of a routed stream fails, every frame the client has
// outstanding was that group's: the node must end the stream then (the
// client sends nothing more to wake its reading), so the waiting frames
// get a definite answer and are retried.
func TestGroupsEnqueueStreamSurvivesLeaderMoves(t *testing.T) {
	const groups = 2
	c := groupsCluster(t, groups)
	qs := queuesPerGroup(groups)
	clients := make([]*client.Client, groups)
	for g := range clients {
		clients[g] = c.Client()
	}
	ctx := testutil.Context(t, 90*time.Second)
	stop := make(chan struct{})
	errs := make(chan error, 256)
	var done sync.WaitGroup
	var calls atomic.Int64
	for p := range 64 {
		done.Add(1)
		go func() {
			defer done.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
				_, _, err := clients[p%groups].EnqueueOne(cctx, qs[p%groups], "t", nil, client.WithIdempotencyKey(fmt.Sprintf("mv-%d-%d", p, i)))
				cancel()
				if err != nil {
					errs <- fmt.Errorf("producer %d call %d: %w", p, i, err)
					return
				}
				calls.Add(1)
			}
		}()
	}
	for range 4 {
		time.Sleep(time.Second)
		for g := range groups {
			if err := c.GroupLeader(g).Groups()[g].Raft().LeadershipTransfer().Error(); err != nil {
				t.Logf("transfer group %d: %v", g, err)
			}
		}
	}
	time.Sleep(time.Second)
	close(stop)
	done.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if calls.Load() == 0 {
		t.Fatal("no enqueue finished")
	}
}

// A producer's enqueue stream outlives a leadership move of one of the
// groups it feeds: the group's part ends (its jobs answered NOT_LEADER, to
// be retried), and the group's next job opens a new part at the new
// leader, on the same stream, while the other group's jobs go on.
func TestGroupsEnqueueStreamOutlivesALeaderMove(t *testing.T) {
	const groups = 2
	c := groupsCluster(t, groups)
	qs := queuesPerGroup(groups)
	ctx := testutil.Context(t, 60*time.Second)
	old := c.GroupLeader(1)
	st, err := dial(t, old.GRPCAddr()).EnqueueStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seq := uint64(0)
	// enqueue sends one job and returns its answer; the stream ending
	// instead fails the test.
	enqueue := func(q string) *raftqv1.EnqueueStreamResponse {
		t.Helper()
		seq++
		if err := st.Send(&raftqv1.EnqueueStreamRequest{Seq: seq, Job: &raftqv1.JobSpec{Queue: q, Type: "t"}}); err != nil {
			t.Fatalf("send seq %d: %v", seq, err)
		}
		r, err := st.Recv()
		if err != nil {
			t.Fatalf("seq %d to %s: the stream ended: %v", seq, q, err)
		}
		if r.GetSeq() != seq {
			t.Fatalf("answer to seq %d, want %d", r.GetSeq(), seq)
		}
		return r
	}
	for _, q := range qs {
		if r := enqueue(q); r.GetError() != nil {
			t.Fatalf("before the move, %s: %v", q, r.GetError())
		}
	}
	if err := old.Groups()[1].Raft().LeadershipTransfer().Error(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "another node leads group 1", func() bool {
		l := c.GroupLeader(1)
		return l != nil && l != old
	})
	var moved, ids []string
	for range 10 {
		r := enqueue(qs[1])
		if e := r.GetError(); e != nil {
			if e.GetDetail().GetReason() != raftqv1.ErrorDetail_NOT_LEADER || e.GetDetail().GetGroup() != 1 {
				t.Fatalf("group 1's job after the move: %v, want NOT_LEADER of group 1", e)
			}
			moved = append(moved, e.GetMessage())
			continue
		}
		ids = append(ids, r.GetResult().GetJobId())
		if r := enqueue(qs[0]); r.GetError() != nil {
			t.Fatalf("group 0's job after group 1 moved: %v", r.GetError())
		}
		break
	}
	if len(ids) == 0 {
		t.Fatalf("no job of group 1 accepted on the stream after the move (refusals: %v)", moved)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != io.EOF {
		t.Fatalf("after CloseSend: %v, want io.EOF", err)
	}
	cl := c.Client()
	for _, id := range ids {
		if j, err := cl.GetJob(ctx, id, raftqv1.Consistency_CONSISTENCY_LINEARIZABLE); err != nil || j.Queue != qs[1] {
			t.Fatalf("job %s: %v %v", id, j, err)
		}
	}
}

// A routed enqueue stream refuses a frame without seq with
// InvalidArgument, but only after every job it had handed to a group is
// answered: jobs of two groups sent just before it are both committed and
// answered, then the stream ends.
func TestGroupsEnqueueStreamRefusesFrameWithoutSeq(t *testing.T) {
	const groups = 2
	c := groupsCluster(t, groups)
	qs := queuesPerGroup(groups)
	ctx := testutil.Context(t, 30*time.Second)
	st, err := dial(t, c.Up()[0].GRPCAddr()).EnqueueStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, q := range qs {
		if err := st.Send(&raftqv1.EnqueueStreamRequest{Seq: uint64(i + 1), Job: &raftqv1.JobSpec{Queue: q, Type: "t"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Send(&raftqv1.EnqueueStreamRequest{Job: &raftqv1.JobSpec{Queue: qs[0], Type: "t"}}); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	ids := map[uint64]string{}
	for {
		r, err := st.Recv()
		if err != nil {
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "without seq") {
				t.Fatalf("the stream ended with %v, want InvalidArgument for the frame without seq", err)
			}
			break
		}
		if r.GetError() != nil {
			t.Fatalf("seq %d: %v", r.GetSeq(), r.GetError())
		}
		ids[r.GetSeq()] = r.GetResult().GetJobId()
	}
	if len(ids) != groups {
		t.Fatalf("answered before the end: %v, want seqs 1..%d", ids, groups)
	}
	cl := c.Client()
	for seq, id := range ids {
		if j, err := cl.GetJob(ctx, id, raftqv1.Consistency_CONSISTENCY_LINEARIZABLE); err != nil || j.Queue != qs[seq-1] {
			t.Fatalf("job %s of seq %d: %v %v", id, seq, j, err)
		}
	}
}
