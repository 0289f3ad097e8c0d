// Package apierr is the one place where raftq errors become gRPC statuses
// and back. Every non-OK status raftq returns carries a raftq.v1.ErrorDetail
// so clients can tell a definite refusal from an indeterminate outcome and
// find the leader without parsing messages.
package apierr

import (
	"context"
	"errors"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftq/raftq/fsm"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// Sentinel errors of the broker layer, above the FSM's own.
var (
	// ErrNotLeader means this node cannot serve the call because it does not
	// lead the cluster. Definite: nothing happened.
	ErrNotLeader = errors.New("not the leader")
	// ErrIndeterminate means a write may or may not have been committed.
	ErrIndeterminate = errors.New("outcome indeterminate: leadership lost while the write was in flight")
	// ErrInvalid is a request that fails validation.
	ErrInvalid = errors.New("invalid request")
	// ErrTooLarge is a request over a size limit.
	ErrTooLarge = errors.New("request too large")
)

// New builds a status with an ErrorDetail attached.
func New(code codes.Code, reason raftqv1.ErrorDetail_Reason, msg string) error {
	return withDetail(status.New(code, msg), &raftqv1.ErrorDetail{Reason: reason})
}

// NotLeader builds the not-leader status with the leader's address when it
// is known, so clients go straight there.
func NotLeader(leaderID, leaderAddr string) error {
	msg := "not the leader"
	if leaderAddr != "" {
		msg += "; leader is " + leaderID + " at " + leaderAddr
	} else {
		msg += "; no leader known"
	}
	return withDetail(status.New(codes.Unavailable, msg), &raftqv1.ErrorDetail{
		Reason: raftqv1.ErrorDetail_NOT_LEADER, LeaderId: leaderID, LeaderAddr: leaderAddr,
	})
}

func withDetail(st *status.Status, d *raftqv1.ErrorDetail) error {
	if ds, err := st.WithDetails(d); err == nil {
		return ds.Err()
	}
	return st.Err()
}

// FromError maps an internal error (FSM sentinels, raft errors, context
// errors) to a gRPC status error with details. Errors that already are
// statuses pass through unchanged.
func FromError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	msg := err.Error()
	switch {
	case errors.Is(err, fsm.ErrNotFound):
		return New(codes.NotFound, raftqv1.ErrorDetail_NOT_FOUND, msg)
	case errors.Is(err, fsm.ErrStaleToken):
		return New(codes.FailedPrecondition, raftqv1.ErrorDetail_STALE_TOKEN, msg)
	case errors.Is(err, fsm.ErrWrongState), errors.Is(err, fsm.ErrQueuePaused):
		return New(codes.FailedPrecondition, raftqv1.ErrorDetail_WRONG_STATE, msg)
	case errors.Is(err, fsm.ErrDuplicateID):
		return New(codes.AlreadyExists, raftqv1.ErrorDetail_INVALID_ARGUMENT, msg)
	case errors.Is(err, ErrInvalid), errors.Is(err, fsm.ErrInvalid):
		return New(codes.InvalidArgument, raftqv1.ErrorDetail_INVALID_ARGUMENT, msg)
	case errors.Is(err, ErrTooLarge):
		return New(codes.ResourceExhausted, raftqv1.ErrorDetail_TOO_LARGE, msg)
	case errors.Is(err, ErrIndeterminate):
		return New(codes.Unavailable, raftqv1.ErrorDetail_INDETERMINATE, msg)
	case errors.Is(err, ErrNotLeader), errors.Is(err, raft.ErrNotLeader),
		errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrNotVoter):
		return NotLeader("", "")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, msg)
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, msg)
	}
	return status.Error(codes.Internal, msg)
}

// RaftApplyError classifies an error from a raft ApplyFuture: the ones that
// guarantee the entry was never appended are definite (ErrNotLeader); all
// others may have been committed and are indeterminate.
func RaftApplyError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress),
		errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, raft.ErrNotVoter):
		return ErrNotLeader
	}
	// ErrLeadershipLost, ErrRaftShutdown and anything unexpected: the entry
	// may be in the log and may still commit.
	return errors.Join(ErrIndeterminate, err)
}

// Detail extracts the ErrorDetail of a status error; nil when there is none.
func Detail(err error) *raftqv1.ErrorDetail {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, d := range st.Details() {
		if ed, ok := d.(*raftqv1.ErrorDetail); ok {
			return ed
		}
	}
	return nil
}

// Reason returns the ErrorDetail reason of a status error, or
// REASON_UNSPECIFIED.
func Reason(err error) raftqv1.ErrorDetail_Reason {
	if d := Detail(err); d != nil {
		return d.Reason
	}
	return raftqv1.ErrorDetail_REASON_UNSPECIFIED
}
