package worker

import (
	"errors"
	"time"
)

// Causes of a handler's context being cancelled. A handler can tell them
// apart with context.Cause(ctx), e.g. to skip cleanup that only matters
// when the job will not run again.
var (
	// ErrLeaseLost means the broker refused this worker's lease (another
	// worker holds the job now, or it finished): the job's outcome no longer
	// belongs to this worker, which will neither ack nor nack it.
	ErrLeaseLost = errors.New("worker: lease lost")
	// ErrLeaseExpired means the worker could not extend the lease before its
	// deadline (no broker answered in time). The broker may already have
	// handed the job to another worker, so the handler should stop; the
	// worker still reports the outcome and the broker's fencing decides.
	ErrLeaseExpired = errors.New("worker: lease deadline passed without an extension")
	// ErrJobCancelled means a producer or operator cancelled the job
	// (CancelJob). The worker nacks it and the broker finishes it as
	// cancelled, unless the handler still returns success.
	ErrJobCancelled = errors.New("worker: job cancelled")
	// ErrShutdown means the worker is shutting down and the job did not
	// finish within Options.ShutdownTimeout. The worker nacks it with no
	// back-off so another worker picks it up at once.
	ErrShutdown = errors.New("worker: shutting down")
)

// permanentError marks an error that no retry can fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent wraps err so that the worker dead-letters the job at once
// instead of retrying it: use it for failures no retry can fix (a malformed
// payload, a refused request). Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err (or an error it wraps) was marked with
// Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// retryAfterError carries the delay before the next attempt.
type retryAfterError struct {
	err   error
	after time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfter wraps err so that the job is retried after d instead of the
// job's own back-off: use it when the failure says when to come back (a
// rate limit's Retry-After, a maintenance window). RetryAfter(nil, d) is
// nil; a negative d counts as zero.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	if d < 0 {
		d = 0
	}
	return &retryAfterError{err: err, after: d}
}

// RetryDelay returns the delay set by RetryAfter on err, if any.
func RetryDelay(err error) (time.Duration, bool) {
	var r *retryAfterError
	if errors.As(err, &r) {
		return r.after, true
	}
	return 0, false
}
