package brokerd

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"os"
	"path/filepath"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/raftq/raftq/fsm/fsmpb"
	"github.com/raftq/raftq/internal/apierr"
	"github.com/raftq/raftq/internal/placement"
	"github.com/raftq/raftq/internal/raftmux"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/raftqerr"
)

// Several Raft groups on one node (Config.Groups > 1).
//
// The Node that Open returns is the host and runs group 0. It owns what a
// process has once: the Raft port (a raftmux.Mux: each group's Raft
// traffic on its own connections, selected by a header before TLS), the
// gRPC server with its interceptors, health service, caps and TLS
// material. Every other group is a Node of its own — its own Raft, log,
// FSM store, snapshots, proposer and leader duties, in DataDir/groups/<g>
// — that serves no port: the host's gRPC services route each call to the
// group it is for (router.go), and the group's own handler then answers
// it, or forwards it to that group's leader with the group named in the
// placement.Header metadata.

// groupsDir holds the data dirs of groups 1 and up under a node's data dir
// (group 0's stays the data dir itself, so a node's data dir from before
// groups existed is its group 0).
const groupsDir = "groups"

// groupCountFile records the group count a data dir was made with.
const groupCountFile = "groups.count"

// Groups returns the Nodes of this node's Raft groups, indexed by group
// (just this Node when it runs one group). With replicas on a subset of
// the nodes (Config.Replicas), a group this node does not run is nil.
func (n *Node) Groups() []*Node {
	if gs := n.groupList(); gs != nil {
		return gs
	}
	return []*Node{n}
}

// groupList is a host's groups by number, nil where it runs no replica
// (nil on a one-group node and on a group's own Node). The slice is never
// changed once published: setGroup publishes a copy.
func (n *Node) groupList() []*Node {
	if p := n.groups.Load(); p != nil {
		return *p
	}
	return nil
}

// localGroups are the groups this host runs, in group order (just this
// Node with one group).
func (n *Node) localGroups() []*Node {
	gs := n.groupList()
	if gs == nil {
		return []*Node{n}
	}
	out := make([]*Node, 0, len(gs))
	for _, gn := range gs {
		if gn != nil {
			out = append(out, gn)
		}
	}
	return out
}

// setGroup publishes gn as the host's group g (nil: not run here).
// Callers hold groupsMu.
func (n *Node) setGroup(g uint32, gn *Node) {
	old := n.groupList()
	gs := make([]*Node, n.cfg.Groups)
	copy(gs, old)
	gs[g] = gn
	n.groups.Store(&gs)
}

// GroupCount is how many Raft groups the cluster runs (1 without groups).
func (n *Node) GroupCount() int { return max(n.cfg.Groups, 1) }

// Group is the Raft group this Node runs.
func (n *Node) Group() uint32 { return n.cfg.group }

// multi reports whether this node runs more than one group.
func (n *Node) multi() bool { return n.cfg.Groups > 1 }

// checkGroupCount refuses a data dir made with another group count: its
// queues' jobs are in the groups that count placed them in.
func checkGroupCount(dir string, groups int) error {
	if groups < 1 {
		groups = 1
	}
	path := filepath.Join(dir, groupCountFile)
	b, err := os.ReadFile(path)
	switch {
	case os.IsNotExist(err):
		// A data dir with a store but no record was made before groups
		// existed: one group.
		if _, serr := os.Stat(filepath.Join(dir, "fsm.db")); serr == nil && groups != 1 {
			return fmt.Errorf("data dir %s was made with 1 group, not %d: a cluster keeps its group count (start with groups: 1)", dir, groups)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		return os.WriteFile(path, []byte(strconv.Itoa(groups)+"\n"), 0o600)
	case err != nil:
		return err
	}
	was, perr := strconv.Atoi(string(trimNL(b)))
	if perr != nil {
		return fmt.Errorf("%s: %q is not a group count: restore it or delete the data dir", path, b)
	}
	if was != groups {
		return fmt.Errorf("data dir %s was made with %d groups, not %d: a cluster keeps its group count (start with groups: %d)", dir, was, groups, was)
	}
	return nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// openMux binds the shared Raft port for a host of several groups.
func (n *Node) openMux() error {
	m, err := raftmux.Listen(n.cfg.RaftAddr, n.cfg.RaftAdvertise, n.log)
	if err != nil {
		return fmt.Errorf("raft transport on %s: %w", n.cfg.RaftAddr, err)
	}
	n.mux = m
	return nil
}

// openGroups starts groups 1 and up on a host whose group 0 is running.
// With replicas on a subset of the nodes, only the groups this node's
// replica of group 0 says it runs, and those it holds state of (the
// replica keeper closes those it no longer runs: replicas.go).
func (n *Node) openGroups() error {
	n.groupsMu.Lock()
	defer n.groupsMu.Unlock()
	n.setGroup(0, n)
	for g := 1; g < n.cfg.Groups; g++ {
		if n.rep != nil && !n.rep.runsAtStart(uint32(g)) {
			continue
		}
		gn, err := n.openGroup(uint32(g), nil)
		if err != nil {
			return fmt.Errorf("group %d: %w", g, err)
		}
		n.setGroup(uint32(g), gn)
	}
	return nil
}

// openGroup opens one group's Node: the stores and Raft of its own, the
// host's TLS material, authorizer, caps, health service and gRPC address.
// founding, when set, bootstraps a replica without state with those
// servers (a group's first members, placed by group 0: replicas.go).
func (n *Node) openGroup(g uint32, founding []raft.Server) (*Node, error) {
	cfg := n.cfg
	cfg.group = g
	cfg.host = n
	cfg.DataDir = filepath.Join(n.cfg.DataDir, groupsDir, strconv.FormatUint(uint64(g), 10))
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	gn := &Node{
		cfg:      cfg,
		log:      n.log.With("group", g),
		clock:    n.clock,
		notifyCh: make(chan bool, 16),
		mux:      n.mux,
	}
	gn.ctx, gn.cancel = context.WithCancel(context.Background())
	gn.founding = founding
	if err := gn.openFSM(); err != nil {
		return nil, err
	}
	gn.metrics = newNodeMetrics(gn)
	gn.schedm = newScheduleMetrics(gn.metrics.per)
	gn.disk = newDiskMonitor(gn)
	gn.lead = newLeadership(gn)
	gn.tls, gn.auth, gn.waiters, gn.caps = n.tls, n.auth, n.waiters, n.caps
	if err := gn.openRaft(); err != nil {
		gn.cancel()
		gn.closeStores()
		return nil, err
	}
	gn.health = n.health
	gn.fwd = newForwarder(gn)
	gn.startDisk()
	gn.wg.Add(2)
	go gn.lead.watch()
	go gn.announce()
	if len(cfg.Join) > 0 && !gn.HasState() && n.rep == nil {
		gn.wg.Add(1)
		go gn.joinLoop()
	}
	gn.metrics.watchRaft(gn)
	return gn, nil
}

// groupNode is the Node of group g on this host: nil for a group it does
// not run (Config.Replicas), itself on a one-group node.
func (n *Node) groupNode(g uint32) *Node {
	if gs := n.groupList(); gs != nil {
		if int(g) < len(gs) {
			return gs[g]
		}
		return nil
	}
	return n
}

// anyGroup is group g's Node on this host: its replica, or the stand-in
// that forwards its calls when the host does not run it (replicas.go).
func (n *Node) anyGroup(g uint32) *Node {
	if gn := n.groupNode(g); gn != nil {
		return gn
	}
	return n.rep.stub(g)
}

// placementOf is queue's record in group 0's placement table, as this
// node's replica of group 0 has it (nil: the queue lives where its name
// hashes). See movequeue.go.
func (n *Node) placementOf(queue string) *fsmpb.QueuePlacement {
	if !n.multi() {
		return nil
	}
	return n.hostNode().groupNode(0).fsm.Placements()[queue]
}

// hostNode is the host's Node (group 0's), which knows every group.
func (n *Node) hostNode() *Node {
	if n.cfg.host != nil {
		return n.cfg.host
	}
	return n
}

// queueGroup is the group that takes queue's new jobs: its placement's
// group when an operator placed (moved) it, else the group its name
// hashes to.
func (n *Node) queueGroup(queue string) uint32 {
	if p := n.placementOf(queue); p != nil {
		return p.GetGroup()
	}
	return placement.Queue(queue, n.cfg.Groups)
}

// queueGroups are the groups holding queue's jobs: its group, and while it
// moves, the group it is leaving (whose jobs are served until none is
// left); a partitioned queue's partitions.
func (n *Node) queueGroups(queue string) []uint32 {
	p := n.placementOf(queue)
	switch {
	case p == nil:
		return []uint32{placement.Queue(queue, n.cfg.Groups)}
	case len(p.GetPartitions()) > 0:
		return p.GetPartitions()
	case p.GetPhase() != fsmpb.PlacementPhase_PLACEMENT_PHASE_NONE:
		return []uint32{p.GetGroup(), p.GetFromGroup()}
	}
	return []uint32{p.GetGroup()}
}

// ownsQueue refuses a queue that another group holds: a call routed to the
// wrong group (a stale or forged group header) must not put a job where
// the queue's workers never look. The groups a queue may be sent to are
// where its name hashes and those of its placement; the seal in a group it
// moved away from (an FSM check, ordered with the enqueues) refuses what
// no longer belongs there. A broker whose replica of group 0 has not yet
// applied a move that the sender saw waits a little for it.
func (n *Node) ownsQueue(ctx context.Context, queue string) error {
	if !n.multi() {
		return nil
	}
	ok := func() bool {
		if placement.Queue(queue, n.cfg.Groups) == n.cfg.group {
			return true
		}
		p := n.placementOf(queue)
		if p != nil && (p.GetGroup() == n.cfg.group || slices.Contains(p.GetPartitions(), n.cfg.group) ||
			(p.GetPhase() != fsmpb.PlacementPhase_PLACEMENT_PHASE_NONE && p.GetFromGroup() == n.cfg.group)) {
			return true
		}
		// A group the queue moved away from: its seal answers QUEUE_MOVED,
		// which the router follows (a router whose table is behind still
		// sends the queue's keyed jobs here first).
		_, sealed := n.fsm.Sealed(queue)
		return sealed
	}
	for wait := time.Now().Add(placementLag); !ok(); {
		if time.Now().After(wait) || ctx.Err() != nil {
			g := n.queueGroup(queue)
			return fmt.Errorf("%w: queue %q is in group %d, not group %d (send the call without %s, or to group %d)",
				apierr.ErrInvalid, queue, g, n.cfg.group, placement.Header, g)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// placementLag is how long ownsQueue waits for this node's replica of
// group 0 to apply a placement another broker routed by: a few heartbeats.
const placementLag = 2 * time.Second

// headerGroup reads the group a call names in its metadata, if any.
func (n *Node) headerGroup(ctx context.Context) (uint32, bool, error) {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return 0, false, nil
	}
	v := md.Get(placement.Header)
	if len(v) == 0 {
		return 0, false, nil
	}
	g, err := placement.Parse(v[0], n.cfg.Groups)
	if err != nil {
		return 0, false, fmt.Errorf("%w: %v", apierr.ErrInvalid, err)
	}
	return g, true, nil
}

// withGroup names group g (decimal) in ctx's outgoing metadata, replacing
// any group named before.
func withGroup(ctx context.Context, g string) context.Context {
	md, _ := metadata.FromOutgoingContext(ctx)
	md = md.Copy()
	md.Set(placement.Header, g)
	return metadata.NewOutgoingContext(ctx, md)
}

// GroupLeaderHealthService is the health service name that only the ready
// leader of group g reports SERVING, on a node running several groups:
// what Envoy's static config health-checks per group. Group 0's leader
// also reports LeaderHealthService, as a one-group node does.
func GroupLeaderHealthService(g uint32) string {
	return LeaderHealthService + "." + strconv.FormatUint(uint64(g), 10)
}

// leaderHealthNames are the health service names this group's leadership
// sets.
func (n *Node) leaderHealthNames() []string {
	if !n.multi() {
		return []string{LeaderHealthService}
	}
	if n.cfg.group == 0 {
		return []string{LeaderHealthService, GroupLeaderHealthService(0)}
	}
	return []string{GroupLeaderHealthService(n.cfg.group)}
}

// groupStatus is every group's leader and state as this host sees them.
func (n *Node) groupStatus() []*raftqv1.GroupStatus {
	out := make([]*raftqv1.GroupStatus, 0, n.cfg.Groups)
	for g, gn := range n.groupList() {
		if gn == nil {
			out = append(out, n.rep.remoteStatus(uint32(g)))
			continue
		}
		id, addr := gn.leader()
		st := &raftqv1.GroupStatus{
			Group: uint32(g), LeaderId: id, LeaderAddr: addr,
			State: gn.raft.State().String(), AppliedIndex: gn.fsm.LastIndex(),
			Members: gn.members(id),
		}
		fmt.Sscan(gn.raft.Stats()["term"], &st.Term)
		out = append(out, st)
	}
	return out
}

// balanceInterval is how often a host checks that it leads no more than
// its share of the groups.
const balanceInterval = 2 * time.Second

// balanceLeaders spreads group leaderships over the nodes: Raft elects
// whoever times out first, so one node often ends up leading every group
// and doing all the cluster's work. Every balanceInterval, a host that
// leads more than its share (the group count over the voters, rounded
// up) hands one of its groups to the voter leading the fewest, through
// Raft's leadership transfer. One transfer per round per node, so the
// cluster settles without moving a leadership twice at once; a node that
// was just handed one keeps it (it is below its share).
func (n *Node) balanceLeaders() {
	n.every(balanceInterval, func() { n.balanceOnce() })
}

// every runs fn every d until the node closes; it is one of the loops
// n.wg counts.
func (n *Node) every(d time.Duration, fn func()) {
	defer n.wg.Done()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		fn()
	}
}

// balanceOnce makes at most one leadership transfer; it reports whether
// it made one.
func (n *Node) balanceOnce() bool {
	led := map[string]int{}
	var mine []*Node
	for g := range uint32(n.cfg.Groups) {
		gn := n.groupNode(g)
		var id string
		if gn == nil {
			id = n.rep.route(g).GetLeaderId() // a group this host does not run
		} else {
			id, _ = gn.leader()
		}
		if id == "" {
			return false // an election is under way: look again later
		}
		led[id]++
		if gn != nil && id == n.cfg.NodeID && gn.lead.ready.Load() {
			mine = append(mine, gn)
		}
	}
	voters := n.voters()
	if len(voters) < 2 {
		return false
	}
	share := (n.cfg.Groups + len(voters) - 1) / len(voters)
	if len(mine) <= share {
		return false
	}
	// Hand one group to its voter leading the fewest (ties: the smallest
	// id, so every node picks the same one). A group runs on some of the
	// nodes only with Config.Replicas: its own voters are the candidates.
	for i := len(mine) - 1; i >= 0; i-- {
		gn := mine[i]
		cf := gn.raft.GetConfiguration()
		if cf.Error() != nil {
			continue
		}
		to, toAddr := "", raft.ServerAddress("")
		for _, s := range cf.Configuration().Servers {
			id := string(s.ID)
			if s.Suffrage != raft.Voter || id == n.cfg.NodeID || !slices.Contains(voters, id) {
				continue
			}
			if n.rep != nil && !slices.Contains(n.rep.table()[gn.cfg.group].GetMembers(), id) {
				continue // a replica on its way out (replicas.go)
			}
			if to == "" || led[id] < led[to] || (led[id] == led[to] && id < to) {
				to, toAddr = id, s.Address
			}
		}
		if to == "" || led[to]+1 > share {
			continue
		}
		n.log.Info("handing a group's leadership to balance leaders", "group", gn.cfg.group, "to", to, "leading", len(mine), "share", share)
		if err := gn.raft.LeadershipTransferToServer(raft.ServerID(to), toAddr).Error(); err != nil {
			n.log.Warn("leadership transfer for balance failed", "group", gn.cfg.group, "to", to, "err", err)
			return false
		}
		return true
	}
	return false
}

// BootstrapCluster bootstraps every Raft group of this node with the
// configuration c (bootstrap through etcd; --peers bootstraps in Open). A
// group that already has state answers raft.ErrCantBootstrap, as a
// one-group node's Raft does; the first error is returned, after every
// group was tried.
func (n *Node) BootstrapCluster(c raft.Configuration) error {
	var first error
	for _, gn := range n.localGroups() {
		if n.rep != nil && gn.cfg.group != 0 {
			continue // placed by group 0's leader (replicas.go)
		}
		if err := gn.raft.BootstrapCluster(c).Error(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// notLeader is the NOT_LEADER answer naming this group's leader; with
// several groups it names the group too, so a client learns whose leader
// it is.
func (n *Node) notLeader(id, addr string) error {
	if !n.multi() {
		return apierr.NotLeader(id, addr)
	}
	return raftqerr.NotLeaderOfGroup(n.cfg.group, id, addr)
}

// routeWatchInterval is how often a WatchRoutes stream looks for a change
// of leaders, members or placements: a client learns a new leader within
// it (an election itself takes a few hundred milliseconds).
const routeWatchInterval = 50 * time.Millisecond

// routes is where each group's calls go, as this node knows it.
func (n *Node) routes() *raftqv1.Routes {
	out := &raftqv1.Routes{GroupCount: uint32(n.GroupCount())}
	for g, gn := range n.Groups() {
		if gn == nil {
			out.Groups = append(out.Groups, n.rep.remoteStatus(uint32(g)))
			continue
		}
		id, addr := gn.leader()
		out.Groups = append(out.Groups, &raftqv1.GroupStatus{
			Group: gn.cfg.group, LeaderId: id, LeaderAddr: addr,
			State: gn.raft.State().String(), Members: gn.members(id),
		})
	}
	out.Placements = n.routePlacements()
	return out
}

// routePlacements is group 0's placement table as this host's replica has
// it, in queue order, for a client's route map: each placed queue, the
// group that takes its new jobs and the state of a move under way. The
// count of jobs left in the old group is left out (it costs a read of
// that group's store, and a route watcher would be sent every change).
func (n *Node) routePlacements() []*raftqv1.Placement {
	if !n.multi() {
		return nil
	}
	table := n.hostNode().groupNode(0).fsm.Placements()
	names := make([]string, 0, len(table))
	for q := range table {
		names = append(names, q)
	}
	slices.Sort(names)
	out := make([]*raftqv1.Placement, 0, len(names))
	for _, q := range names {
		p := table[q]
		v := &raftqv1.Placement{Queue: q, Group: p.GetGroup(), Phase: phaseName(p.GetPhase())}
		if p.GetPhase() != fsmpb.PlacementPhase_PLACEMENT_PHASE_NONE {
			v.FromGroup = p.GetFromGroup()
		}
		out = append(out, v)
	}
	return out
}

// routesKey is what a route watcher must be told about when it changes.
func routesKey(r *raftqv1.Routes) string {
	var b strings.Builder
	for _, g := range r.GetGroups() {
		fmt.Fprintf(&b, "%d=%s@%s[", g.GetGroup(), g.GetLeaderId(), g.GetLeaderAddr())
		for _, m := range g.GetMembers() {
			fmt.Fprintf(&b, "%s@%s/%v,", m.GetNodeId(), m.GetGrpcAddr(), m.GetVoter())
		}
		b.WriteString("]")
	}
	for _, p := range r.GetPlacements() {
		fmt.Fprintf(&b, "%q>%d<%d/%s;", p.GetQueue(), p.GetGroup(), p.GetFromGroup(), p.GetPhase())
	}
	return b.String()
}

// WatchRoutes sends the routes now and on every change until the caller
// goes away or the node shuts down.
func (s *clusterService) WatchRoutes(_ *raftqv1.WatchRoutesRequest, st grpc.ServerStreamingServer[raftqv1.Routes]) error {
	n := s.n
	t := time.NewTicker(routeWatchInterval)
	defer t.Stop()
	last := ""
	for {
		r := n.routes()
		if k := routesKey(r); k != last {
			if err := st.Send(r); err != nil {
				return err
			}
			last = k
		}
		select {
		case <-st.Context().Done():
			return st.Context().Err()
		case <-n.ctx.Done():
			return status.Error(codes.Unavailable, "node shutting down")
		case <-t.C:
		}
	}
}
