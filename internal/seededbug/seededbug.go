// Package seededbug holds the jepsen harness's seeded bugs: broker
// misbehaviour that its checkers must catch, so that CI can show they
// fail when the broker is broken (make jepsen-bug; jepsen/DESIGN.md lists
// them). Most bugs are gRPC unary interceptors that a node runs innermost
// (brokerd.Testing.UnaryInterceptors): nothing in the broker's handlers
// knows about them. A bug in what the broker does on its own, with no
// call to intercept (a queue move's steps), is a brokerd.Testing hook
// instead (Hooks). Only the jepsen,jepsenbug build of cmd/brokerd links
// this package (cmd/brokerd/bugs_jepsen.go), by RAFTQ_JEPSEN_BUG.
package seededbug

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"

	"github.com/raftq/raftq/fsm"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// The seeded bugs, by the names RAFTQ_JEPSEN_BUG and jepsen --bug use.
const (
	// StaleAck: Ack swaps a stale token for the current lease's (the
	// fencing checker must catch it).
	StaleAck = "stale-ack"
	// EarlyEnqueueAck: Enqueue answers OK before anything is committed
	// (the queue checker must catch it).
	EarlyEnqueueAck = "early-enqueue-ack"
	// WorkflowIgnoreDeps: Enqueue drops every job's parents, so a
	// workflow's children run at once (the workflow checker must catch
	// it).
	WorkflowIgnoreDeps = "workflow-ignore-deps"
	// MoveSkipDrain: a queue move finishes without waiting for the group
	// it leaves to hold none of the queue's jobs; the jobs still there are
	// never fetched again (the queue checker must find them lost). A
	// brokerd.Testing.MoveLeft hook (Hooks), not an interceptor.
	MoveSkipDrain = "move-skip-drain"
)

// Known lists every seeded bug's name.
var Known = []string{StaleAck, EarlyEnqueueAck, WorkflowIgnoreDeps, MoveSkipDrain}

// Hooks are the seeded bugs that are brokerd.Testing hooks rather than
// interceptors; a nil field is a bug not asked for.
type Hooks struct {
	// MoveLeft is brokerd.Testing.MoveLeft.
	MoveLeft func(queue string, left int64) int64
}

// HooksFor returns the hooks of the comma-separated bug names in list
// (Interceptors checks the names).
func HooksFor(list string) Hooks {
	var h Hooks
	for _, b := range strings.Split(list, ",") {
		if strings.TrimSpace(b) == MoveSkipDrain {
			h.MoveLeft = func(string, int64) int64 { return 0 }
		}
	}
	return h
}

// EarlyAckDelay is how long EarlyEnqueueAck waits before it runs the
// Enqueue it has already answered.
const EarlyAckDelay = 300 * time.Millisecond

// Interceptors returns the interceptors for the comma-separated bug
// names in list; fsmOf returns the node's FSM (read by StaleAck; it is
// called per request, so it may be bound after the node opened). An
// unknown name is an error.
func Interceptors(list string, fsmOf func() *fsm.FSM) ([]grpc.UnaryServerInterceptor, error) {
	var out []grpc.UnaryServerInterceptor
	for _, b := range strings.Split(list, ",") {
		switch b = strings.TrimSpace(b); b {
		case "":
		case StaleAck:
			out = append(out, StaleAckInterceptor(fsmOf))
		case EarlyEnqueueAck:
			out = append(out, EarlyEnqueueAckInterceptor())
		case WorkflowIgnoreDeps:
			out = append(out, WorkflowIgnoreDepsInterceptor())
		case MoveSkipDrain: // a hook (HooksFor), no interceptor
		default:
			return nil, fmt.Errorf("seeded bug %q: unknown (known: %s)", b, strings.Join(Known, ", "))
		}
	}
	return out, nil
}

// StaleAckInterceptor accepts an ack with a stale token while another
// worker holds the job's newer lease, by swapping in the current token
// before the handler proposes it (the "lease released without checking
// it was still valid" bug), for Ack and each item of AckBatch.
func StaleAckInterceptor(fsmOf func() *fsm.FSM) grpc.UnaryServerInterceptor {
	swap := func(id string, token uint64) uint64 {
		f := fsmOf()
		if f == nil {
			return token
		}
		if j, ok := f.Get(id); ok && j.State == fsm.StateLeased && j.LeaseToken != token {
			return j.LeaseToken
		}
		return token
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		switch r := req.(type) {
		case *raftqv1.AckRequest:
			r.LeaseToken = swap(r.JobId, r.LeaseToken)
		case *raftqv1.AckBatchRequest:
			for _, it := range r.Items {
				if it != nil {
					it.LeaseToken = swap(it.JobId, it.LeaseToken)
				}
			}
		}
		return handler(ctx, req)
	}
}

// EarlyEnqueueAckInterceptor answers an Enqueue OK at once, with job ids
// of its own, and runs the real Enqueue EarlyAckDelay later in the
// background (the "ack before fsync" bug): jobs in flight when the leader
// dies or steps down are lost although their producers were told OK. The
// jobs that do get created carry the ids the node gives them, not the
// answered ones; the queue checker follows jobs by payload value, so it
// reports exactly the lost ones.
func EarlyEnqueueAckInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		r, ok := req.(*raftqv1.EnqueueRequest)
		if !ok || info.FullMethod != raftqv1.Broker_Enqueue_FullMethodName {
			return handler(ctx, req)
		}
		out := &raftqv1.EnqueueResponse{Results: make([]*raftqv1.EnqueueResult, len(r.Jobs))}
		for i := range r.Jobs {
			id, err := uuid.NewV7()
			if err != nil {
				return handler(ctx, req)
			}
			out.Results[i] = &raftqv1.EnqueueResult{JobId: id.String()}
		}
		bg := context.WithoutCancel(ctx) // the caller's identity, not its deadline
		go func() {
			time.Sleep(EarlyAckDelay)
			cctx, cancel := context.WithTimeout(bg, 10*time.Second)
			defer cancel()
			_, _ = handler(cctx, req)
		}()
		return out, nil
	}
}

// WorkflowIgnoreDepsInterceptor drops the parents (depends_on and
// depends_on_names) of every job of an Enqueue before the handler sees
// them (the "dependencies not enforced" bug): a workflow's jobs are all
// ready at once, children running before their parents succeeded, or
// after they failed. The workflow checker must catch it.
func WorkflowIgnoreDepsInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if r, ok := req.(*raftqv1.EnqueueRequest); ok && info.FullMethod == raftqv1.Broker_Enqueue_FullMethodName {
			for _, j := range r.Jobs {
				if j != nil {
					j.DependsOn, j.DependsOnNames = nil, nil
				}
			}
		}
		return handler(ctx, req)
	}
}
