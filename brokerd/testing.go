package brokerd

import (
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
)

// Testing holds the hooks tests and the jepsen harness use to change a
// node from inside: crash points, a wrapper around the FSM as Raft sees
// it, the clock, extra gRPC interceptors (the seeded bugs) and a shorter
// leadership set-up bound. Config.Testing is nil in production; the
// jepsen build of cmd/brokerd fills it from its environment
// (cmd/brokerd/testhooks_jepsen.go), and tests fill it directly. Each
// node has its own, so hooks apply per node, not per process.
type Testing struct {
	// CrashPoint, when set, is called as the node passes each crash point
	// (it may kill the process there: the jepsen build does).
	CrashPoint func(CrashPoint)
	// WrapFSM, when set, wraps the FSM Raft applies to and snapshots.
	// A wrapper that can block Apply should also have a
	// StopWaitingForSpace method that releases it (shutdown calls it, as
	// it does the FSM's own, see fsm.FSM.StopWaitingForSpace).
	WrapFSM func(raft.FSM) raft.FSM
	// Clock, when set, is the node's clock (default time.Now): lease
	// deadlines, stamps and timers move with it; Raft's own timers do not.
	Clock func() time.Time
	// UnaryInterceptors run innermost, after metrics, auth and the
	// deadline cap, around every unary call's handler.
	UnaryInterceptors []grpc.UnaryServerInterceptor
	// EstablishTimeout, when positive, replaces DefaultEstablishTimeout
	// (how long a new leader's Barrier may take before it steps down).
	EstablishTimeout time.Duration
	// MoveLeft, when set, replaces the count of a moving queue's jobs left
	// in the group it leaves, which keeps the move from finishing while
	// above 0 (movequeue.go). The jepsen seeded bug move-skip-drain
	// answers 0: the move finishes with jobs still there, which then no
	// worker is sent to, and the queue checker must find them lost.
	MoveLeft func(queue string, left int64) int64
}

// moveLeft is what the move of queue counts as left in its old group:
// left, unless Testing.MoveLeft changes it.
func (n *Node) moveLeft(queue string, left int64) int64 {
	if t := n.cfg.Testing; t != nil && t.MoveLeft != nil {
		return t.MoveLeft(queue, left)
	}
	return left
}

// CrashPoint names a place in the node where a test may crash it.
type CrashPoint string

// The crash points (the jepsen harness arms them by these names).
const (
	// CrashCommitBeforeReply: a write committed and applied, its answer
	// not yet sent.
	CrashCommitBeforeReply CrashPoint = "commit-before-reply"
	// CrashLeaseBeforeReply: jobs leased (committed), the Fetch or
	// Consume answer not yet sent.
	CrashLeaseBeforeReply CrashPoint = "lease-before-reply"
	// CrashBeforeApply and CrashAfterApply: around an FSM Apply (fired by
	// the jepsen build's FSM wrapper).
	CrashBeforeApply CrashPoint = "before-apply"
	CrashAfterApply  CrashPoint = "after-apply"
	// CrashSnapshotPersist: a snapshot half written (fired by the jepsen
	// build's FSM wrapper).
	CrashSnapshotPersist CrashPoint = "snapshot-persist"
)

// crash passes crash point p (nothing without a Testing.CrashPoint).
func (n *Node) crash(p CrashPoint) {
	if t := n.cfg.Testing; t != nil && t.CrashPoint != nil {
		t.CrashPoint(p)
	}
}

// raftFSM is the FSM as Raft sees it: the node's own, or Testing's
// wrapper around it.
func (n *Node) raftFSM() raft.FSM {
	if t := n.cfg.Testing; t != nil && t.WrapFSM != nil {
		return t.WrapFSM(n.fsm)
	}
	return n.fsm
}

// testingInterceptors are Testing's extra interceptors (none in
// production).
func (n *Node) testingInterceptors() []grpc.ServerOption {
	if t := n.cfg.Testing; t != nil && len(t.UnaryInterceptors) > 0 {
		return []grpc.ServerOption{grpc.ChainUnaryInterceptor(t.UnaryInterceptors...)}
	}
	return nil
}
