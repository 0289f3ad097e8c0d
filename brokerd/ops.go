package brokerd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/fsm/fsmpb"
	"github.com/raftq/raftq/internal/apierr"
	"github.com/raftq/raftq/internal/auth"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// This file holds what operators need from a node beyond the data path:
// the accessors the admin HTTP API (brokerd/admin) uses, and the gRPC calls behind
// leadership transfer, backup (snapshot) and restore, and dead-letter purge.

// Metrics is the node's Prometheus registry (what /metrics serves), for
// embedding processes and tests.
func (n *Node) Metrics() prometheus.Gatherer {
	if !n.multi() {
		return n.metrics.reg
	}
	// A host: its own registry and every other group's it runs (each
	// series of a group's carries its group label).
	gs := prometheus.Gatherers{n.metrics.reg}
	for _, g := range n.localGroups()[1:] {
		if g != nil {
			gs = append(gs, g.metrics.reg)
		}
	}
	return gs
}

// Ready reports why the node cannot serve, or nil: it must be a member of
// the Raft configuration and know a leader (followers forward to it).
func (n *Node) Ready() error {
	if n.ctx.Err() != nil {
		return errors.New("shutting down")
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return fmt.Errorf("raft configuration: %w", err)
	}
	member := false
	for _, s := range cf.Configuration().Servers {
		if s.ID == raft.ServerID(n.cfg.NodeID) {
			member = true
		}
	}
	if !member {
		return errors.New("not a member of a cluster")
	}
	if id, _ := n.leader(); id == "" {
		return errors.New("no leader known")
	}
	return nil
}

// RaftStats is hashicorp/raft's own description of this node (state,
// term, indexes, last contact, configuration), with the data dir's free
// space (disk_free_bytes, disk_min_free_bytes, disk_full and, while full,
// disk_full_reason: diskspace.go).
func (n *Node) RaftStats() map[string]string {
	s := n.raft.Stats()
	n.disk.stats(s)
	return s
}

// WriteSnapshot writes a point-in-time copy of this node's FSM state to w
// in the FSM snapshot format (what Restore reads). Capture is O(1) and
// Apply goes on meanwhile. It returns the applied index read just before
// the capture: the state holds at least everything up to it.
func (n *Node) WriteSnapshot(w io.Writer) (uint64, error) {
	idx := n.fsm.LastIndex()
	snap, err := n.fsm.Snapshot()
	if err != nil {
		return 0, err
	}
	defer snap.Release()
	sink := &writerSink{w: w}
	if err := snap.Persist(sink); err != nil {
		return idx, err
	}
	return idx, sink.err
}

// writerSink adapts an io.Writer to raft.SnapshotSink for WriteSnapshot.
type writerSink struct {
	w   io.Writer
	err error
}

func (s *writerSink) Write(p []byte) (int, error) { return s.w.Write(p) }
func (s *writerSink) ID() string                  { return "backup" }
func (s *writerSink) Close() error                { return nil }
func (s *writerSink) Cancel() error {
	s.err = errors.New("snapshot cancelled")
	return nil
}

// restore replaces the cluster's state with the backup in f (leader only).
// The whole backup is validated first by restoring it into a scratch FSM:
// raft.Restore panics the node if the FSM refuses a snapshot. The Raft
// index it is installed at is above both this log's last index and the
// backup's own, so no later entry is skipped by the FSM and lease tokens
// keep growing.
func (n *Node) restore(f *os.File) (*raftqv1.RestoreResponse, error) {
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	scratch := fsm.New()
	if err := scratch.Restore(io.NopCloser(f)); err != nil {
		return nil, apierr.New(codes.InvalidArgument, raftqv1.ErrorDetail_INVALID_ARGUMENT, "backup is not a valid raftq snapshot: "+err.Error())
	}
	jobs := scratch.Len()
	backupIndex := scratch.LastIndex()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: backupIndex, Size: size}
	if err := n.raft.Restore(meta, bufio.NewReaderSize(f, 256<<10), time.Minute); err != nil {
		return nil, apierr.FromError(apierr.RaftApplyError(err))
	}
	n.log.Warn("cluster state restored from a backup", "backup_index", backupIndex, "jobs", jobs)
	return &raftqv1.RestoreResponse{Index: n.raft.LastIndex(), Jobs: int64(jobs)}, nil
}

func (s *adminService) PurgeDead(ctx context.Context, req *raftqv1.PurgeDeadRequest) (*raftqv1.PurgeDeadResponse, error) {
	n := s.n
	if !n.isLeader() {
		return forward(ctx, n, func(ctx context.Context, c *grpc.ClientConn) (*raftqv1.PurgeDeadResponse, error) {
			return raftqv1.NewAdminClient(c).PurgeDead(ctx, req)
		})
	}
	if err := validatePurgeDead(req); err != nil {
		return nil, apierr.FromError(err)
	}
	res, err := n.propose(ctx, &fsmpb.Command{
		Type: fsmpb.CommandType_COMMAND_TYPE_DELETE_DEAD,
		Body: &fsmpb.Command_DeleteDead{DeleteDead: &fsmpb.DeleteDead{Queue: req.Queue, JobIds: req.JobIds, Limit: req.Limit}},
	})
	if err != nil {
		return nil, err
	}
	out := &raftqv1.PurgeDeadResponse{}
	for _, it := range res.Items {
		if it.Err != nil && !n.purgeApplied(it) {
			// Listed jobs: every refusal is reported (the others were
			// purged in the same entry, so the answer names them too).
			return out, apierr.FromError(fmt.Errorf("job %s: %w", it.JobID, it.Err))
		}
		out.JobIds = append(out.JobIds, it.JobID)
	}
	return out, nil
}

func (s *clusterService) TransferLeadership(ctx context.Context, req *raftqv1.TransferLeadershipRequest) (*raftqv1.TransferLeadershipResponse, error) {
	n := s.n
	if !n.isLeader() {
		return forward(ctx, n, func(ctx context.Context, c *grpc.ClientConn) (*raftqv1.TransferLeadershipResponse, error) {
			return raftqv1.NewClusterClient(c).TransferLeadership(ctx, req)
		})
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return nil, apierr.FromError(err)
	}
	voters := 0
	for _, srv := range cf.Configuration().Servers {
		if srv.Suffrage == raft.Voter {
			voters++
		}
	}
	if voters < 2 {
		return nil, apierr.New(codes.FailedPrecondition, raftqv1.ErrorDetail_WRONG_STATE, "no other voter to hand leadership to")
	}
	var f raft.Future
	if req.NodeId == "" {
		f = n.raft.LeadershipTransfer()
	} else {
		if req.NodeId == n.cfg.NodeID {
			return nil, apierr.New(codes.FailedPrecondition, raftqv1.ErrorDetail_WRONG_STATE, req.NodeId+" already leads")
		}
		var target *raft.Server
		for _, srv := range cf.Configuration().Servers {
			if srv.ID == raft.ServerID(req.NodeId) {
				target = &srv
			}
		}
		if target == nil {
			return nil, apierr.New(codes.NotFound, raftqv1.ErrorDetail_NOT_FOUND, "no member "+req.NodeId)
		}
		if target.Suffrage != raft.Voter {
			return nil, apierr.New(codes.FailedPrecondition, raftqv1.ErrorDetail_WRONG_STATE, req.NodeId+" is not a voter")
		}
		f = n.raft.LeadershipTransferToServer(target.ID, target.Address)
	}
	if err := f.Error(); err != nil {
		// Definite: leadership stays here (or already moved on its own).
		return nil, apierr.New(codes.Aborted, raftqv1.ErrorDetail_REASON_UNSPECIFIED, "leadership transfer failed: "+err.Error())
	}
	// The transfer is done when the target won its election; wait until
	// this node has heard of the new leader so the answer can name it.
	for ctx.Err() == nil {
		if id, _ := n.leader(); id != "" && id != n.cfg.NodeID {
			return &raftqv1.TransferLeadershipResponse{NewLeaderId: id}, nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	return &raftqv1.TransferLeadershipResponse{}, nil
}

// snapshotChunk is the size of one Snapshot stream message.
const snapshotChunk = 256 << 10

type chunkWriter struct {
	stream grpc.ServerStreamingServer[raftqv1.SnapshotChunk]
	first  *raftqv1.SnapshotChunk
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	for off := 0; off < len(p); off += snapshotChunk {
		end := min(off+snapshotChunk, len(p))
		c := &raftqv1.SnapshotChunk{Data: p[off:end]}
		if w.first != nil {
			c.AppliedIndex, c.NodeId = w.first.AppliedIndex, w.first.NodeId
			w.first = nil
		}
		if err := w.stream.Send(c); err != nil {
			return off, err
		}
	}
	return len(p), nil
}

func (s *clusterService) Snapshot(_ *raftqv1.SnapshotRequest, stream grpc.ServerStreamingServer[raftqv1.SnapshotChunk]) error {
	n := s.n
	w := &chunkWriter{stream: stream, first: &raftqv1.SnapshotChunk{AppliedIndex: n.fsm.LastIndex(), NodeId: n.cfg.NodeID}}
	bw := bufio.NewWriterSize(w, snapshotChunk)
	if _, err := n.WriteSnapshot(bw); err != nil {
		return apierr.FromError(err)
	}
	return apierr.FromError(bw.Flush())
}

func (s *clusterService) Restore(stream grpc.ClientStreamingServer[raftqv1.RestoreChunk, raftqv1.RestoreResponse]) error {
	n := s.n
	ctx := stream.Context()
	if !n.isLeader() {
		return n.forwardRestore(ctx, stream)
	}
	f, err := os.CreateTemp(n.cfg.DataDir, "restore-*.snap")
	if err != nil {
		return apierr.FromError(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	var size int64
	for {
		c, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		// A backup larger than the limit would only fill the disk.
		size += int64(len(c.Data))
		if limit := n.cfg.Limits.MaxRestoreBytes; limit > 0 && size > limit {
			return apierr.New(codes.InvalidArgument, raftqv1.ErrorDetail_TOO_LARGE, fmt.Sprintf("backup larger than %d bytes", limit))
		}
		if _, err := f.Write(c.Data); err != nil {
			return apierr.FromError(err)
		}
	}
	resp, err := n.restore(f)
	if err != nil {
		return err
	}
	return stream.SendAndClose(resp)
}

// forwardRestore pipes a Restore stream to the leader, like forward does
// for unary calls.
func (n *Node) forwardRestore(ctx context.Context, in grpc.ClientStreamingServer[raftqv1.RestoreChunk, raftqv1.RestoreResponse]) error {
	id, addr := n.leader()
	if addr == "" || addr == n.cfg.GRPCAdvertise || !n.cfg.Forward || wasForwarded(ctx) {
		return n.notLeader(id, addr)
	}
	c, err := n.fwd.conn(addr)
	if err != nil {
		return n.notLeader(id, addr)
	}
	ctx = auth.ForwardContext(ctx)
	ctx = metadata.AppendToOutgoingContext(ctx, forwardedKey, n.cfg.NodeID)
	out, err := raftqv1.NewClusterClient(c).Restore(ctx)
	if err != nil {
		return err
	}
	for {
		chunk, err := in.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if err := out.Send(chunk); err != nil {
			// The leader ended the stream; its answer says why.
			break
		}
	}
	resp, err := out.CloseAndRecv()
	if err != nil {
		return apierr.ForwardedWrite(err) // the leader may have restored
	}
	return in.SendAndClose(resp)
}
