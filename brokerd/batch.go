package brokerd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/fsm/fsmpb"
	"github.com/raftq/raftq/internal/apierr"
	"github.com/raftq/raftq/internal/auth"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/raftqerr"
)

// The batch settle calls (AckBatch, NackBatch, ExtendLeaseBatch) carry many
// items of the single calls. Each item is validated, authorized and
// answered on its own, exactly as the single call would be; the items
// that pass go into one FSM command, so one Raft entry. Only a failure of
// that proposal (NOT_LEADER, INDETERMINATE) or a request over
// Limits.MaxSettleItems fails the call as a whole.

// settleBatch is the shared part of the batch calls: per-item checks, one
// proposal, results mapped back to request order. errs[i] is item i's
// refusal as a gRPC status; res[i] is its FSM result when errs[i] is nil.
func settleBatch[Req, Item any](ctx context.Context, n *Node, method string, reqs []Req,
	check func(Req) (id string, item Item, err error),
	command func([]Item) *fsmpb.Command,
) (res []fsm.ItemResult, errs []error, err error) {
	if max := n.cfg.Limits.MaxSettleItems; len(reqs) > max {
		return nil, nil, apierr.New(codes.InvalidArgument, raftqv1.ErrorDetail_TOO_LARGE,
			fmt.Sprintf("%d items in one batch, limit %d", len(reqs), max))
	}
	res, errs = make([]fsm.ItemResult, len(reqs)), make([]error, len(reqs))
	var p *auth.Principal
	if n.auth != nil {
		var ok bool
		if p, ok = auth.FromContext(ctx); !ok {
			// The interceptor always sets it when auth is on.
			return nil, nil, status.Error(codes.Unauthenticated, "no principal")
		}
	}
	var items []Item
	var at []int // request index of each proposed item
	for i, r := range reqs {
		id, item, err := check(r)
		if err == nil && n.auth != nil {
			// The single calls' rule (auth.BrokerRules): the job's queue
			// must be one the caller may use.
			if err = n.auth.Check(ctx, p, auth.Access{Jobs: []string{id}}); err != nil {
				n.auth.RefusedItem(ctx, p, method, r, err)
			}
		}
		if err != nil {
			errs[i] = apierr.FromError(err)
			continue
		}
		items, at = append(items, item), append(at, i)
	}
	if len(items) == 0 {
		return res, errs, nil
	}
	out, err := n.propose(ctx, command(items))
	if err != nil {
		return nil, nil, err
	}
	if len(out.Items) != len(items) {
		return nil, nil, apierr.FromError(fmt.Errorf("fsm returned %d results for %d items", len(out.Items), len(items)))
	}
	for k, it := range out.Items {
		res[at[k]] = it
	}
	return res, errs, nil
}

// itemError is an item's refusal in its wire form; nil for nil.
func itemError(err error) *raftqv1.ItemError {
	if err == nil {
		return nil
	}
	st := status.Convert(err)
	return &raftqv1.ItemError{Code: int32(st.Code()), Message: st.Message(), Detail: raftqerr.Detail(err)}
}

// ackOutcome is the answer to one ack whose command ran: success, the
// FSM's refusal, or success again for an ack retried after an
// indeterminate answer that finds its own earlier ack committed (same
// token, succeeded).
func (n *Node) ackOutcome(req *raftqv1.AckRequest, it fsm.ItemResult) error {
	if errors.Is(it.Err, fsm.ErrWrongState) {
		if j, ok := n.fsm.Get(req.JobId); ok && j.State == fsm.StateSucceeded && j.LeaseToken == req.LeaseToken {
			return nil
		}
	}
	return apierr.FromError(it.Err)
}

// nackOutcome is the answer to one nack whose command ran. A nack retried
// after an indeterminate answer finds its lease already ended by its own
// first try (same token, no longer leased). The lease is over either way
// and nobody else holds the job under this token: answer with the job's
// state, like Ack.
func (n *Node) nackOutcome(req *raftqv1.NackRequest, it fsm.ItemResult) (*raftqv1.NackResponse, error) {
	if it.Err != nil {
		j, ok := n.fsm.Get(req.JobId)
		if !ok || j.LeaseToken != req.LeaseToken || j.State == fsm.StateLeased ||
			!(errors.Is(it.Err, fsm.ErrStaleToken) || errors.Is(it.Err, fsm.ErrWrongState)) {
			return nil, apierr.FromError(it.Err)
		}
		it.Job = &j
	}
	out := &raftqv1.NackResponse{State: raftqv1.JobState(it.Job.State)}
	if it.Job.State == fsm.StateScheduled || it.Job.State == fsm.StateReady {
		out.RunAt = timestamppb.New(time.Unix(0, it.Job.RunAt))
	}
	return out, nil
}

// extendOutcome is the answer to one lease extension whose command ran.
func extendOutcome(it fsm.ItemResult) (*raftqv1.ExtendLeaseResponse, error) {
	if it.Err != nil {
		return nil, apierr.FromError(it.Err)
	}
	return &raftqv1.ExtendLeaseResponse{
		LeaseDeadline:   timestamppb.New(time.Unix(0, it.Job.LeaseDeadline)),
		CancelRequested: it.Job.CancelRequested,
	}, nil
}

func ackCommand(refs []*fsmpb.LeaseRef) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_ACK, Body: &fsmpb.Command_Ack{Ack: &fsmpb.Ack{Items: refs}}}
}

func nackCommand(items []*fsmpb.NackItem) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_NACK, Body: &fsmpb.Command_Nack{Nack: &fsmpb.Nack{Items: items}}}
}

func extendCommand(refs []*fsmpb.LeaseRef) *fsmpb.Command {
	return &fsmpb.Command{
		Type: fsmpb.CommandType_COMMAND_TYPE_EXTEND_LEASE,
		Body: &fsmpb.Command_ExtendLease{ExtendLease: &fsmpb.ExtendLease{Items: refs}},
	}
}

// AckBatch acks many jobs in one Raft entry, answering each on its own.
func (s *brokerService) AckBatch(ctx context.Context, req *raftqv1.AckBatchRequest) (*raftqv1.AckBatchResponse, error) {
	n := s.n
	if !n.isLeader() {
		return forward(ctx, n, func(ctx context.Context, c *grpc.ClientConn) (*raftqv1.AckBatchResponse, error) {
			return raftqv1.NewBrokerClient(c).AckBatch(ctx, req)
		})
	}
	res, errs, err := settleBatch(ctx, n, raftqv1.Broker_AckBatch_FullMethodName, req.Items, func(r *raftqv1.AckRequest) (string, *fsmpb.LeaseRef, error) {
		ref, err := validateAck(r)
		return r.GetJobId(), ref, err
	}, ackCommand)
	if err != nil {
		return nil, err
	}
	out := &raftqv1.AckBatchResponse{Results: make([]*raftqv1.AckBatchResult, len(res))}
	for i, r := range req.Items {
		if errs[i] == nil {
			errs[i] = n.ackOutcome(r, res[i])
		}
		out.Results[i] = &raftqv1.AckBatchResult{Error: itemError(errs[i])}
	}
	return out, nil
}

// NackBatch nacks many jobs in one Raft entry, answering each on its own.
func (s *brokerService) NackBatch(ctx context.Context, req *raftqv1.NackBatchRequest) (*raftqv1.NackBatchResponse, error) {
	n := s.n
	if !n.isLeader() {
		return forward(ctx, n, func(ctx context.Context, c *grpc.ClientConn) (*raftqv1.NackBatchResponse, error) {
			return raftqv1.NewBrokerClient(c).NackBatch(ctx, req)
		})
	}
	res, errs, err := settleBatch(ctx, n, raftqv1.Broker_NackBatch_FullMethodName, req.Items, func(r *raftqv1.NackRequest) (string, *fsmpb.NackItem, error) {
		item, err := validateNack(n.cfg.Limits, r)
		return r.GetJobId(), item, err
	}, nackCommand)
	if err != nil {
		return nil, err
	}
	out := &raftqv1.NackBatchResponse{Results: make([]*raftqv1.NackBatchResult, len(res))}
	for i, r := range req.Items {
		var resp *raftqv1.NackResponse
		if errs[i] == nil {
			resp, errs[i] = n.nackOutcome(r, res[i])
		}
		out.Results[i] = &raftqv1.NackBatchResult{Response: resp, Error: itemError(errs[i])}
	}
	return out, nil
}

// ExtendLeaseBatch extends many leases in one Raft entry, answering each
// on its own.
func (s *brokerService) ExtendLeaseBatch(ctx context.Context, req *raftqv1.ExtendLeaseBatchRequest) (*raftqv1.ExtendLeaseBatchResponse, error) {
	n := s.n
	if !n.isLeader() {
		return forward(ctx, n, func(ctx context.Context, c *grpc.ClientConn) (*raftqv1.ExtendLeaseBatchResponse, error) {
			return raftqv1.NewBrokerClient(c).ExtendLeaseBatch(ctx, req)
		})
	}
	res, errs, err := settleBatch(ctx, n, raftqv1.Broker_ExtendLeaseBatch_FullMethodName, req.Items, func(r *raftqv1.ExtendLeaseRequest) (string, *fsmpb.LeaseRef, error) {
		ref, err := validateExtend(n.cfg.Limits, r)
		return r.GetJobId(), ref, err
	}, extendCommand)
	if err != nil {
		return nil, err
	}
	out := &raftqv1.ExtendLeaseBatchResponse{Results: make([]*raftqv1.ExtendLeaseBatchResult, len(res))}
	for i := range req.Items {
		var resp *raftqv1.ExtendLeaseResponse
		if errs[i] == nil {
			resp, errs[i] = extendOutcome(res[i])
		}
		out.Results[i] = &raftqv1.ExtendLeaseBatchResult{Response: resp, Error: itemError(errs[i])}
	}
	return out, nil
}
