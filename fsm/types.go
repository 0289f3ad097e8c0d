package fsm

import (
	"errors"
	"fmt"
)

// State is where a job is in its life cycle. The numbers are the same as
// raftq.v1.JobState and are stored in snapshots: never renumber.
type State int32

// Job states. Terminal states are Succeeded, Dead and Cancelled.
const (
	StateUnspecified State = 0
	StateScheduled   State = 1
	StateReady       State = 2
	StateLeased      State = 3
	StateSucceeded   State = 4
	StateDead        State = 5
	StateCancelled   State = 6
	// StateWaiting: blocked until the job's parents are terminal
	// (workflows); it then becomes ready or scheduled, or cancelled.
	StateWaiting State = 7
)

// NumStates bounds the State values: per-state counts are indexed by State
// in arrays of this length.
const NumStates = 8

// Terminal reports whether no command moves a job out of this state except
// Redrive (for Dead) and Purge.
func (s State) Terminal() bool {
	return s == StateSucceeded || s == StateDead || s == StateCancelled
}

// String is the lower-case state name used in logs, errors and the admin
// UI.
func (s State) String() string {
	switch s {
	case StateScheduled:
		return "scheduled"
	case StateReady:
		return "ready"
	case StateLeased:
		return "leased"
	case StateSucceeded:
		return "succeeded"
	case StateDead:
		return "dead"
	case StateCancelled:
		return "cancelled"
	case StateWaiting:
		return "waiting"
	}
	return fmt.Sprintf("state(%d)", int32(s))
}

// Job is one job as the FSM holds it. The store keeps it encoded (an
// fsmpb.JobRecord); every read decodes a fresh copy, so callers may keep and
// modify what they get.
//
// Times are unix nanoseconds stamped by the leader; durations are
// nanoseconds.
type Job struct {
	ID              string
	Queue           string
	Type            string
	Payload         []byte
	Priority        int32
	State           State
	Attempts        int32
	MaxAttempts     int32
	LeaseDuration   int64
	InitialBackoff  int64
	MaxBackoff      int64
	IdempotencyKey  string
	DedupWindow     int64
	LastError       string
	RunAt           int64
	CreatedAt       int64
	UpdatedAt       int64
	FinishedAt      int64 // set when the job became terminal
	LeaseToken      uint64
	LeaseDeadline   int64
	LeasedBy        string
	CancelRequested bool
	// Seq orders ready jobs of equal priority (FIFO). Assigned by Apply each
	// time the job becomes ready.
	Seq uint64
	// ScheduleName and ScheduleTick name the schedule and tick (unix ns)
	// that created the job; empty and 0 for enqueued jobs.
	ScheduleName string
	ScheduleTick int64
	// ConcurrencyKey groups the job with others of its queue for fair
	// dispatch and the per-key lease cap (a tenant, a customer id); empty:
	// no key.
	ConcurrencyKey string
	// TraceParent and TraceState are the producer's W3C trace context,
	// stored so the worker that leases the job continues the producer's
	// trace; empty: untraced.
	TraceParent string
	TraceState  string
	// HasProgress, Progress (a fraction 0..1) and ProgressMessage are the
	// current attempt's progress as its worker last reported it with a
	// lease extension; a new lease clears them, so they never describe an
	// older attempt.
	HasProgress     bool
	Progress        float64
	ProgressMessage string
	// StartDeadline is the schedule-to-start deadline: a job not leased
	// for the first time by then goes dead (ExpireTimeouts). 0: none.
	StartDeadline int64
	// StartToClose bounds one attempt, from its lease, however often the
	// lease is extended; AttemptDeadline is the current attempt's bound
	// (set by Lease). 0: none.
	StartToClose    int64
	AttemptDeadline int64
	// UniqueKey, while the job is not terminal, keeps other enqueues with
	// the same key in its queue from creating a job (uniqueness by state).
	UniqueKey string
	// Parents are the jobs this one depends on (workflows) and
	// DependencyPolicy what a parent that ends dead or cancelled does to it
	// (DepPolicy*). WaitingOn is the parents not yet terminal, in Parents'
	// order; the job is StateWaiting while it is not empty. ParentFailed
	// records that a parent ended dead or cancelled.
	Parents          []string
	DependencyPolicy int32
	WaitingOn        []string
	ParentFailed     bool
}

// Unique modes (NewJob.unique_mode): what an enqueue does when its unique
// key is held by a job that is not terminal.
const (
	// UniqueReturnExisting answers with the existing job (Duplicate).
	UniqueReturnExisting int32 = 0
	// UniqueReject refuses the whole Enqueue with ErrUniqueConflict.
	UniqueReject int32 = 1
	// UniqueDebounce replaces a still-scheduled, never leased existing
	// job's run_at and payload; otherwise as UniqueReturnExisting.
	UniqueDebounce int32 = 2
)

// LastError values of jobs ended by ExpireTimeouts.
const (
	// ScheduleToStartError: the job was not leased before its
	// schedule-to-start deadline, and is dead.
	ScheduleToStartError = "schedule-to-start timeout"
	// StartToCloseError: the attempt ran past its start-to-close
	// deadline, and was failed.
	StartToCloseError = "start-to-close timeout"
)

// Dependency policies (Job.DependencyPolicy, NewJob.dependency_policy).
const (
	// DepPolicyCancel cancels the job when a parent ends dead or cancelled
	// (the default); its own dependants follow, in cascade.
	DepPolicyCancel int32 = 0
	// DepPolicyRunAnyway runs the job once every parent is terminal,
	// whatever their outcome.
	DepPolicyRunAnyway int32 = 1
)

// MaxParents is the most parents a job may have. It is structural, like
// maxKeyPart, not configuration: every node applies the same bound, and it
// keeps one job's record and its resolution bounded.
const MaxParents = 64

// Sentinel errors returned (wrapped, per item) as business refusals in
// Apply results. Callers map them to API errors with errors.Is.
var (
	// ErrNotFound: no job with that id.
	ErrNotFound = errors.New("job not found")
	// ErrStaleToken: the lease token is not the job's current lease token.
	ErrStaleToken = errors.New("stale lease token")
	// ErrWrongState: the job is not in a state that allows the command
	// (e.g. ack of a job that is not leased, redrive of a job not dead).
	ErrWrongState = errors.New("job is not in a state that allows this")
	// ErrQueuePaused: a lease was refused because the queue is paused.
	ErrQueuePaused = errors.New("queue is paused")
	// ErrInvalid: a command item failed the FSM's structural checks (for
	// example an empty id or queue). The API validates before proposing, so
	// this only guards against buggy leaders.
	ErrInvalid = errors.New("invalid command")
	// ErrDuplicateID: an enqueue used a job id that already exists.
	ErrDuplicateID = errors.New("duplicate job id")
	// ErrUniqueConflict: an enqueue in UniqueReject mode named a unique key
	// held by a job that is not terminal. The refusal is a
	// *UniqueConflictError carrying that job's id.
	ErrUniqueConflict = errors.New("unique key held by a job that is not terminal")
)

// UniqueConflictError is the refusal of an Enqueue whose unique key is
// held (UniqueReject mode); errors.Is(err, ErrUniqueConflict) holds.
type UniqueConflictError struct {
	// Item is the refused item's index in the Enqueue.
	Item int
	// Queue, Key and JobID name the key and the job holding it.
	Queue, Key, JobID string
}

// Error names the item, the key and the job holding it; brokerd passes it
// on, and raftqerr.ExistingJobID reads the id from its end.
func (e *UniqueConflictError) Error() string {
	return fmt.Sprintf("%v: enqueue item %d: unique key %q of queue %q is held by job %s", ErrUniqueConflict, e.Item, e.Key, e.Queue, e.JobID)
}

// Unwrap makes errors.Is(err, ErrUniqueConflict) hold.
func (e *UniqueConflictError) Unwrap() error { return ErrUniqueConflict }

// ItemResult is the outcome of one item of a command (one job).
type ItemResult struct {
	JobID string
	// Err is nil on success or wraps one of the sentinel errors.
	Err error
	// Job is the job's state after the command (a copy), when it exists.
	Job *Job
	// Duplicate is set by Enqueue when an idempotency key matched an
	// earlier job, or a unique key a job that is not terminal; JobID and
	// Job are then that job's.
	Duplicate bool
	// Debounced is set with Duplicate when the enqueue (UniqueDebounce)
	// replaced the existing scheduled job's run_at and payload.
	Debounced bool
}

// Result is the outcome of one Command of an Entry. Apply returns
// []Result, one per command, in order.
type Result struct {
	// Items has one entry per item of the command, in command order, for
	// commands that carry items (Enqueue, Lease, ExtendLease, Ack, Nack,
	// Cancel, Redrive). ExpireLeases, Promote, Redrive-by-queue and Purge
	// list the jobs they changed.
	Items []ItemResult
	// Err is a refusal of the whole command (e.g. ErrInvalid).
	Err error
	// Schedule is the schedule after a PutSchedule, PauseSchedule or
	// ResumeSchedule.
	Schedule *Schedule
	// Fire is what a FireSchedule did (nil when refused).
	Fire *FireOutcome
}

// QueueStats counts a queue's jobs per state.
type QueueStats struct {
	Queue                string
	Paused               bool
	Counts               [NumStates]int64 // indexed by State
	OldestReadyCreatedAt int64            // 0 when no job is ready
}

// NodeMeta maps a Raft server id to its client-facing addresses.
type NodeMeta struct {
	NodeID   string
	GRPCAddr string
	RaftAddr string
}
