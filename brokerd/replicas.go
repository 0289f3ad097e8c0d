package brokerd

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"

	"github.com/raftq/raftq/fsm/fsmpb"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// Groups on a subset of the nodes (Config.Replicas).
//
// Group 0 runs on every voter: it holds the placement table, and now also
// which nodes run each other group (fsm GroupMembers, a compare-and-set on
// a version). Three loops keep the cluster on that table:
//
//   - The placer, on group 0's leader: it writes a record for each group
//     that has none (R members, the least loaded nodes first), and when the
//     group-0 voters change it re-places one replica at a time: a member
//     that left the cluster is replaced, a group short of R members gets
//     one, and a node running two groups more than another hands one over.
//     It writes nothing while any group's Raft configuration differs from
//     its record (a move is under way), so at most one replica moves at
//     once.
//   - The reconciler, on each group's leader: it brings the group's Raft
//     configuration to the record, in the order that never leaves the group
//     with fewer copies than it had: a new member is added as a non-voter,
//     promoted once its replica has applied within replicaCatchUp entries
//     of the leader's, and only when every member votes is a server the
//     record no longer names removed (a leader that is itself to go hands
//     its leadership to a member first).
//   - The keeper, on every node: it opens the groups the record says the
//     node runs (the founding members of a group, record version 1,
//     bootstrap it with the same servers, as --peers does; a later member
//     starts empty and is caught up by the leader), and closes and deletes
//     a group it no longer runs once that group's leader no longer counts
//     it a member (so a replica is never dropped while it may still be
//     needed for a quorum).
//
// A node serves calls for groups it does not run through a stand-in Node
// (remote): the router hands it the call as to any group, and the
// stand-in forwards it to that group's leader, which it learns from a
// member's WatchRoutes stream (one per such group). The stand-in answers
// from nothing locally: no store, no Raft.

// MaxReplicas is the most replicas a group can have (Config.Replicas).
const MaxReplicas = 16

const (
	// replicaInterval is how often the keeper, placer and reconciler look.
	replicaInterval = 500 * time.Millisecond
	// replicaCatchUp is how far (log entries) a new member's replica may
	// be behind the leader's when it is promoted to voter.
	replicaCatchUp = 256
)

// replicaSet is a host's view of which groups run where, and the stand-ins
// of the groups it does not run.
type replicaSet struct {
	h    *Node
	want int // Config.Replicas

	mu     sync.Mutex
	stubs  map[uint32]*Node
	routes map[uint32]*raftqv1.GroupStatus // remote groups, as a member last told
	watch  map[uint32]context.CancelFunc   // route watchers running
}

func newReplicaSet(h *Node) *replicaSet {
	return &replicaSet{h: h, want: h.cfg.Replicas, stubs: map[uint32]*Node{},
		routes: map[uint32]*raftqv1.GroupStatus{}, watch: map[uint32]context.CancelFunc{}}
}

// placed reports whether groups run on a subset of the nodes.
func (c Config) placed() bool { return c.Replicas > 0 && c.Groups > 1 }

// placedGroup reports whether this Node is a group whose members group 0
// places (every group but 0, with Config.Replicas).
func (n *Node) placedGroup() bool { return n.cfg.group != 0 && n.hostNode().rep != nil }

// table is group 0's membership records, as this host's replica has them.
func (rs *replicaSet) table() map[uint32]*fsmpb.GroupMembers { return rs.h.fsm.GroupMembers() }

// mine reports whether the record names this node a member of g.
func (rs *replicaSet) mine(g uint32) bool {
	rec := rs.table()[g]
	return rec != nil && slices.Contains(rec.GetMembers(), rs.h.cfg.NodeID)
}

// runsAtStart reports whether a starting host opens group g: the record
// names it, or it holds the group's state (the keeper closes that one if
// the group's leader no longer counts it a member).
func (rs *replicaSet) runsAtStart(g uint32) bool {
	if rs.mine(g) {
		return true
	}
	_, err := os.Stat(filepath.Join(rs.h.groupDir(g), fsmFile))
	return err == nil
}

// groupDir is group g's data dir on this host.
func (n *Node) groupDir(g uint32) string {
	return filepath.Join(n.cfg.DataDir, groupsDir, strconv.FormatUint(uint64(g), 10))
}

// stub is the stand-in for group g, which this host does not run.
func (rs *replicaSet) stub(g uint32) *Node {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if s := rs.stubs[g]; s != nil {
		return s
	}
	h := rs.h
	cfg := h.cfg
	cfg.group = g
	cfg.host = h
	s := &Node{cfg: cfg, log: h.log.With("group", g, "remote", true), clock: h.clock, remote: true,
		ctx: h.ctx, cancel: func() {}, tls: h.tls, auth: h.auth, waiters: h.waiters, caps: h.caps}
	s.fwd = newForwarder(s)
	rs.stubs[g] = s
	return s
}

// closeStubs closes the stand-ins' connections (the host is stopping).
func (rs *replicaSet) closeStubs() {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for _, s := range rs.stubs {
		s.fwd.close()
	}
}

// route is what a member last said of group g (nil: nothing yet).
func (rs *replicaSet) route(g uint32) *raftqv1.GroupStatus {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.routes[g]
}

// remoteLeader is group g's leader as its members tell this host.
func (rs *replicaSet) remoteLeader(g uint32) (id, addr string) {
	r := rs.route(g)
	return r.GetLeaderId(), r.GetLeaderAddr()
}

// grpcAddr is node id's gRPC address, from group 0's node records.
func (h *Node) grpcAddrOf(id string) string {
	for _, m := range h.fsm.Nodes() {
		if m.NodeID == id {
			return m.GRPCAddr
		}
	}
	return ""
}

// raftAddrOf is node id's Raft address in group 0's configuration: every
// group of a host shares its Raft port.
func (h *Node) raftAddrOf(id string) raft.ServerAddress {
	cf := h.raft.GetConfiguration()
	if cf.Error() != nil {
		return ""
	}
	for _, s := range cf.Configuration().Servers {
		if string(s.ID) == id {
			return s.Address
		}
	}
	return ""
}

// voters are the ids of group 0's voters, sorted: the cluster's members.
func (h *Node) voters() []string {
	cf := h.raft.GetConfiguration()
	if cf.Error() != nil {
		return nil
	}
	var out []string
	for _, s := range cf.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			out = append(out, string(s.ID))
		}
	}
	slices.Sort(out)
	return out
}

// run starts the keeper and the placer (the placer acts while this host
// leads group 0) and the reconciler (for each group this host leads).
func (rs *replicaSet) run() {
	h := rs.h
	h.wg.Add(1)
	go h.every(replicaInterval, func() {
		rs.keep()
		if h.lead.ready.Load() {
			rs.place()
		}
		for _, gn := range h.localGroups() {
			if gn.cfg.group != 0 && gn.lead.ready.Load() {
				rs.reconcile(gn)
			}
		}
	})
}

// keep opens the groups the record says this host runs and closes those
// it no longer does, and watches the routes of those it does not run.
func (rs *replicaSet) keep() {
	h := rs.h
	table := rs.table()
	for g := uint32(1); g < uint32(h.cfg.Groups); g++ {
		rec := table[g]
		gn := h.groupNode(g)
		switch {
		case gn == nil && rs.mine(g):
			if err := rs.open(g, rec); err != nil && h.ctx.Err() == nil {
				h.log.Warn("open a group's replica", "group", g, "err", err)
			}
		case gn != nil && rec != nil && !rs.mine(g) && rs.dropped(g, gn):
			rs.close(g, gn)
		}
		if h.groupNode(g) == nil || !rs.mine(g) {
			rs.watchRoutes(g)
		} else {
			rs.unwatch(g)
		}
	}
}

// open starts this host's replica of group g: founding members of the
// group (record version 1) bootstrap it, a later member starts empty for
// the leader to fill.
func (rs *replicaSet) open(g uint32, rec *fsmpb.GroupMembers) error {
	h := rs.h
	var founding []raft.Server
	if rec.GetVersion() == 1 {
		for _, id := range rec.GetMembers() {
			addr := h.raftAddrOf(id)
			if addr == "" {
				return fmt.Errorf("no raft address for founding member %s yet", id)
			}
			founding = append(founding, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: addr})
		}
	}
	h.groupsMu.Lock()
	defer h.groupsMu.Unlock()
	if h.stopping || h.ctx.Err() != nil || h.groupNode(g) != nil {
		return nil
	}
	gn, err := h.openGroup(g, founding)
	if err != nil {
		return err
	}
	h.setGroup(g, gn)
	h.log.Info("opened a group's replica", "group", g, "founding", len(founding) > 0, "version", rec.GetVersion())
	return nil
}

// dropped reports whether group g's replica here may go: Raft shut it
// down on its removal, or its configuration here or at its leader no
// longer names this node.
func (rs *replicaSet) dropped(g uint32, gn *Node) bool {
	if gn.raft.State() == raft.Shutdown {
		return true
	}
	me := raft.ServerID(rs.h.cfg.NodeID)
	if cf := gn.raft.GetConfiguration(); cf.Error() == nil &&
		!slices.ContainsFunc(cf.Configuration().Servers, func(s raft.Server) bool { return s.ID == me }) {
		return true
	}
	r := rs.route(g)
	if r == nil || r.GetLeaderId() == "" || r.GetLeaderId() == rs.h.cfg.NodeID {
		return false
	}
	return !slices.ContainsFunc(r.GetMembers(), func(m *raftqv1.Member) bool { return m.GetNodeId() == string(me) })
}

// close stops this host's replica of group g and deletes its data.
func (rs *replicaSet) close(g uint32, gn *Node) {
	h := rs.h
	h.groupsMu.Lock()
	defer h.groupsMu.Unlock()
	if h.stopping || h.groupNode(g) != gn {
		return
	}
	h.setGroup(g, nil)
	if err := gn.shutdown(true); err != nil {
		h.log.Warn("close a group's replica", "group", g, "err", err)
	}
	if err := os.RemoveAll(gn.cfg.DataDir); err != nil {
		h.log.Warn("delete a closed group's data", "group", g, "dir", gn.cfg.DataDir, "err", err)
	}
	h.log.Info("closed a group's replica: this node no longer runs it", "group", g)
}

// watchRoutes keeps a route watcher on group g running.
func (rs *replicaSet) watchRoutes(g uint32) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.watch[g] != nil {
		return
	}
	ctx, cancel := context.WithCancel(rs.h.ctx)
	rs.watch[g] = cancel
	rs.h.wg.Add(1)
	go func() {
		defer rs.h.wg.Done()
		rs.watchLoop(ctx, g)
	}()
}

// unwatch stops group g's route watcher (this host runs it now).
func (rs *replicaSet) unwatch(g uint32) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if c := rs.watch[g]; c != nil {
		c()
		delete(rs.watch, g)
		delete(rs.routes, g)
	}
}

// watchLoop follows group g's routes from its members, one at a time,
// moving on to the next member when one fails.
func (rs *replicaSet) watchLoop(ctx context.Context, g uint32) {
	h := rs.h
	for turn := 0; ctx.Err() == nil; turn++ {
		members := rs.table()[g].GetMembers()
		var addrs []string
		for _, id := range members {
			if id == h.cfg.NodeID {
				continue
			}
			if a := h.grpcAddrOf(id); a != "" {
				addrs = append(addrs, a)
			}
		}
		if len(addrs) > 0 {
			rs.follow(ctx, g, addrs[turn%len(addrs)])
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// follow reads group g's entry of one member's route stream until it
// fails, or the member no longer runs g.
func (rs *replicaSet) follow(ctx context.Context, g uint32, addr string) {
	c, err := rs.h.fwd.conn(addr)
	if err != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.WithValue(ctx, ownCallKey{}, true))
	defer cancel()
	st, err := raftqv1.NewClusterClient(c).WatchRoutes(ctx, &raftqv1.WatchRoutesRequest{})
	if err != nil {
		return
	}
	for {
		r, err := st.Recv()
		if err != nil {
			return
		}
		for _, gs := range r.GetGroups() {
			if gs.GetGroup() != g {
				continue
			}
			if gs.GetState() == "" || gs.GetState() == "Remote" {
				return // that node does not run g (any more): ask another
			}
			rs.mu.Lock()
			rs.routes[g] = gs
			rs.mu.Unlock()
		}
	}
}

// groupVoters are group g's voters as this host knows them: from its own
// replica, or as a member told. ok is false while that is unknown.
func (rs *replicaSet) groupVoters(g uint32) (ids []string, ok bool) {
	if gn := rs.h.groupNode(g); gn != nil {
		cf := gn.raft.GetConfiguration()
		if cf.Error() != nil {
			return nil, false
		}
		for _, s := range cf.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				ids = append(ids, string(s.ID))
			}
		}
		_, lid := gn.raft.LeaderWithID()
		return sorted(ids), lid != ""
	}
	r := rs.route(g)
	if r == nil || r.GetLeaderId() == "" {
		return nil, false
	}
	for _, m := range r.GetMembers() {
		if m.GetVoter() {
			ids = append(ids, m.GetNodeId())
		}
	}
	return sorted(ids), true
}

func sorted(s []string) []string { slices.Sort(s); return s }

// place is the placer's one look (group 0's leader): records for groups
// without one, then at most one replica moved.
func (rs *replicaSet) place() {
	h := rs.h
	voters := h.voters()
	if len(voters) == 0 {
		return
	}
	table := rs.table()
	load := map[string]int{}
	for _, id := range voters {
		load[id] = 0
	}
	for _, rec := range table {
		for _, m := range rec.GetMembers() {
			if _, ok := load[m]; ok {
				load[m]++
			}
		}
	}
	r := min(rs.want, len(voters))
	// Founding records, all at once: a new cluster's groups start together.
	for g := uint32(1); g < uint32(h.cfg.Groups); g++ {
		if table[g] != nil {
			continue
		}
		members := pick(g, voters, load, nil, r)
		if err := rs.setMembers(g, members, 0); err != nil {
			h.log.Warn("place a group's replicas", "group", g, "err", err)
			return
		}
		h.log.Info("placed a group's replicas", "group", g, "members", members)
	}
	// One change at a time, once every group's configuration is its record.
	for g := uint32(1); g < uint32(h.cfg.Groups); g++ {
		rec := table[g]
		cur, ok := rs.groupVoters(g)
		if rec == nil || !ok || !slices.Equal(cur, rec.GetMembers()) {
			return
		}
	}
	for g := uint32(1); g < uint32(h.cfg.Groups); g++ {
		if next, why := nextMembers(g, table[g].GetMembers(), voters, load, r); next != nil {
			if err := rs.setMembers(g, next, table[g].GetVersion()); err != nil {
				h.log.Warn("re-place a group's replicas", "group", g, "err", err)
			} else {
				h.log.Info("re-placing a group's replicas", "group", g, "from", table[g].GetMembers(), "to", next, "why", why)
			}
			return
		}
	}
	// Balance: one replica from the busiest node to the idlest, when they
	// differ by more than one group.
	busy, idle := "", ""
	for _, id := range voters {
		if busy == "" || load[id] > load[busy] {
			busy = id
		}
		if idle == "" || load[id] < load[idle] {
			idle = id
		}
	}
	if load[busy]-load[idle] <= 1 {
		return
	}
	for g := uint32(1); g < uint32(h.cfg.Groups); g++ {
		ms := table[g].GetMembers()
		if slices.Contains(ms, busy) && !slices.Contains(ms, idle) {
			next := sorted(append(slices.DeleteFunc(slices.Clone(ms), func(m string) bool { return m == busy }), idle))
			if err := rs.setMembers(g, next, table[g].GetVersion()); err != nil {
				h.log.Warn("balance a group's replicas", "group", g, "err", err)
			} else {
				h.log.Info("re-placing a group's replicas", "group", g, "from", ms, "to", next, "why", "balance")
			}
			return
		}
	}
}

// nextMembers is the one change group g's members need, with why (nil:
// none): a member that is no longer a voter replaced (or dropped when no
// node is free), a group short of r given one, one over r losing one.
func nextMembers(g uint32, ms, voters []string, load map[string]int, r int) ([]string, string) {
	for _, m := range ms {
		if !slices.Contains(voters, m) {
			rest := slices.DeleteFunc(slices.Clone(ms), func(x string) bool { return x == m })
			if add := pick(g, voters, load, ms, 1); len(add) > 0 {
				return sorted(append(rest, add...)), "member " + m + " left the cluster"
			}
			if len(rest) > 0 {
				return rest, "member " + m + " left the cluster"
			}
			return nil, ""
		}
	}
	if len(ms) < r {
		if add := pick(g, voters, load, ms, 1); len(add) > 0 {
			return sorted(append(slices.Clone(ms), add...)), "fewer than " + strconv.Itoa(r) + " replicas"
		}
	}
	if len(ms) > r {
		drop := ""
		for _, m := range ms {
			if drop == "" || load[m] > load[drop] || (load[m] == load[drop] && rank(g, m) < rank(g, drop)) {
				drop = m
			}
		}
		return slices.DeleteFunc(slices.Clone(ms), func(x string) bool { return x == drop }), "more than " + strconv.Itoa(r) + " replicas"
	}
	return nil, ""
}

// pick chooses k voters not in except for group g: the least loaded, ties
// broken by a hash of (group, node) so that equal nodes share groups
// evenly. It counts them in load.
func pick(g uint32, voters []string, load map[string]int, except []string, k int) []string {
	var cand []string
	for _, v := range voters {
		if !slices.Contains(except, v) {
			cand = append(cand, v)
		}
	}
	slices.SortFunc(cand, func(a, b string) int {
		if load[a] != load[b] {
			return load[a] - load[b]
		}
		ra, rb := rank(g, a), rank(g, b)
		switch {
		case ra < rb:
			return -1
		case ra > rb:
			return 1
		}
		return 0
	})
	cand = cand[:min(k, len(cand))]
	for _, c := range cand {
		load[c]++
	}
	return sorted(cand)
}

// rank is node id's rendezvous hash for group g.
func rank(g uint32, id string) uint64 {
	f := fnv.New64a()
	fmt.Fprintf(f, "%d/%s", g, id)
	return f.Sum64()
}

// setMembers proposes group g's members to group 0, as a compare-and-set
// on the record's version.
func (rs *replicaSet) setMembers(g uint32, members []string, expect uint64) error {
	ctx, cancel := context.WithTimeout(rs.h.ctx, 5*time.Second)
	defer cancel()
	_, err := rs.h.propose(ctx, &fsmpb.Command{
		Type: fsmpb.CommandType_COMMAND_TYPE_SET_GROUP_MEMBERS,
		Body: &fsmpb.Command_SetGroupMembers{SetGroupMembers: &fsmpb.GroupMembers{Group: g, Members: members, ExpectVersion: expect}},
	})
	return err
}

// reconcile is the reconciler's one look at group gn, which this host
// leads: one step bringing its configuration to its record.
func (rs *replicaSet) reconcile(gn *Node) {
	h := rs.h
	g := gn.cfg.group
	rec := rs.table()[g]
	if rec == nil {
		return
	}
	cf := gn.raft.GetConfiguration()
	if cf.Error() != nil {
		return
	}
	servers := cf.Configuration().Servers
	in := func(id string) (raft.Server, bool) {
		i := slices.IndexFunc(servers, func(s raft.Server) bool { return string(s.ID) == id })
		if i < 0 {
			return raft.Server{}, false
		}
		return servers[i], true
	}
	allVote := true
	for _, id := range rec.GetMembers() {
		s, ok := in(id)
		switch {
		case !ok:
			addr := h.raftAddrOf(id)
			if addr == "" {
				return
			}
			h.log.Info("adding a replica to a group as non-voter", "group", g, "id", id)
			if err := gn.raft.AddNonvoter(raft.ServerID(id), addr, 0, 10*time.Second).Error(); err != nil {
				h.log.Warn("add a replica", "group", g, "id", id, "err", err)
			}
			return
		case s.Suffrage != raft.Voter:
			allVote = false
			if !rs.caughtUp(gn, id) {
				continue
			}
			h.log.Info("promoting a caught-up replica to voter", "group", g, "id", id)
			if err := gn.raft.AddVoter(s.ID, s.Address, 0, 10*time.Second).Error(); err != nil {
				h.log.Warn("promote a replica", "group", g, "id", id, "err", err)
			}
			return
		}
	}
	if !allVote {
		return
	}
	self := false
	for _, s := range servers {
		if slices.Contains(rec.GetMembers(), string(s.ID)) {
			continue
		}
		if string(s.ID) == h.cfg.NodeID {
			self = true // last: the others go while this node still leads
			continue
		}
		h.log.Info("removing a replica from a group", "group", g, "id", s.ID)
		if err := gn.raft.RemoveServer(s.ID, 0, 10*time.Second).Error(); err != nil {
			h.log.Warn("remove a replica", "group", g, "id", s.ID, "err", err)
		}
		return
	}
	if self {
		// Every other voter is a recorded member now: Raft hands the
		// leadership to the most up-to-date of them, and the new leader
		// removes this node.
		h.log.Info("handing a group's leadership on: this node no longer runs it", "group", g)
		if err := gn.raft.LeadershipTransfer().Error(); err != nil {
			h.log.Warn("leadership transfer off a dropped replica", "group", g, "err", err)
		}
	}
}

// caughtUp reports whether node id's replica of gn's group has applied
// within replicaCatchUp entries of this leader's.
func (rs *replicaSet) caughtUp(gn *Node, id string) bool {
	addr := rs.h.grpcAddrOf(id)
	if addr == "" {
		return false
	}
	c, err := gn.fwd.conn(addr) // names gn's group
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.WithValue(gn.ctx, ownCallKey{}, true), 2*time.Second)
	defer cancel()
	st, err := raftqv1.NewClusterClient(c).Status(ctx, &raftqv1.StatusRequest{})
	if err != nil {
		return false
	}
	return st.GetAppliedIndex()+replicaCatchUp >= gn.fsm.LastIndex()
}

// errNotRunHere is the answer for a call about a group's whole state sent
// to a node that does not run the group.
var errNotRunHere = errors.New("this node does not run the group")

// remoteStatus is group g's status as its members tell this host (a
// group it does not run).
func (rs *replicaSet) remoteStatus(g uint32) *raftqv1.GroupStatus {
	st := &raftqv1.GroupStatus{Group: g, State: "Remote"}
	if r := rs.route(g); r != nil {
		st.LeaderId, st.LeaderAddr, st.Term, st.Members = r.GetLeaderId(), r.GetLeaderAddr(), r.GetTerm(), r.GetMembers()
	}
	return st
}

// remoteConn is a connection to group g's leader for a call this host
// cannot serve, with the caller's credentials passed on (forward.go).
func remoteConn(ctx context.Context, n *Node) (context.Context, *grpc.ClientConn, error) {
	_, addr := n.leader()
	if addr == "" {
		return ctx, nil, n.notLeader("", "")
	}
	c, err := n.fwd.conn(addr)
	if err != nil {
		return ctx, nil, n.notLeader("", addr)
	}
	return forwardContext(ctx, n), c, nil
}
