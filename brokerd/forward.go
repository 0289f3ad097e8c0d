package brokerd

import (
	"context"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"

	"github.com/raftq/raftq/internal/apierr"
	"github.com/raftq/raftq/internal/auth"
	"github.com/raftq/raftq/internal/tracectx"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// forwardedKey marks a call a follower forwarded, so the receiver never
// forwards it again (no loops while leadership moves).
const forwardedKey = "raftq-forwarded"

// LeaderHeader is the response header a follower sets on a call it
// forwarded: the leader's gRPC address. Clients switch to it.
const LeaderHeader = "raftq-leader-addr"

// GroupLeaderHeader is LeaderHeader for a cluster of several groups:
// "<group>=<address>", the leader of the forwarded call's group. Clients
// send that group's calls there (client/routes.go).
const GroupLeaderHeader = "raftq-group-leader"

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
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(f.n.PeerCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)),
	}
	// With several groups every node serves them all on one port: each
	// call a group's node makes to a peer (forwarding, announce, status
	// and disk polls) names its group, so the peer's router hands it to
	// the same group (host.go).
	if f.n.cfg.Groups > 1 {
		g := strconv.FormatUint(uint64(f.n.cfg.group), 10)
		opts = append(opts,
			grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, o ...grpc.CallOption) error {
				return invoker(withGroup(ctx, g), method, req, reply, cc, o...)
			}),
			grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, o ...grpc.CallOption) (grpc.ClientStream, error) {
				return streamer(withGroup(ctx, g), desc, cc, method, o...)
			}))
	}
	c, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, err
	}
	f.conns[addr] = c
	return c, nil
}

// reachable reports whether c is connected, or connects within a short
// bound: on loopback or a LAN a refused or reset connection shows within
// milliseconds, and a leader that takes longer to accept a connection is
// treated as gone (the caller then waits for a new leader, or forwards
// anyway once the wait ends).
func (f *forwarder) reachable(ctx context.Context, c *grpc.ClientConn) bool {
	st := c.GetState()
	if st == connectivity.Ready {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	c.Connect()
	for {
		st = c.GetState()
		switch st {
		case connectivity.Ready:
			return true
		case connectivity.TransientFailure, connectivity.Shutdown:
			return false
		}
		if !c.WaitForStateChange(ctx, st) {
			return false
		}
	}
}

func (f *forwarder) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for a, c := range f.conns {
		_ = c.Close()
		delete(f.conns, a)
	}
}

// crossGroup is ctx for a call a handler makes to another group on its
// caller's behalf (a move's step reading the old group): a new call, which
// that group's stand-in may forward once (replicas.go), though the
// handler's own call was forwarded to this node.
func crossGroup(ctx context.Context) context.Context {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok || len(md.Get(forwardedKey)) == 0 {
		return ctx
	}
	md = md.Copy()
	md.Delete(forwardedKey)
	return metadata.NewIncomingContext(ctx, md)
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
	// Config.Forward governs clients' calls; a node's own calls to its
	// leader (announce, join) go there whatever it says, or a cluster with
	// forwarding off would never learn its followers' addresses.
	fwd := n.cfg.Forward || ownCall(ctx)
	if fwd && !wasForwarded(ctx) && (addr == "" || n.leaderSuspect()) {
		id, addr = n.awaitLeader(ctx, id, false)
	}
	if addr == "" || addr == n.cfg.GRPCAdvertise || !fwd || wasForwarded(ctx) {
		if addr == n.cfg.GRPCAdvertise {
			// Raft still names us but we are not (or no longer) leading.
			return zero, n.notLeader("", "")
		}
		return zero, n.notLeader(id, addr)
	}
	c, err := n.fwd.conn(addr)
	if err != nil {
		return zero, n.notLeader(id, addr)
	}
	if !n.fwd.reachable(ctx, c) {
		// The leader this node knows cannot be reached (it died a moment
		// ago and the heartbeats have not been missed yet, or it is cut
		// off). Nothing was sent, so waiting for the next leader and
		// forwarding there is safe.
		if nid, naddr := n.awaitLeader(ctx, id, true); naddr != "" && naddr != addr && naddr != n.cfg.GRPCAdvertise {
			if nc, err := n.fwd.conn(naddr); err == nil {
				id, addr, c = nid, naddr, nc
			}
		} else if naddr == n.cfg.GRPCAdvertise {
			return zero, n.notLeader(nid, naddr)
		}
	}
	// Tell the client who leads, so its next call skips this hop. Not
	// with several groups: that node leads this call's group only, and a
	// client that moved all its calls there would bounce between leaders.
	if !n.multi() {
		_ = grpc.SetHeader(ctx, metadata.Pairs(LeaderHeader, addr))
	} else {
		_ = grpc.SetHeader(ctx, metadata.Pairs(GroupLeaderHeader, strconv.FormatUint(uint64(n.cfg.group), 10)+"="+addr))
	}
	return call(forwardContext(ctx, n), c)
}

// forwardContext is ctx as a call forwarded to a leader carries it. The
// leader authorizes the original caller, not this node: its token is
// passed on; and its trace context, so the leader's spans join the
// caller's trace. The mark stops the leader forwarding it again.
func forwardContext(ctx context.Context, n *Node) context.Context {
	ctx = auth.ForwardContext(ctx)
	ctx = metadata.AppendToOutgoingContext(ctx, forwardedKey, n.cfg.NodeID)
	return tracectx.Outgoing(tracectx.Incoming(ctx))
}

// awaitLeader waits, around an election, until this node knows a leader
// it can forward to: one other than suspect (the leader it last knew, which
// has gone quiet), or suspect again if its heartbeats resume. It waits for
// up to leaderWait and never past the call's own deadline (less a margin
// to answer in). Without it a follower answers NOT_LEADER with no hint
// while there is no leader, or forwards to a dead leader and fails, and
// the client backs off exponentially: measured, that cost another ~1 s
// after the election had ended. Held here instead, the call goes to the
// new leader as soon as the follower hears from it (its first heartbeat).
// Nothing has been sent to the suspect leader, so waiting adds no
// indeterminacy. It returns the leader known when the wait ends.
//
// With mustChange the suspect leader is known to be unreachable: only
// another leader ends the wait.
func (n *Node) awaitLeader(ctx context.Context, suspect string, mustChange bool) (id, addr string) {
	wait := n.leaderWait()
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl) - 100*time.Millisecond; left < wait {
			wait = left
		}
	}
	if wait <= 0 {
		return n.leader()
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return n.leader()
		case <-deadline.C:
			return n.leader()
		case <-tick.C:
			if !n.remote && n.raft.State() == raft.Shutdown {
				return n.leader()
			}
			id, addr = n.leader()
			if addr != "" && (id != suspect || (!mustChange && !n.leaderSuspect())) {
				return id, addr
			}
		}
	}
}

// leaderSuspect reports whether this follower has missed its leader's
// heartbeats for a while. A leader sends them every tenth of the
// heartbeat timeout; a quarter of it without contact (two and a half
// missed) means the leader is most likely gone and an election is coming.
func (n *Node) leaderSuspect() bool {
	if n.remote {
		return false // its leader is as its members last said
	}
	if n.raft.State() != raft.Follower {
		return false
	}
	return time.Since(n.raft.LastContact()) > n.raft.ReloadableConfig().HeartbeatTimeout/4
}

// leaderWait is how long a call may wait for an election: a follower
// notices a dead leader within two heartbeat timeouts and a vote takes up
// to two election timeouts (hashicorp/raft randomizes both in [t, 2t)).
func (n *Node) leaderWait() time.Duration {
	if n.remote {
		n = n.cfg.host // the same timeouts: every group's Raft has them
	}
	rc := n.raft.ReloadableConfig()
	return 2*rc.HeartbeatTimeout + 2*rc.ElectionTimeout
}

// ownCallKey marks a context of a call the node makes for itself.
type ownCallKey struct{}

// ownCall reports whether ctx is a call the node makes for itself.
func ownCall(ctx context.Context) bool { return ctx.Value(ownCallKey{}) != nil }

// join sends the node's own Join to the leader (forwarding on or off).
func (f *forwarder) join(ctx context.Context, req *raftqv1.JoinRequest) (*raftqv1.JoinResponse, error) {
	ctx = context.WithValue(ctx, ownCallKey{}, true)
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

// leaderStream opens call's stream on the group's leader with the
// caller's credentials and trace, when this node knows another node leads
// (ok false: serve it here, where it answers as a follower does).
func leaderStream[S any](ctx context.Context, n *Node, call func(context.Context, *grpc.ClientConn) (S, error)) (s S, ok bool, err error) {
	if n.remote {
		// A group this host does not run: its leader, or NOT_LEADER.
		if wasForwarded(ctx) {
			return s, false, n.notLeader("", "")
		}
		if _, addr := n.leader(); addr == "" {
			n.awaitLeader(ctx, "", true)
		}
		ctx, c, err := remoteConn(ctx, n)
		if err != nil {
			return s, false, err
		}
		s, err = call(ctx, c)
		return s, err == nil, err
	}
	if n.lead.ready.Load() || wasForwarded(ctx) || !n.cfg.Forward {
		return s, false, nil
	}
	_, addr := n.leader()
	if addr == "" || addr == n.cfg.GRPCAdvertise {
		return s, false, nil
	}
	c, err := n.fwd.conn(addr)
	if err != nil {
		return s, false, nil
	}
	s, err = call(forwardContext(ctx, n), c)
	return s, err == nil, err
}

// relay pumps a stream between a caller (recv, send) and the leader's
// stream cs until either ends. The leader's end decides the outcome: its
// status passes through, and a broken connection ends the caller's stream
// with that error, so whatever the caller had outstanding is as
// indeterminate as on a broken direct stream.
func relay[Req, Resp any](recv func() (*Req, error), send func(*Resp) error, cs grpc.BidiStreamingClient[Req, Resp]) error {
	go func() {
		for {
			m, err := recv()
			if err != nil {
				// The caller closed (io.EOF) or went away; the leader
				// sees the close, or the cancelled context.
				_ = cs.CloseSend()
				return
			}
			if err := cs.Send(m); err != nil {
				return // cs.Recv below reports why
			}
		}
	}()
	return pump(cs.Recv, send)
}

// pump sends what recv reads until it ends: nil at io.EOF, else the
// first error of either side.
func pump[M any](recv func() (*M, error), send func(*M) error) error {
	for {
		m, err := recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := send(m); err != nil {
			return err
		}
	}
}
