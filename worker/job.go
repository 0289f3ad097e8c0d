package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// Handler runs one attempt at a job. Returning nil acks the job; an error
// nacks it (retried after the job's back-off, or after RetryAfter's delay,
// or dead-lettered when wrapped with Permanent). ctx is cancelled when the
// worker learns that the lease is lost, the job was cancelled, or shutdown
// ran out of time; context.Cause(ctx) says which.
type Handler func(ctx context.Context, job *Job) error

// Middleware wraps a Handler, for cross-cutting concerns: logging, tracing,
// metrics, timeouts. The worker applies middlewares in the order they were
// added with Use, the first one outermost. A panic in a middleware is
// recovered like one in a handler.
type Middleware func(next Handler) Handler

// Job is one leased attempt at a job, as a handler sees it.
type Job struct {
	// ID is the broker's job id.
	ID string
	// Queue and Type route the job; Type selects the handler.
	Queue string
	Type  string
	// Payload is the producer's bytes, unchanged.
	Payload  []byte
	Priority int32
	// Attempt counts this attempt, starting at 1; the job is dead-lettered
	// when an attempt with Attempt >= MaxAttempts fails.
	Attempt     int32
	MaxAttempts int32
	// LeaseToken fences this attempt: it only grows for a job, and the
	// broker (and the results service) refuse a settle with an older one.
	LeaseToken uint64
	// LeaseDuration is how long the lease lasts between extensions.
	LeaseDuration time.Duration
	// LastError is the previous attempt's error, if there was one.
	LastError string
	// CreatedAt is when the job was enqueued.
	CreatedAt time.Time
	// WorkerID is the id of the worker running the attempt.
	WorkerID string
	// AttemptDeadline is when the broker fails this attempt by the job's
	// start-to-close timeout, however often the lease is extended (the
	// broker's clock; zero: no such timeout). Past it the lease is lost:
	// the handler's context is cancelled and the outcome is not settled.
	AttemptDeadline time.Time
	// Parents are the jobs this one depended on (workflows), all succeeded
	// unless ParentFailed (possible only under the run-anyway policy).
	// Read their results from the results service:
	// results.Client.ParentResults(ctx, job.Parents).
	Parents      []string
	ParentFailed bool

	mu     sync.Mutex
	output []byte
	// report sends a lease extension carrying progress; set by the worker
	// that leased the job (nil for a Job built elsewhere, e.g. in a test).
	report func(ctx context.Context, p *raftqv1.Progress) error
}

// MaxProgressMessage is the longest progress message the broker accepts,
// in bytes.
const MaxProgressMessage = 256

// Progress reports how far this attempt has got: fraction from 0 to 1
// (0.42 is 42%) and a short message (at most MaxProgressMessage bytes).
// It is sent at once as a lease extension (so it also extends the lease),
// fenced by the attempt's lease token: once the lease is lost the broker
// refuses it, Progress returns the error, and the handler's ctx is
// cancelled as for a failed keep-alive. GetJob, brokerctl get and the
// dashboard show the last report until the job is leased again. Report at
// a human pace (every few seconds at most): each report is one Raft entry.
func (j *Job) Progress(ctx context.Context, fraction float64, message string) error {
	if !(fraction >= 0 && fraction <= 1) {
		return fmt.Errorf("worker: progress %v is not a fraction from 0 to 1", fraction)
	}
	if len(message) > MaxProgressMessage {
		return fmt.Errorf("worker: progress message of %d bytes (at most %d)", len(message), MaxProgressMessage)
	}
	if j.report == nil {
		return errors.New("worker: progress needs a job leased by a Worker")
	}
	return j.report(ctx, &raftqv1.Progress{Fraction: fraction, Message: message})
}

// SetOutput stores the attempt's output, which the worker hands to its
// Recorder (the results service) before acking. Calling it again replaces
// the output. It is safe to call from any goroutine.
func (j *Job) SetOutput(b []byte) {
	j.mu.Lock()
	j.output = b
	j.mu.Unlock()
}

// Output returns what SetOutput stored.
func (j *Job) Output() []byte {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.output
}

func jobFromProto(p *raftqv1.Job, workerID string, leaseOverride time.Duration) *Job {
	j := &Job{
		ID:            p.GetId(),
		Queue:         p.GetQueue(),
		Type:          p.GetType(),
		Payload:       p.GetPayload(),
		Priority:      p.GetPriority(),
		Attempt:       p.GetAttempts(),
		MaxAttempts:   p.GetMaxAttempts(),
		LeaseToken:    p.GetLeaseToken(),
		LeaseDuration: p.GetLeaseDuration().AsDuration(),
		LastError:     p.GetLastError(),
		WorkerID:      workerID,
		Parents:       p.GetParents(),
		ParentFailed:  p.GetParentFailed(),
	}
	if leaseOverride > 0 {
		j.LeaseDuration = leaseOverride
	}
	if p.GetCreatedAt() != nil {
		j.CreatedAt = p.GetCreatedAt().AsTime()
	}
	if p.GetAttemptDeadline() != nil {
		j.AttemptDeadline = p.GetAttemptDeadline().AsTime()
	}
	return j
}

// Status is how an attempt ended, as recorded by a Recorder.
type Status int

// The attempt outcomes. They match the results service's statuses, plus
// Cancelled, which a results store may record as dead.
const (
	// StatusSucceeded: the handler returned nil; the job is done.
	StatusSucceeded Status = iota + 1
	// StatusFailed: the attempt failed and the job will be retried.
	StatusFailed
	// StatusDead: the attempt failed permanently or was the last allowed.
	StatusDead
	// StatusCancelled: the job was cancelled while it ran.
	StatusCancelled
)

// String returns the lower-case name used in logs and metric labels.
func (s Status) String() string {
	switch s {
	case StatusSucceeded:
		return "succeeded"
	case StatusFailed:
		return "failed"
	case StatusDead:
		return "dead"
	case StatusCancelled:
		return "cancelled"
	}
	return "unknown"
}

// Outcome is one attempt's result, handed to the Recorder before the
// worker acks or nacks.
type Outcome struct {
	JobID      string
	Queue      string
	Type       string
	LeaseToken uint64
	WorkerID   string
	Attempt    int32
	Status     Status
	Output     []byte
	Error      string
	StartedAt  time.Time
	FinishedAt time.Time
}

// Recorder stores attempt outcomes in a system of record (the results
// service), fenced by the lease token. The worker calls Record after each
// attempt and before it acks or nacks, so an acked job always has its
// result stored.
//
// alreadySucceeded reports that an earlier lease of the same job already
// stored a success (its worker died before acking): the worker then acks
// instead of nacking, so the job is not run again. A Recorder returns an
// error wrapping ErrLeaseLost when the store refuses the token as stale;
// the worker then drops the attempt without acking. Any other error is
// retried until Options.SettleTimeout, after which the job is nacked so it
// runs again rather than being acked without a stored result.
type Recorder interface {
	Record(ctx context.Context, o Outcome) (alreadySucceeded bool, err error)
}

// RecorderFunc adapts a function to Recorder.
type RecorderFunc func(ctx context.Context, o Outcome) (bool, error)

// Record calls f.
func (f RecorderFunc) Record(ctx context.Context, o Outcome) (bool, error) { return f(ctx, o) }

// NopRecorder records nothing; it is the default, for deployments without
// a results service.
type NopRecorder struct{}

// Record does nothing.
func (NopRecorder) Record(context.Context, Outcome) (bool, error) { return false, nil }

// Action is what the worker did with an attempt after the handler returned.
type Action int

// The settle actions reported to Options.OnSettle.
const (
	// ActionAcked: the broker accepted the ack; the job succeeded.
	ActionAcked Action = iota + 1
	// ActionNacked: the broker accepted the nack (Settlement.State says
	// whether the job will run again, is dead or cancelled).
	ActionNacked
	// ActionDropped: the worker neither acked nor nacked because its lease
	// was lost (or the settle call failed); the broker will expire the lease
	// or has already moved on.
	ActionDropped
)

// String returns the lower-case name used in logs.
func (a Action) String() string {
	switch a {
	case ActionAcked:
		return "acked"
	case ActionNacked:
		return "nacked"
	case ActionDropped:
		return "dropped"
	}
	return "unknown"
}

// Settlement describes how one attempt ended, for Options.OnSettle.
type Settlement struct {
	Action Action
	// Status is the outcome as recorded.
	Status Status
	// HandlerErr is what the handler returned (a panic becomes an error).
	HandlerErr error
	// Err is why a settle call failed or the attempt was dropped.
	Err error
	// State is the job's state after a nack, as the broker answered.
	State raftqv1.JobState
	// Duration is how long the handler ran.
	Duration time.Duration
}
