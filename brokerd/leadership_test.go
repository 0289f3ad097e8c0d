package brokerd_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// gatedFSM is the FSM as Raft sees it, with a gate that can hold every
// Apply: a node whose FSM is stuck (as one waiting for disk space is). Its
// StopWaitingForSpace opens the gate, as shutdown does for the real FSM.
type gatedFSM struct {
	raft.FSM
	mu   sync.Mutex
	gate chan struct{} // nil: open
}

func (g *gatedFSM) block() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gate == nil {
		g.gate = make(chan struct{})
	}
}

func (g *gatedFSM) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gate != nil {
		close(g.gate)
		g.gate = nil
	}
}

func (g *gatedFSM) wait() {
	g.mu.Lock()
	ch := g.gate
	g.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

func (g *gatedFSM) Apply(l *raft.Log) interface{} {
	g.wait()
	return g.FSM.Apply(l)
}

func (g *gatedFSM) ApplyBatch(logs []*raft.Log) []interface{} {
	g.wait()
	return g.FSM.(raft.BatchingFSM).ApplyBatch(logs)
}

func (g *gatedFSM) StopWaitingForSpace() {
	g.release()
	g.FSM.(interface{ StopWaitingForSpace() }).StopWaitingForSpace()
}

// gatedCluster is a 3-node cluster whose nodes' FSMs can be held, with
// the given bound on a new leader's Barrier.
func gatedCluster(t *testing.T, establish time.Duration) (*testcluster.Cluster, map[string]*gatedFSM) {
	var mu sync.Mutex
	gates := map[string]*gatedFSM{}
	c := testcluster.New(t, 3, func(cfg *brokerd.Config) {
		id := cfg.NodeID
		cfg.Testing = &brokerd.Testing{
			EstablishTimeout: establish,
			WrapFSM: func(f raft.FSM) raft.FSM {
				g := &gatedFSM{FSM: f}
				mu.Lock()
				gates[id] = g
				mu.Unlock()
				return g
			},
		}
	})
	t.Cleanup(func() { // a held FSM must not hold the cluster's close
		mu.Lock()
		defer mu.Unlock()
		for _, g := range gates {
			g.release()
		}
	})
	return c, gates
}

// owners lists the running nodes with any leader duty, and checks that a
// node with duties runs all the built-in ones in order.
func owners(t *testing.T, c *testcluster.Cluster) []string {
	t.Helper()
	var out []string
	for _, n := range c.Up() {
		d := brokerd.LeaderDuties(n)
		if len(d) == 0 {
			continue
		}
		out = append(out, n.ID())
		if want := []string{"dispatcher", "scheduler", "disk hand-off", "consistency check", "leader health"}; len(d) == len(want) && !slices.Equal(d, want) {
			t.Errorf("%s runs duties %q, want %q", n.ID(), d, want)
		}
	}
	return out
}

// Leadership moved round the cluster again and again: after each move
// exactly one node — the new, ready leader — runs the leader duties
// (dispatcher, scheduler...), and the old leader has revoked all of them.
// Jobs enqueued across the moves are all there once.
func TestLeadershipTransferOneOwnerOfDuties(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	ctx := testutil.Context(t, 2*time.Minute)
	cl := c.Client()
	leader := c.WaitLeader(30 * time.Second)
	for i := 0; i < 6; i++ {
		old := leader.ID()
		if err := leader.Raft().LeadershipTransfer().Error(); err != nil {
			t.Fatalf("transfer %d: %v", i, err)
		}
		testutil.WaitFor(t, 30*time.Second, fmt.Sprintf("transfer %d to elect another leader", i), func() bool {
			l := c.Leader()
			if l == nil || l.ID() == old {
				return false
			}
			o := owners(t, c)
			return len(o) == 1 && o[0] == l.ID()
		})
		leader = c.Leader()
		if leader == nil {
			t.Fatalf("move %d: leader lost again", i)
		}
		for _, n := range c.Up() {
			if n != leader && (n.IsLeaderReady() || len(brokerd.LeaderDuties(n)) > 0) {
				t.Fatalf("move %d: %s still leads (ready %v, duties %q)", i, n.ID(), n.IsLeaderReady(), brokerd.LeaderDuties(n))
			}
		}
		if _, err := cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: "lead", Type: "t", Payload: []byte{byte(i)}}); err != nil {
			t.Fatalf("enqueue after move %d: %v", i, err)
		}
	}
	c.WaitConverged(30 * time.Second)
	if got := len(leader.FSM().List("lead", fsm.StateReady, "", 0)); got != 6 {
		t.Fatalf("%d jobs in queue lead, want 6", got)
	}
}

// A node that wins leadership but cannot finish its Barrier (its FSM is
// stuck) never serves as leader: after the establish bound it revokes and
// hands leadership to a peer, which becomes the ready leader. Once its FSM
// moves again it catches up like any follower.
func TestLeadershipEstablishFailureStepsDown(t *testing.T) {
	c, gates := gatedCluster(t, time.Second)
	ctx := testutil.Context(t, 2*time.Minute)
	leader := c.WaitLeader(30 * time.Second)
	var stuck *brokerd.Node
	for _, n := range c.Up() {
		if n != leader {
			stuck = n
			break
		}
	}
	gates[stuck.ID()].block()
	if err := leader.Raft().LeadershipTransferToServer(raft.ServerID(stuck.ID()), raft.ServerAddress(stuck.RaftAddr())).Error(); err != nil {
		t.Fatalf("transfer to %s: %v", stuck.ID(), err)
	}
	// It leads (Raft) without being ready, then gives leadership away.
	sawLead := false
	testutil.WaitFor(t, 30*time.Second, "the stuck node to lead and give leadership away", func() bool {
		if stuck.IsLeaderReady() || len(brokerd.LeaderDuties(stuck)) > 0 {
			t.Fatalf("%s became leader ready with a stuck FSM", stuck.ID())
		}
		if stuck.Raft().State() == raft.Leader {
			sawLead = true
		}
		l := c.Leader()
		return sawLead && l != nil && l != stuck
	})
	if o := owners(t, c); len(o) != 1 || o[0] != c.Leader().ID() {
		t.Fatalf("duty owners %q, want only the leader %s", o, c.Leader().ID())
	}
	cl := c.Client()
	if _, err := cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: "q", Type: "t"}); err != nil {
		t.Fatal(err)
	}
	gates[stuck.ID()].release()
	c.WaitConverged(30 * time.Second)
}

// Close on a leader still in its Barrier (FSM stuck) returns: the term's
// establishing is cancelled, nothing waits on the Barrier, and shutdown
// releases the FSM.
func TestLeadershipCloseDuringEstablish(t *testing.T) {
	c, gates := gatedCluster(t, time.Hour)
	leader := c.WaitLeader(30 * time.Second)
	var stuck *brokerd.Node
	for _, n := range c.Up() {
		if n != leader {
			stuck = n
			break
		}
	}
	gates[stuck.ID()].block()
	if err := leader.Raft().LeadershipTransferToServer(raft.ServerID(stuck.ID()), raft.ServerAddress(stuck.RaftAddr())).Error(); err != nil {
		t.Fatalf("transfer to %s: %v", stuck.ID(), err)
	}
	testutil.WaitFor(t, 30*time.Second, "the stuck node to lead", func() bool { return stuck.Raft().State() == raft.Leader })
	if stuck.IsLeaderReady() {
		t.Fatalf("%s ready with a stuck FSM", stuck.ID())
	}
	done := make(chan error, 1)
	go func() { done <- c.Daemon(stuck).Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("close: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close of a leader in its Barrier did not return")
	}
	if d := brokerd.LeaderDuties(stuck); len(d) != 0 {
		t.Fatalf("closed node still runs %q", d)
	}
	// The rest of the cluster goes on.
	for _, n := range c.Up() {
		if n == stuck {
			continue
		}
		testutil.WaitFor(t, 30*time.Second, "another node to lead", func() bool { l := c.Leader(); return l != nil && l != stuck })
		break
	}
}

// A duty added with AddLeaderDuty (as etcdnode adds the leader hint) runs
// on the ready leader only — started at once when added during a term,
// moved with leadership, its context ended on the old leader before the
// revoke returns — and stops for good when removed.
func TestAddLeaderDutyFollowsLeadership(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	leader := c.WaitLeader(30 * time.Second)
	var mu sync.Mutex
	running := map[string]int{}
	var removes []func()
	for _, n := range c.Up() {
		id := n.ID()
		removes = append(removes, n.AddLeaderDuty("probe", func(ctx context.Context) {
			mu.Lock()
			running[id]++
			mu.Unlock()
			<-ctx.Done()
			mu.Lock()
			running[id]--
			mu.Unlock()
		}))
	}
	only := func(id string) bool {
		mu.Lock()
		defer mu.Unlock()
		for k, v := range running {
			if (k == id && v != 1) || (k != id && v != 0) {
				return false
			}
		}
		return running[id] == 1
	}
	testutil.WaitFor(t, 10*time.Second, "the duties on the leader only", func() bool { return only(leader.ID()) })
	if d := brokerd.LeaderDuties(leader); len(d) == 0 || d[len(d)-1] != "probe" {
		t.Fatalf("leader duties %q: want the added duty last", d)
	}
	for i := 0; i < 3; i++ {
		old := leader.ID()
		if err := leader.Raft().LeadershipTransfer().Error(); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, 30*time.Second, "the duties to move to the new leader only", func() bool {
			l := c.Leader()
			return l != nil && l.ID() != old && only(l.ID())
		})
		leader = c.Leader()
	}
	for _, r := range removes {
		r()
		r() // idempotent
	}
	mu.Lock()
	defer mu.Unlock()
	for id, v := range running {
		if v != 0 {
			t.Fatalf("%s still runs the removed duty (%d)", id, v)
		}
	}
	if d := brokerd.LeaderDuties(leader); slices.Contains(d, "probe") {
		t.Fatalf("removed duty still listed: %q", d)
	}
}
