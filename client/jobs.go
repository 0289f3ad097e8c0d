package client

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// JobOption sets one optional field of a JobSpec built by NewJob. Options
// exist so that producers do not have to know the wire types (durationpb,
// timestamppb) to ask for a delay or a lease duration.
type JobOption func(*raftqv1.JobSpec)

// NewJob builds the spec of one job of type typ on queue, for Enqueue. Fields
// the options leave unset take the broker's defaults.
func NewJob(queue, typ string, payload []byte, opts ...JobOption) *raftqv1.JobSpec {
	s := &raftqv1.JobSpec{Queue: queue, Type: typ, Payload: payload}
	for _, o := range opts {
		o(s)
	}
	return s
}

// WithPriority runs the job before lower-priority ready jobs of its queue.
func WithPriority(p int32) JobOption { return func(s *raftqv1.JobSpec) { s.Priority = p } }

// WithDelay makes the job runnable no earlier than d after the broker
// commits it. It clears any WithRunAt, since the two are exclusive.
func WithDelay(d time.Duration) JobOption {
	return func(s *raftqv1.JobSpec) { s.Delay, s.RunAt = durationpb.New(d), nil }
}

// WithRunAt makes the job runnable no earlier than t. It clears any
// WithDelay, since the two are exclusive.
func WithRunAt(t time.Time) JobOption {
	return func(s *raftqv1.JobSpec) { s.RunAt, s.Delay = timestamppb.New(t), nil }
}

// WithMaxAttempts bounds how many times the job is leased before it is
// dead-lettered.
func WithMaxAttempts(n int32) JobOption { return func(s *raftqv1.JobSpec) { s.MaxAttempts = n } }

// WithLeaseDuration sets how long a worker holds the job between lease
// extensions; a worker that dies loses the job after at most this long.
func WithLeaseDuration(d time.Duration) JobOption {
	return func(s *raftqv1.JobSpec) { s.LeaseDuration = durationpb.New(d) }
}

// WithIdempotencyKey names the job for de-duplication: enqueueing the same
// key on the same queue inside the dedup window returns the first job.
// Give one when the producer itself may retry (after a crash, say); Enqueue
// makes one per call otherwise.
func WithIdempotencyKey(key string) JobOption {
	return func(s *raftqv1.JobSpec) { s.IdempotencyKey = key }
}

// WithConcurrencyKey groups the job with others of the same key (a tenant,
// a customer id): the broker dispatches a queue's keys round-robin, so one
// busy key cannot starve the others, and the queue's live setting
// max_in_flight_per_key caps the leased jobs of each key across all
// workers. Jobs of one key keep FIFO order within a priority. At most 256
// bytes of printable UTF-8.
func WithConcurrencyKey(key string) JobOption {
	return func(s *raftqv1.JobSpec) { s.ConcurrencyKey = key }
}

// WithScheduleToStart gives the job a schedule-to-start timeout: if no
// worker has leased it within d of when it is due (now, or its delay or
// run_at), it goes dead with last_error "schedule-to-start timeout"
// instead of running late.
func WithScheduleToStart(d time.Duration) JobOption {
	return func(s *raftqv1.JobSpec) { s.ScheduleToStart = durationpb.New(d) }
}

// WithStartToClose gives the job a start-to-close timeout: an attempt
// still running d after its lease began is failed by the broker (its
// worker loses the lease; the job is retried or dead-lettered as for a
// failed attempt), even while the worker keeps extending the lease. d must
// be at least the job's lease duration.
func WithStartToClose(d time.Duration) JobOption {
	return func(s *raftqv1.JobSpec) { s.StartToClose = durationpb.New(d) }
}

// UniqueMode is what an enqueue does when its unique key is held by a job
// of the queue that is not terminal (WithUniqueKey).
type UniqueMode = raftqv1.UniqueMode

// The unique modes.
const (
	// UniqueReturnExisting answers with the existing job's id and
	// duplicate = true (the default).
	UniqueReturnExisting = raftqv1.UniqueMode_UNIQUE_MODE_RETURN_EXISTING
	// UniqueReject refuses the enqueue with ALREADY_EXISTS;
	// raftqerr.ExistingJobID(err) names the existing job.
	UniqueReject = raftqv1.UniqueMode_UNIQUE_MODE_REJECT
	// UniqueDebounce moves a still-scheduled existing job to this
	// enqueue's run time and payload (a debounce: the last of a burst
	// wins, once); an existing job that is ready or running is returned
	// as with UniqueReturnExisting.
	UniqueDebounce = raftqv1.UniqueMode_UNIQUE_MODE_DEBOUNCE
)

// WithUniqueKey makes the job unique by state: while a job of the same
// queue with this key is scheduled, ready or running, another enqueue
// with it creates nothing and does what mode says. Unlike
// WithIdempotencyKey there is no window: the key is free again the moment
// its job succeeds, dies or is cancelled.
func WithUniqueKey(key string, mode UniqueMode) JobOption {
	return func(s *raftqv1.JobSpec) { s.UniqueKey, s.UniqueMode = key, mode }
}

// WithDedupWindow sets how long the idempotency key is remembered.
func WithDedupWindow(d time.Duration) JobOption {
	return func(s *raftqv1.JobSpec) { s.DedupWindow = durationpb.New(d) }
}

// WithRetry sets the exponential back-off between failed attempts:
// initial * 2^(attempt-1), capped at max, jittered into [d/2, d].
func WithRetry(initial, max time.Duration) JobOption {
	return func(s *raftqv1.JobSpec) {
		s.Retry = &raftqv1.RetryPolicy{InitialBackoff: durationpb.New(initial), MaxBackoff: durationpb.New(max)}
	}
}

// EnqueueOne enqueues a single job and returns its id; duplicate reports
// that the idempotency key had already created the job (the id is that
// first job's). Concurrent EnqueueOne calls share one EnqueueStream to the
// leader: each job is sent at once without waiting for the others, and the
// broker commits the jobs in flight together. The outcome is as for
// Enqueue: definite, or IsIndeterminate; the job always carries an
// idempotency key (a fresh one unless given), and the client's own
// retries reuse it, so they never create a second job.
func (c *Client) EnqueueOne(ctx context.Context, queue, typ string, payload []byte, opts ...JobOption) (id string, duplicate bool, err error) {
	spec := NewJob(queue, typ, payload, opts...)
	if err := withKeys([]*raftqv1.JobSpec{spec}); err != nil {
		return "", false, err
	}
	// The producer span covers the wait on the stream; the job carries
	// its context (the stream's own calls are not per job).
	ctx, span := c.startEnqueueSpan(ctx, []*raftqv1.JobSpec{spec})
	res, err := c.enqueueStreamed(ctx, spec)
	endSpan(span, err)
	if err != nil {
		return "", false, err
	}
	return res.GetJobId(), res.GetDuplicate(), nil
}
