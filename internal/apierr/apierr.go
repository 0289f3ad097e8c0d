// Package apierr is the server side of raftq's error contract: the one
// place where internal errors (FSM sentinels, Raft and context errors)
// become gRPC statuses. Every non-OK status a broker returns carries a
// raftq.v1.ErrorDetail so clients can tell a definite refusal from an
// indeterminate outcome and find the leader without parsing messages; the
// detail itself, and how clients read it, is the public package raftqerr,
// which links none of the server code this package needs. Together they
// are guarantee G6 (README): every error is definite or INDETERMINATE.
package apierr

import (
	"context"
	"errors"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftq/raftq/fsm"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/raftqerr"
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
	// ErrDiskFull is a write refused because the node cannot write to its
	// data dir (free space below its reserve, or ENOSPC/EDQUOT from its
	// Raft log or FSM store). Definite: nothing was proposed. The error
	// wrapping it names the node and the path; a leader in that state
	// hands leadership to a peer that can write, so a retry soon after may
	// succeed.
	ErrDiskFull = errors.New("disk full")
)

// New builds a status with an ErrorDetail attached (raftqerr.New; here
// too so server code builds and maps statuses through one package).
func New(code codes.Code, reason raftqv1.ErrorDetail_Reason, msg string) error {
	return raftqerr.New(code, reason, msg)
}

// NotLeader builds the not-leader status with the leader's address when it
// is known, so clients go straight there (raftqerr.NotLeader).
func NotLeader(leaderID, leaderAddr string) error { return raftqerr.NotLeader(leaderID, leaderAddr) }

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
	case errors.Is(err, fsm.ErrUniqueConflict):
		var ue *fsm.UniqueConflictError
		id := ""
		if errors.As(err, &ue) {
			id = ue.JobID
		}
		return raftqerr.UniqueConflict(msg, id)
	case errors.Is(err, fsm.ErrQueueMoved):
		var me *fsm.MovedError
		var to uint32
		if errors.As(err, &me) {
			to = me.To
		}
		return raftqerr.QueueMoved(msg, to)
	case errors.Is(err, fsm.ErrDuplicateID):
		return New(codes.AlreadyExists, raftqv1.ErrorDetail_INVALID_ARGUMENT, msg)
	case errors.Is(err, ErrInvalid), errors.Is(err, fsm.ErrInvalid):
		return New(codes.InvalidArgument, raftqv1.ErrorDetail_INVALID_ARGUMENT, msg)
	case errors.Is(err, ErrTooLarge):
		return New(codes.ResourceExhausted, raftqv1.ErrorDetail_TOO_LARGE, msg)
	case errors.Is(err, ErrDiskFull):
		// No reason of its own in ErrorDetail (that would be a new enum
		// value); the detail still marks it as the broker's definite answer.
		return New(codes.ResourceExhausted, raftqv1.ErrorDetail_REASON_UNSPECIFIED, msg)
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

// ForwardedWrite classifies a leader's answer to a write a follower
// forwarded. An answer with an ErrorDetail is the leader's own, definite or
// not, and passes through. So does a bare refusal whose code says the
// leader turned the call away before running it (authentication, limits,
// a malformed call). Anything else without a detail — UNAVAILABLE,
// DEADLINE_EXCEEDED, CANCELED, INTERNAL, a broken connection — may have
// come after the leader committed the write, so the caller learns it as
// INDETERMINATE and retries only what is safe to retry.
func ForwardedWrite(err error) error {
	if err == nil || raftqerr.Detail(err) != nil {
		return err
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.PermissionDenied,
			codes.ResourceExhausted, codes.FailedPrecondition, codes.OutOfRange,
			codes.Unimplemented, codes.Unauthenticated:
			return err
		}
	}
	return New(codes.Unavailable, raftqv1.ErrorDetail_INDETERMINATE,
		"outcome indeterminate: the leader's answer to the forwarded write was lost: "+status.Convert(err).Message())
}
