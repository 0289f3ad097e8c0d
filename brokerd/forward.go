package brokerd

import (
	"context"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/raftq/raftq/internal/apierr"
	"github.com/raftq/raftq/internal/auth"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// forwardedKey marks a call a follower forwarded, so the receiver never
// forwards it again (no loops while leadership moves).
const forwardedKey = "raftq-forwarded"

// LeaderHeader is the response header a follower sets on a call it
// forwarded: the leader's gRPC address. Clients switch to it.
const LeaderHeader = "raftq-leader-addr"

// forwarder sends calls that need the leader to the leader, over cached
// client connections keyed by address.
type forwarder struct {
	n     *Node
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func newForwarder(n *Node) *forwarder {
	return &forwarder{n: n, conns: map[string]*grpc.ClientConn{}}
}

func (f *forwarder) conn(addr string) (*grpc.ClientConn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.conns[addr]; ok {
		return c, nil
	}
	// TLS with this node's certificate when TLS is on: the leader knows
	// the call comes from a node (and whose caller it carries).
	c, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(f.n.peerCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		return nil, err
	}
	f.conns[addr] = c
	return c, nil
}

func (f *forwarder) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for a, c := range f.conns {
		_ = c.Close()
		delete(f.conns, a)
	}
}

func wasForwarded(ctx context.Context) bool {
	md, ok := metadata.FromIncomingContext(ctx)
	return ok && len(md.Get(forwardedKey)) > 0
}

// forward runs a write against the leader's connection, or explains why
// it cannot (see forwardRead). A leader answer without an ErrorDetail (a
// lost connection, a deadline) may have followed a commit, so the caller
// gets INDETERMINATE rather than a bare status it might take as definite
// (G6).
func forward[T any](ctx context.Context, n *Node, call func(context.Context, *grpc.ClientConn) (T, error)) (T, error) {
	out, err := forwardRead(ctx, n, call)
	return out, apierr.ForwardedWrite(err)
}

// forwardRead runs call against the leader's connection, or explains why
// it cannot: NOT_LEADER with the leader's address (when forwarding is off,
// the call was already forwarded once, or the leader's address is
// unknown). The leader's answer passes through as it is: a read changes
// nothing, so whatever went wrong, it is safe to retry.
func forwardRead[T any](ctx context.Context, n *Node, call func(context.Context, *grpc.ClientConn) (T, error)) (T, error) {
	var zero T
	id, addr := n.leader()
	if addr == "" || addr == n.cfg.GRPCAdvertise || !n.cfg.Forward || wasForwarded(ctx) {
		if addr == n.cfg.GRPCAdvertise {
			// Raft still names us but we are not (or no longer) leading.
			return zero, apierr.NotLeader("", "")
		}
		return zero, apierr.NotLeader(id, addr)
	}
	c, err := n.fwd.conn(addr)
	if err != nil {
		return zero, apierr.NotLeader(id, addr)
	}
	// Tell the client who leads, so its next call skips this hop.
	_ = grpc.SetHeader(ctx, metadata.Pairs(LeaderHeader, addr))
	// The leader authorizes the original caller, not this node: pass its
	// token on.
	ctx = auth.ForwardContext(ctx)
	ctx = metadata.AppendToOutgoingContext(ctx, forwardedKey, n.cfg.NodeID)
	return call(ctx, c)
}

// join forwards a Join to the leader.
func (f *forwarder) join(ctx context.Context, req *raftqv1.JoinRequest) (*raftqv1.JoinResponse, error) {
	return forward(ctx, f.n, func(ctx context.Context, c *grpc.ClientConn) (*raftqv1.JoinResponse, error) {
		return raftqv1.NewClusterClient(c).Join(ctx, req)
	})
}

// joinVia sends a Join to a given member, which forwards it to its leader.
func (f *forwarder) joinVia(ctx context.Context, addr string, req *raftqv1.JoinRequest) error {
	c, err := f.conn(addr)
	if err != nil {
		return err
	}
	_, err = raftqv1.NewClusterClient(c).Join(ctx, req)
	return err
}
