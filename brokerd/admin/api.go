package admin

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/raftq/raftq/fsm"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/results"
)

// ---- JSON shapes ----

// Job is a job as the API shows it. Times are RFC 3339, durations seconds.
type Job struct {
	ID                   string     `json:"id"`
	Queue                string     `json:"queue"`
	Type                 string     `json:"type"`
	State                string     `json:"state"`
	Payload              []byte     `json:"payload"` // base64
	Priority             int32      `json:"priority"`
	Attempts             int32      `json:"attempts"`
	MaxAttempts          int32      `json:"max_attempts"`
	LeaseDurationSeconds float64    `json:"lease_duration_seconds"`
	IdempotencyKey       string     `json:"idempotency_key,omitempty"`
	ConcurrencyKey       string     `json:"concurrency_key,omitempty"`
	LastError            string     `json:"last_error,omitempty"`
	RunAt                *time.Time `json:"run_at,omitempty"`
	CreatedAt            *time.Time `json:"created_at,omitempty"`
	UpdatedAt            *time.Time `json:"updated_at,omitempty"`
	FinishedAt           *time.Time `json:"finished_at,omitempty"`
	LeaseToken           uint64     `json:"lease_token,omitempty"`
	LeaseDeadline        *time.Time `json:"lease_deadline,omitempty"`
	LeasedBy             string     `json:"leased_by,omitempty"`
	CancelRequested      bool       `json:"cancel_requested,omitempty"`
	// The schedule and tick that created the job (schedule.go).
	Schedule     string     `json:"schedule,omitempty"`
	ScheduleTick *time.Time `json:"schedule_tick,omitempty"`
	// The current attempt's progress as its worker last reported it.
	Progress *Progress `json:"progress,omitempty"`
	// Timeouts: the schedule-to-start deadline (while the job was never
	// leased), the start-to-close bound of each attempt and the current
	// attempt's deadline by it (while leased).
	StartDeadline       *time.Time `json:"start_deadline,omitempty"`
	StartToCloseSeconds float64    `json:"start_to_close_seconds,omitempty"`
	AttemptDeadline     *time.Time `json:"attempt_deadline,omitempty"`
	// UniqueKey keeps other jobs with the key out of the queue while this
	// one is not terminal.
	UniqueKey string `json:"unique_key,omitempty"`
}

// Progress is a worker's report on an attempt (Job.Progress in the worker
// SDK): a fraction from 0 to 1 and a short message.
type Progress struct {
	Fraction float64 `json:"fraction"`
	Message  string  `json:"message,omitempty"`
}

// Text is the progress as people read it: "42% page 3 of 7".
func (p *Progress) Text() string {
	s := strconv.FormatFloat(p.Fraction*100, 'f', -1, 64)
	if i := strings.IndexByte(s, '.'); i >= 0 && len(s) > i+2 {
		s = s[:i+2] // one decimal is enough for people
	}
	s += "%"
	if p.Message != "" {
		s += " " + p.Message
	}
	return s
}

func stateName(s raftqv1.JobState) string { return fsm.State(s).String() }

func parseState(s string) (raftqv1.JobState, error) {
	for st := fsm.StateScheduled; st <= fsm.StateCancelled; st++ {
		if st.String() == strings.ToLower(s) {
			return raftqv1.JobState(st), nil
		}
	}
	return 0, invalid(fmt.Sprintf("state %q: want scheduled, ready, leased, succeeded, dead or cancelled", s))
}

// JobFromProto converts the gRPC API's job into the admin API's JSON shape
// (brokerctl -o json prints the same shape).
func JobFromProto(j *raftqv1.Job) Job {
	ts := func(t interface {
		IsValid() bool
		AsTime() time.Time
	}) *time.Time {
		if t == nil || !t.IsValid() {
			return nil
		}
		v := t.AsTime()
		return &v
	}
	out := Job{
		ID: j.Id, Queue: j.Queue, Type: j.Type, State: stateName(j.State), Payload: j.Payload,
		Priority: j.Priority, Attempts: j.Attempts, MaxAttempts: j.MaxAttempts,
		LeaseDurationSeconds: j.LeaseDuration.AsDuration().Seconds(),
		IdempotencyKey:       j.IdempotencyKey, LastError: j.LastError, ConcurrencyKey: j.ConcurrencyKey,
		LeaseToken: j.LeaseToken, LeasedBy: j.LeasedBy, CancelRequested: j.CancelRequested,
	}
	if j.RunAt != nil {
		out.RunAt = ts(j.RunAt)
	}
	if j.CreatedAt != nil {
		out.CreatedAt = ts(j.CreatedAt)
	}
	if j.UpdatedAt != nil {
		out.UpdatedAt = ts(j.UpdatedAt)
	}
	if j.FinishedAt != nil {
		out.FinishedAt = ts(j.FinishedAt)
	}
	if j.LeaseDeadline != nil {
		out.LeaseDeadline = ts(j.LeaseDeadline)
	}
	if p := j.GetProgress(); p != nil {
		out.Progress = &Progress{Fraction: p.GetFraction(), Message: p.GetMessage()}
	}
	if j.ScheduleTick != nil {
		out.Schedule, out.ScheduleTick = j.Schedule, ts(j.ScheduleTick)
	}
	if j.StartDeadline != nil {
		out.StartDeadline = ts(j.StartDeadline)
	}
	if j.AttemptDeadline != nil {
		out.AttemptDeadline = ts(j.AttemptDeadline)
	}
	out.StartToCloseSeconds = j.GetStartToClose().AsDuration().Seconds()
	out.UniqueKey = j.UniqueKey
	return out
}

// Queue is one queue's depth per state, pause flag, oldest ready age and
// estimated rates.
type Queue struct {
	Name                  string           `json:"name"`
	Paused                bool             `json:"paused"`
	Counts                map[string]int64 `json:"counts"`
	OldestReadyAgeSeconds float64          `json:"oldest_ready_age_seconds"`
	// Rates are the admin server's estimate (absent from brokerctl's output).
	Rates *Rates `json:"rates,omitempty"`
}

// QueueFromProto converts the gRPC API's queue stats into the admin API's
// JSON shape, without rates (the admin server estimates those itself).
func QueueFromProto(q *raftqv1.QueueStats) Queue {
	out := Queue{Name: q.Queue, Paused: q.Paused, Counts: map[string]int64{
		"scheduled": q.Scheduled, "ready": q.Ready, "leased": q.Leased,
		"succeeded": q.Succeeded, "dead": q.Dead, "cancelled": q.Cancelled,
	}}
	if q.OldestReadyAt != nil && q.OldestReadyAt.IsValid() {
		out.OldestReadyAgeSeconds = max(0, time.Since(q.OldestReadyAt.AsTime()).Seconds())
	}
	return out
}

func (s *Server) queueJSON(q *raftqv1.QueueStats) Queue {
	out := QueueFromProto(q)
	r := s.rates.rates(q.Queue)
	out.Rates = &r
	return out
}

// Member is one server of the Raft configuration.
type Member struct {
	NodeID   string `json:"node_id"`
	RaftAddr string `json:"raft_addr"`
	GRPCAddr string `json:"grpc_addr,omitempty"`
	Voter    bool   `json:"voter"`
	Leader   bool   `json:"leader"`
}

// Cluster is the cluster as the answering node sees it.
type Cluster struct {
	NodeID       string            `json:"node_id"`
	State        string            `json:"state"`
	LeaderID     string            `json:"leader_id"`
	LeaderAddr   string            `json:"leader_addr"`
	Term         uint64            `json:"term"`
	CommitIndex  uint64            `json:"commit_index"`
	AppliedIndex uint64            `json:"applied_index"`
	StateHash    string            `json:"state_hash"`
	Members      []Member          `json:"members"`
	Raft         map[string]string `json:"raft"`
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
func (s *Server) clusterView(r *http.Request, withHash bool) (Cluster, error) {
	st, err := s.cluster.Status(r.Context(), &raftqv1.StatusRequest{WithHash: withHash})
	if err != nil {
		return Cluster{}, err
	}
	out := Cluster{
		NodeID: st.NodeId, State: st.State, LeaderID: st.LeaderId, LeaderAddr: st.LeaderAddr, Term: st.Term,
		CommitIndex: st.CommitIndex, AppliedIndex: st.AppliedIndex, StateHash: st.StateHash,
		Members: []Member{}, Raft: s.cfg.Node.RaftStats(),
	}
	for _, m := range st.Members {
		out.Members = append(out.Members, Member{NodeID: m.NodeId, RaftAddr: m.RaftAddr, GRPCAddr: m.GrpcAddr, Voter: m.Voter, Leader: m.Leader})
	}
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

func (s *Server) queues(r *http.Request, names ...string) ([]Queue, error) {
	c, err := consistency(r)
	if err != nil {
		return nil, err
	}
	qs, err := s.broker.QueueStats(r.Context(), &raftqv1.QueueStatsRequest{Queues: names, Consistency: c})
	if err != nil {
		return nil, err
	}
	out := []Queue{}
	for _, q := range qs.Queues {
		out = append(out, s.queueJSON(q))
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

// JobPage is one page of a listing; next_after continues it.
type JobPage struct {
	Jobs      []Job  `json:"jobs"`
	NextAfter string `json:"next_after,omitempty"`
}

func (s *Server) list(r *http.Request, queue string, state raftqv1.JobState) (JobPage, error) {
	c, err := consistency(r)
	if err != nil {
		return JobPage{}, err
	}
	limit, err := intParam(r, "limit", 100, 1, 1000)
	if err != nil {
		return JobPage{}, err
	}
	resp, err := s.admin.ListJobs(r.Context(), &raftqv1.ListJobsRequest{
		Queue: queue, State: state, Limit: int32(limit), After: r.URL.Query().Get("after"), Consistency: c,
	})
	if err != nil {
		return JobPage{}, err
	}
	out := JobPage{Jobs: []Job{}, NextAfter: resp.NextAfter}
	for _, j := range resp.Jobs {
		out.Jobs = append(out.Jobs, JobFromProto(j))
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
	writeJSON(w, http.StatusOK, JobFromProto(j))
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
	writeJSON(w, http.StatusOK, map[string]string{"id": id, "state": stateName(resp.State)})
}

// Attempt is one attempt of a job as svcd recorded it.
type Attempt struct {
	LeaseToken uint64     `json:"lease_token"`
	WorkerID   string     `json:"worker_id"`
	Attempt    int32      `json:"attempt"`
	Status     string     `json:"status"`
	Outcome    string     `json:"outcome"`
	Error      string     `json:"error,omitempty"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	RecordedAt *time.Time `json:"recorded_at,omitempty"`
}

func (s *Server) attempts(r *http.Request, id string) ([]Attempt, error) {
	if s.results == nil {
		return nil, newErr(http.StatusNotImplemented, CodeNotConfigured, "no results service configured (brokerd svcd address)")
	}
	as, err := s.results.Attempts(r.Context(), id)
	if err != nil {
		switch {
		case errors.Is(err, results.ErrNotFound):
			return []Attempt{}, nil
		case errors.Is(err, results.ErrInvalidArgument):
			return nil, invalid(err.Error())
		}
		return nil, newErr(http.StatusBadGateway, CodeUnavailable, err.Error())
	}
	return AttemptsFromResults(as), nil
}

// AttemptsFromResults converts svcd's attempt history to the API's shape
// (brokerctl attempts prints the same JSON).
func AttemptsFromResults(as []results.Attempt) []Attempt {
	out := []Attempt{}
	tp := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	for _, a := range as {
		out = append(out, Attempt{LeaseToken: a.LeaseToken, WorkerID: a.WorkerID, Attempt: a.Attempt, Status: string(a.Status),
			Outcome: a.Outcome.String(), Error: a.Error, StartedAt: tp(a.StartedAt), FinishedAt: tp(a.FinishedAt), RecordedAt: tp(a.RecordedAt)})
	}
	return out
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
		writeError(w, r, newErr(http.StatusNotFound, CodeNotFound, fmt.Sprintf("job %s is not a dead letter of queue %s (it is %s in %s)", id, q, stateName(j.State), j.Queue)))
		return
	}
	writeJSON(w, http.StatusOK, JobFromProto(j))
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
