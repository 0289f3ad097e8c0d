// Package adminapi holds the JSON shapes of the admin HTTP API
// (brokerd/admin) and their conversions from the gRPC API, which brokerctl
// prints with -o json, so the two show one shape without brokerctl linking
// the admin server (chi, templates) or any other server package.
//
// It is internal on purpose: the admin API's contract for other tools is
// its HTTP paths and JSON, described language-neutrally in
// brokerd/admin/openapi.yaml and docs/cli.md. Go programs use the gRPC
// client package instead. A public Go package would add a second promise
// (these Go types and names) that would have to move in lockstep with it.
//
// It links no server code (fsm, raft, bbolt): state names are spelled out
// here, and a test checks they agree with the FSM's.
package adminapi

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/raftq/raftq/internal/placement"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/results"
)

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
	// The schedule and tick that created the job (a periodic schedule).
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
	// Workflows: the parents, the policy ("cancel" or "run_anyway"), the
	// parents still waited on, whether a parent failed, and (GetJob only)
	// the jobs depending on this one.
	Parents          []string `json:"parents,omitempty"`
	DependencyPolicy string   `json:"dependency_policy,omitempty"`
	WaitingOn        []string `json:"waiting_on,omitempty"`
	ParentFailed     bool     `json:"parent_failed,omitempty"`
	Dependants       []string `json:"dependants,omitempty"`
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

// States are the job states in the order of their enum values, scheduled
// to waiting: the order brokerctl and the dashboard list them in.
var States = []raftqv1.JobState{
	raftqv1.JobState_JOB_STATE_SCHEDULED, raftqv1.JobState_JOB_STATE_READY, raftqv1.JobState_JOB_STATE_LEASED,
	raftqv1.JobState_JOB_STATE_SUCCEEDED, raftqv1.JobState_JOB_STATE_DEAD, raftqv1.JobState_JOB_STATE_CANCELLED,
	raftqv1.JobState_JOB_STATE_WAITING,
}

// StateName is a job state's lower-case name (ready, dead, ...), the same
// as the FSM's State.String: "state(N)" for a value it does not know.
func StateName(s raftqv1.JobState) string {
	switch s {
	case raftqv1.JobState_JOB_STATE_SCHEDULED:
		return "scheduled"
	case raftqv1.JobState_JOB_STATE_READY:
		return "ready"
	case raftqv1.JobState_JOB_STATE_LEASED:
		return "leased"
	case raftqv1.JobState_JOB_STATE_SUCCEEDED:
		return "succeeded"
	case raftqv1.JobState_JOB_STATE_DEAD:
		return "dead"
	case raftqv1.JobState_JOB_STATE_CANCELLED:
		return "cancelled"
	case raftqv1.JobState_JOB_STATE_WAITING:
		return "waiting"
	}
	return fmt.Sprintf("state(%d)", int32(s))
}

// ParseState is the state named s (any case); ok is false for a name that
// is not one of States.
func ParseState(s string) (_ raftqv1.JobState, ok bool) {
	for _, st := range States {
		if StateName(st) == strings.ToLower(s) {
			return st, true
		}
	}
	return 0, false
}

func timeOf(t *timestamppb.Timestamp) *time.Time {
	if t == nil || !t.IsValid() {
		return nil
	}
	v := t.AsTime()
	return &v
}

// JobFromProto converts the gRPC API's job into the admin API's JSON shape
// (brokerctl -o json prints the same shape).
func JobFromProto(j *raftqv1.Job) Job {
	out := Job{
		ID: j.Id, Queue: j.Queue, Type: j.Type, State: StateName(j.State), Payload: j.Payload,
		Priority: j.Priority, Attempts: j.Attempts, MaxAttempts: j.MaxAttempts,
		LeaseDurationSeconds: j.LeaseDuration.AsDuration().Seconds(),
		IdempotencyKey:       j.IdempotencyKey, LastError: j.LastError, ConcurrencyKey: j.ConcurrencyKey,
		LeaseToken: j.LeaseToken, LeasedBy: j.LeasedBy, CancelRequested: j.CancelRequested,
		RunAt: timeOf(j.RunAt), CreatedAt: timeOf(j.CreatedAt), UpdatedAt: timeOf(j.UpdatedAt),
		FinishedAt: timeOf(j.FinishedAt), LeaseDeadline: timeOf(j.LeaseDeadline),
	}
	if p := j.GetProgress(); p != nil {
		out.Progress = &Progress{Fraction: p.GetFraction(), Message: p.GetMessage()}
	}
	if j.ScheduleTick != nil {
		out.Schedule, out.ScheduleTick = j.Schedule, timeOf(j.ScheduleTick)
	}
	out.StartDeadline, out.AttemptDeadline = timeOf(j.StartDeadline), timeOf(j.AttemptDeadline)
	out.StartToCloseSeconds = j.GetStartToClose().AsDuration().Seconds()
	out.UniqueKey = j.UniqueKey
	if len(j.Parents) > 0 {
		out.Parents, out.WaitingOn, out.ParentFailed = j.Parents, j.WaitingOn, j.ParentFailed
		out.DependencyPolicy = "cancel"
		if j.DependencyPolicy == raftqv1.DependencyPolicy_DEPENDENCY_POLICY_RUN_ANYWAY {
			out.DependencyPolicy = "run_anyway"
		}
	}
	out.Dependants = j.Dependants
	return out
}

// JobPage is one page of a listing; next_after continues it.
type JobPage struct {
	Jobs      []Job  `json:"jobs"`
	NextAfter string `json:"next_after,omitempty"`
}

// Queue is one queue's depth per state, pause flag, oldest ready age and
// estimated rates.
type Queue struct {
	Name                  string           `json:"name"`
	Paused                bool             `json:"paused"`
	Counts                map[string]int64 `json:"counts"`
	OldestReadyAgeSeconds float64          `json:"oldest_ready_age_seconds"`
	// Group is the Raft group that takes the queue's new jobs (always 0 in
	// a cluster of one group): where its name hashes, unless an operator
	// moved or partitioned it.
	Group uint32 `json:"group"`
	// Groups are every group holding the queue's jobs when that is more
	// than Group: its partitions, or both groups while it moves.
	Groups []uint32 `json:"groups,omitempty"`
	// Rates are the admin server's estimate (absent from brokerctl's output).
	Rates *Rates `json:"rates,omitempty"`
}

// Rates are one queue's estimated rates in jobs per second.
type Rates struct {
	EnqueuedPerSecond  float64 `json:"enqueued_per_second"`
	CompletedPerSecond float64 `json:"completed_per_second"`
	// WindowSeconds is the time the estimate spans (0: not enough samples
	// yet, the rates are 0).
	WindowSeconds float64 `json:"window_seconds"`
}

// QueueFromProto converts the gRPC API's queue stats into the admin API's
// JSON shape, without rates (the admin server estimates those itself).
func QueueFromProto(q *raftqv1.QueueStats) Queue {
	out := Queue{Name: q.Queue, Paused: q.Paused, Counts: map[string]int64{
		"scheduled": q.Scheduled, "ready": q.Ready, "leased": q.Leased,
		"succeeded": q.Succeeded, "dead": q.Dead, "cancelled": q.Cancelled,
		"waiting": q.Waiting,
	}}
	if q.OldestReadyAt != nil && q.OldestReadyAt.IsValid() {
		out.OldestReadyAgeSeconds = max(0, time.Since(q.OldestReadyAt.AsTime()).Seconds())
	}
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

// MembersFromProto converts a Status answer's members (never nil, so JSON
// shows [] for none).
func MembersFromProto(ms []*raftqv1.Member) []Member {
	out := []Member{}
	for _, m := range ms {
		out = append(out, Member{NodeID: m.NodeId, RaftAddr: m.RaftAddr, GRPCAddr: m.GrpcAddr, Voter: m.Voter, Leader: m.Leader})
	}
	return out
}

// Group is one Raft group of a cluster running several (brokerd
// --groups), as the answering node sees it.
type Group struct {
	Group      uint32 `json:"group"`
	LeaderID   string `json:"leader_id"`
	LeaderAddr string `json:"leader_addr"`
	// State is the answering node's Raft state in the group (Leader,
	// Follower, ...).
	State        string   `json:"state"`
	Term         uint64   `json:"term"`
	AppliedIndex uint64   `json:"applied_index"`
	Members      []Member `json:"members"`
}

// GroupsFromProto converts a Status answer's groups (never nil).
func GroupsFromProto(gs []*raftqv1.GroupStatus) []Group {
	out := []Group{}
	for _, g := range gs {
		out = append(out, Group{Group: g.Group, LeaderID: g.LeaderId, LeaderAddr: g.LeaderAddr, State: g.State,
			Term: g.Term, AppliedIndex: g.AppliedIndex, Members: MembersFromProto(g.Members)})
	}
	return out
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
	// GroupCount is how many Raft groups the cluster runs (1: one).
	// With several, the fields above are group 0's and Groups has each
	// group; with one, Groups is absent.
	GroupCount uint32  `json:"group_count"`
	Groups     []Group `json:"groups,omitempty"`
}

// ClusterFromProto converts a Status answer; Raft (the node's own raft
// statistics) is left for the admin server, which has the node at hand.
func ClusterFromProto(st *raftqv1.StatusResponse) Cluster {
	c := Cluster{
		NodeID: st.NodeId, State: st.State, LeaderID: st.LeaderId, LeaderAddr: st.LeaderAddr, Term: st.Term,
		CommitIndex: st.CommitIndex, AppliedIndex: st.AppliedIndex, StateHash: st.StateHash,
		Members: MembersFromProto(st.Members),
		// A node from before groups leaves the count 0: one group.
		GroupCount: max(st.GroupCount, 1),
	}
	if len(st.Groups) > 0 {
		c.Groups = GroupsFromProto(st.Groups)
	}
	return c
}

// QueueGroup is the group that holds queue. Placement is computed from
// the name and the group count (internal/placement), as brokers and the
// SDK compute it, so it is also where a queue that has no job yet will
// be created.
func (c Cluster) QueueGroup(queue string) uint32 {
	return placement.Queue(queue, int(c.GroupCount))
}

// GroupLeader is group g's leader as the answering node knows it (empty
// when it knows none, or has no such group).
func (c Cluster) GroupLeader(g uint32) (id, addr string) {
	if c.GroupCount <= 1 && g == 0 {
		return c.LeaderID, c.LeaderAddr
	}
	for _, gr := range c.Groups {
		if gr.Group == g {
			return gr.LeaderID, gr.LeaderAddr
		}
	}
	return "", ""
}

// QueuePlacement is where a queue lives: its group and that group's
// leader (brokerctl queues group).
type QueuePlacement struct {
	Queue      string `json:"queue"`
	Group      uint32 `json:"group"`
	LeaderID   string `json:"leader_id"`
	LeaderAddr string `json:"leader_addr"`
}

// Placement is where queue lives in c.
func (c Cluster) Placement(queue string) QueuePlacement {
	g := c.QueueGroup(queue)
	id, addr := c.GroupLeader(g)
	return QueuePlacement{Queue: queue, Group: g, LeaderID: id, LeaderAddr: addr}
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

// Schedule is one periodic schedule in the admin API's JSON shape
// (brokerctl schedules -o json prints the same).
type Schedule struct {
	Name            string     `json:"name"`
	Queue           string     `json:"queue"`
	Type            string     `json:"type"`
	Payload         []byte     `json:"payload,omitempty"` // base64
	Priority        int32      `json:"priority"`
	MaxAttempts     int32      `json:"max_attempts"`
	Cron            string     `json:"cron,omitempty"`
	IntervalSeconds float64    `json:"interval_seconds,omitempty"`
	TimeZone        string     `json:"time_zone,omitempty"`
	JitterSeconds   float64    `json:"jitter_seconds,omitempty"`
	Overlap         string     `json:"overlap"`
	CatchUp         int32      `json:"catch_up"`
	Paused          bool       `json:"paused"`
	LastTick        *time.Time `json:"last_tick,omitempty"`
	NextTick        *time.Time `json:"next_tick,omitempty"`
	LastJobID       string     `json:"last_job_id,omitempty"`
	Fired           int64      `json:"fired"`
	Skipped         int64      `json:"skipped"`
	CreatedAt       *time.Time `json:"created_at,omitempty"`
	UpdatedAt       *time.Time `json:"updated_at,omitempty"`
}

// OverlapName is the lower-case name of an overlap policy: skip, allow or
// cancel-previous (the names brokerctl and schedule files use).
func OverlapName(p raftqv1.OverlapPolicy) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(p.String(), "OVERLAP_POLICY_")), "_", "-")
}

// ScheduleFromProto converts the gRPC API's schedule into the JSON shape.
func ScheduleFromProto(s *raftqv1.Schedule) Schedule {
	sp := s.GetSpec()
	return Schedule{
		Name: sp.GetName(), Queue: sp.GetJob().GetQueue(), Type: sp.GetJob().GetType(), Payload: sp.GetJob().GetPayload(),
		Priority: sp.GetJob().GetPriority(), MaxAttempts: sp.GetJob().GetMaxAttempts(),
		Cron: sp.GetCron(), IntervalSeconds: sp.GetInterval().AsDuration().Seconds(), TimeZone: sp.GetTimeZone(),
		JitterSeconds: sp.GetJitter().AsDuration().Seconds(), Overlap: OverlapName(sp.GetOverlap()),
		CatchUp: sp.GetCatchUp(), Paused: sp.GetPaused(),
		LastTick: timeOf(s.GetLastTick()), NextTick: timeOf(s.GetNextTick()), LastJobID: s.GetLastJobId(),
		Fired: s.GetFired(), Skipped: s.GetSkipped(), CreatedAt: timeOf(s.GetCreatedAt()), UpdatedAt: timeOf(s.GetUpdatedAt()),
	}
}
