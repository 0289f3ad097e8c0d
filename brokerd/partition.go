package brokerd

import (
	"context"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/raftq/raftq/fsm/fsmpb"
	"github.com/raftq/raftq/internal/apierr"
	"github.com/raftq/raftq/internal/placement"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// Partitioned queues (docs/scale-out.md, "Partitioned queues"). A hot
// queue spread over several groups, one partition each, so its jobs use
// several leaders' CPU and disks. Group 0's placement record lists the
// partitions; a job goes to one by its key, so that what a key promises
// holds: the concurrency key first (its lease cap is kept per group, so
// all of a key's jobs must share one), else the unique key, else the
// idempotency key (a retry finds its first job); a job without any key
// goes to the partitions in turn. Workers fetch and consume from all
// partitions (the router's fan-out over groups). FIFO holds within a
// partition, as within a group.

// partitionOf is the partition (group) of job j of partitioned queue p.
func (r *router) partitionOf(p *fsmpb.QueuePlacement, j *raftqv1.JobSpec) uint32 {
	ps := p.GetPartitions()
	key := j.GetConcurrencyKey()
	if key == "" {
		key = j.GetUniqueKey()
	}
	if key == "" {
		key = j.GetIdempotencyKey()
	}
	if key == "" {
		return ps[r.spread.Add(1)%uint64(len(ps))]
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	return ps[h.Sum32()%uint32(len(ps))]
}

// enqueuePartitioned serves an Enqueue of a partitioned queue: its jobs
// split by partition, one call per partition (in parallel), the answers
// put back in request order. A workflow (all or nothing, parents in one
// group) goes whole to its first job's partition. As for any Enqueue,
// a failed part fails the call, and the other parts may have committed:
// the producer's retry with the same idempotency keys is safe, since a
// key always picks the same partition.
func (r *router) enqueuePartitioned(ctx context.Context, req *raftqv1.EnqueueRequest, p *fsmpb.QueuePlacement) (*raftqv1.EnqueueResponse, error) {
	if isWorkflow(req) || len(req.GetJobs()) == 0 {
		g := p.GetGroup()
		for _, j := range req.GetJobs() {
			if j.GetQueue() == p.GetQueue() {
				g = r.partitionOf(p, j)
				break
			}
		}
		return svc(r.node(g)).Enqueue(ctx, req)
	}
	where := map[uint32][]int{}
	for i, j := range req.GetJobs() {
		g := p.GetGroup() // another queue of the request: its own group
		if j.GetQueue() == p.GetQueue() {
			g = r.partitionOf(p, j)
		}
		where[g] = append(where[g], i)
	}
	if len(where) == 1 {
		for g := range where {
			return svc(r.node(g)).Enqueue(ctx, req)
		}
	}
	out := &raftqv1.EnqueueResponse{Results: make([]*raftqv1.EnqueueResult, len(req.GetJobs()))}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for g, idx := range where {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sub := &raftqv1.EnqueueRequest{}
			for _, i := range idx {
				sub.Jobs = append(sub.Jobs, req.GetJobs()[i])
			}
			res, err := svc(r.node(g)).Enqueue(ctx, sub)
			if err == nil && len(res.GetResults()) != len(idx) {
				err = apierr.FromError(fmt.Errorf("group %d answered %d results for %d jobs", g, len(res.GetResults()), len(idx)))
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if first == nil {
					first = err
				}
				return
			}
			for k, i := range idx {
				out.Results[i] = res.GetResults()[k]
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	return out, nil
}

// PartitionQueue partitions a queue (group 0's leader).
func (s *adminService) PartitionQueue(ctx context.Context, req *raftqv1.PartitionQueueRequest) (*raftqv1.PartitionQueueResponse, error) {
	n := s.n
	if !n.isLeader() {
		return forward(ctx, n, func(ctx context.Context, c *grpc.ClientConn) (*raftqv1.PartitionQueueResponse, error) {
			return raftqv1.NewAdminClient(c).PartitionQueue(withGroup(ctx, "0"), req)
		})
	}
	q := req.GetQueue()
	if err := validateQueue(q); err != nil {
		return nil, apierr.FromError(err)
	}
	if err := n.readBarrier(ctx); err != nil {
		return nil, apierr.FromError(err)
	}
	if cur := n.placementOf(q); cur != nil {
		return nil, apierr.New(codes.FailedPrecondition, raftqv1.ErrorDetail_WRONG_STATE,
			fmt.Sprintf("queue %q is already placed (group %d, partitions %v): a queue is partitioned once, before it moves", q, cur.GetGroup(), cur.GetPartitions()))
	}
	home := placement.Queue(q, n.cfg.Groups)
	groups := []uint32{home}
	for _, g := range req.GetGroups() {
		if _, err := placement.Check(uint64(g), n.cfg.Groups); err != nil {
			return nil, apierr.FromError(fmt.Errorf("%w: groups: %v", apierr.ErrInvalid, err))
		}
		if slices.Contains(groups, g) {
			if g == home {
				continue
			}
			return nil, apierr.FromError(fmt.Errorf("%w: groups name group %d twice", apierr.ErrInvalid, g))
		}
		groups = append(groups, g)
	}
	if len(groups) < 2 {
		return nil, apierr.FromError(fmt.Errorf("%w: a partitioned queue needs at least two groups (the cluster has %d)", apierr.ErrInvalid, n.cfg.Groups))
	}
	// A key its group already answers for could be retried into another
	// partition and make a second job.
	exp, err := n.exportFrom(ctx, q, home, 1, false)
	if err != nil {
		return nil, apierr.FromError(err)
	}
	if keys := exp.GetKeys(); len(keys) > 0 {
		return nil, apierr.New(codes.FailedPrecondition, raftqv1.ErrorDetail_WRONG_STATE,
			fmt.Sprintf("queue %q already holds idempotency keys in group %d: partition a queue before producers use keys on it", q, home))
	}
	if _, err := n.propose(ctx, placeCommand(&fsmpb.QueuePlacement{Queue: q, Group: home, Partitions: groups})); err != nil {
		return nil, err
	}
	n.log.Info("queue partitioned", "queue", q, "groups", groups)
	return &raftqv1.PartitionQueueResponse{Placement: n.placementView(q)}, nil
}

// PartitionQueue goes to group 0, which holds the placements.
func (a *adminRouter) PartitionQueue(ctx context.Context, req *raftqv1.PartitionQueueRequest) (*raftqv1.PartitionQueueResponse, error) {
	return admin(a.r.node(0)).PartitionQueue(ctx, req)
}
