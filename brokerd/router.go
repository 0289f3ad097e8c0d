package brokerd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/fsm/fsmpb"
	"github.com/raftq/raftq/internal/apierr"
	"github.com/raftq/raftq/internal/placement"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// The router is what a host of several groups (host.go) serves instead of
// one group's services: every call goes to the Node of the group it is
// for, which answers it as a one-group node would (forwarding to that
// group's leader when it is not). The group is the one the call names in
// placement.Header (forwarded calls and group-aware clients set it), or
// else the one its queue is placed in or its job id names. A call about
// queues or jobs of several groups is split where its items are
// independent (batch settles, listings, enqueue streams, consume
// streams) and refused where one answer must come from one group (an
// Enqueue request, which is applied as one entry).

// router picks groups for the host h.
type router struct {
	h *Node
	// rotate picks the first group of each Fetch over several groups.
	rotate atomic.Uint64
	// spread deals a partitioned queue's jobs without a key to its
	// partitions in turn.
	spread atomic.Uint64
}

// node returns the Node of group g: this host's replica, or the group's
// stand-in when the host does not run it (replicas.go).
func (r *router) node(g uint32) *Node { return r.h.anyGroup(g) }

// all is every group's Node (replica or stand-in), in group order.
func (r *router) all() []*Node {
	out := make([]*Node, r.h.cfg.Groups)
	for g := range out {
		out[g] = r.node(uint32(g))
	}
	return out
}

// named is the group the call names in its metadata, if any.
func (r *router) named(ctx context.Context) (*Node, bool, error) {
	g, ok, err := r.h.headerGroup(ctx)
	if err != nil || !ok {
		return nil, false, err
	}
	return r.node(g), true, nil
}

// forQueues is the one group holding every queue (the named group, when
// the call names one; group 0 for no queue at all).
func (r *router) forQueues(ctx context.Context, queues ...string) (*Node, error) {
	if n, ok, err := r.named(ctx); ok || err != nil {
		return n, err
	}
	if len(queues) == 0 {
		return r.node(0), nil
	}
	g := r.h.queueGroup(queues[0])
	for _, q := range queues[1:] {
		if o := r.h.queueGroup(q); o != g {
			return nil, fmt.Errorf("%w: queues %q (group %d) and %q (group %d) are in different Raft groups: make one call per group",
				apierr.ErrInvalid, queues[0], g, q, o)
		}
	}
	return r.node(g), nil
}

// forJob is the group a job id names.
func (r *router) forJob(ctx context.Context, id string) (*Node, error) {
	if n, ok, err := r.named(ctx); ok || err != nil {
		return n, err
	}
	g, err := placement.Job(id, r.h.cfg.Groups)
	if err != nil {
		return nil, fmt.Errorf("%w: job_id %q: %v", apierr.ErrInvalid, id, err)
	}
	return r.node(g), nil
}

// fail turns a routing error into the status the API answers with.
func fail[T any](err error) (T, error) {
	var zero T
	return zero, toStatus(err)
}

// brokerRouter serves the Broker service of a host.
type brokerRouter struct {
	*brokerService
	r *router
}

// Enqueue goes to the group of its jobs' queues: one request is one Raft
// entry (a workflow is atomic), so it cannot span groups.
//
// A queue moving between groups (movequeue.go) is served by
// enqueueMoving; a group that refuses the jobs as moved (this node's
// placement table was behind) gets them routed again by the table as it
// is once caught up.
func (b *brokerRouter) Enqueue(ctx context.Context, req *raftqv1.EnqueueRequest) (*raftqv1.EnqueueResponse, error) {
	qs := make([]string, 0, len(req.GetJobs()))
	for _, j := range req.GetJobs() {
		qs = append(qs, j.GetQueue())
	}
	if _, named, _ := b.r.named(ctx); named {
		n, err := b.r.forQueues(ctx, qs...)
		if err != nil {
			return fail[*raftqv1.EnqueueResponse](err)
		}
		return svc(n).Enqueue(ctx, req)
	}
	for attempt := 0; ; attempt++ {
		n, err := b.r.forQueues(ctx, qs...)
		if err != nil {
			return fail[*raftqv1.EnqueueResponse](err)
		}
		var res *raftqv1.EnqueueResponse
		if p := b.r.placedOf(qs); p != nil && len(p.GetPartitions()) > 0 {
			res, err = b.r.enqueuePartitioned(ctx, req, p)
		} else if p != nil && p.GetPhase() != fsmpb.PlacementPhase_PLACEMENT_PHASE_NONE {
			res, err = b.r.enqueueMoving(ctx, req, p)
		} else {
			res, err = svc(n).Enqueue(ctx, req)
		}
		to, moved := movedTo(err)
		if !moved || attempt >= 20 {
			return res, err
		}
		// Refused as moved, nothing written: wait for this node's
		// placement table to show the move, then route again.
		if err := b.r.h.awaitPlacement(ctx, movedQueue(err, qs), to); err != nil {
			return nil, toStatus(err)
		}
	}
}

// Fetch waits on its queues' group's dispatcher. Queues of several groups
// (a worker pool whose queues hash apart) are fetched by fetchAcross.
func (b *brokerRouter) Fetch(ctx context.Context, req *raftqv1.FetchRequest) (*raftqv1.FetchResponse, error) {
	if n, ok, err := b.r.named(ctx); ok || err != nil {
		if err != nil {
			return fail[*raftqv1.FetchResponse](err)
		}
		return svc(n).Fetch(ctx, req)
	}
	// The whole request is checked first: a bad one is refused before
	// any group leases anything.
	if _, err := validateFetch(b.r.h.cfg.Limits, req); err != nil {
		return fail[*raftqv1.FetchResponse](err)
	}
	parts := b.r.splitFetch(req)
	if len(parts) == 1 {
		return svc(parts[0].n).Fetch(ctx, req)
	}
	return b.fetchAcross(ctx, req, parts)
}

// groupFetch is the part of a Fetch for one group's queues.
type groupFetch struct {
	n   *Node
	req *raftqv1.FetchRequest
}

// splitFetch splits a Fetch by its queues' groups, keeping the queues'
// order and their weights; groups in the order of their first queue.
func (r *router) splitFetch(req *raftqv1.FetchRequest) []groupFetch {
	qs := req.GetQueues()
	if len(qs) == 0 {
		qs = slices.Sorted(maps.Keys(req.GetQueueWeights()))
	}
	var parts []groupFetch
	at := map[uint32]int{}
	for _, q := range qs {
		// A moving queue is fetched from both of its groups.
		for _, g := range r.h.queueGroups(q) {
			i, ok := at[g]
			if !ok {
				i = len(parts)
				at[g] = i
				sub := proto.Clone(req).(*raftqv1.FetchRequest)
				sub.Queues, sub.QueueWeights = nil, nil
				parts = append(parts, groupFetch{n: r.node(g), req: sub})
			}
			p := parts[i].req
			if !slices.Contains(p.Queues, q) {
				p.Queues = append(p.Queues, q)
			}
			if w, ok := req.GetQueueWeights()[q]; ok {
				if p.QueueWeights == nil {
					p.QueueWeights = map[string]int32{}
				}
				p.QueueWeights[q] = w
			}
		}
	}
	return parts
}

// crossGroupSlice is how long a Fetch over several groups parks on one of
// them before it looks at the others again: the most a job in another
// group waits for such a worker beyond its arrival.
const crossGroupSlice = 250 * time.Millisecond

// fetchAcross serves a Fetch whose queues are in several groups. Each
// round first takes what is ready in every group without waiting (up to
// max_jobs in all), starting at a group that rotates from call to call so
// that no group's queues are always served last; with nothing ready it
// parks on one group for crossGroupSlice, then looks again, until
// max_wait. Parking on all groups at once would be quicker but could
// lease jobs in two groups for a worker that takes only one answer. Jobs
// already leased are always returned, even if a later group fails.
// Weights order queues within a group; across groups, the rotation does.
func (b *brokerRouter) fetchAcross(ctx context.Context, req *raftqv1.FetchRequest, parts []groupFetch) (*raftqv1.FetchResponse, error) {
	maxJobs := max(int(req.GetMaxJobs()), 1)
	deadline := time.Now().Add(req.GetMaxWait().AsDuration())
	start := int(b.r.rotate.Add(1) % uint64(len(parts)))
	out := &raftqv1.FetchResponse{}
	fetch := func(p groupFetch, wait time.Duration) error {
		sub := proto.Clone(p.req).(*raftqv1.FetchRequest)
		sub.MaxJobs = int32(maxJobs - len(out.Jobs))
		sub.MaxWait = durationpb.New(wait)
		res, err := svc(p.n).Fetch(ctx, sub)
		out.Jobs = append(out.Jobs, res.GetJobs()...)
		return err
	}
	for round := 0; ; round++ {
		for k := range parts {
			if err := fetch(parts[(start+k)%len(parts)], 0); err != nil && len(out.Jobs) == 0 {
				return nil, err
			}
			if len(out.Jobs) >= maxJobs {
				return out, nil
			}
		}
		left := time.Until(deadline)
		if len(out.Jobs) > 0 || left <= 0 || ctx.Err() != nil {
			return out, nil
		}
		if err := fetch(parts[(start+round)%len(parts)], min(left, crossGroupSlice)); err != nil && len(out.Jobs) == 0 {
			return nil, err
		}
		if len(out.Jobs) > 0 {
			return out, nil
		}
	}
}

// ExtendLease goes to the job's group.
func (b *brokerRouter) ExtendLease(ctx context.Context, req *raftqv1.ExtendLeaseRequest) (*raftqv1.ExtendLeaseResponse, error) {
	n, err := b.r.forJob(ctx, req.GetJobId())
	if err != nil {
		return fail[*raftqv1.ExtendLeaseResponse](err)
	}
	return svc(n).ExtendLease(ctx, req)
}

// Ack goes to the job's group.
func (b *brokerRouter) Ack(ctx context.Context, req *raftqv1.AckRequest) (*raftqv1.AckResponse, error) {
	n, err := b.r.forJob(ctx, req.GetJobId())
	if err != nil {
		return fail[*raftqv1.AckResponse](err)
	}
	return svc(n).Ack(ctx, req)
}

// Nack goes to the job's group.
func (b *brokerRouter) Nack(ctx context.Context, req *raftqv1.NackRequest) (*raftqv1.NackResponse, error) {
	n, err := b.r.forJob(ctx, req.GetJobId())
	if err != nil {
		return fail[*raftqv1.NackResponse](err)
	}
	return svc(n).Nack(ctx, req)
}

// GetJob goes to the job's group.
func (b *brokerRouter) GetJob(ctx context.Context, req *raftqv1.GetJobRequest) (*raftqv1.GetJobResponse, error) {
	n, err := b.r.forJob(ctx, req.GetJobId())
	if err != nil {
		return fail[*raftqv1.GetJobResponse](err)
	}
	return svc(n).GetJob(ctx, req)
}

// CancelJob goes to the job's group.
func (b *brokerRouter) CancelJob(ctx context.Context, req *raftqv1.CancelJobRequest) (*raftqv1.CancelJobResponse, error) {
	n, err := b.r.forJob(ctx, req.GetJobId())
	if err != nil {
		return fail[*raftqv1.CancelJobResponse](err)
	}
	return svc(n).CancelJob(ctx, req)
}

// QueueStats asks each group for its queues; with no queue named, every
// group for all of its queues, merged in name order.
func (b *brokerRouter) QueueStats(ctx context.Context, req *raftqv1.QueueStatsRequest) (*raftqv1.QueueStatsResponse, error) {
	if n, ok, err := b.r.named(ctx); ok || err != nil {
		if err != nil {
			return fail[*raftqv1.QueueStatsResponse](err)
		}
		return svc(n).QueueStats(ctx, req)
	}
	parts := map[uint32][]string{}
	if len(req.GetQueues()) == 0 {
		for g := range b.r.h.cfg.Groups {
			parts[uint32(g)] = nil
		}
	}
	for _, q := range req.GetQueues() {
		// A moving or partitioned queue: every group holding its jobs.
		for _, g := range b.r.h.queueGroups(q) {
			parts[g] = append(parts[g], q)
		}
	}
	out := &raftqv1.QueueStatsResponse{}
	byName := map[string]*raftqv1.QueueStats{}
	for _, g := range sortedKeys(parts) {
		sub := &raftqv1.QueueStatsRequest{Queues: parts[g], Consistency: req.GetConsistency()}
		res, err := svc(b.r.node(g)).QueueStats(ctx, sub)
		if err != nil {
			return nil, err
		}
		for _, s := range res.GetQueues() {
			if m := byName[s.GetQueue()]; m != nil {
				addStats(m, s)
				continue
			}
			byName[s.GetQueue()] = s
			out.Queues = append(out.Queues, s)
		}
	}
	slices.SortFunc(out.Queues, func(a, b *raftqv1.QueueStats) int { return cmp.Compare(a.GetQueue(), b.GetQueue()) })
	return out, nil
}

// addStats adds one group's stats of a queue to another group's: counts
// sum, paused if any group is, the oldest ready job is the older.
func addStats(m, s *raftqv1.QueueStats) {
	m.Paused = m.Paused || s.Paused
	m.Scheduled += s.Scheduled
	m.Ready += s.Ready
	m.Leased += s.Leased
	m.Succeeded += s.Succeeded
	m.Dead += s.Dead
	m.Cancelled += s.Cancelled
	m.Waiting += s.Waiting
	if s.OldestReadyAt != nil && (m.OldestReadyAt == nil || s.OldestReadyAt.AsTime().Before(m.OldestReadyAt.AsTime())) {
		m.OldestReadyAt = s.OldestReadyAt
	}
}

// splitByJob runs items of a batch settle in their jobs' groups, one call
// per group, and puts each answer back at its item's place. An item whose
// id names no group is answered with its own error.
func splitByJob[Item, Res any](ctx context.Context, r *router, items []Item, id func(Item) string,
	call func(*Node, []Item) ([]Res, error), refused func(error) Res) ([]Res, error) {
	if n, ok, err := r.named(ctx); ok || err != nil {
		if err != nil {
			return nil, toStatus(err)
		}
		return call(n, items)
	}
	out := make([]Res, len(items))
	where := map[uint32][]int{}
	for i, it := range items {
		g, err := placement.Job(id(it), r.h.cfg.Groups)
		if err != nil {
			out[i] = refused(toStatus(fmt.Errorf("%w: job_id %q: %v", apierr.ErrInvalid, id(it), err)))
			continue
		}
		where[g] = append(where[g], i)
	}
	if len(where) == 1 && len(where[sortedKeys(where)[0]]) == len(items) {
		return call(r.node(sortedKeys(where)[0]), items)
	}
	for _, g := range sortedKeys(where) {
		idx := where[g]
		sub := make([]Item, len(idx))
		for k, i := range idx {
			sub[k] = items[i]
		}
		res, err := call(r.node(g), sub)
		if err != nil {
			// This group could not take them (NOT_LEADER, INDETERMINATE):
			// each of its items says so; the other groups' stand.
			for _, i := range idx {
				out[i] = refused(toStatus(err))
			}
			continue
		}
		for k, i := range idx {
			out[i] = res[k]
		}
	}
	return out, nil
}

// AckBatch settles each item in its job's group.
func (b *brokerRouter) AckBatch(ctx context.Context, req *raftqv1.AckBatchRequest) (*raftqv1.AckBatchResponse, error) {
	res, err := splitByJob(ctx, b.r, req.GetItems(), (*raftqv1.AckRequest).GetJobId,
		func(n *Node, items []*raftqv1.AckRequest) ([]*raftqv1.AckBatchResult, error) {
			out, err := svc(n).AckBatch(ctx, &raftqv1.AckBatchRequest{Items: items})
			return out.GetResults(), err
		},
		func(err error) *raftqv1.AckBatchResult { return &raftqv1.AckBatchResult{Error: itemError(err)} })
	if err != nil {
		return nil, err
	}
	return &raftqv1.AckBatchResponse{Results: res}, nil
}

// NackBatch settles each item in its job's group.
func (b *brokerRouter) NackBatch(ctx context.Context, req *raftqv1.NackBatchRequest) (*raftqv1.NackBatchResponse, error) {
	res, err := splitByJob(ctx, b.r, req.GetItems(), (*raftqv1.NackRequest).GetJobId,
		func(n *Node, items []*raftqv1.NackRequest) ([]*raftqv1.NackBatchResult, error) {
			out, err := svc(n).NackBatch(ctx, &raftqv1.NackBatchRequest{Items: items})
			return out.GetResults(), err
		},
		func(err error) *raftqv1.NackBatchResult { return &raftqv1.NackBatchResult{Error: itemError(err)} })
	if err != nil {
		return nil, err
	}
	return &raftqv1.NackBatchResponse{Results: res}, nil
}

// ExtendLeaseBatch extends each item in its job's group.
func (b *brokerRouter) ExtendLeaseBatch(ctx context.Context, req *raftqv1.ExtendLeaseBatchRequest) (*raftqv1.ExtendLeaseBatchResponse, error) {
	res, err := splitByJob(ctx, b.r, req.GetItems(), (*raftqv1.ExtendLeaseRequest).GetJobId,
		func(n *Node, items []*raftqv1.ExtendLeaseRequest) ([]*raftqv1.ExtendLeaseBatchResult, error) {
			out, err := svc(n).ExtendLeaseBatch(ctx, &raftqv1.ExtendLeaseBatchRequest{Items: items})
			return out.GetResults(), err
		},
		func(err error) *raftqv1.ExtendLeaseBatchResult {
			return &raftqv1.ExtendLeaseBatchResult{Error: itemError(err)}
		})
	if err != nil {
		return nil, err
	}
	return &raftqv1.ExtendLeaseBatchResponse{Results: res}, nil
}

// Consume serves a stream from the group of the queues of its open frame
// (or the group its metadata names). An open frame naming queues of
// several groups is served by consumeAcross: one part per group, merged
// (consume_groups.go).
func (b *brokerRouter) Consume(st grpc.BidiStreamingServer[raftqv1.ConsumeRequest, raftqv1.ConsumeResponse]) error {
	ctx := st.Context()
	if n, ok, err := b.r.named(ctx); ok || err != nil {
		if err != nil {
			return toStatus(err)
		}
		return consumeIn(n, st)
	}
	first, err := st.Recv()
	if errors.Is(err, io.EOF) {
		return consumeInvalid("the stream closed before its open frame")
	}
	if err != nil {
		return err
	}
	open := first.GetOpen()
	if open != nil {
		// The whole open frame is checked here, before any group sees
		// it, as the one-group server checks it.
		if _, err := validateConsumeOpen(b.r.h.cfg.Limits, open); err != nil {
			return toStatus(err)
		}
		if parts := b.r.splitConsume(open); len(parts) > 1 {
			return b.consumeAcross(st, open, parts)
		}
	}
	qs := slices.Clone(open.GetQueues())
	for q := range open.GetQueueWeights() {
		qs = append(qs, q)
	}
	n, err := b.r.forQueues(ctx, qs...)
	if err != nil {
		return toStatus(err)
	}
	return consumeIn(n, &peeked[raftqv1.ConsumeRequest, raftqv1.ConsumeResponse]{BidiStreamingServer: st, first: first})
}

// consumeIn serves a Consume stream for group n: here when this node leads
// the group, else relayed to the group's leader (a one-group follower
// answers NOT_LEADER and the client moves, but a node leads only some
// groups, so a client cannot simply move).
func consumeIn(n *Node, st grpc.BidiStreamingServer[raftqv1.ConsumeRequest, raftqv1.ConsumeResponse]) error {
	cs, ok, err := leaderStream(st.Context(), n, func(ctx context.Context, c *grpc.ClientConn) (grpc.BidiStreamingClient[raftqv1.ConsumeRequest, raftqv1.ConsumeResponse], error) {
		return raftqv1.NewBrokerClient(c).Consume(ctx)
	})
	if err != nil {
		return toStatus(err)
	}
	if !ok {
		return svc(n).Consume(st)
	}
	return relay(st.Recv, st.Send, cs)
}

// enqueueStreamIn serves one group's part of an enqueue stream: here when
// this node leads the group, else relayed to its leader.
func enqueueStreamIn(n *Node, st grpc.BidiStreamingServer[raftqv1.EnqueueStreamRequest, raftqv1.EnqueueStreamResponse]) error {
	cs, ok, err := leaderStream(st.Context(), n, func(ctx context.Context, c *grpc.ClientConn) (grpc.BidiStreamingClient[raftqv1.EnqueueStreamRequest, raftqv1.EnqueueStreamResponse], error) {
		return raftqv1.NewBrokerClient(c).EnqueueStream(ctx)
	})
	if err != nil {
		return toStatus(err)
	}
	if !ok {
		return svc(n).EnqueueStream(st)
	}
	return relay(st.Recv, st.Send, cs)
}

// peeked is a stream whose first message the router has already read.
type peeked[Req, Resp any] struct {
	grpc.BidiStreamingServer[Req, Resp]
	first *Req
}

func (p *peeked[Req, Resp]) Recv() (*Req, error) {
	if f := p.first; f != nil {
		p.first = nil
		return f, nil
	}
	return p.BidiStreamingServer.Recv()
}

// EnqueueStream hands each job to its queue's group: every group the
// stream reaches gets a stream of its own (its own window of outcomes
// outstanding), fed in the order the jobs arrive; their outcomes go back
// on the one stream, matched by seq as always.
//
// A group's part can end while the producer's stream goes on: its leader
// moved, or its relay to the leader broke. The frames it was handed and
// did not answer are then answered here, each with the error that ended
// the part (definite when the group's handler ended it, for it answers
// every frame it read first; INDETERMINATE when the cause may have come
// after a commit, as for a forwarded write), and the group's next job
// opens a new part, at its new leader. So a leadership move costs the
// producer a retry of that group's jobs in flight, never a wait: the
// producer may have nothing more to send, and a part that ended answers
// nothing. The stream ends when the producer closes it and every part has
// answered, or when this node shuts down (with NOT_LEADER: the frames
// still unanswered were never handed to a group).
func (b *brokerRouter) EnqueueStream(st grpc.BidiStreamingServer[raftqv1.EnqueueStreamRequest, raftqv1.EnqueueStreamResponse]) error {
	if n, ok, err := b.r.named(st.Context()); ok || err != nil {
		if err != nil {
			return toStatus(err)
		}
		return enqueueStreamIn(n, st)
	}
	rs := &routedStream{r: b.r, st: st, subs: map[uint32]*subStream{}, owed: map[uint64]*subStream{},
		frames: map[uint64]*raftqv1.EnqueueStreamRequest{}, unary: &subStream{}}
	return rs.run()
}

// routedStream is one producer's enqueue stream fanned out over groups.
type routedStream struct {
	r      *router
	st     grpc.BidiStreamingServer[raftqv1.EnqueueStreamRequest, raftqv1.EnqueueStreamResponse]
	sendMu sync.Mutex
	wg     sync.WaitGroup // the parts' goroutines

	mu   sync.Mutex
	subs map[uint32]*subStream // each group's running part
	// owed is every frame handed to a part and not yet answered, with its
	// part: a seq is unique among them (the producer's own rule).
	owed map[uint64]*subStream
	// frames are the owed frames themselves, so that one a group refuses
	// as moved (its queue moved away) can be routed again.
	frames map[uint64]*raftqv1.EnqueueStreamRequest
	// unary is the pseudo-part owing the frames of moving queues, which
	// go through the router's Enqueue one by one (enqueueMoving).
	unary *subStream
}

// send writes one answer on the producer's stream.
func (rs *routedStream) send(m *raftqv1.EnqueueStreamResponse) error {
	rs.sendMu.Lock()
	defer rs.sendMu.Unlock()
	return rs.st.Send(m)
}

// run reads the producer's frames and hands each to its group's part
// until the producer closes (nil), the stream breaks (its error) or the
// host shuts down (NOT_LEADER), then waits for every part to answer what
// it was handed.
func (rs *routedStream) run() error {
	ctx, cancel := context.WithCancel(rs.st.Context())
	defer cancel()
	type frame struct {
		m   *raftqv1.EnqueueStreamRequest
		err error
	}
	// The reader is a goroutine so that shutting down does not wait for
	// a producer's next frame; one it read but could not hand over is
	// dropped, which the definite NOT_LEADER end covers.
	frames, quit := make(chan frame), make(chan struct{})
	defer close(quit)
	go func() {
		for {
			m, err := rs.st.Recv()
			select {
			case frames <- frame{m, err}:
			case <-quit:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	host := rs.r.h
	// end stops the parts and waits until each has answered what it was
	// handed; abort (the producer's stream broke) cancels them instead, as
	// their answers can no longer be delivered.
	end := func(err error, abort bool) error {
		rs.mu.Lock()
		for _, s := range rs.subs {
			close(s.in)
		}
		rs.subs = map[uint32]*subStream{}
		rs.mu.Unlock()
		if abort {
			cancel()
		}
		rs.wg.Wait()
		return err
	}
	stopped := func() error { id, addr := host.leader(); return host.notLeader(id, addr) }
	for {
		var f frame
		select {
		case f = <-frames:
		case <-host.ctx.Done():
			return end(stopped(), false)
		}
		if errors.Is(f.err, io.EOF) {
			return end(nil, false)
		}
		if f.err != nil {
			return end(f.err, true)
		}
		m := f.m
		seq := m.GetSeq()
		rs.mu.Lock()
		_, dup := rs.owed[seq]
		rs.mu.Unlock()
		switch {
		case seq == 0:
			return end(apierr.New(codes.InvalidArgument, raftqv1.ErrorDetail_INVALID_ARGUMENT, "enqueue stream: a frame without seq cannot be answered"), false)
		case dup:
			return end(apierr.New(codes.InvalidArgument, raftqv1.ErrorDetail_INVALID_ARGUMENT,
				fmt.Sprintf("enqueue stream: seq %d is still in flight", seq)), false)
		}
		// A frame without a job goes to group 0, which refuses it as a
		// one-group node does.
		g := uint32(0)
		if j := m.GetJob(); j != nil {
			g = rs.r.h.queueGroup(j.GetQueue())
			p := rs.r.h.placementOf(j.GetQueue())
			if p != nil && len(p.GetPartitions()) > 0 {
				g = rs.r.partitionOf(p, j)
			} else if p != nil && p.GetPhase() != fsmpb.PlacementPhase_PLACEMENT_PHASE_NONE {
				rs.mu.Lock()
				rs.owed[seq], rs.frames[seq] = rs.unary, m
				rs.mu.Unlock()
				rs.viaUnary(ctx, m)
				continue
			}
		}
		if err := rs.handOver(ctx, g, m, host.ctx.Done()); err != nil {
			if errors.Is(err, errHostStopped) {
				return end(stopped(), false)
			}
			return end(err, true)
		}
	}
}

// errHostStopped is handOver's report that the host shut down first.
var errHostStopped = errors.New("host stopped")

// handOver gives frame m to group g's part, opening one if the group has
// none running. The frame is owed by the part from before it is offered:
// a part that ends before it takes the frame, or takes it only to drop it
// (its handler's reader outlives the handler), answers it in finish with
// its end error, which is as definite as the end itself, for the frame
// was never proposed.
func (rs *routedStream) handOver(ctx context.Context, g uint32, m *raftqv1.EnqueueStreamRequest, stop <-chan struct{}) error {
	rs.mu.Lock()
	s := rs.subs[g]
	if s == nil {
		s = rs.open(ctx, g)
	}
	rs.owed[m.GetSeq()], rs.frames[m.GetSeq()] = s, m
	rs.mu.Unlock()
	select {
	case s.in <- m:
	case <-s.done:
	case <-ctx.Done():
		return ctx.Err()
	case <-stop:
		rs.mu.Lock()
		if rs.owed[m.GetSeq()] == s {
			delete(rs.owed, m.GetSeq()) // never handed over: the end covers it
			delete(rs.frames, m.GetSeq())
		}
		rs.mu.Unlock()
		return errHostStopped
	}
	return nil
}

// open starts group g's part (rs.mu held).
func (rs *routedStream) open(ctx context.Context, g uint32) *subStream {
	sctx, cancel := context.WithCancel(ctx)
	s := &subStream{BidiStreamingServer: rs.st, ctx: sctx, rs: rs,
		in: make(chan *raftqv1.EnqueueStreamRequest), done: make(chan struct{})}
	rs.subs[g] = s
	rs.wg.Add(1)
	go func() {
		defer rs.wg.Done()
		err := enqueueStreamIn(rs.r.node(g), s)
		rs.finish(g, s, err)
		cancel() // a reader the handler left behind stops taking frames
		close(s.done)
	}()
	return s
}

// finish answers what part s of group g was handed and did not answer,
// with the error that ended it, and forgets the part so that the group's
// next frame opens a new one.
func (rs *routedStream) finish(g uint32, s *subStream, err error) {
	if err == nil {
		// Ended by the producer's close: everything handed over was
		// answered. Anything else would be a broken promise, which the
		// producer must not read as definite.
		err = io.ErrUnexpectedEOF
	}
	ie := itemError(apierr.ForwardedWrite(toStatus(err)))
	rs.mu.Lock()
	if rs.subs[g] == s {
		delete(rs.subs, g)
	}
	var unanswered []uint64
	for seq, owner := range rs.owed {
		if owner == s {
			unanswered = append(unanswered, seq)
			delete(rs.owed, seq)
			delete(rs.frames, seq)
		}
	}
	rs.mu.Unlock()
	slices.Sort(unanswered)
	for _, seq := range unanswered {
		if rs.send(&raftqv1.EnqueueStreamResponse{Seq: seq, Error: ie}) != nil {
			return // the producer's stream broke: it learns nothing more
		}
	}
}

// subStream is one group's part of a routed enqueue stream: what the
// group's handler sees as its stream.
type subStream struct {
	grpc.BidiStreamingServer[raftqv1.EnqueueStreamRequest, raftqv1.EnqueueStreamResponse]
	ctx  context.Context
	rs   *routedStream
	in   chan *raftqv1.EnqueueStreamRequest
	done chan struct{} // closed once finish has run
	// ended is the error the part ended with, as an item's error (rs.mu).
}

func (s *subStream) Context() context.Context { return s.ctx }

func (s *subStream) Recv() (*raftqv1.EnqueueStreamRequest, error) {
	select {
	case m, ok := <-s.in:
		if !ok {
			return nil, io.EOF
		}
		return m, nil
	case <-s.ctx.Done():
		return nil, s.ctx.Err()
	}
}

// Send passes the group's answer on, and marks its frame answered. A job
// the group refused as moved (this node's placement table was behind)
// is routed again instead, as the router's Enqueue would.
func (s *subStream) Send(m *raftqv1.EnqueueStreamResponse) error {
	rs := s.rs
	rs.mu.Lock()
	var frame *raftqv1.EnqueueStreamRequest
	if rs.owed[m.GetSeq()] == s {
		frame = rs.frames[m.GetSeq()]
		delete(rs.owed, m.GetSeq())
		delete(rs.frames, m.GetSeq())
		if m.GetError().GetDetail().GetReason() == raftqv1.ErrorDetail_QUEUE_MOVED && frame != nil {
			rs.owed[m.GetSeq()], rs.frames[m.GetSeq()] = rs.unary, frame
			rs.mu.Unlock()
			rs.viaUnary(rs.st.Context(), frame)
			return nil
		}
	}
	rs.mu.Unlock()
	return rs.send(m)
}

// viaUnary enqueues frame m (owed by rs.unary) through the router's
// Enqueue, which knows how to route a moving queue's jobs, and answers
// it on the producer's stream.
func (rs *routedStream) viaUnary(ctx context.Context, m *raftqv1.EnqueueStreamRequest) {
	rs.wg.Add(1)
	go func() {
		defer rs.wg.Done()
		b := &brokerRouter{brokerService: &brokerService{n: rs.r.h}, r: rs.r}
		res, err := b.Enqueue(ctx, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{m.GetJob()}})
		out := &raftqv1.EnqueueStreamResponse{Seq: m.GetSeq()}
		switch {
		case err != nil:
			out.Error = itemError(apierr.ForwardedWrite(toStatus(err)))
		case len(res.GetResults()) != 1:
			out.Error = itemError(apierr.FromError(fmt.Errorf("%d results for one job", len(res.GetResults()))))
		default:
			out.Result = res.GetResults()[0]
		}
		rs.mu.Lock()
		if rs.owed[m.GetSeq()] == rs.unary {
			delete(rs.owed, m.GetSeq())
			delete(rs.frames, m.GetSeq())
		}
		rs.mu.Unlock()
		_ = rs.send(out)
	}()
}

// adminRouter serves the Admin service of a host.
type adminRouter struct {
	*adminService
	r *router
}

// PauseQueue goes to the queue's group (every group of a moving or
// partitioned queue).
func (a *adminRouter) PauseQueue(ctx context.Context, req *raftqv1.PauseQueueRequest) (*raftqv1.PauseQueueResponse, error) {
	err := a.r.eachQueueGroup(ctx, req.GetQueue(), func(n *Node) error {
		_, err := admin(n).PauseQueue(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &raftqv1.PauseQueueResponse{}, nil
}

// ResumeQueue goes to the queue's group (every group of a moving or
// partitioned queue).
func (a *adminRouter) ResumeQueue(ctx context.Context, req *raftqv1.ResumeQueueRequest) (*raftqv1.ResumeQueueResponse, error) {
	err := a.r.eachQueueGroup(ctx, req.GetQueue(), func(n *Node) error {
		_, err := admin(n).ResumeQueue(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &raftqv1.ResumeQueueResponse{}, nil
}

// ExportQueue reads the named group (the queue's, without a name).
func (a *adminRouter) ExportQueue(ctx context.Context, req *raftqv1.ExportQueueRequest) (*raftqv1.ExportQueueResponse, error) {
	n, err := a.r.forQueues(ctx, req.GetQueue())
	if err != nil {
		return fail[*raftqv1.ExportQueueResponse](err)
	}
	return admin(n).ExportQueue(ctx, req)
}

// eachQueueGroup runs call on the named group, or on every group holding
// queue's jobs, in order.
func (r *router) eachQueueGroup(ctx context.Context, queue string, call func(*Node) error) error {
	if n, ok, err := r.named(ctx); ok || err != nil {
		if err != nil {
			return toStatus(err)
		}
		return call(n)
	}
	for _, g := range r.h.queueGroups(queue) {
		if err := call(r.node(g)); err != nil {
			return err
		}
	}
	return nil
}

// jobsByGroup splits job ids by the group they name.
func (r *router) jobsByGroup(ids []string) (map[uint32][]string, error) {
	out := map[uint32][]string{}
	for _, id := range ids {
		g, err := placement.Job(id, r.h.cfg.Groups)
		if err != nil {
			return nil, fmt.Errorf("%w: job_id %q: %v", apierr.ErrInvalid, id, err)
		}
		out[g] = append(out[g], id)
	}
	return out, nil
}

// deadCall routes Redrive and PurgeDead: listed jobs each to the group its
// id names, else by queue (both groups of a moving queue), the answers
// joined.
func deadCall(ctx context.Context, r *router, queue string, ids []string, call func(*Node, []string) ([]string, error)) ([]string, error) {
	if n, ok, err := r.named(ctx); ok || err != nil {
		if err != nil {
			return nil, toStatus(err)
		}
		return call(n, ids)
	}
	if queue != "" && len(ids) == 0 {
		// Both groups of a moving queue: the old one's dead jobs must be
		// redriven or purged for the move to finish.
		var out []string
		for _, g := range r.h.queueGroups(queue) {
			res, err := call(r.node(g), ids)
			if err != nil {
				return nil, err
			}
			out = append(out, res...)
		}
		return out, nil
	}
	parts, err := r.jobsByGroup(ids)
	if err != nil {
		return nil, toStatus(err)
	}
	if len(parts) == 0 {
		return call(r.node(0), ids)
	}
	var out []string
	for _, g := range sortedKeys(parts) {
		res, err := call(r.node(g), parts[g])
		if err != nil {
			return nil, err
		}
		out = append(out, res...)
	}
	return out, nil
}

// Redrive goes to the queue's group, or each job's.
func (a *adminRouter) Redrive(ctx context.Context, req *raftqv1.RedriveRequest) (*raftqv1.RedriveResponse, error) {
	ids, err := deadCall(ctx, a.r, req.GetQueue(), req.GetJobIds(), func(n *Node, ids []string) ([]string, error) {
		res, err := admin(n).Redrive(ctx, &raftqv1.RedriveRequest{Queue: req.GetQueue(), JobIds: ids, Limit: req.GetLimit()})
		return res.GetJobIds(), err
	})
	if err != nil {
		return nil, err
	}
	return &raftqv1.RedriveResponse{JobIds: ids}, nil
}

// PurgeDead goes to the queue's group, or each job's.
func (a *adminRouter) PurgeDead(ctx context.Context, req *raftqv1.PurgeDeadRequest) (*raftqv1.PurgeDeadResponse, error) {
	ids, err := deadCall(ctx, a.r, req.GetQueue(), req.GetJobIds(), func(n *Node, ids []string) ([]string, error) {
		res, err := admin(n).PurgeDead(ctx, &raftqv1.PurgeDeadRequest{Queue: req.GetQueue(), JobIds: ids, Limit: req.GetLimit()})
		return res.GetJobIds(), err
	})
	if err != nil {
		return nil, err
	}
	return &raftqv1.PurgeDeadResponse{JobIds: ids}, nil
}

// ListJobs lists one queue's group; without a queue, every group's jobs
// merged in id order (each group's page starts after the same id, so
// paging with next_after works across groups).
func (a *adminRouter) ListJobs(ctx context.Context, req *raftqv1.ListJobsRequest) (*raftqv1.ListJobsResponse, error) {
	if n, ok, err := a.r.named(ctx); ok || err != nil {
		if err != nil {
			return fail[*raftqv1.ListJobsResponse](err)
		}
		return admin(n).ListJobs(ctx, req)
	}
	// A queue's group, or both of a moving queue's; else every group.
	groups := a.r.all()
	if q := req.GetQueue(); q != "" {
		groups = nil
		for _, g := range a.r.h.queueGroups(q) {
			groups = append(groups, a.r.node(g))
		}
	}
	var all []*raftqv1.Job
	more := false
	for _, gn := range groups {
		res, err := admin(gn).ListJobs(ctx, req)
		if err != nil {
			return nil, err
		}
		all = append(all, res.GetJobs()...)
		more = more || res.GetNextAfter() != ""
	}
	slices.SortFunc(all, func(x, y *raftqv1.Job) int { return cmp.Compare(x.GetId(), y.GetId()) })
	out := &raftqv1.ListJobsResponse{Jobs: all}
	if lim := int(req.GetLimit()); lim > 0 && len(all) > lim {
		out.Jobs, more = all[:lim], true
	}
	if more && len(out.Jobs) > 0 {
		out.NextAfter = out.Jobs[len(out.Jobs)-1].GetId()
	}
	return out, nil
}

// clusterRouter serves the Cluster service of a host.
type clusterRouter struct {
	*clusterService
	r *router
}

// everyGroup runs call on the named group, or on every group in order.
func (r *router) everyGroup(ctx context.Context, call func(*Node) error) error {
	if n, ok, err := r.named(ctx); ok || err != nil {
		if err != nil {
			return toStatus(err)
		}
		return call(n)
	}
	for _, gn := range r.all() {
		if err := call(gn); err != nil {
			return err
		}
	}
	return nil
}

// Join adds a node to every group (a peer's group announcing its address
// names its group: only that one). With replicas on a subset of the nodes
// (Config.Replicas), to group 0 only: its leader places the node's
// replicas (replicas.go).
func (c *clusterRouter) Join(ctx context.Context, req *raftqv1.JoinRequest) (*raftqv1.JoinResponse, error) {
	if _, named, _ := c.r.named(ctx); !named && c.r.h.rep != nil {
		return cluster(c.r.h).Join(ctx, req)
	}
	err := c.r.everyGroup(ctx, func(n *Node) error {
		_, err := cluster(n).Join(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &raftqv1.JoinResponse{}, nil
}

// Remove takes a node out of every group. With replicas on a subset of
// the nodes, out of group 0: the placer then gives each group it ran a
// new member, and each group's leader removes it once the new one is
// caught up, so no group runs on fewer replicas meanwhile (replicas.go).
func (c *clusterRouter) Remove(ctx context.Context, req *raftqv1.RemoveRequest) (*raftqv1.RemoveResponse, error) {
	if _, named, _ := c.r.named(ctx); !named && c.r.h.rep != nil {
		return cluster(c.r.h).Remove(ctx, req)
	}
	err := c.r.everyGroup(ctx, func(n *Node) error {
		_, err := cluster(n).Remove(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &raftqv1.RemoveResponse{}, nil
}

// Status answers for the named group, or group 0 with every group's
// leader (StatusResponse.groups) and the placed queues (placements).
func (c *clusterRouter) Status(ctx context.Context, req *raftqv1.StatusRequest) (*raftqv1.StatusResponse, error) {
	n, ok, err := c.r.named(ctx)
	if err != nil {
		return fail[*raftqv1.StatusResponse](err)
	}
	if ok {
		return cluster(n).Status(ctx, req)
	}
	res, err := cluster(c.r.h).Status(ctx, req)
	if err != nil {
		return nil, err
	}
	res.Groups = c.r.h.groupStatus()
	res.Placements = c.r.h.routePlacements()
	return res, nil
}

// TransferLeadership moves the named group's leadership (group 0's
// without a name).
func (c *clusterRouter) TransferLeadership(ctx context.Context, req *raftqv1.TransferLeadershipRequest) (*raftqv1.TransferLeadershipResponse, error) {
	n, err := c.r.forQueues(ctx)
	if err != nil {
		return fail[*raftqv1.TransferLeadershipResponse](err)
	}
	return cluster(n).TransferLeadership(ctx, req)
}

// Snapshot streams the named group's state. Without a name it is
// refused: one group's state is not a backup of the cluster, and an
// operator who took it for one would lose every other group's jobs.
func (c *clusterRouter) Snapshot(req *raftqv1.SnapshotRequest, st grpc.ServerStreamingServer[raftqv1.SnapshotChunk]) error {
	n, err := c.r.wholeGroup(st.Context(), "back up")
	if err != nil {
		return toStatus(err)
	}
	return cluster(n).Snapshot(req, st)
}

// Restore restores the named group; without a name it is refused, as
// Snapshot is.
func (c *clusterRouter) Restore(st grpc.ClientStreamingServer[raftqv1.RestoreChunk, raftqv1.RestoreResponse]) error {
	n, err := c.r.wholeGroup(st.Context(), "restore")
	if err != nil {
		return toStatus(err)
	}
	return cluster(n).Restore(st)
}

// wholeGroup is the group a call about a group's whole state names; it
// must name one.
func (r *router) wholeGroup(ctx context.Context, what string) (*Node, error) {
	n, ok, err := r.named(ctx)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: this cluster runs %d Raft groups: %s each group, naming it in the %s header (brokerctl snapshot save and restore do, one file per group)",
			apierr.ErrInvalid, r.h.cfg.Groups, what, placement.Header)
	}
	return n, nil
}

// scheduleRouter serves the Schedules service of a host: a schedule lives
// in the group of the queue its jobs go to (that group's leader fires it
// into its own store).
type scheduleRouter struct {
	*scheduleService
	r *router
}

// PutSchedule goes to the group of the schedule's queue.
func (s *scheduleRouter) PutSchedule(ctx context.Context, req *raftqv1.PutScheduleRequest) (*raftqv1.PutScheduleResponse, error) {
	n, err := s.r.forQueues(ctx, req.GetSchedule().GetJob().GetQueue())
	if err != nil {
		return fail[*raftqv1.PutScheduleResponse](err)
	}
	// A queue sealed in that group moved away (this node's placement
	// table is behind, or the schedule is being handed over): the
	// schedule goes to the group the queue went to.
	queue := req.GetSchedule().GetJob().GetQueue()
	if !n.remote {
		if to, sealed := n.fsm.Sealed(queue); sealed {
			n = s.r.node(to)
		}
	}
	// Names are unique in the cluster: a schedule moved to a queue of
	// another group would otherwise fire from both. A copy of this queue's
	// schedule in a group the queue left is the move's to delete.
	name := req.GetSchedule().GetName()
	for _, gn := range s.r.all() {
		if gn == n || gn.cfg.group == n.cfg.group {
			continue
		}
		oldQueue, ok, err := scheduleIn(ctx, gn, name)
		if err != nil {
			return fail[*raftqv1.PutScheduleResponse](err)
		}
		if ok && !movedCopy(gn, oldQueue, queue) {
			return fail[*raftqv1.PutScheduleResponse](fmt.Errorf("%w: schedule %q exists in group %d (its jobs go to queue %q, of that group): delete it before putting it on queue %q",
				apierr.ErrInvalid, name, gn.cfg.group, oldQueue, req.GetSchedule().GetJob().GetQueue()))
		}
	}
	res, err := sched(n).PutSchedule(ctx, req)
	if to, moved := movedTo(err); moved && n.remote {
		// A group this host does not run answered that the queue left it.
		return sched(s.r.node(to)).PutSchedule(ctx, req)
	}
	return res, err
}

// scheduleIn is the queue of group gn's schedule called name: from this
// host's replica, or asked of the group's leader when the host does not
// run it.
func scheduleIn(ctx context.Context, gn *Node, name string) (string, bool, error) {
	if !gn.remote {
		sc, ok := gn.fsm.Schedule(name)
		if !ok {
			return "", false, nil
		}
		return sc.Spec.GetJob().GetQueue(), true, nil
	}
	res, err := sched(gn).GetSchedule(ctx, &raftqv1.GetScheduleRequest{Name: name})
	if isNotFound(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return res.GetSchedule().GetSpec().GetJob().GetQueue(), true, nil
}

// movedCopy reports whether a schedule of group gn whose jobs go to
// schedQueue is a copy left behind by a move of queue away from gn.
func movedCopy(gn *Node, schedQueue, queue string) bool {
	if schedQueue != queue {
		return false
	}
	if gn.remote {
		// Sealed there: the move's copy (the schedule's own group is
		// asked, as the FSM check would be).
		return gn.cfg.host.queueGroup(queue) != gn.cfg.group
	}
	_, sealed := gn.fsm.Sealed(queue)
	return sealed
}

// byName runs call in the group that holds the named schedule: each group
// in turn until one answers other than NOT_FOUND or QUEUE_MOVED, those
// whose replica here holds it first (see scheduleGroups). QUEUE_MOVED is
// a group that the schedule's queue left: its copy is the one the move
// deletes, and it takes no change, so the call goes on to the copy that
// stays. When no group takes the call, a QUEUE_MOVED answer is returned
// before a NOT_FOUND (the schedule is being handed over: try again).
func byName[T any](ctx context.Context, r *router, name string, call func(*Node) (T, error)) (T, error) {
	if n, ok, err := r.named(ctx); ok || err != nil {
		if err != nil {
			return fail[T](err)
		}
		return call(n)
	}
	var (
		out   T
		err   error
		moved error
	)
	for _, gn := range r.scheduleGroups(name) {
		out, err = call(gn)
		if _, ok := movedTo(err); ok {
			moved = err
			continue
		}
		if !isNotFound(err) {
			return out, err
		}
	}
	if moved != nil {
		return fail[T](moved)
	}
	return out, err
}

// scheduleGroups are this host's groups in the order to look for the
// named schedule: the group of its queue if its replica here holds it,
// then the other groups whose replica holds it, then the rest. While a
// moved queue's schedule is handed over it is in both groups for a
// moment, and the new group's copy is the one that stays.
func (r *router) scheduleGroups(name string) []*Node {
	var own, other, rest []*Node
	for _, gn := range r.all() {
		if gn.remote {
			rest = append(rest, gn) // asked in turn: not known here
			continue
		}
		sc, ok := gn.fsm.Schedule(name)
		switch {
		case !ok:
			rest = append(rest, gn)
		case r.h.queueGroup(sc.Spec.GetJob().GetQueue()) == gn.cfg.group:
			own = append(own, gn)
		default:
			other = append(other, gn)
		}
	}
	return slices.Concat(own, other, rest)
}

// GetSchedule finds the schedule's group.
func (s *scheduleRouter) GetSchedule(ctx context.Context, req *raftqv1.GetScheduleRequest) (*raftqv1.GetScheduleResponse, error) {
	return byName(ctx, s.r, req.GetName(), func(n *Node) (*raftqv1.GetScheduleResponse, error) { return sched(n).GetSchedule(ctx, req) })
}

// PauseSchedule finds the schedule's group.
func (s *scheduleRouter) PauseSchedule(ctx context.Context, req *raftqv1.PauseScheduleRequest) (*raftqv1.PauseScheduleResponse, error) {
	return byName(ctx, s.r, req.GetName(), func(n *Node) (*raftqv1.PauseScheduleResponse, error) { return sched(n).PauseSchedule(ctx, req) })
}

// ResumeSchedule finds the schedule's group.
func (s *scheduleRouter) ResumeSchedule(ctx context.Context, req *raftqv1.ResumeScheduleRequest) (*raftqv1.ResumeScheduleResponse, error) {
	return byName(ctx, s.r, req.GetName(), func(n *Node) (*raftqv1.ResumeScheduleResponse, error) { return sched(n).ResumeSchedule(ctx, req) })
}

// DeleteSchedule deletes the schedule in every group that holds it: while
// a moved queue's schedule is handed over it is in two groups, and a
// delete of one copy only would leave the other firing.
func (s *scheduleRouter) DeleteSchedule(ctx context.Context, req *raftqv1.DeleteScheduleRequest) (*raftqv1.DeleteScheduleResponse, error) {
	if n, ok, err := s.r.named(ctx); ok || err != nil {
		if err != nil {
			return fail[*raftqv1.DeleteScheduleResponse](err)
		}
		return sched(n).DeleteSchedule(ctx, req)
	}
	deleted := false
	var last error
	for _, gn := range s.r.scheduleGroups(req.GetName()) {
		_, err := sched(gn).DeleteSchedule(ctx, req)
		switch {
		case err == nil:
			deleted = true
		case isNotFound(err):
			if last == nil {
				last = err
			}
		default:
			return fail[*raftqv1.DeleteScheduleResponse](err)
		}
	}
	if !deleted {
		return fail[*raftqv1.DeleteScheduleResponse](last)
	}
	return &raftqv1.DeleteScheduleResponse{}, nil
}

// ListSchedules lists every group's schedules, in name order. A schedule
// in two groups (a moved queue's, for a moment while it is handed over)
// is listed once: the copy in its queue's group.
func (s *scheduleRouter) ListSchedules(ctx context.Context, req *raftqv1.ListSchedulesRequest) (*raftqv1.ListSchedulesResponse, error) {
	out := &raftqv1.ListSchedulesResponse{}
	at := map[string]int{} // name → index in out.Schedules
	err := s.r.everyGroup(ctx, func(n *Node) error {
		res, err := sched(n).ListSchedules(ctx, req)
		for _, sc := range res.GetSchedules() {
			name := sc.GetSpec().GetName()
			i, dup := at[name]
			switch {
			case !dup:
				at[name] = len(out.Schedules)
				out.Schedules = append(out.Schedules, sc)
			case s.r.h.queueGroup(sc.GetSpec().GetJob().GetQueue()) == n.cfg.group:
				out.Schedules[i] = sc
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out.Schedules, func(a, b *raftqv1.Schedule) int { return cmp.Compare(a.GetSpec().GetName(), b.GetSpec().GetName()) })
	return out, nil
}

func sortedKeys[V any](m map[uint32]V) []uint32 {
	ks := make([]uint32, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// toStatus is the API status of a routing error.
func toStatus(err error) error { return apierr.FromError(err) }

// isNotFound reports a NOT_FOUND answer.
func isNotFound(err error) bool { return status.Code(err) == codes.NotFound }
