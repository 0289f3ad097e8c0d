package service

import (
	"context"
	"errors"
	"strings"

	"github.com/go-kit/kit/ratelimit"
	"github.com/raftq/raftq/internal/auth"
	"github.com/raftq/raftq/svcd/store"
)

// Sentinel errors of the service layer. An *InvalidError matches both as
// appropriate, so callers use errors.Is and never the concrete type unless
// they want the field list.
var (
	// ErrInvalidArgument: the request is malformed; nothing was written.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrTooLarge: a field is over its size limit (also ErrInvalidArgument).
	ErrTooLarge = errors.New("too large")
	// ErrUnknownJob: the broker has no job with the result's id, so no
	// lease for it can exist; nothing was written.
	ErrUnknownJob = errors.New("unknown job")
	// ErrBrokerUnavailable: the broker could not be asked about the job
	// (no leader, unreachable, timed out); nothing was written, the
	// worker retries.
	ErrBrokerUnavailable = errors.New("broker unavailable")
)

// Violation is one problem with a request field.
type Violation struct {
	Field       string `json:"field"`
	Description string `json:"description"`
	// TooLarge marks size-limit violations.
	TooLarge bool `json:"too_large,omitempty"`
}

// InvalidError lists everything wrong with a request; transports put the
// list into their error details (google.rpc.BadRequest, the JSON body).
type InvalidError struct {
	Violations []Violation
}

// Error lists every violation, so one answer tells the client all to fix.
func (e *InvalidError) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.Field + " " + v.Description
	}
	return "invalid argument: " + strings.Join(parts, "; ")
}

// Is makes errors.Is(err, ErrInvalidArgument) true, and errors.Is(err,
// ErrTooLarge) true when every violation is a size limit.
func (e *InvalidError) Is(target error) bool {
	switch target {
	case ErrInvalidArgument:
		return true
	case ErrTooLarge:
		for _, v := range e.Violations {
			if !v.TooLarge {
				return false
			}
		}
		return len(e.Violations) > 0
	}
	return false
}

// Kind classifies an error for metrics, logs and the transports' status
// mapping (the one place errors become codes is transport.codeFor, which
// switches on Kind).
type Kind string

// The kinds of outcome a request can have.
const (
	KindOK               Kind = "ok"
	KindInvalidArgument  Kind = "invalid_argument"
	KindTooLarge         Kind = "too_large"
	KindStaleToken       Kind = "stale_token"
	KindNotFound         Kind = "not_found"
	KindRateLimited      Kind = "rate_limited"
	KindUnavailable      Kind = "unavailable"
	KindCanceled         Kind = "canceled"
	KindDeadlineExceeded Kind = "deadline_exceeded"
	KindInternal         Kind = "internal"
	// KindUnauthenticated: no valid token (auth on).
	KindUnauthenticated Kind = "unauthenticated"
	// KindPermissionDenied: the caller's roles or queues do not allow the
	// call; nothing was read or written.
	KindPermissionDenied Kind = "permission_denied"
	// KindUnknownJob: the broker knows no such job (ErrUnknownJob).
	KindUnknownJob Kind = "unknown_job"
	// KindBrokerUnavailable: the result could not be verified with the
	// broker (ErrBrokerUnavailable).
	KindBrokerUnavailable Kind = "broker_unavailable"
)

// KindOf classifies err.
func KindOf(err error) Kind {
	switch {
	case err == nil:
		return KindOK
	case errors.Is(err, ErrTooLarge):
		return KindTooLarge
	case errors.Is(err, ErrInvalidArgument):
		return KindInvalidArgument
	case errors.Is(err, store.ErrStaleToken):
		return KindStaleToken
	case errors.Is(err, store.ErrNotFound):
		return KindNotFound
	case errors.Is(err, ErrUnknownJob):
		return KindUnknownJob
	case errors.Is(err, ErrBrokerUnavailable):
		return KindBrokerUnavailable
	case errors.Is(err, auth.ErrUnauthenticated):
		return KindUnauthenticated
	case errors.Is(err, auth.ErrPermissionDenied):
		return KindPermissionDenied
	case errors.Is(err, ratelimit.ErrLimited), errors.Is(err, auth.ErrRateLimited):
		return KindRateLimited
	case errors.Is(err, context.Canceled):
		return KindCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return KindDeadlineExceeded
	case errors.Is(err, store.ErrUnavailable), store.IsTransient(err):
		return KindUnavailable
	}
	return KindInternal
}
