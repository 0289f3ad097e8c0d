package brokerd_test

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/auth"
	"github.com/raftq/raftq/internal/placement"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// replicasCluster starts n nodes running groups Raft groups, each group
// but 0 on replicas of them.
func replicasCluster(t *testing.T, n, groups, replicas int) *testcluster.Cluster {
	t.Helper()
	return testcluster.New(t, n, func(cfg *brokerd.Config) {
		cfg.Groups = groups
		cfg.Replicas = replicas
	})
}

// placedMembers is group 0's membership record of every group but 0, as
// node n's replica has it: group → sorted member ids.
func placedMembers(n *brokerd.Node) map[uint32][]string {
	out := map[uint32][]string{}
	for g, rec := range n.FSM().GroupMembers() {
		out[g] = slices.Clone(rec.GetMembers())
	}
	return out
}

// voterIDs are the voters of a Raft configuration, sorted.
func voterIDs(r *raft.Raft) []string {
	var out []string
	for _, s := range r.GetConfiguration().Configuration().Servers {
		if s.Suffrage == raft.Voter {
			out = append(out, string(s.ID))
		}
	}
	sort.Strings(out)
	return out
}

// waitPlaced waits until every group but 0 has a record naming want
// replicas, runs on exactly its recorded members (each runs it, no other
// node does, its Raft voters are the record's and it has a ready leader),
// and returns the records.
func waitPlaced(t *testing.T, c *testcluster.Cluster, groups, want int, timeout time.Duration) map[uint32][]string {
	t.Helper()
	var table map[uint32][]string
	testutil.WaitFor(t, timeout, fmt.Sprintf("every group on its %d recorded replicas, led", want), func() bool {
		up := c.Up()
		table = placedMembers(up[0])
		if len(table) != groups-1 {
			return false
		}
		for g := uint32(1); g < uint32(groups); g++ {
			ms := table[g]
			if len(ms) != want {
				return false
			}
			led := 0
			for _, n := range up {
				gn := n.Groups()[g]
				runs := gn != nil
				if runs != slices.Contains(ms, n.ID()) {
					return false
				}
				if !runs {
					continue
				}
				if !slices.Equal(voterIDs(gn.Raft()), ms) {
					return false
				}
				if gn.IsLeaderReady() {
					led++
				}
			}
			if led != 1 {
				return false
			}
		}
		return true
	})
	return table
}

// With fewer replicas than nodes, group 0's leader places each other group
// on that many nodes, spread evenly; each node runs only its groups, and
// every node still serves every queue: a call for a group it does not run
// goes to that group's leader. A plain connection to each node (no
// routing of its own) enqueues into each group, and another node fetches
// and acks the job.
func TestReplicasGroupsOnSubsetServeEverywhere(t *testing.T) {
	const nodes, groups, replicas = 5, 4, 3
	c := replicasCluster(t, nodes, groups, replicas)
	table := waitPlaced(t, c, groups, replicas, 60*time.Second)
	// Even: 3 groups × 3 replicas over 5 nodes is 2, 2, 2, 2, 1.
	load := map[string]int{}
	for _, ms := range table {
		for _, m := range ms {
			load[m]++
		}
	}
	for _, n := range c.Up() {
		if k := load[n.ID()]; k < 1 || k > 2 {
			t.Fatalf("node %s runs %d groups: want 1 or 2 (placement %v)", n.ID(), k, table)
		}
		// A node keeps no data dir of a group it does not run.
		for g := uint32(1); g < groups; g++ {
			_, err := os.Stat(filepath.Join(c.Member(n.ID()).Dir, "groups", fmt.Sprint(g)))
			if runs := slices.Contains(table[g], n.ID()); runs == os.IsNotExist(err) {
				t.Fatalf("node %s: runs group %d %v, its data dir there exists %v", n.ID(), g, runs, err == nil)
			}
		}
	}
	ctx := testutil.Context(t, 90*time.Second)
	qs := queuesPerGroup(groups)
	addrs := c.Addrs()
	for g, q := range qs {
		for i, addr := range addrs {
			in := dial(t, addr)
			var res *raftqv1.EnqueueResponse
			var err error
			// A node learns the leader of a group it does not run from
			// the group's members: the first calls may find it unknown.
			testutil.WaitFor(t, 10*time.Second, "enqueue through "+addr, func() bool {
				res, err = in.Enqueue(ctx, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{{Queue: q, Type: "t", Payload: []byte(addr)}}})
				return err == nil
			})
			id := res.Results[0].JobId
			if got, err := placement.Job(id, groups); err != nil || got != uint32(g) {
				t.Fatalf("job id %q names group %d (%v), its queue is in group %d", id, got, err, g)
			}
			out := dial(t, addrs[(i+1)%len(addrs)])
			f, err := out.Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{q}, MaxJobs: 1, MaxWait: durationpb.New(5 * time.Second), WorkerId: "w"})
			if err != nil || len(f.Jobs) != 1 || f.Jobs[0].Id != id {
				t.Fatalf("fetch %s via %s: %v %v (want %s)", q, addrs[(i+1)%len(addrs)], f, err, id)
			}
			if _, err := out.Ack(ctx, &raftqv1.AckRequest{JobId: id, LeaseToken: f.Jobs[0].LeaseToken}); err != nil {
				t.Fatalf("ack %s via %s: %v", id, addrs[(i+1)%len(addrs)], err)
			}
			// The job is in its group's store on its members only.
			for _, n := range c.Up() {
				gn := n.Groups()[g]
				if gn == nil {
					continue
				}
				testutil.WaitFor(t, 5*time.Second, "job applied on "+n.ID(), func() bool { _, ok := gn.FSM().Get(id); return ok })
			}
		}
	}
	// Every node's status names every group's leader and members, those
	// of groups it does not run included.
	for _, addr := range addrs {
		st, err := clusterClient(t, addr).Status(ctx, &raftqv1.StatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(st.GetGroups()) != groups {
			t.Fatalf("status via %s: %d groups, want %d", addr, len(st.GetGroups()), groups)
		}
		for _, gs := range st.GetGroups() {
			if gs.GetLeaderAddr() == "" {
				t.Fatalf("status via %s: group %d without a leader: %v", addr, gs.GetGroup(), gs)
			}
			if gs.GetGroup() == 0 {
				continue
			}
			var ms []string
			for _, m := range gs.GetMembers() {
				ms = append(ms, m.GetNodeId())
			}
			sort.Strings(ms)
			if !slices.Equal(ms, table[gs.GetGroup()]) {
				t.Fatalf("status via %s: group %d members %v, placed on %v", addr, gs.GetGroup(), ms, table[gs.GetGroup()])
			}
		}
	}
	// A group's backup through a node that does not run it is its
	// leader's snapshot, relayed.
	for g := uint32(1); g < groups; g++ {
		for _, n := range c.Up() {
			if slices.Contains(table[g], n.ID()) {
				continue
			}
			gctx := metadata.AppendToOutgoingContext(ctx, placement.Header, fmt.Sprint(g))
			st, err := clusterClient(t, n.GRPCAddr()).Snapshot(gctx, &raftqv1.SnapshotRequest{})
			if err != nil {
				t.Fatal(err)
			}
			size := 0
			for {
				ch, err := st.Recv()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("snapshot of group %d via %s (not a member): %v", g, n.ID(), err)
				}
				size += len(ch.GetData())
			}
			if size == 0 {
				t.Fatalf("snapshot of group %d via %s: empty", g, n.ID())
			}
			break
		}
	}
	// The SDK, routing by its route map, reaches every group too.
	cl := c.Client()
	for _, q := range qs {
		if _, _, err := cl.EnqueueOne(ctx, q, "t", []byte("sdk")); err != nil {
			t.Fatalf("sdk enqueue %s: %v", q, err)
		}
	}
}

// A node joining makes group 0's leader move replicas to it until the
// nodes run about as many groups each; a node removed from the cluster
// has its replicas re-placed on the others. Each move adds the new
// replica before it drops the old one: the jobs of the group stay, the
// node that gave the replica up deletes its copy, and the group never
// has fewer voters than its record.
func TestReplicasReplacedOnMembershipChange(t *testing.T) {
	const nodes, groups, replicas = 4, 4, 3
	c := replicasCluster(t, nodes, groups, replicas)
	before := waitPlaced(t, c, groups, replicas, 60*time.Second)
	ctx := testutil.Context(t, 120*time.Second)
	cl := c.Client()
	qs := queuesPerGroup(groups)
	ids := map[string]string{} // job id → queue
	for _, q := range qs[1:] {
		for i := 0; i < 20; i++ {
			id, _, err := cl.EnqueueOne(ctx, q, "t", []byte(fmt.Sprint(i)))
			if err != nil {
				t.Fatal(err)
			}
			ids[id] = q
		}
	}
	// 3 groups × 3 replicas on 4 nodes: 3, 2, 2, 2. A fifth node takes
	// one replica (2, 2, 2, 2, 1).
	m := c.Add()
	testutil.WaitFor(t, 60*time.Second, "a replica placed on the new node", func() bool {
		for _, ms := range placedMembers(c.Up()[0]) {
			if slices.Contains(ms, m.ID) {
				return true
			}
		}
		return false
	})
	after := waitPlaced(t, c, groups, replicas, 60*time.Second)
	runs := 0
	for g, ms := range after {
		if slices.Contains(ms, m.ID) {
			runs++
			if slices.Contains(before[g], m.ID) {
				t.Fatalf("group %d already ran on new node %s", g, m.ID)
			}
		}
	}
	if runs != 1 {
		t.Fatalf("new node %s runs %d groups after it joined, want 1: %v (before %v)", m.ID, runs, after, before)
	}
	// The node that gave a replica up deleted its copy.
	for g, ms := range before {
		for _, id := range ms {
			if slices.Contains(after[g], id) {
				continue
			}
			dir := filepath.Join(c.Member(id).Dir, "groups", fmt.Sprint(g))
			testutil.WaitFor(t, 10*time.Second, "dropped replica's data deleted", func() bool {
				_, err := os.Stat(dir)
				return os.IsNotExist(err)
			})
		}
	}
	// Remove a node that runs groups: its replicas move to the others.
	var gone string
	for _, n := range c.Up() {
		if n.ID() != m.ID && len(slices.DeleteFunc(slices.Clone(n.Groups()), func(x *brokerd.Node) bool { return x == nil })) > 2 {
			gone = n.ID()
		}
	}
	if gone == "" {
		for g := range after {
			gone = after[g][0]
			break
		}
	}
	if _, err := clusterClient(t, c.Addrs()[0]).Remove(ctx, &raftqv1.RemoveRequest{NodeId: gone}); err != nil {
		t.Fatalf("remove %s: %v", gone, err)
	}
	c.Kill(gone)
	testutil.WaitFor(t, 60*time.Second, "no group placed on the removed node", func() bool {
		for _, ms := range placedMembers(c.Up()[0]) {
			if slices.Contains(ms, gone) {
				return false
			}
		}
		return true
	})
	final := waitPlaced(t, c, groups, replicas, 90*time.Second)
	for g, ms := range final {
		if slices.Contains(ms, gone) {
			t.Fatalf("group %d still placed on removed node %s: %v", g, gone, ms)
		}
	}
	// Every job is still there, through any node.
	for id, q := range ids {
		j, err := cl.GetJob(ctx, id, raftqv1.Consistency_CONSISTENCY_UNSPECIFIED)
		if err != nil || j.GetQueue() != q {
			t.Fatalf("job %s after the moves: %v %v", id, j, err)
		}
	}
	for _, q := range qs[1:] {
		st, err := cl.QueueStats(ctx, q)
		if err != nil || len(st) != 1 || st[0].GetReady() != 20 {
			t.Fatalf("stats of %s after the moves: %v %v", q, st, err)
		}
	}
}

// clusterClient is a plain Cluster client of one node.
func clusterClient(t *testing.T, addr string) raftqv1.ClusterClient {
	t.Helper()
	return raftqv1.NewClusterClient(mustConn(t, addr))
}

// A queue moves between two groups that share no node (4 nodes, groups 1
// and 2 on two each), so no broker holds both: the move reads the old
// group through its leader (ExportQueue) for the seal, the jobs left,
// the idempotency keys and the schedules. Keys used before the move
// still answer their first job after it, the schedule fires on from the
// new group, and every job is run once.
func TestReplicasMoveQueueBetweenDisjointGroups(t *testing.T) {
	const nodes, groups, replicas = 4, 3, 2
	c := replicasCluster(t, nodes, groups, replicas)
	table := waitPlaced(t, c, groups, replicas, 60*time.Second)
	for _, m := range table[1] {
		if slices.Contains(table[2], m) {
			t.Fatalf("groups 1 and 2 share node %s: %v", m, table)
		}
	}
	ctx := testutil.Context(t, 120*time.Second)
	cl := c.Client()
	q := queuesPerGroup(groups)[1]
	first := map[string]string{}
	for i := 0; i < 30; i++ {
		key := fmt.Sprint("k", i)
		id, _, err := cl.EnqueueOne(ctx, q, "t", nil, client.WithIdempotencyKey(key), client.WithDedupWindow(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		first[key] = id
	}
	spec := client.CronSchedule("beat", "@every 1s", client.NewJob(q, "beat", nil))
	spec.Overlap = raftqv1.OverlapPolicy_OVERLAP_POLICY_ALLOW
	if _, _, err := cl.PutSchedule(ctx, spec); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "the schedule to fire in group 1", func() bool {
		sc, err := cl.GetSchedule(ctx, "beat", 0)
		return err == nil && sc.GetFired() >= 1
	})
	// Through a node that runs neither group 1 nor group 2... there is
	// none with two replicas each on 4 nodes; through one that does not
	// run group 1.
	var via string
	for _, m := range c.Members() {
		if m.Node != nil && !slices.Contains(table[1], m.ID) {
			via = m.GRPCAddr
		}
	}
	adm := raftqv1.NewAdminClient(mustConn(t, via))
	if _, err := adm.MoveQueue(ctx, &raftqv1.MoveQueueRequest{Queue: q, ToGroup: 2}); err != nil {
		t.Fatal(err)
	}
	// Workers drain the old group (and take what the schedule adds).
	acked := map[string]bool{}
	testutil.WaitFor(t, 60*time.Second, "the move to finish", func() bool {
		f, err := dial(t, via).Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{q}, MaxJobs: 50, MaxWait: durationpb.New(100 * time.Millisecond), WorkerId: "w"})
		if err == nil {
			for _, j := range f.Jobs {
				if _, err := dial(t, via).Ack(ctx, &raftqv1.AckRequest{JobId: j.Id, LeaseToken: j.LeaseToken}); err != nil {
					t.Fatalf("ack %s: %v", j.Id, err)
				}
				if acked[j.Id] {
					t.Fatalf("job %s run twice", j.Id)
				}
				acked[j.Id] = true
			}
		}
		ls, err := adm.ListPlacements(ctx, &raftqv1.ListPlacementsRequest{})
		return err == nil && len(ls.Placements) == 1 && ls.Placements[0].Phase == "done" && ls.Placements[0].Group == 2
	})
	for key, id := range first {
		if !acked[id] {
			t.Fatalf("job %s (key %s) was never run", id, key)
		}
		got, dup, err := cl.EnqueueOne(ctx, q, "t", nil, client.WithIdempotencyKey(key), client.WithDedupWindow(time.Hour))
		if err != nil || !dup || got != id {
			t.Fatalf("key %s after the move: %s dup %v %v, want its first job %s", key, got, dup, err, id)
		}
	}
	// The schedule lives in group 2 now, and fires there.
	sc, err := cl.GetSchedule(ctx, "beat", 0)
	if err != nil {
		t.Fatal(err)
	}
	at := sc.GetFired()
	testutil.WaitFor(t, 20*time.Second, "the schedule to fire in group 2", func() bool {
		sc, err := cl.GetSchedule(ctx, "beat", 0)
		return err == nil && sc.GetFired() >= at+2
	})
	for _, m := range table[2] {
		gn := c.Member(m).Node.Groups()[2]
		testutil.WaitFor(t, 10*time.Second, "the schedule in group 2's replica on "+m, func() bool {
			_, ok := gn.FSM().Schedule("beat")
			return ok
		})
	}
	for _, m := range table[1] {
		if _, ok := c.Member(m).Node.Groups()[1].FSM().Schedule("beat"); ok {
			t.Fatalf("the schedule is still in group 1 on %s", m)
		}
	}
}

// With TLS and auth on and groups 1 and 2 on disjoint nodes: a producer's
// and a worker's calls reach groups their node does not run (the
// stand-in forwards them with the caller's token, and learns the leaders
// over WatchRoutes with its node certificate), and an admin's MoveQueue
// between the two groups finishes: the step the brokers take on their
// own from a group they do not run (ExportQueue) passes auth with their
// node certificates.
func TestSecureReplicasServeAndMove(t *testing.T) {
	const groups = 3
	s := newSecureClusterWith(t, 4, auth.AuditLimits{}, func(cfg *brokerd.Config) {
		cfg.Groups, cfg.Replicas = groups, 2
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s\naudit:\n%s", s.logs.String(), s.audit.String())
		}
	})
	table := waitPlaced(t, s.c, groups, 2, 60*time.Second)
	q := ""
	for i := 0; q == ""; i++ {
		if name := fmt.Sprint("orders.", i); placement.Queue(name, groups) == 1 {
			q = name
		}
	}
	ctx := testutil.Context(t, 90*time.Second)
	// Through a node that does not run group 1.
	var via string
	for _, m := range s.c.Members() {
		if !slices.Contains(table[1], m.ID) {
			via = m.GRPCAddr
		}
	}
	prod, work, adm := s.client(t, producerTok, via), s.client(t, workerTok, via), s.client(t, adminTok, via)
	var ids []string
	for i := 0; i < 10; i++ {
		res, err := prod.Enqueue(ctx, spec(q))
		if err != nil {
			t.Fatalf("enqueue %s through a node not running its group: %v", q, err)
		}
		ids = append(ids, res[0].JobId)
	}
	if _, err := adm.MoveQueue(ctx, q, 2); err != nil {
		t.Fatal(err)
	}
	done := map[string]bool{}
	testutil.WaitFor(t, 60*time.Second, "the move to finish with every job acked", func() bool {
		jobs, err := work.Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{q}, MaxJobs: 10, MaxWait: durationpb.New(100 * time.Millisecond), WorkerId: "w"})
		if err == nil {
			for _, j := range jobs {
				if err := work.Ack(ctx, j.Id, j.LeaseToken); err != nil {
					t.Fatalf("ack %s: %v", j.Id, err)
				}
				done[j.Id] = true
			}
		}
		ps, err := adm.Placements(ctx)
		return err == nil && len(ps) == 1 && ps[0].GetPhase() == "done" && ps[0].GetGroup() == 2
	})
	for _, id := range ids {
		if !done[id] {
			t.Fatalf("job %s never ran", id)
		}
	}
	// The producer's new jobs go to group 2 now.
	res, err := prod.Enqueue(ctx, spec(q))
	if err != nil {
		t.Fatal(err)
	}
	if g, _ := placement.Job(res[0].JobId, groups); g != 2 {
		t.Fatalf("new job after the move in group %d", g)
	}
}
