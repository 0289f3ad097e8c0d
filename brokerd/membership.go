package brokerd

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftq/raftq/fsm/fsmpb"
	"github.com/raftq/raftq/internal/apierr"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// This file is the node's membership: joining a cluster (through listed
// addresses, or through whoever calls JoinVia: brokerd/etcdnode),
// announcing its gRPC address in the FSM, adding voters (leader), and
// leaving. Removing a member is Cluster.Remove (server.go).

// HasState reports whether this node is a member of a Raft configuration
// (it bootstrapped, joined, or restarted from a data dir that holds one).
// A fresh node that has not bootstrapped or joined yet has none.
func (n *Node) HasState() bool {
	f := n.raft.GetConfiguration()
	return f.Error() == nil && len(f.Configuration().Servers) > 0
}

// JoinVia asks the member at the gRPC address addr to add this node to
// its cluster (Cluster.Join, forwarded to the leader), with the node's
// own credentials. Bootstrap through etcd joins with it.
func (n *Node) JoinVia(ctx context.Context, addr string) error {
	if !n.multi() {
		return n.fwd.joinVia(ctx, addr, n.joinRequest())
	}
	// A host joins each of its groups (each call names its group). With
	// replicas on a subset of the nodes, group 0 only: its leader places
	// the node in other groups (replicas.go).
	for _, gn := range n.localGroups() {
		if n.rep != nil && gn.cfg.group != 0 {
			continue
		}
		if err := gn.fwd.joinVia(ctx, addr, gn.joinRequest()); err != nil {
			return fmt.Errorf("group %d: %w", gn.cfg.group, err)
		}
	}
	return nil
}

// PeerConn is a connection to another node's gRPC API at addr, with the
// node's own credentials (its certificate with TLS on), cached and closed
// with the node.
func (n *Node) PeerConn(addr string) (*grpc.ClientConn, error) { return n.fwd.conn(addr) }

func (n *Node) joinRequest() *raftqv1.JoinRequest {
	return &raftqv1.JoinRequest{NodeId: n.cfg.NodeID, RaftAddr: n.raftAddr(), GrpcAddr: n.cfg.GRPCAdvertise}
}

// announce makes sure the FSM maps this node's Raft id to its gRPC address,
// so every node can tell clients where the leader serves. The leader writes
// its own entry; a follower asks the leader through Cluster.Join.
func (n *Node) announce() {
	defer n.wg.Done()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		if n.metaCurrent() {
			continue
		}
		n.announceMu.Lock()
		if n.leaving {
			n.announceMu.Unlock()
			continue
		}
		ctx, cancel := context.WithTimeout(n.ctx, 3*time.Second)
		req := n.joinRequest()
		var err error
		if n.lead.ready.Load() {
			err = n.join(ctx, req)
		} else if n.raft.State() == raft.Follower {
			_, err = n.fwd.join(ctx, req)
		}
		cancel()
		n.announceMu.Unlock()
		if err != nil {
			n.log.Debug("announce", "err", err)
		}
	}
}

func (n *Node) metaCurrent() bool {
	for _, m := range n.fsm.Nodes() {
		if m.NodeID == n.cfg.NodeID {
			return m.GRPCAddr == n.cfg.GRPCAdvertise && m.RaftAddr == n.raftAddr()
		}
	}
	return false
}

func (n *Node) raftAddr() string { return string(n.trans.LocalAddr()) }

// joinLoop asks the listed members to add this fresh node until one does.
func (n *Node) joinLoop() {
	defer n.wg.Done()
	req := n.joinRequest()
	backoff := 100 * time.Millisecond
	for {
		for _, addr := range n.cfg.Join {
			// Derived from the node's context: Close cuts a join
			// through an unreachable address short.
			ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
			err := n.fwd.joinVia(ctx, addr, req)
			cancel()
			if err == nil {
				n.log.Info("joined cluster", "via", addr)
				return
			}
			n.log.Warn("join failed", "via", addr, "err", err)
		}
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(backoff):
		}
		if backoff < 2*time.Second {
			backoff *= 2
		}
	}
}

// join adds (or re-addresses) a voter and records its gRPC address. Leader
// only.
func (n *Node) join(ctx context.Context, req *raftqv1.JoinRequest) error {
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	present := false
	for _, s := range cf.Configuration().Servers {
		if s.ID == raft.ServerID(req.NodeId) && s.Address == raft.ServerAddress(req.RaftAddr) && s.Suffrage == raft.Voter {
			present = true
		}
		// A replica group 0 placed joins as its record and the group's
		// reconciler say (replicas.go): a new member is a non-voter
		// until caught up, and only recorded members are added.
		if s.ID == raft.ServerID(req.NodeId) && n.placedGroup() {
			present = true
		}
	}
	if !present && n.placedGroup() {
		return fmt.Errorf("%w: node %s does not run group %d (group 0's leader places replicas)", apierr.ErrInvalid, req.NodeId, n.cfg.group)
	}
	if !present {
		if err := n.raft.AddVoter(raft.ServerID(req.NodeId), raft.ServerAddress(req.RaftAddr), 0, 10*time.Second).Error(); err != nil {
			return apierr.RaftApplyError(err)
		}
		n.log.Info("added voter", "id", req.NodeId, "raft", req.RaftAddr)
	}
	r := n.prop.Propose(ctx, &fsmpb.Command{
		Type: fsmpb.CommandType_COMMAND_TYPE_SET_NODE,
		Body: &fsmpb.Command_SetNode{SetNode: &fsmpb.NodeMeta{NodeId: req.NodeId, GrpcAddr: req.GrpcAddr, RaftAddr: req.RaftAddr}},
	})
	if r.Err != nil {
		return r.Err
	}
	return r.Result.Err
}

// Leave removes this node from the cluster's voters, gracefully: a leader
// hands leadership to a peer first, then the leader removes this node. It
// returns once the removal is committed; the node should then be closed
// (it no longer announces itself, even if Leave fails). The cluster
// refuses to remove its last voter.
func (n *Node) Leave(ctx context.Context) error {
	// No announce may add this node back after its removal: stop them, and
	// wait for one in flight (announce holds announceMu while joining).
	n.announceMu.Lock()
	n.leaving = true
	n.announceMu.Unlock()
	if n.raft.State() == raft.Leader {
		if err := n.raft.LeadershipTransfer().Error(); err != nil {
			n.log.Warn("leadership transfer before leave failed", "err", err)
		}
	}
	cs := &clusterService{n: n}
	var last error
	for ctx.Err() == nil {
		_, err := cs.Remove(ctx, &raftqv1.RemoveRequest{NodeId: n.cfg.NodeID})
		if status.Code(err) == codes.NotFound {
			n.log.Info("leave: not a member (an earlier try was committed)", "err", err)
			err = nil // an earlier try was committed but its answer lost
		}
		if err != nil {
			n.log.Debug("leave: remove failed; retrying", "err", err)
		}
		if err == nil {
			n.log.Info("left the cluster")
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("leave: %w (last error: %v)", ctx.Err(), last)
}
