// Package testcluster runs real brokerd nodes in one process for tests:
// real Raft over loopback TCP, raft-boltdb files in temporary directories,
// real gRPC servers, assembled as cmd/brokerd assembles them
// (brokerd/daemon: the admin HTTP API and etcd when configured). Nodes can
// be killed, restarted from their data dirs, and added.
//
// Nodes log through t.Log (testutil.Logger): a failing test shows what its
// cluster logged, a passing one nothing; RAFTQ_TEST_LOG=1 adds debug lines.
// (Raft's own warnings still go to stderr: brokerd gives hashicorp/raft an
// hclog logger of its own.)
package testcluster

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/brokerd/daemon"
	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/freeport"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// Cluster is a set of in-process broker nodes.
type Cluster struct {
	t     testing.TB
	dir   string
	mu    sync.Mutex
	nodes []*Member
	// log is every node's logger, through t.Log (testutil.Logger): made
	// before the cleanup that closes the nodes, so what they log while
	// closing still shows.
	log *slog.Logger
	// Tune, when set, adjusts every node's config before it opens.
	Tune func(*brokerd.Config)
	// Process adjusts what every node's process serves around the node
	// (daemon.Config: the admin API, etcd), after Tune.
	Process []func(*daemon.Config)
}

// Member is one node slot: its identity and addresses survive restarts.
type Member struct {
	ID       string
	Dir      string
	RaftAddr string
	GRPCAddr string
	Node     *brokerd.Node // nil while down
	// Daemon is the process around Node (its admin API, etcd agent); nil
	// while down.
	Daemon *daemon.Daemon
}

// New bootstraps an n-node cluster and waits for a ready leader. tune
// adjusts each node's configuration, process what each process serves
// around it (Admin, an etcd config).
func New(t testing.TB, n int, tune func(*brokerd.Config), process ...func(*daemon.Config)) *Cluster {
	t.Helper()
	return NewIn(t, n, nil, tune, process...)
}

// NewIn is New with each member's data dir chosen by dir (called with the
// member's id, n1, n2, ...): a test may put a node on a filesystem of its
// own, such as a small tmpfs it fills. A nil dir puts every member under
// the test's temporary directory, as New does.
func NewIn(t testing.TB, n int, dir func(id string) string, tune func(*brokerd.Config), process ...func(*daemon.Config)) *Cluster {
	t.Helper()
	c := &Cluster{t: t, dir: t.TempDir(), Tune: tune, Process: process, log: testutil.Logger(t)}
	var peers []brokerd.Peer
	for i := 0; i < n; i++ {
		m := &Member{
			ID:       fmt.Sprintf("n%d", i+1),
			RaftAddr: freeport.T(t),
			GRPCAddr: freeport.T(t),
		}
		m.Dir = filepath.Join(c.dir, m.ID)
		if dir != nil {
			m.Dir = dir(m.ID)
		}
		c.nodes = append(c.nodes, m)
		peers = append(peers, brokerd.Peer{ID: m.ID, RaftAddr: m.RaftAddr})
	}
	for _, m := range c.nodes {
		cfg := c.config(m)
		cfg.BootstrapExpect = n
		cfg.Peers = peers
		c.open(m, cfg)
	}
	t.Cleanup(c.Close)
	c.WaitLeader(30 * time.Second)
	c.WaitAnnounced(30 * time.Second)
	return c
}

// WaitAnnounced waits until every running node knows every running node's
// client address (followers need the leader's to forward).
func (c *Cluster) WaitAnnounced(timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		up := c.Up()
		ok := true
		for _, n := range up {
			if len(n.FSM().Nodes()) < len(up) {
				ok = false
			}
		}
		if ok {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("nodes did not announce their addresses within %s", timeout)
}

// Admin serves each node's admin HTTP API on a free port (a Process).
func Admin(cfg *daemon.Config) { cfg.AdminAddr = "127.0.0.1:0" }

func (c *Cluster) config(m *Member) daemon.Config {
	cfg := daemon.DefaultConfig()
	cfg.NodeID = m.ID
	cfg.DataDir = m.Dir
	cfg.RaftAddr = m.RaftAddr
	cfg.GRPCAddr = m.GRPCAddr
	cfg.Logger = c.log.With("node", m.ID)
	if c.Tune != nil {
		c.Tune(&cfg.Config)
	}
	for _, p := range c.Process {
		p(&cfg)
	}
	return cfg
}

func (c *Cluster) open(m *Member, cfg daemon.Config) {
	c.t.Helper()
	var d *daemon.Daemon
	var err error
	// The OS may hold a just-closed port for a moment.
	for i := 0; i < 50; i++ {
		d, err = daemon.Open(cfg)
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		c.t.Fatalf("open %s: %v", m.ID, err)
	}
	c.mu.Lock()
	m.Node, m.Daemon = d.Node, d
	c.mu.Unlock()
}

// Daemon returns the process around node n (nil when it is not one of
// the cluster's running nodes).
func (c *Cluster) Daemon(n *brokerd.Node) *daemon.Daemon {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.nodes {
		if m.Node == n && n != nil {
			return m.Daemon
		}
	}
	return nil
}

// AdminAddr is node n's admin HTTP address ("" without the Admin process
// option).
func (c *Cluster) AdminAddr(n *brokerd.Node) string {
	if d := c.Daemon(n); d != nil {
		return d.AdminAddr()
	}
	return ""
}

// Members returns every slot.
func (c *Cluster) Members() []*Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Member(nil), c.nodes...)
}

// Up returns the running nodes.
func (c *Cluster) Up() []*brokerd.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*brokerd.Node
	for _, m := range c.nodes {
		if m.Node != nil {
			out = append(out, m.Node)
		}
	}
	return out
}

// Addrs returns every member's gRPC address, up or down.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, m := range c.Members() {
		out = append(out, m.GRPCAddr)
	}
	return out
}

// Leader returns the ready leader, or nil.
func (c *Cluster) Leader() *brokerd.Node {
	for _, n := range c.Up() {
		if n.IsLeaderReady() {
			return n
		}
	}
	return nil
}

// WaitLeader waits for a ready leader.
func (c *Cluster) WaitLeader(timeout time.Duration) *brokerd.Node {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if l := c.Leader(); l != nil {
			return l
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("no leader within %s", timeout)
	return nil
}

// WaitGroupLeaders waits until each Raft group of the running nodes has
// exactly one ready leader, and every node of every group knows every
// running node's address (followers forward to their group's leader).
func (c *Cluster) WaitGroupLeaders(timeout time.Duration) {
	c.t.Helper()
	testutil.WaitFor(c.t, timeout, "every group has one ready leader known to every node", func() bool {
		up := c.Up()
		if len(up) == 0 {
			return false
		}
		for g := range up[0].Groups() {
			ready := 0
			for _, n := range up {
				gn := n.Groups()[g]
				if gn == nil {
					continue // a node that does not run the group (replicas)
				}
				if gn.IsLeaderReady() {
					ready++
				}
				// Every running node's address; with replicas on some
				// of the nodes, every member's.
				want := len(up)
				if slices.Contains(n.Groups(), nil) {
					want = len(gn.Raft().GetConfiguration().Configuration().Servers)
				}
				if len(gn.FSM().Nodes()) < want {
					return false
				}
			}
			if ready != 1 {
				return false
			}
		}
		return true
	})
}

// GroupLeader returns the running node that leads group g (ready), or nil.
func (c *Cluster) GroupLeader(g int) *brokerd.Node {
	for _, n := range c.Up() {
		if gs := n.Groups(); g < len(gs) && gs[g] != nil && gs[g].IsLeaderReady() {
			return n
		}
	}
	return nil
}

// Member returns the slot of node id.
func (c *Cluster) Member(id string) *Member {
	for _, m := range c.Members() {
		if m.ID == id {
			return m
		}
	}
	return nil
}

// Kill stops a node abruptly; its data dir stays.
func (c *Cluster) Kill(id string) {
	c.t.Helper()
	m := c.Member(id)
	c.mu.Lock()
	d := m.Daemon
	m.Node, m.Daemon = nil, nil
	c.mu.Unlock()
	if d != nil {
		_ = d.Kill()
	}
}

// Restart starts a killed node again from its data dir (no bootstrap).
func (c *Cluster) Restart(id string) *brokerd.Node {
	c.t.Helper()
	m := c.Member(id)
	c.open(m, c.config(m))
	return m.Node
}

// Add starts a fresh node that joins through the current members.
func (c *Cluster) Add() *Member {
	c.t.Helper()
	c.mu.Lock()
	m := &Member{ID: fmt.Sprintf("n%d", len(c.nodes)+1), RaftAddr: freeport.T(c.t), GRPCAddr: freeport.T(c.t)}
	m.Dir = filepath.Join(c.dir, m.ID)
	var join []string
	for _, o := range c.nodes {
		if o.Node != nil {
			join = append(join, o.GRPCAddr)
		}
	}
	c.nodes = append(c.nodes, m)
	c.mu.Unlock()
	cfg := c.config(m)
	cfg.Join = join
	c.open(m, cfg)
	return m
}

// Client returns a client over every member's address, closed at cleanup.
func (c *Cluster) Client() *client.Client {
	cl, err := client.New(c.Addrs(), client.Options{})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// WaitJobState polls job id through cl until it is in state st, and
// returns it; a failed read fails t. The minute is a hang guard.
func WaitJobState(t testing.TB, cl *client.Client, id string, st raftqv1.JobState) *raftqv1.Job {
	t.Helper()
	var j *raftqv1.Job
	testutil.WaitFor(t, time.Minute, "job "+id+" in state "+st.String(), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		if j, err = cl.GetJob(ctx, id, raftqv1.Consistency_CONSISTENCY_LINEARIZABLE); err != nil {
			t.Fatalf("GetJob %s: %v", id, err)
		}
		return j.State == st
	})
	return j
}

// WaitConverged waits until every running node has applied at least what
// the leader's FSM has and all state hashes agree; it returns the hash.
func (c *Cluster) WaitConverged(timeout time.Duration) string {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		l := c.Leader()
		if l != nil {
			// The leader's FSM index, not its commit index: barrier and
			// no-op entries never reach an FSM.
			idx := l.FSM().LastIndex()
			ok := true
			hash := ""
			for _, n := range c.Up() {
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				err := n.FSM().WaitApplied(ctx, idx)
				cancel()
				h := n.FSM().Hash()
				if err != nil || (hash != "" && h != hash) {
					ok = false
					last = fmt.Sprintf("node %s applied %d (want %d) hash %s vs %s", n.ID(), n.FSM().LastIndex(), idx, h, hash)
					break
				}
				hash = h
			}
			if ok {
				return hash
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("nodes did not converge within %s: %s", timeout, last)
	return ""
}

// Close stops every node.
func (c *Cluster) Close() {
	for _, m := range c.Members() {
		c.mu.Lock()
		d := m.Daemon
		m.Node, m.Daemon = nil, nil
		c.mu.Unlock()
		if d != nil {
			_ = d.Kill()
		}
	}
}
