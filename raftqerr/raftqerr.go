// Package raftqerr is raftq's error contract on the wire, shared by the
// brokers that write it and the SDKs (client, worker, results) that read
// it. Every non-OK status a broker returns carries a raftq.v1.ErrorDetail:
// its Reason tells a definite refusal (NOT_FOUND, WRONG_STATE, ...) from an
// INDETERMINATE outcome (the call may or may not have taken effect, so only
// an idempotent retry is safe), and a NOT_LEADER answer names the leader so
// a client goes straight there.
//
// The package imports only gRPC and the API types: an SDK that uses it
// links no server code (no Raft, no FSM, no storage). The server-side
// mapping of internal errors to these statuses lives in internal/apierr.
package raftqerr

import (
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// New builds a status error of code with an ErrorDetail of reason.
func New(code codes.Code, reason raftqv1.ErrorDetail_Reason, msg string) error {
	return withDetail(status.New(code, msg), &raftqv1.ErrorDetail{Reason: reason})
}

// NotLeader builds the not-leader answer (UNAVAILABLE, reason NOT_LEADER)
// with the leader's id and address when they are known, so clients go
// straight there. Definite: nothing happened.
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

// NotLeaderOfGroup is NotLeader for Raft group g of a cluster of several:
// the leader named leads that group (other groups may have other leaders).
func NotLeaderOfGroup(g uint32, leaderID, leaderAddr string) error {
	msg := "group " + strconv.FormatUint(uint64(g), 10) + ": not the leader"
	if leaderAddr != "" {
		msg += "; leader is " + leaderID + " at " + leaderAddr
	} else {
		msg += "; no leader known"
	}
	return withDetail(status.New(codes.Unavailable, msg), &raftqv1.ErrorDetail{
		Reason: raftqv1.ErrorDetail_NOT_LEADER, LeaderId: leaderID, LeaderAddr: leaderAddr, Group: g,
	})
}

// QueueMoved is the answer to a new job sent to a Raft group its queue
// moved away from (FAILED_PRECONDITION, reason QUEUE_MOVED, group: where
// the queue takes new jobs now). Definite: nothing was written. Brokers
// route such jobs on themselves; only a caller that named the old group
// in the raftq-group header sees it.
func QueueMoved(msg string, g uint32) error {
	return withDetail(status.New(codes.FailedPrecondition, msg), &raftqv1.ErrorDetail{
		Reason: raftqv1.ErrorDetail_QUEUE_MOVED, Group: g,
	})
}

// IsQueueMoved reports whether err is a QueueMoved answer, and the group
// it names.
func IsQueueMoved(err error) (uint32, bool) {
	d := Detail(err)
	return d.GetGroup(), d.GetReason() == raftqv1.ErrorDetail_QUEUE_MOVED
}

func withDetail(st *status.Status, d ...protoadapt.MessageV1) error {
	if ds, err := st.WithDetails(d...); err == nil {
		return ds.Err()
	}
	return st.Err()
}

// JobResourceType is the google.rpc.ResourceInfo resource_type of the
// existing job an ALREADY_EXISTS answer names.
const JobResourceType = "raftq.v1.Job"

// UniqueConflict builds the refusal of an enqueue whose unique key is held
// by a job that is not terminal (UNIQUE_MODE_REJECT): ALREADY_EXISTS with
// the ErrorDetail and a google.rpc.ResourceInfo naming that job's id
// (ExistingJobID reads it). Definite: nothing was enqueued.
func UniqueConflict(msg, jobID string) error {
	return withDetail(status.New(codes.AlreadyExists, msg),
		&raftqv1.ErrorDetail{Reason: raftqv1.ErrorDetail_INVALID_ARGUMENT},
		&errdetails.ResourceInfo{ResourceType: JobResourceType, ResourceName: jobID, Description: "holds the unique key"})
}

// ExistingJobID is the id of the job an ALREADY_EXISTS answer names (a
// unique key's holder), "" when err names none. It reads the ResourceInfo
// detail, or, for an answer that carries only the ErrorDetail (an
// EnqueueStream item's ItemError, as EnqueueOne returns it), the id the
// broker's message ends with ("... is held by job ID").
func ExistingJobID(err error) string {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.AlreadyExists {
		return ""
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.ResourceInfo); ok && ri.GetResourceType() == JobResourceType {
			return ri.GetResourceName()
		}
	}
	if i := strings.LastIndex(st.Message(), heldByJob); i >= 0 {
		id, _, _ := strings.Cut(st.Message()[i+len(heldByJob):], " ")
		return id
	}
	return ""
}

// heldByJob precedes the holder's id in a unique-key refusal's message
// (fsm.UniqueConflictError).
const heldByJob = " is held by job "

// Detail extracts the ErrorDetail of a status error; nil when err is not a
// status or carries none (a transport error, or an answer from something
// other than a broker).
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

// Reason returns the ErrorDetail reason of err, or REASON_UNSPECIFIED.
func Reason(err error) raftqv1.ErrorDetail_Reason {
	return Detail(err).GetReason()
}

// IsIndeterminate reports whether err means the call may or may not have
// taken effect: retry it only with what makes it idempotent (the same
// idempotency key, the same lease token, the same job id).
func IsIndeterminate(err error) bool {
	return Reason(err) == raftqv1.ErrorDetail_INDETERMINATE
}

// LeaderHint returns the leader a NOT_LEADER answer names: its node id and
// gRPC address, both empty when err names none.
func LeaderHint(err error) (id, addr string) {
	d := Detail(err)
	if d.GetReason() != raftqv1.ErrorDetail_NOT_LEADER {
		return "", ""
	}
	return d.GetLeaderId(), d.GetLeaderAddr()
}
