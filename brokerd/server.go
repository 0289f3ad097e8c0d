package brokerd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/fsm/fsmpb"
	"github.com/raftq/raftq/internal/apierr"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// propose runs one command through Raft and returns its FSM result. Errors
// come back as gRPC statuses.
func (n *Node) propose(ctx context.Context, cmd *fsmpb.Command) (fsm.Result, error) {
	r := n.prop.Propose(ctx, cmd)
	n.metrics.observe(cmd, r)
	if r.Err != nil {
		if errors.Is(r.Err, apierr.ErrNotLeader) {
			return fsm.Result{}, n.notLeaderNow()
		}
		return fsm.Result{}, apierr.FromError(r.Err)
	}
	n.crash(CrashCommitBeforeReply)
	if r.Result.Err != nil {
		return r.Result, apierr.FromError(r.Result.Err)
	}
	return r.Result, nil
}

// notLeaderNow is the NOT_LEADER answer to a write this node's proposer
// refused (it lost leadership, or is handing it over): it names this
// node's group, so that a client's route map learns whose leader moved,
// and the leader this node knows when that is another node (during a
// leadership transfer it still names itself: then no one).
func (n *Node) notLeaderNow() error {
	id, addr := n.leader()
	if id == n.cfg.NodeID {
		id, addr = "", ""
	}
	return n.notLeader(id, addr)
}

// single returns the only item of a one-item command's result.
func single(res fsm.Result) (fsm.ItemResult, error) {
	it, err := only(res)
	if err != nil {
		return it, err
	}
	return it, apierr.FromError(it.Err)
}

// only is single leaving the item's own error to the caller.
func only(res fsm.Result) (fsm.ItemResult, error) {
	if len(res.Items) != 1 {
		return fsm.ItemResult{}, apierr.FromError(fmt.Errorf("fsm returned %d items for one", len(res.Items)))
	}
	return res.Items[0], nil
}

type brokerService struct {
	raftqv1.UnimplementedBrokerServer
	n *Node
}

func (s *brokerService) Enqueue(ctx context.Context, req *raftqv1.EnqueueRequest) (*raftqv1.EnqueueResponse, error) {
	n := s.n
	if !n.isLeader() {
		return forward(ctx, n, func(ctx context.Context, c *grpc.ClientConn) (*raftqv1.EnqueueResponse, error) {
			return raftqv1.NewBrokerClient(c).Enqueue(ctx, req)
		})
	}
	return n.enqueue(ctx, req)
}

// enqueue is Enqueue on the leader (also each job of an EnqueueStream).
func (n *Node) enqueue(ctx context.Context, req *raftqv1.EnqueueRequest) (*raftqv1.EnqueueResponse, error) {
	jobs, err := n.newJobs(ctx, req, n.clock())
	if err != nil {
		return nil, apierr.FromError(err)
	}
	workflow, err := linkWorkflow(req, jobs)
	if err != nil {
		return nil, apierr.FromError(err)
	}
	var first *fsmpb.NewJob
	if len(jobs) > 0 {
		first = jobs[0]
	}
	ctx, span := startEnqueueSpan(ctx, first.GetQueue(), len(jobs), first.GetTraceParent(), first.GetTraceState())
	defer span.End()
	cmd := &fsmpb.Command{
		Type: fsmpb.CommandType_COMMAND_TYPE_ENQUEUE,
		Body: &fsmpb.Command_Enqueue{Enqueue: &fsmpb.Enqueue{Jobs: jobs}},
	}
	if workflow {
		// All or nothing, parents resolved inside the batch.
		cmd = &fsmpb.Command{
			Type: fsmpb.CommandType_COMMAND_TYPE_ENQUEUE_WORKFLOW,
			Body: &fsmpb.Command_EnqueueWorkflow{EnqueueWorkflow: &fsmpb.Enqueue{Jobs: jobs}},
		}
	}
	res, err := n.propose(ctx, cmd)
	if err != nil {
		if workflow && res.Err != nil {
			return nil, apierr.FromError(explainIDs(res.Err, req, jobs))
		}
		return nil, err
	}
	if len(res.Items) != len(jobs) {
		return nil, apierr.FromError(fmt.Errorf("fsm returned %d results for %d jobs", len(res.Items), len(jobs)))
	}
	out := &raftqv1.EnqueueResponse{Results: make([]*raftqv1.EnqueueResult, len(jobs))}
	for i, it := range res.Items {
		if it.Err != nil {
			return nil, apierr.FromError(fmt.Errorf("job %d: %w", i, explainIDs(it.Err, req, jobs)))
		}
		out.Results[i] = &raftqv1.EnqueueResult{JobId: it.JobID, Duplicate: it.Duplicate}
	}
	return out, nil
}

func (s *brokerService) Fetch(ctx context.Context, req *raftqv1.FetchRequest) (*raftqv1.FetchResponse, error) {
	n := s.n
	if !n.isLeader() {
		// A follower parks the forwarded call too: it counts against the
		// caller's connection here.
		release, err := n.acquireWaiter(ctx)
		if err != nil {
			return nil, err
		}
		defer release()
		return forward(ctx, n, func(ctx context.Context, c *grpc.ClientConn) (*raftqv1.FetchResponse, error) {
			return raftqv1.NewBrokerClient(c).Fetch(ctx, req)
		})
	}
	fr, err := validateFetch(n.cfg.Limits, req)
	if err != nil {
		return nil, apierr.FromError(err)
	}
	release, err := n.acquireWaiter(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	d, err := n.dispatcher(ctx, 5*time.Second)
	if err != nil {
		return nil, apierr.FromError(err)
	}
	jobs, err := d.Fetch(ctx, fr)
	if len(jobs) > 0 {
		n.crash(CrashLeaseBeforeReply)
	}
	if err != nil {
		if errors.Is(err, apierr.ErrNotLeader) {
			id, addr := n.leader()
			return nil, n.notLeader(id, addr)
		}
		return nil, apierr.FromError(err)
	}
	traceLeases(ctx, jobs, req.WorkerId)
	out := &raftqv1.FetchResponse{Jobs: make([]*raftqv1.Job, len(jobs))}
	for i := range jobs {
		out.Jobs[i] = jobToProto(&jobs[i])
	}
	return out, nil
}

func (s *brokerService) ExtendLease(ctx context.Context, req *raftqv1.ExtendLeaseRequest) (*raftqv1.ExtendLeaseResponse, error) {
	n := s.n
	if !n.isLeader() {
		return forward(ctx, n, func(ctx context.Context, c *grpc.ClientConn) (*raftqv1.ExtendLeaseResponse, error) {
			return raftqv1.NewBrokerClient(c).ExtendLease(ctx, req)
		})
	}
	ref, err := validateExtend(n.cfg.Limits, req)
	if err != nil {
		return nil, apierr.FromError(err)
	}
	res, err := n.propose(ctx, extendCommand([]*fsmpb.LeaseRef{ref}))
	if err != nil {
		return nil, err
	}
	it, err := only(res)
	if err != nil {
		return nil, err
	}
	return extendOutcome(it)
}

func (s *brokerService) Ack(ctx context.Context, req *raftqv1.AckRequest) (*raftqv1.AckResponse, error) {
	n := s.n
	if !n.isLeader() {
		return forward(ctx, n, func(ctx context.Context, c *grpc.ClientConn) (*raftqv1.AckResponse, error) {
			return raftqv1.NewBrokerClient(c).Ack(ctx, req)
		})
	}
	ref, err := validateAck(req)
	if err != nil {
		return nil, apierr.FromError(err)
	}
	res, err := n.propose(ctx, ackCommand([]*fsmpb.LeaseRef{ref}))
	if err != nil {
		return nil, err
	}
	it, err := only(res)
	if err != nil {
		return nil, err
	}
	if err := n.ackOutcome(req, it); err != nil {
		return nil, err
	}
	return &raftqv1.AckResponse{}, nil
}

func (s *brokerService) Nack(ctx context.Context, req *raftqv1.NackRequest) (*raftqv1.NackResponse, error) {
	n := s.n
	if !n.isLeader() {
		return forward(ctx, n, func(ctx context.Context, c *grpc.ClientConn) (*raftqv1.NackResponse, error) {
			return raftqv1.NewBrokerClient(c).Nack(ctx, req)
		})
	}
	item, err := validateNack(n.cfg.Limits, req)
	if err != nil {
		return nil, apierr.FromError(err)
	}
	res, err := n.propose(ctx, nackCommand([]*fsmpb.NackItem{item}))
	if err != nil {
		return nil, err
	}
	it, err := only(res)
	if err != nil {
		return nil, err
	}
	return n.nackOutcome(req, it)
}

func (s *brokerService) GetJob(ctx context.Context, req *raftqv1.GetJobRequest) (*raftqv1.GetJobResponse, error) {
	n := s.n
	if err := checkJobID(req.JobId); err != nil {
		return nil, apierr.FromError(err)
	}
	if req.Consistency != raftqv1.Consistency_CONSISTENCY_STALE {
		if !n.isLeader() {
			return forwardRead(ctx, n, func(ctx context.Context, c *grpc.ClientConn) (*raftqv1.GetJobResponse, error) {
				return raftqv1.NewBrokerClient(c).GetJob(ctx, req)
			})
		}
		if err := n.readBarrier(ctx); err != nil {
			return nil, apierr.FromError(err)
		}
	}
	j, ok := n.fsm.Get(req.JobId)
	if !ok {
		return nil, apierr.FromError(fmt.Errorf("%w: %s", fsm.ErrNotFound, req.JobId))
	}
	pj := jobToProto(&j)
	pj.Dependants = n.fsm.Dependants(j.ID, maxDependantsShown)
	return &raftqv1.GetJobResponse{Job: pj}, nil
}

func (s *brokerService) CancelJob(ctx context.Context, req *raftqv1.CancelJobRequest) (*raftqv1.CancelJobResponse, error) {
	n := s.n
	if !n.isLeader() {
		return forward(ctx, n, func(ctx context.Context, c *grpc.ClientConn) (*raftqv1.CancelJobResponse, error) {
			return raftqv1.NewBrokerClient(c).CancelJob(ctx, req)
		})
	}
	if err := checkJobID(req.JobId); err != nil {
		return nil, apierr.FromError(err)
	}
	res, err := n.propose(ctx, &fsmpb.Command{
		Type: fsmpb.CommandType_COMMAND_TYPE_CANCEL,
		Body: &fsmpb.Command_Cancel{Cancel: &fsmpb.Cancel{JobIds: []string{req.JobId}}},
	})
	if err != nil {
		return nil, err
	}
	it, err := single(res)
	if err != nil && !cancelApplied(it) {
		return nil, err
	}
	return &raftqv1.CancelJobResponse{State: raftqv1.JobState(it.Job.State)}, nil
}

func (s *brokerService) QueueStats(ctx context.Context, req *raftqv1.QueueStatsRequest) (*raftqv1.QueueStatsResponse, error) {
	n := s.n
	if err := validateQueueStats(req); err != nil {
		return nil, apierr.FromError(err)
	}
	if req.Consistency != raftqv1.Consistency_CONSISTENCY_STALE {
		if !n.isLeader() {
			return forwardRead(ctx, n, func(ctx context.Context, c *grpc.ClientConn) (*raftqv1.QueueStatsResponse, error) {
				return raftqv1.NewBrokerClient(c).QueueStats(ctx, req)
			})
		}
		if err := n.readBarrier(ctx); err != nil {
			return nil, apierr.FromError(err)
		}
	}
	out := &raftqv1.QueueStatsResponse{}
	for _, st := range n.fsm.Stats(req.Queues) {
		qs := &raftqv1.QueueStats{
			Queue:     st.Queue,
			Paused:    st.Paused,
			Scheduled: st.Counts[fsm.StateScheduled],
			Ready:     st.Counts[fsm.StateReady],
			Leased:    st.Counts[fsm.StateLeased],
			Succeeded: st.Counts[fsm.StateSucceeded],
			Dead:      st.Counts[fsm.StateDead],
			Cancelled: st.Counts[fsm.StateCancelled],
			Waiting:   st.Counts[fsm.StateWaiting],
		}
		if st.OldestReadyCreatedAt != 0 {
			qs.OldestReadyAt = timestamppb.New(time.Unix(0, st.OldestReadyCreatedAt))
		}
		out.Queues = append(out.Queues, qs)
	}
	return out, nil
}

type adminService struct {
	raftqv1.UnimplementedAdminServer
	n *Node
}

func (s *adminService) queueCmd(ctx context.Context, queue string, t fsmpb.CommandType) error {
	if err := validateQueue(queue); err != nil {
		return apierr.FromError(err)
	}
	cmd := &fsmpb.Command{Type: t}
	ref := &fsmpb.QueueRef{Queue: queue}
	if t == fsmpb.CommandType_COMMAND_TYPE_PAUSE_QUEUE {
		cmd.Body = &fsmpb.Command_PauseQueue{PauseQueue: ref}
	} else {
		cmd.Body = &fsmpb.Command_ResumeQueue{ResumeQueue: ref}
	}
	_, err := s.n.propose(ctx, cmd)
	return err
}

func (s *adminService) PauseQueue(ctx context.Context, req *raftqv1.PauseQueueRequest) (*raftqv1.PauseQueueResponse, error) {
	if !s.n.isLeader() {
		return forward(ctx, s.n, func(ctx context.Context, c *grpc.ClientConn) (*raftqv1.PauseQueueResponse, error) {
			return raftqv1.NewAdminClient(c).PauseQueue(ctx, req)
		})
	}
	return &raftqv1.PauseQueueResponse{}, s.queueCmd(ctx, req.Queue, fsmpb.CommandType_COMMAND_TYPE_PAUSE_QUEUE)
}

func (s *adminService) ResumeQueue(ctx context.Context, req *raftqv1.ResumeQueueRequest) (*raftqv1.ResumeQueueResponse, error) {
	if !s.n.isLeader() {
		return forward(ctx, s.n, func(ctx context.Context, c *grpc.ClientConn) (*raftqv1.ResumeQueueResponse, error) {
			return raftqv1.NewAdminClient(c).ResumeQueue(ctx, req)
		})
	}
	return &raftqv1.ResumeQueueResponse{}, s.queueCmd(ctx, req.Queue, fsmpb.CommandType_COMMAND_TYPE_RESUME_QUEUE)
}

func (s *adminService) Redrive(ctx context.Context, req *raftqv1.RedriveRequest) (*raftqv1.RedriveResponse, error) {
	n := s.n
	if !n.isLeader() {
		return forward(ctx, n, func(ctx context.Context, c *grpc.ClientConn) (*raftqv1.RedriveResponse, error) {
			return raftqv1.NewAdminClient(c).Redrive(ctx, req)
		})
	}
	if err := validateRedrive(req); err != nil {
		return nil, apierr.FromError(err)
	}
	res, err := n.propose(ctx, &fsmpb.Command{
		Type: fsmpb.CommandType_COMMAND_TYPE_REDRIVE,
		Body: &fsmpb.Command_Redrive{Redrive: &fsmpb.Redrive{Queue: req.Queue, JobIds: req.JobIds, Limit: req.Limit}},
	})
	if err != nil {
		return nil, err
	}
	out := &raftqv1.RedriveResponse{}
	for _, it := range res.Items {
		if it.Err != nil && !redriveApplied(it) {
			if len(req.JobIds) > 0 {
				return out, apierr.FromError(fmt.Errorf("job %s: %w", it.JobID, it.Err))
			}
			continue
		}
		out.JobIds = append(out.JobIds, it.JobID)
	}
	return out, nil
}

func (s *adminService) ListJobs(ctx context.Context, req *raftqv1.ListJobsRequest) (*raftqv1.ListJobsResponse, error) {
	n := s.n
	limit, err := validateListJobs(req)
	if err != nil {
		return nil, apierr.FromError(err)
	}
	if req.Consistency != raftqv1.Consistency_CONSISTENCY_STALE {
		if !n.isLeader() {
			return forwardRead(ctx, n, func(ctx context.Context, c *grpc.ClientConn) (*raftqv1.ListJobsResponse, error) {
				return raftqv1.NewAdminClient(c).ListJobs(ctx, req)
			})
		}
		if err := n.readBarrier(ctx); err != nil {
			return nil, apierr.FromError(err)
		}
	}
	jobs := n.fsm.List(req.Queue, fsm.State(req.State), req.After, limit)
	out := &raftqv1.ListJobsResponse{}
	for i := range jobs {
		out.Jobs = append(out.Jobs, jobToProto(&jobs[i]))
	}
	if len(jobs) == limit {
		out.NextAfter = jobs[len(jobs)-1].ID
	}
	return out, nil
}

type clusterService struct {
	raftqv1.UnimplementedClusterServer
	n *Node
}

func (s *clusterService) Join(ctx context.Context, req *raftqv1.JoinRequest) (*raftqv1.JoinResponse, error) {
	n := s.n
	if err := validateJoin(req); err != nil {
		return nil, apierr.FromError(err)
	}
	if !n.lead.ready.Load() {
		return n.fwd.join(ctx, req)
	}
	if err := n.join(ctx, req); err != nil {
		return nil, apierr.FromError(err)
	}
	return &raftqv1.JoinResponse{}, nil
}

func (s *clusterService) Remove(ctx context.Context, req *raftqv1.RemoveRequest) (*raftqv1.RemoveResponse, error) {
	n := s.n
	if err := validateNodeID(req.NodeId, true); err != nil {
		return nil, apierr.FromError(err)
	}
	if !n.isLeader() {
		return forward(ctx, n, func(ctx context.Context, c *grpc.ClientConn) (*raftqv1.RemoveResponse, error) {
			return raftqv1.NewClusterClient(c).Remove(ctx, req)
		})
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return nil, apierr.FromError(err)
	}
	found, voters := false, 0
	for _, srv := range cf.Configuration().Servers {
		if srv.Suffrage == raft.Voter {
			voters++
		}
		if srv.ID == raft.ServerID(req.NodeId) {
			found = true
		}
	}
	if !found {
		return nil, apierr.New(codes.NotFound, raftqv1.ErrorDetail_NOT_FOUND, "no member "+req.NodeId)
	}
	if voters <= 1 {
		return nil, apierr.New(codes.FailedPrecondition, raftqv1.ErrorDetail_WRONG_STATE, "refusing to remove the last voter")
	}
	if err := n.raft.RemoveServer(raft.ServerID(req.NodeId), 0, 10*time.Second).Error(); err != nil {
		return nil, apierr.FromError(apierr.RaftApplyError(err))
	}
	return &raftqv1.RemoveResponse{}, nil
}

func (s *clusterService) Status(ctx context.Context, req *raftqv1.StatusRequest) (*raftqv1.StatusResponse, error) {
	n := s.n
	id, addr := n.leader()
	out := &raftqv1.StatusResponse{
		NodeId:       n.cfg.NodeID,
		State:        n.raft.State().String(),
		LeaderId:     id,
		LeaderAddr:   addr,
		CommitIndex:  n.raft.CommitIndex(),
		AppliedIndex: n.fsm.LastIndex(),
	}
	// Only when asked: hashing reads the whole store, and clients call
	// Status to find the leader.
	if req.GetWithHash() {
		out.StateHash = n.fsm.Hash()
	}
	out.CheckIndex, out.CheckHash = n.fsm.LastCheck()
	out.CheckSupported = true
	out.GroupCount = uint32(max(n.cfg.Groups, 1))
	fmt.Sscan(n.raft.Stats()["term"], &out.Term)
	out.Members = n.members(id)
	return out, nil
}

// members lists the group's Raft configuration with each member's gRPC
// address (leaderID marks the leader).
func (n *Node) members(leaderID string) []*raftqv1.Member {
	var out []*raftqv1.Member
	metas := map[string]string{}
	for _, m := range n.fsm.Nodes() {
		metas[m.NodeID] = m.GRPCAddr
	}
	if cf := n.raft.GetConfiguration(); cf.Error() == nil {
		for _, srv := range cf.Configuration().Servers {
			out = append(out, &raftqv1.Member{
				NodeId:   string(srv.ID),
				RaftAddr: string(srv.Address),
				GrpcAddr: metas[string(srv.ID)],
				Voter:    srv.Suffrage == raft.Voter,
				Leader:   string(srv.ID) == leaderID,
			})
		}
	}
	return out
}

// jobToProto converts an FSM job to its API form.
func jobToProto(j *fsm.Job) *raftqv1.Job {
	ts := func(ns int64) *timestamppb.Timestamp {
		if ns == 0 {
			return nil
		}
		return timestamppb.New(time.Unix(0, ns))
	}
	return &raftqv1.Job{
		Id:            j.ID,
		Queue:         j.Queue,
		Type:          j.Type,
		Payload:       j.Payload,
		Priority:      j.Priority,
		State:         raftqv1.JobState(j.State),
		Attempts:      j.Attempts,
		MaxAttempts:   j.MaxAttempts,
		LeaseDuration: durationpb.New(time.Duration(j.LeaseDuration)),
		Retry: &raftqv1.RetryPolicy{
			InitialBackoff: durationpb.New(time.Duration(j.InitialBackoff)),
			MaxBackoff:     durationpb.New(time.Duration(j.MaxBackoff)),
		},
		IdempotencyKey:   j.IdempotencyKey,
		LastError:        j.LastError,
		RunAt:            ts(j.RunAt),
		CreatedAt:        ts(j.CreatedAt),
		UpdatedAt:        ts(j.UpdatedAt),
		FinishedAt:       ts(j.FinishedAt),
		LeaseToken:       j.LeaseToken,
		LeaseDeadline:    ts(j.LeaseDeadline),
		LeasedBy:         j.LeasedBy,
		CancelRequested:  j.CancelRequested,
		Schedule:         j.ScheduleName,
		ScheduleTick:     ts(j.ScheduleTick),
		ConcurrencyKey:   j.ConcurrencyKey,
		TraceParent:      j.TraceParent,
		TraceState:       j.TraceState,
		Progress:         progressToProto(j),
		StartDeadline:    ts(startDeadline(j)),
		StartToClose:     durOrNil(j.StartToClose),
		AttemptDeadline:  ts(attemptDeadline(j)),
		UniqueKey:        j.UniqueKey,
		Parents:          j.Parents,
		DependencyPolicy: raftqv1.DependencyPolicy(j.DependencyPolicy),
		WaitingOn:        j.WaitingOn,
		ParentFailed:     j.ParentFailed,
	}
}

// startDeadline is the job's schedule-to-start deadline while it still
// applies (never leased, not terminal); 0 otherwise.
func startDeadline(j *fsm.Job) int64 {
	if j.Attempts > 0 || j.State == fsm.StateLeased || j.State.Terminal() {
		return 0
	}
	return j.StartDeadline
}

// attemptDeadline is the leased job's start-to-close deadline; 0 when it
// is not leased.
func attemptDeadline(j *fsm.Job) int64 {
	if j.State != fsm.StateLeased {
		return 0
	}
	return j.AttemptDeadline
}

// durOrNil is d as a Duration, nil for 0.
func durOrNil(d int64) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(time.Duration(d))
}

// maxDependantsShown bounds Job.dependants in a GetJob answer.
const maxDependantsShown = 1000

// progressToProto is the job's reported progress, or nil when its current
// attempt reported none.
func progressToProto(j *fsm.Job) *raftqv1.Progress {
	if !j.HasProgress {
		return nil
	}
	return &raftqv1.Progress{Fraction: j.Progress, Message: j.ProgressMessage}
}
