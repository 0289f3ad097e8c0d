package brokerd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/fsm/fsmpb"
	"github.com/raftq/raftq/internal/apierr"
	"github.com/raftq/raftq/internal/placement"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/raftqerr"
)

// Moving a queue between Raft groups (docs/scale-out.md, "Moving a
// queue"). Group 0 holds the placement table (fsm/placement.go); its
// leader drives each move through three steps, each a Raft entry:
//
//  1. PlaceQueue SEALING (group 0): routers send the queue's new jobs to
//     the old group first, and the ones it refuses as moved to the new.
//  2. SealQueue (old group), after reopening the queue in the new group
//     in case it was sealed there by an earlier move: from this entry on
//     the old group refuses new jobs of the queue; its idempotency and
//     unique keys still answer duplicates, and its jobs are served.
//  3. PlaceQueue DRAINING (group 0): new jobs go to the new group, keyed
//     ones after the old group has answered that it holds no duplicate
//     (its keys only expire from here on, so the answer stays true).
//     Workers fetch from both groups.
//  4. Once the old group holds no job of the queue that could run again
//     (queued, scheduled, leased, waiting or dead) and no live
//     idempotency key of it: PlaceQueue NONE, the queue lives in the new
//     group alone. The seal stays, so a router with an old table is
//     refused there and routes on.
//
// Jobs never move: no job is ever served by two groups, and a job id
// keeps naming the group that holds it.

// moveInterval is how often group 0's leader advances the moves under way.
const moveInterval = 200 * time.Millisecond

// driveMoves advances every move under way while this host leads group 0.
func (n *Node) driveMoves() {
	n.every(moveInterval, func() {
		g0 := n.groupNode(0)
		if !g0.lead.ready.Load() {
			return
		}
		for _, p := range g0.fsm.Placements() {
			if p.GetPhase() == fsmpb.PlacementPhase_PLACEMENT_PHASE_NONE {
				continue
			}
			ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
			if err := n.advanceMove(ctx, p); err != nil && n.ctx.Err() == nil {
				n.log.Warn("queue move: step failed; retrying", "queue", p.GetQueue(),
					"from_group", p.GetFromGroup(), "to_group", p.GetGroup(), "phase", p.GetPhase().String(), "err", err)
			}
			cancel()
		}
	})
}

// advanceMove takes one step of p's move. Every step is idempotent, so a
// new leader of group 0 simply takes the step its record says is next.
func (n *Node) advanceMove(ctx context.Context, p *fsmpb.QueuePlacement) error {
	q, from, to := p.GetQueue(), p.GetFromGroup(), p.GetGroup()
	step := func(phase fsmpb.PlacementPhase) error {
		_, err := n.groupNode(0).propose(ctx, placeCommand(&fsmpb.QueuePlacement{
			Queue: q, Group: to, FromGroup: from, Phase: phase, ExpectPhase: p.GetPhase()}))
		return err
	}
	switch p.GetPhase() {
	case fsmpb.PlacementPhase_PLACEMENT_PHASE_SEALING:
		if err := n.sealIn(ctx, to, &raftqv1.SealQueueRequest{Queue: q, Sealed: false}); err != nil {
			return fmt.Errorf("reopen in group %d: %w", to, err)
		}
		if err := n.sealIn(ctx, from, &raftqv1.SealQueueRequest{Queue: q, Sealed: true, ToGroup: to}); err != nil {
			return fmt.Errorf("seal in group %d: %w", from, err)
		}
		if moved, err := n.moveSchedules(ctx, q, from, to); err != nil || !moved {
			return err // !moved: this replica of the old group has not applied the seal yet
		}
		n.log.Info("queue move: old group sealed; draining", "queue", q, "from_group", from, "to_group", to)
		return step(fsmpb.PlacementPhase_PLACEMENT_PHASE_DRAINING)
	case fsmpb.PlacementPhase_PLACEMENT_PHASE_DRAINING:
		left, sealed, err := n.leftInGroup(ctx, q, from)
		if err != nil || !sealed || n.moveLeft(q, left) > 0 {
			return err
		}
		// Again, for a schedule put in the old group by a router whose
		// placement table did not show the move yet.
		if moved, err := n.moveSchedules(ctx, q, from, to); err != nil || !moved {
			return err
		}
		// The old group's live idempotency keys go to the new group, so a
		// retry after the move still gets its first job. The set is final
		// (sealed; keys only expire), and a replica behind shows a superset.
		exp, err := n.exportFrom(ctx, q, from, 0, false)
		if err != nil {
			return fmt.Errorf("read keys of group %d: %w", from, err)
		}
		keys := exp.GetKeys()
		for len(keys) > 0 {
			chunk := keys[:min(len(keys), importChunk)]
			keys = keys[len(chunk):]
			req := &raftqv1.ImportKeysRequest{Queue: q, Keys: chunk}
			if _, err := admin(n.hostNode().anyGroup(to)).ImportKeys(withGroup(ctx, fmt.Sprint(to)), req); err != nil {
				return fmt.Errorf("import keys into group %d: %w", to, err)
			}
		}
		n.log.Info("queue move: done", "queue", q, "from_group", from, "to_group", to)
		return step(fsmpb.PlacementPhase_PLACEMENT_PHASE_NONE)
	}
	return nil
}

// importChunk is the most idempotency keys one ImportKeys carries.
const importChunk = 1000

// leftInGroup is what keeps a move from finishing, read from this node's
// replica of group g: the queue's jobs there that could still run
// (queued, scheduled, leased, waiting, dead). Once the seal is applied
// here those only shrink, so a replica behind the leader shows at least
// what the leader holds: 0 here is 0 there. sealed is false until this
// replica applied the seal. A group this host does not run is asked at
// its leader (ExportQueue, after a read barrier there).
func (n *Node) leftInGroup(ctx context.Context, queue string, g uint32) (left int64, sealed bool, err error) {
	h := n.hostNode()
	gn := h.groupNode(g)
	if gn == nil {
		exp, err := n.exportFrom(ctx, queue, g, 1, false)
		if err != nil || !exp.GetSealed() {
			return 0, false, err
		}
		return exp.GetLeft(), true, nil
	}
	if _, sealed = gn.fsm.Sealed(queue); !sealed {
		return 0, false, nil
	}
	return jobsLeft(gn.fsm, queue), true, nil
}

// jobsLeft counts queue's jobs in f that could still run (queued,
// scheduled, leased, waiting, dead).
func jobsLeft(f *fsm.FSM, queue string) (left int64) {
	for _, s := range f.Stats([]string{queue}) {
		for st, c := range s.Counts {
			if !fsm.State(st).Terminal() || fsm.State(st) == fsm.StateDead {
				left += c
			}
		}
	}
	return left
}

// moveSchedules carries queue's schedules from group from, where it is
// sealed, to group to: the new group imports them with their firing state
// (ImportSchedules, read from its leader's replica of the old group once
// that replica has applied the seal), then they are deleted from the old
// group. From the seal on the old group fires none of them (Apply refuses
// their ticks), and the new group fires them from the tick after their
// last one, so no tick fires twice, and a tick due meanwhile fires late
// in the new group (within scheduleGrace: on time). Each step is
// idempotent: a new leader of group 0 repeats them safely. moved is false
// while this node's replica of the old group has not applied the seal
// (the caller retries later).
func (n *Node) moveSchedules(ctx context.Context, q string, from, to uint32) (moved bool, err error) {
	exp, err := n.exportFrom(ctx, q, from, 1, false)
	if err != nil {
		return false, err
	}
	if !exp.GetSealed() {
		return false, nil
	}
	if exp.GetScheduleCount() == 0 {
		return true, nil
	}
	res, err := admin(n.hostNode().anyGroup(to)).ImportSchedules(withGroup(ctx, fmt.Sprint(to)),
		&raftqv1.ImportSchedulesRequest{Queue: q, FromGroup: from})
	if err != nil {
		return false, fmt.Errorf("import schedules into group %d: %w", to, err)
	}
	for _, name := range res.GetNames() {
		_, err := sched(n.hostNode().anyGroup(from)).DeleteSchedule(withGroup(ctx, fmt.Sprint(from)), &raftqv1.DeleteScheduleRequest{Name: name})
		if err != nil && !isNotFound(err) {
			return false, fmt.Errorf("delete schedule %q from group %d: %w", name, from, err)
		}
	}
	n.log.Info("queue move: schedules moved", "queue", q, "from_group", from, "to_group", to, "schedules", res.GetNames())
	return true, nil
}

// sealIn applies a SealQueue in group g, through its leader.
func (n *Node) sealIn(ctx context.Context, g uint32, req *raftqv1.SealQueueRequest) error {
	_, err := admin(n.hostNode().anyGroup(g)).SealQueue(withGroup(ctx, fmt.Sprint(g)), req)
	return err
}

func placeCommand(p *fsmpb.QueuePlacement) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_PLACE_QUEUE,
		Body: &fsmpb.Command_PlaceQueue{PlaceQueue: p}}
}

// SealQueue applies a seal in this group (the leader's).
func (s *adminService) SealQueue(ctx context.Context, req *raftqv1.SealQueueRequest) (*raftqv1.SealQueueResponse, error) {
	n := s.n
	if !n.isLeader() {
		return forward(ctx, n, func(ctx context.Context, c *grpc.ClientConn) (*raftqv1.SealQueueResponse, error) {
			return raftqv1.NewAdminClient(c).SealQueue(ctx, req)
		})
	}
	if err := validateQueue(req.GetQueue()); err != nil {
		return nil, apierr.FromError(err)
	}
	if _, err := placement.Check(uint64(req.GetToGroup()), n.cfg.Groups); err != nil {
		return nil, apierr.FromError(fmt.Errorf("%w: to_group: %v", apierr.ErrInvalid, err))
	}
	_, err := n.propose(ctx, &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_SEAL_QUEUE,
		Body: &fsmpb.Command_SealQueue{SealQueue: &fsmpb.SealQueue{Queue: req.GetQueue(), Sealed: req.GetSealed(), ToGroup: req.GetToGroup()}}})
	if err != nil {
		return nil, err
	}
	return &raftqv1.SealQueueResponse{}, nil
}

// ImportKeys applies imported idempotency keys in this group (its
// leader's).
func (s *adminService) ImportKeys(ctx context.Context, req *raftqv1.ImportKeysRequest) (*raftqv1.ImportKeysResponse, error) {
	n := s.n
	if !n.isLeader() {
		return forward(ctx, n, func(ctx context.Context, c *grpc.ClientConn) (*raftqv1.ImportKeysResponse, error) {
			return raftqv1.NewAdminClient(c).ImportKeys(ctx, req)
		})
	}
	if err := validateQueue(req.GetQueue()); err != nil {
		return nil, apierr.FromError(err)
	}
	if len(req.GetKeys()) > importChunk {
		return nil, apierr.FromError(fmt.Errorf("%w: at most %d keys per call", apierr.ErrTooLarge, importChunk))
	}
	cmd := &fsmpb.ImportKeys{Queue: req.GetQueue()}
	for i, k := range req.GetKeys() {
		if k.GetKey() == "" || k.GetJobId() == "" || k.GetExpiresAt() == nil {
			return nil, apierr.FromError(fmt.Errorf("%w: key %d: key, job_id and expires_at are required", apierr.ErrInvalid, i))
		}
		cmd.Keys = append(cmd.Keys, &fsmpb.IdempotencyRecord{Queue: req.GetQueue(), Key: k.GetKey(), JobId: k.GetJobId(),
			ExpiresAt: k.GetExpiresAt().AsTime().UnixNano()})
	}
	if _, err := n.propose(ctx, &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_IMPORT_KEYS,
		Body: &fsmpb.Command_ImportKeys{ImportKeys: cmd}}); err != nil {
		return nil, err
	}
	return &raftqv1.ImportKeysResponse{}, nil
}

// ImportSchedules imports into this group (its leader's) the schedules of
// a queue that moved here, read from this host's replica of the group it
// left, which must have applied the seal: from there on those schedules
// neither fire nor skip a tick in that group, so what this replica holds
// of them is their final firing state.
func (s *adminService) ImportSchedules(ctx context.Context, req *raftqv1.ImportSchedulesRequest) (*raftqv1.ImportSchedulesResponse, error) {
	n := s.n
	if !n.isLeader() {
		return forward(ctx, n, func(ctx context.Context, c *grpc.ClientConn) (*raftqv1.ImportSchedulesResponse, error) {
			return raftqv1.NewAdminClient(c).ImportSchedules(ctx, req)
		})
	}
	q, from := req.GetQueue(), req.GetFromGroup()
	if err := validateQueue(q); err != nil {
		return nil, apierr.FromError(err)
	}
	if _, err := placement.Check(uint64(from), n.cfg.Groups); err != nil || from == n.cfg.group || !n.multi() {
		return nil, apierr.FromError(fmt.Errorf("%w: from_group %d: not another group of this cluster", apierr.ErrInvalid, from))
	}
	// This host's replica of the old group, or its leader's when the host
	// does not run it (replicas.go).
	exp, err := n.exportFrom(ctx, q, from, 1, true)
	if err != nil {
		return nil, apierr.FromError(err)
	}
	if !exp.GetSealed() || exp.GetToGroup() != n.cfg.group {
		return nil, apierr.New(codes.Unavailable, raftqv1.ErrorDetail_REASON_UNSPECIFIED,
			fmt.Sprintf("queue %q is not sealed towards group %d in this broker's replica of group %d (yet); retry", q, n.cfg.group, from))
	}
	recs, err := scheduleRecords(exp)
	if err != nil {
		return nil, apierr.FromError(err)
	}
	cmd := &fsmpb.ImportSchedules{Queue: q, Schedules: recs}
	out := &raftqv1.ImportSchedulesResponse{}
	for _, r := range recs {
		out.Names = append(out.Names, r.GetSpec().GetName())
	}
	if len(cmd.Schedules) == 0 {
		return out, nil
	}
	if _, err := n.propose(ctx, &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_IMPORT_SCHEDULES,
		Body: &fsmpb.Command_ImportSchedules{ImportSchedules: cmd}}); err != nil {
		return nil, err
	}
	return out, nil
}

// MoveQueue starts a move (group 0's leader).
func (s *adminService) MoveQueue(ctx context.Context, req *raftqv1.MoveQueueRequest) (*raftqv1.MoveQueueResponse, error) {
	n := s.n
	if !n.isLeader() {
		return forward(ctx, n, func(ctx context.Context, c *grpc.ClientConn) (*raftqv1.MoveQueueResponse, error) {
			return raftqv1.NewAdminClient(c).MoveQueue(withGroup(ctx, "0"), req)
		})
	}
	q := req.GetQueue()
	if err := validateQueue(q); err != nil {
		return nil, apierr.FromError(err)
	}
	// One group: only group 0 passes, and moving there changes nothing.
	to, err := placement.Check(uint64(req.GetToGroup()), n.cfg.Groups)
	if err != nil {
		return nil, apierr.FromError(fmt.Errorf("%w: to_group: %v", apierr.ErrInvalid, err))
	}
	if err := n.readBarrier(ctx); err != nil {
		return nil, apierr.FromError(err)
	}
	cur := n.placementOf(q)
	if len(cur.GetPartitions()) > 0 {
		return nil, apierr.New(codes.FailedPrecondition, raftqv1.ErrorDetail_WRONG_STATE,
			fmt.Sprintf("queue %q is partitioned over groups %v: a partitioned queue does not move", q, cur.GetPartitions()))
	}
	if cur != nil && cur.GetPhase() != fsmpb.PlacementPhase_PLACEMENT_PHASE_NONE {
		return nil, apierr.New(codes.FailedPrecondition, raftqv1.ErrorDetail_WRONG_STATE,
			fmt.Sprintf("queue %q is already moving from group %d to group %d (%s): one move at a time",
				q, cur.GetFromGroup(), cur.GetGroup(), phaseName(cur.GetPhase())))
	}
	from := n.queueGroup(q)
	if from != to {
		// The move carries the queue's schedules (moveSchedules); a name
		// the new group holds for another queue would stop it half-way.
		exp, err := n.exportFrom(ctx, q, from, 1, true)
		if err != nil {
			return nil, apierr.FromError(err)
		}
		recs, err := scheduleRecords(exp)
		if err != nil {
			return nil, apierr.FromError(err)
		}
		for _, r := range recs {
			name := r.GetSpec().GetName()
			other, ok, err := scheduleIn(crossGroup(ctx), n.hostNode().anyGroup(to), name)
			if err != nil {
				return nil, apierr.FromError(err)
			}
			if ok && other != q {
				return nil, apierr.New(codes.FailedPrecondition, raftqv1.ErrorDetail_WRONG_STATE,
					fmt.Sprintf("queue %q has schedule %q in group %d, and group %d has a schedule of that name for queue %q: delete one of them first",
						q, name, from, to, other))
			}
		}
	}
	if from == to {
		return &raftqv1.MoveQueueResponse{Placement: n.placementView(q)}, nil
	}
	if _, err := n.propose(ctx, placeCommand(&fsmpb.QueuePlacement{Queue: q, Group: to, FromGroup: from,
		Phase: fsmpb.PlacementPhase_PLACEMENT_PHASE_SEALING})); err != nil {
		return nil, err
	}
	n.log.Info("queue move started", "queue", q, "from_group", from, "to_group", to)
	return &raftqv1.MoveQueueResponse{Placement: n.placementView(q)}, nil
}

// ListPlacements lists group 0's placement table (its leader's).
func (s *adminService) ListPlacements(ctx context.Context, req *raftqv1.ListPlacementsRequest) (*raftqv1.ListPlacementsResponse, error) {
	n := s.n
	if !n.isLeader() {
		return forwardRead(ctx, n, func(ctx context.Context, c *grpc.ClientConn) (*raftqv1.ListPlacementsResponse, error) {
			return raftqv1.NewAdminClient(c).ListPlacements(withGroup(ctx, "0"), req)
		})
	}
	out := &raftqv1.ListPlacementsResponse{}
	if !n.multi() {
		return out, nil
	}
	table := n.fsm.Placements()
	names := make([]string, 0, len(table))
	for q := range table {
		names = append(names, q)
	}
	slices.Sort(names)
	for _, q := range names {
		out.Placements = append(out.Placements, n.placementView(q))
	}
	return out, nil
}

// Placements is the placement table as this host's replica of group 0
// has it, in queue order (nil on a node running one group): for mirrors
// such as etcd's (brokerd/etcdnode). LeftInFromGroup is not filled.
func (n *Node) Placements() []*raftqv1.Placement {
	if !n.multi() {
		return nil
	}
	table := n.hostNode().groupNode(0).fsm.Placements()
	out := make([]*raftqv1.Placement, 0, len(table))
	for q, p := range table {
		v := &raftqv1.Placement{Queue: q, Group: p.GetGroup(), Phase: phaseName(p.GetPhase()), Partitions: p.GetPartitions()}
		if p.GetPhase() != fsmpb.PlacementPhase_PLACEMENT_PHASE_NONE {
			v.FromGroup = p.GetFromGroup()
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b *raftqv1.Placement) int { return strings.Compare(a.GetQueue(), b.GetQueue()) })
	return out
}

// QueueGroups are the groups holding queue's jobs, the one taking its new
// jobs first (a partitioned queue's partitions; both groups while it
// moves); nil on a node running one group. The admin server shows them.
func (n *Node) QueueGroups(queue string) []uint32 {
	if !n.multi() {
		return nil
	}
	return n.hostNode().queueGroups(queue)
}

// placementView is queue's placement as the API shows it.
func (n *Node) placementView(queue string) *raftqv1.Placement {
	p := n.placementOf(queue)
	if p == nil {
		return &raftqv1.Placement{Queue: queue, Group: n.queueGroup(queue), Phase: "done"}
	}
	v := &raftqv1.Placement{Queue: queue, Group: p.GetGroup(), Phase: phaseName(p.GetPhase()), Partitions: p.GetPartitions()}
	if p.GetPhase() != fsmpb.PlacementPhase_PLACEMENT_PHASE_NONE {
		v.FromGroup = p.GetFromGroup()
		ctx, cancel := context.WithTimeout(n.ctx, 2*time.Second)
		v.LeftInFromGroup, _, _ = n.leftInGroup(ctx, queue, p.GetFromGroup())
		cancel()
	}
	return v
}

func phaseName(p fsmpb.PlacementPhase) string {
	switch p {
	case fsmpb.PlacementPhase_PLACEMENT_PHASE_SEALING:
		return "sealing"
	case fsmpb.PlacementPhase_PLACEMENT_PHASE_DRAINING:
		return "draining"
	}
	return "done"
}

// MoveQueue goes to group 0, which holds the placements.
func (a *adminRouter) MoveQueue(ctx context.Context, req *raftqv1.MoveQueueRequest) (*raftqv1.MoveQueueResponse, error) {
	return admin(a.r.node(0)).MoveQueue(ctx, req)
}

// ListPlacements goes to group 0.
func (a *adminRouter) ListPlacements(ctx context.Context, req *raftqv1.ListPlacementsRequest) (*raftqv1.ListPlacementsResponse, error) {
	return admin(a.r.node(0)).ListPlacements(ctx, req)
}

// SealQueue goes to the group the call names; without one it is refused,
// as a seal in a guessed group could strand a queue.
func (a *adminRouter) SealQueue(ctx context.Context, req *raftqv1.SealQueueRequest) (*raftqv1.SealQueueResponse, error) {
	n, err := a.r.namedOnly(ctx, "SealQueue")
	if err != nil {
		return fail[*raftqv1.SealQueueResponse](err)
	}
	return admin(n).SealQueue(ctx, req)
}

// namedOnly is the group a call names; a call that must name one (what)
// and does not is refused.
func (r *router) namedOnly(ctx context.Context, what string) (*Node, error) {
	n, ok, err := r.named(ctx)
	if err == nil && !ok {
		err = fmt.Errorf("%w: %s needs the group in the %s header", apierr.ErrInvalid, what, placement.Header)
	}
	return n, err
}

// ImportSchedules goes to the group the call names, which it needs.
func (a *adminRouter) ImportSchedules(ctx context.Context, req *raftqv1.ImportSchedulesRequest) (*raftqv1.ImportSchedulesResponse, error) {
	n, err := a.r.namedOnly(ctx, "ImportSchedules")
	if err != nil {
		return fail[*raftqv1.ImportSchedulesResponse](err)
	}
	return admin(n).ImportSchedules(ctx, req)
}

// ImportKeys goes to the group the call names, which it needs.
func (a *adminRouter) ImportKeys(ctx context.Context, req *raftqv1.ImportKeysRequest) (*raftqv1.ImportKeysResponse, error) {
	n, err := a.r.namedOnly(ctx, "ImportKeys")
	if err != nil {
		return fail[*raftqv1.ImportKeysResponse](err)
	}
	return admin(n).ImportKeys(ctx, req)
}

// movedTo reports whether err is a refusal of a new job because its
// queue moved away from the group that answered.
func movedTo(err error) (uint32, bool) {
	if err == nil {
		return 0, false
	}
	var me *fsm.MovedError
	if errors.As(err, &me) {
		return me.To, true
	}
	return raftqerr.IsQueueMoved(err)
}

// keyed reports whether a job carries a key that the group its queue is
// leaving must be asked about first: an idempotency key or a unique key.
func keyed(j *raftqv1.JobSpec) bool {
	return j.GetIdempotencyKey() != "" || j.GetUniqueKey() != ""
}

// enqueueMoving serves an Enqueue of a queue that is moving from group
// p.from to p.group. Each job that must ask the old group first (every
// job while it is being sealed, keyed jobs while it drains) is sent there
// alone: the old group answers a duplicate, creates the job (not yet
// sealed), or refuses it as moved, writing nothing, and those go on to
// the new group with the rest, in request order. A workflow (all or
// nothing) goes whole to the old group first, then to the new one.
func (r *router) enqueueMoving(ctx context.Context, req *raftqv1.EnqueueRequest, p *fsmpb.QueuePlacement) (*raftqv1.EnqueueResponse, error) {
	from, to := r.node(p.GetFromGroup()), r.node(p.GetGroup())
	sealing := p.GetPhase() == fsmpb.PlacementPhase_PLACEMENT_PHASE_SEALING
	if isWorkflow(req) {
		if sealing || slices.ContainsFunc(req.GetJobs(), keyed) {
			res, err := svc(from).Enqueue(ctx, req)
			if _, moved := movedTo(err); !moved {
				return res, err
			}
		}
		return svc(to).Enqueue(ctx, req)
	}
	jobs := req.GetJobs()
	out := &raftqv1.EnqueueResponse{Results: make([]*raftqv1.EnqueueResult, len(jobs))}
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i, j := range jobs {
		if j.GetQueue() != p.GetQueue() || (!sealing && !keyed(j)) {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			one := &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{j}}
			res, err := svc(from).Enqueue(ctx, one)
			if _, moved := movedTo(err); moved {
				return
			}
			if err == nil && len(res.GetResults()) == 1 {
				out.Results[i] = res.GetResults()[0]
				return
			}
			if err == nil {
				err = apierr.FromError(fmt.Errorf("group %d answered %d results for one job", p.GetFromGroup(), len(res.GetResults())))
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	var rest []int
	sub := &raftqv1.EnqueueRequest{}
	for i, j := range jobs {
		if out.Results[i] == nil {
			rest = append(rest, i)
			sub.Jobs = append(sub.Jobs, j)
		}
	}
	if len(rest) == 0 {
		return out, nil
	}
	res, err := svc(to).Enqueue(ctx, sub)
	if err != nil {
		return nil, err
	}
	if len(res.GetResults()) != len(rest) {
		return nil, apierr.FromError(fmt.Errorf("group %d answered %d results for %d jobs", p.GetGroup(), len(res.GetResults()), len(rest)))
	}
	for k, i := range rest {
		out.Results[i] = res.GetResults()[k]
	}
	return out, nil
}

// isWorkflow reports whether an Enqueue is a workflow (all or nothing).
func isWorkflow(req *raftqv1.EnqueueRequest) bool {
	return slices.ContainsFunc(req.GetJobs(), func(j *raftqv1.JobSpec) bool {
		return j.GetName() != "" || len(j.GetDependsOn()) > 0 || len(j.GetDependsOnNames()) > 0
	})
}

// awaitPlacement waits (up to placementLag) until this node's placement
// table no longer sends queue's new jobs to a group that refused them as
// moved to group to: either it sends them to to, or a move is under way
// (enqueueMoving then asks the old group first).
func (n *Node) awaitPlacement(ctx context.Context, queue string, to uint32) error {
	deadline := time.Now().Add(placementLag)
	for {
		p := n.placementOf(queue)
		if p != nil && (p.GetGroup() == to || p.GetPhase() != fsmpb.PlacementPhase_PLACEMENT_PHASE_NONE) {
			return nil
		}
		if time.Now().After(deadline) {
			return apierr.New(codes.Unavailable, raftqv1.ErrorDetail_REASON_UNSPECIFIED,
				fmt.Sprintf("queue %q moved to group %d, which this broker's placement table does not show yet; retry", queue, to))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// placedOf is the placement record that decides how an Enqueue over qs
// is routed: the first of its queues that is partitioned or moving (nil:
// none is). One request's queues share a group (forQueues), so at most
// one of them can be partitioned or moving into it in practice; the
// others' jobs go to that group as they would anyway.
func (r *router) placedOf(qs []string) *fsmpb.QueuePlacement {
	for _, q := range qs {
		p := r.h.placementOf(q)
		if p != nil && (len(p.GetPartitions()) > 0 || p.GetPhase() != fsmpb.PlacementPhase_PLACEMENT_PHASE_NONE) {
			return p
		}
	}
	return nil
}

// movedQueue is the queue a QUEUE_MOVED refusal names, as far as the
// request's queues tell: the moved error's own when it is in process,
// else the first queue of the request.
func movedQueue(err error, qs []string) string {
	var me *fsm.MovedError
	if errors.As(err, &me) && me.Queue != "" {
		return me.Queue
	}
	for _, q := range qs {
		if strings.Contains(status.Convert(err).Message(), fmt.Sprintf("%q", q)) {
			return q
		}
	}
	return qs[0]
}

// ExportQueue reads what a move of a queue out of this group carries
// (its leader's replica, after a read barrier): brokers ask it of a group
// they do not run (replicas.go).
func (s *adminService) ExportQueue(ctx context.Context, req *raftqv1.ExportQueueRequest) (*raftqv1.ExportQueueResponse, error) {
	n := s.n
	if !n.isLeader() {
		return forwardRead(ctx, n, func(ctx context.Context, c *grpc.ClientConn) (*raftqv1.ExportQueueResponse, error) {
			return raftqv1.NewAdminClient(c).ExportQueue(ctx, req)
		})
	}
	if err := validateQueue(req.GetQueue()); err != nil {
		return nil, apierr.FromError(err)
	}
	if req.GetKeyLimit() < 0 {
		return nil, apierr.FromError(fmt.Errorf("%w: key_limit %d: want 0 (all) or more", apierr.ErrInvalid, req.GetKeyLimit()))
	}
	if err := n.readBarrier(ctx); err != nil {
		return nil, apierr.FromError(err)
	}
	return n.exportLocal(req.GetQueue(), int(req.GetKeyLimit()), req.GetSchedules())
}

// exportLocal is ExportQueue's answer from this Node's replica.
func (n *Node) exportLocal(q string, keyLimit int, schedules bool) (*raftqv1.ExportQueueResponse, error) {
	out := &raftqv1.ExportQueueResponse{}
	out.ToGroup, out.Sealed = n.fsm.Sealed(q)
	out.Left = jobsLeft(n.fsm, q)
	for _, k := range n.fsm.IdempotencyKeys(q, n.clock().UnixNano(), keyLimit) {
		out.Keys = append(out.Keys, &raftqv1.ImportedKey{Key: k.GetKey(), JobId: k.GetJobId(),
			ExpiresAt: timestamppb.New(time.Unix(0, k.GetExpiresAt()))})
	}
	cmd := &fsmpb.ImportSchedules{Queue: q}
	for _, sc := range n.fsm.Schedules() {
		if sc.Spec.GetJob().GetQueue() == q {
			cmd.Schedules = append(cmd.Schedules, fsm.ScheduleRecordOf(sc))
		}
	}
	out.ScheduleCount = int32(len(cmd.Schedules))
	if schedules && len(cmd.Schedules) > 0 {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(cmd)
		if err != nil {
			return nil, err
		}
		out.ScheduleRecords = b
	}
	return out, nil
}

// exportFrom is what group g holds of queue q for a move: read from this
// host's replica of g, or asked of g's leader when the host does not run
// it (a replica behind the leader shows a superset of the keys and, once
// it shows the seal, the schedules' final state: as good for a move).
func (n *Node) exportFrom(ctx context.Context, q string, g uint32, keyLimit int, schedules bool) (*raftqv1.ExportQueueResponse, error) {
	h := n.hostNode()
	if gn := h.groupNode(g); gn != nil {
		return gn.exportLocal(q, keyLimit, schedules)
	}
	return admin(h.anyGroup(g)).ExportQueue(withGroup(crossGroup(ctx), fmt.Sprint(g)),
		&raftqv1.ExportQueueRequest{Queue: q, KeyLimit: int32(keyLimit), Schedules: schedules})
}

// scheduleRecords decodes an export's schedules.
func scheduleRecords(out *raftqv1.ExportQueueResponse) ([]*fsmpb.ScheduleRecord, error) {
	if len(out.GetScheduleRecords()) == 0 {
		return nil, nil
	}
	cmd := &fsmpb.ImportSchedules{}
	if err := proto.Unmarshal(out.GetScheduleRecords(), cmd); err != nil {
		return nil, fmt.Errorf("schedule records of an export: %w", err)
	}
	return cmd.GetSchedules(), nil
}
