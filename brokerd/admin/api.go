package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/raftq/raftq/internal/adminapi"
	"github.com/raftq/raftq/internal/placement"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/results"
)

// The JSON shapes and their conversions from the gRPC API are
// internal/adminapi's, shared with brokerctl -o json.

func parseState(s string) (raftqv1.JobState, error) {
	st, ok := adminapi.ParseState(s)
	if !ok {
		return 0, invalid(fmt.Sprintf("state %q: want scheduled, ready, leased, succeeded, dead, cancelled or waiting", s))
	}
	return st, nil
}

// queueJSON is a queue's JSON shape: its stats, its rates and the group
// that holds it in a cluster of groups groups.
func (s *Server) queueJSON(q *raftqv1.QueueStats, groups uint32) adminapi.Queue {
	out := adminapi.QueueFromProto(q)
	r := s.rates.rates(q.Queue)
	out.Rates = &r
	out.Group = placement.Queue(q.Queue, int(groups))
	if gs := s.cfg.Node.QueueGroups(q.Queue); len(gs) > 0 {
		// The placement table (queues moved or partitioned).
		out.Group = gs[0]
		if len(gs) > 1 {
			out.Groups = gs
		}
	}
	return out
}

// groupCount is the cluster's Raft group count, read from the node's
// Status (answered locally, no leader needed) on first use and kept: a
// cluster keeps its count for life (a data dir refuses another), so it
// cannot change under a running server.
func (s *Server) groupCount(ctx context.Context) (uint32, error) {
	if n := s.groups.Load(); n > 0 {
		return n, nil
	}
	st, err := s.cluster.Status(ctx, &raftqv1.StatusRequest{})
	if err != nil {
		return 0, err
	}
	n := max(st.GroupCount, 1)
	s.groups.Store(n)
	return n, nil
}

// ---- helpers ----

// decode reads a JSON body into v: unknown fields, trailing data and
// bodies over the limit are refused; an empty body is an empty object.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) error {
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return invalid("bad JSON body: " + err.Error())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return invalid("bad JSON body: more than one value")
	}
	return nil
}

// noBody refuses a body on calls that take none (an empty object is
// fine), so a client that meant to send options learns they were not read.
func (s *Server) noBody(w http.ResponseWriter, r *http.Request) error {
	var none struct{}
	return s.decode(w, r, &none)
}

func consistency(r *http.Request) (raftqv1.Consistency, error) {
	switch c := r.URL.Query().Get("consistency"); c {
	case "", "linearizable":
		return raftqv1.Consistency_CONSISTENCY_LINEARIZABLE, nil
	case "stale":
		return raftqv1.Consistency_CONSISTENCY_STALE, nil
	default:
		return 0, invalid(fmt.Sprintf("consistency %q: want linearizable or stale", c))
	}
}

func intParam(r *http.Request, name string, def, lo, hi int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, invalid(fmt.Sprintf("%s %q: want an integer from %d to %d", name, v, lo, hi))
	}
	return n, nil
}

// ---- health ----

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "node_id": s.cfg.Node.ID()})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if err := s.cfg.Node.Ready(); err != nil {
		writeError(w, r, newErr(http.StatusServiceUnavailable, CodeNotReady, err.Error()))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "node_id": s.cfg.Node.ID()})
}

// ---- cluster ----

// clusterView is the cluster as this node sees it; withHash adds the state
// hash, which reads the whole store (the dashboard does without).
func (s *Server) clusterView(r *http.Request, withHash bool) (adminapi.Cluster, error) {
	st, err := s.cluster.Status(r.Context(), &raftqv1.StatusRequest{WithHash: withHash})
	if err != nil {
		return adminapi.Cluster{}, err
	}
	out := adminapi.ClusterFromProto(st)
	out.Raft = s.cfg.Node.RaftStats()
	return out, nil
}

func (s *Server) getCluster(w http.ResponseWriter, r *http.Request) {
	c, err := s.clusterView(r, true)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) addMember(w http.ResponseWriter, r *http.Request) {
	var req struct {
		NodeID   string `json:"node_id"`
		RaftAddr string `json:"raft_addr"`
		GRPCAddr string `json:"grpc_addr"`
	}
	if err := s.decode(w, r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	if req.NodeID == "" || req.RaftAddr == "" || req.GRPCAddr == "" {
		writeError(w, r, invalid("node_id, raft_addr and grpc_addr are required"))
		return
	}
	if _, err := s.cluster.Join(r.Context(), &raftqv1.JoinRequest{NodeId: req.NodeID, RaftAddr: req.RaftAddr, GrpcAddr: req.GRPCAddr}); err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"added": req.NodeID})
}

func (s *Server) removeMember(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "node")
	if _, err := s.cluster.Remove(r.Context(), &raftqv1.RemoveRequest{NodeId: id}); err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"removed": id})
}

func (s *Server) transferLeadership(w http.ResponseWriter, r *http.Request) {
	var req struct {
		NodeID string `json:"node_id"`
	}
	if err := s.decode(w, r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	resp, err := s.cluster.TransferLeadership(r.Context(), &raftqv1.TransferLeadershipRequest{NodeId: req.NodeID})
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"leader_id": resp.NewLeaderId})
}

// snapshot streams this node's FSM state as a backup file.
func (s *Server) snapshot(w http.ResponseWriter, r *http.Request) {
	// One group's state is not a backup of a cluster of several: refuse
	// before the download starts, rather than hand out a file that would
	// lose every other group's jobs on restore.
	if gc, ok := s.cfg.Node.(interface{ GroupCount() int }); ok && gc.GroupCount() > 1 {
		writeError(w, r, &apiError{http.StatusConflict, ErrorInfo{Code: CodeWrongState,
			Message: fmt.Sprintf("this cluster runs %d Raft groups: back it up with brokerctl snapshot save (one file per group)", gc.GroupCount())}})
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="raftq-%s-%s.snap"`, s.cfg.Node.ID(), time.Now().UTC().Format("20060102T150405Z")))
	w.Header().Set("X-Raftq-Node-Id", s.cfg.Node.ID())
	w.Header().Set("X-Raftq-Applied-Index", strconv.FormatUint(s.cfg.Node.FSM().LastIndex(), 10))
	bw := bufio.NewWriterSize(w, 256<<10)
	if _, err := s.cfg.Node.WriteSnapshot(bw); err != nil {
		// Headers are gone; cutting the connection tells the client the
		// file is incomplete.
		s.log.Error("snapshot download failed", "err", err, "request_id", requestID(r.Context()))
		panic(http.ErrAbortHandler)
	}
	if err := bw.Flush(); err != nil {
		panic(http.ErrAbortHandler)
	}
}

// restore sends a backup to the leader (through the node's gRPC API,
// which forwards from a follower).
func (s *Server) restore(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("confirm") != "replace-all-state" {
		writeError(w, r, invalid("restore replaces every job in the cluster; add ?confirm=replace-all-state"))
		return
	}
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxRestoreBytes)
	stream, err := s.cluster.Restore(r.Context())
	if err != nil {
		writeError(w, r, err)
		return
	}
	buf := make([]byte, 256<<10)
	var readErr error
	for {
		n, err := io.ReadFull(body, buf)
		if n > 0 {
			if serr := stream.Send(&raftqv1.RestoreChunk{Data: append([]byte(nil), buf[:n]...)}); serr != nil {
				break // the answer below says why
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			readErr = err
			break
		}
	}
	if readErr != nil {
		_ = stream.CloseSend()
		writeError(w, r, readErr)
		return
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"index": resp.Index, "jobs": resp.Jobs})
}

// ---- queues ----

func (s *Server) queues(r *http.Request, names ...string) ([]adminapi.Queue, error) {
	c, err := consistency(r)
	if err != nil {
		return nil, err
	}
	qs, err := s.broker.QueueStats(r.Context(), &raftqv1.QueueStatsRequest{Queues: names, Consistency: c})
	if err != nil {
		return nil, err
	}
	groups, err := s.groupCount(r.Context())
	if err != nil {
		return nil, err
	}
	out := []adminapi.Queue{}
	for _, q := range qs.Queues {
		out = append(out, s.queueJSON(q, groups))
	}
	return out, nil
}

func (s *Server) listQueues(w http.ResponseWriter, r *http.Request) {
	qs, err := s.queues(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"queues": qs})
}

func (s *Server) getQueue(w http.ResponseWriter, r *http.Request) {
	qs, err := s.queues(r, chi.URLParam(r, "queue"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, qs[0])
}

func (s *Server) pauseQueue(w http.ResponseWriter, r *http.Request) {
	if err := s.noBody(w, r); err != nil {
		writeError(w, r, err)
		return
	}
	q := chi.URLParam(r, "queue")
	if _, err := s.admin.PauseQueue(r.Context(), &raftqv1.PauseQueueRequest{Queue: q}); err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"queue": q, "paused": true})
}

func (s *Server) resumeQueue(w http.ResponseWriter, r *http.Request) {
	if err := s.noBody(w, r); err != nil {
		writeError(w, r, err)
		return
	}
	q := chi.URLParam(r, "queue")
	if _, err := s.admin.ResumeQueue(r.Context(), &raftqv1.ResumeQueueRequest{Queue: q}); err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"queue": q, "paused": false})
}

func (s *Server) list(r *http.Request, queue string, state raftqv1.JobState) (adminapi.JobPage, error) {
	c, err := consistency(r)
	if err != nil {
		return adminapi.JobPage{}, err
	}
	limit, err := intParam(r, "limit", 100, 1, 1000)
	if err != nil {
		return adminapi.JobPage{}, err
	}
	resp, err := s.admin.ListJobs(r.Context(), &raftqv1.ListJobsRequest{
		Queue: queue, State: state, Limit: int32(limit), After: r.URL.Query().Get("after"), Consistency: c,
	})
	if err != nil {
		return adminapi.JobPage{}, err
	}
	out := adminapi.JobPage{Jobs: []adminapi.Job{}, NextAfter: resp.NextAfter}
	for _, j := range resp.Jobs {
		out.Jobs = append(out.Jobs, adminapi.JobFromProto(j))
	}
	return out, nil
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) {
	st := r.URL.Query().Get("state")
	if st == "" {
		writeError(w, r, invalid("state is required"))
		return
	}
	state, err := parseState(st)
	if err != nil {
		writeError(w, r, err)
		return
	}
	page, err := s.list(r, chi.URLParam(r, "queue"), state)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

// ---- jobs ----

func (s *Server) job(r *http.Request, id string) (*raftqv1.Job, error) {
	c, err := consistency(r)
	if err != nil {
		return nil, err
	}
	resp, err := s.broker.GetJob(r.Context(), &raftqv1.GetJobRequest{JobId: id, Consistency: c})
	if err != nil {
		return nil, err
	}
	return resp.Job, nil
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request) {
	j, err := s.job(r, chi.URLParam(r, "id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, adminapi.JobFromProto(j))
}

func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request) {
	if err := s.noBody(w, r); err != nil {
		writeError(w, r, err)
		return
	}
	id := chi.URLParam(r, "id")
	resp, err := s.broker.CancelJob(r.Context(), &raftqv1.CancelJobRequest{JobId: id})
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"id": id, "state": adminapi.StateName(resp.State)})
}

func (s *Server) attempts(r *http.Request, id string) ([]adminapi.Attempt, error) {
	if s.results == nil {
		return nil, newErr(http.StatusNotImplemented, CodeNotConfigured, "no results service configured (brokerd svcd address)")
	}
	as, err := s.results.Attempts(r.Context(), id)
	if err != nil {
		switch {
		case errors.Is(err, results.ErrNotFound):
			return []adminapi.Attempt{}, nil
		case errors.Is(err, results.ErrInvalidArgument):
			return nil, invalid(err.Error())
		}
		return nil, newErr(http.StatusBadGateway, CodeUnavailable, err.Error())
	}
	return adminapi.AttemptsFromResults(as), nil
}

func (s *Server) getAttempts(w http.ResponseWriter, r *http.Request) {
	as, err := s.attempts(r, chi.URLParam(r, "id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"attempts": as})
}

// ---- dead letters ----

func (s *Server) listDead(w http.ResponseWriter, r *http.Request) {
	page, err := s.list(r, chi.URLParam(r, "queue"), raftqv1.JobState_JOB_STATE_DEAD)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *Server) getDead(w http.ResponseWriter, r *http.Request) {
	q, id := chi.URLParam(r, "queue"), chi.URLParam(r, "id")
	j, err := s.job(r, id)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if j.Queue != q || j.State != raftqv1.JobState_JOB_STATE_DEAD {
		writeError(w, r, newErr(http.StatusNotFound, CodeNotFound, fmt.Sprintf("job %s is not a dead letter of queue %s (it is %s in %s)", id, q, adminapi.StateName(j.State), j.Queue)))
		return
	}
	writeJSON(w, http.StatusOK, adminapi.JobFromProto(j))
}

// dlqRequest selects dead jobs: the listed ones, or up to limit of the
// queue's (purge also needs all=true, so an empty body never purges).
type dlqRequest struct {
	JobIDs []string `json:"job_ids"`
	Limit  int32    `json:"limit"`
	All    bool     `json:"all"`
}

func (s *Server) redrive(w http.ResponseWriter, r *http.Request) {
	var req dlqRequest
	if err := s.decode(w, r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	resp, err := s.admin.Redrive(r.Context(), &raftqv1.RedriveRequest{Queue: chi.URLParam(r, "queue"), JobIds: req.JobIDs, Limit: req.Limit})
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"job_ids": nonNil(resp.JobIds)})
}

func (s *Server) purgeDead(w http.ResponseWriter, r *http.Request) {
	var req dlqRequest
	if err := s.decode(w, r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	if len(req.JobIDs) == 0 && !req.All {
		writeError(w, r, invalid("purge needs job_ids, or all=true to purge up to limit of the queue's dead jobs"))
		return
	}
	if len(req.JobIDs) > 0 && req.All {
		writeError(w, r, invalid("give job_ids or all=true, not both"))
		return
	}
	resp, err := s.admin.PurgeDead(r.Context(), &raftqv1.PurgeDeadRequest{Queue: chi.URLParam(r, "queue"), JobIds: req.JobIDs, Limit: req.Limit})
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"job_ids": nonNil(resp.JobIds)})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
