package store

import (
	"errors"
	"time"
)

// Status is the outcome of one attempt at a job, as stored. The strings are
// what the database holds (a CHECK constraint lists them): never rename.
type Status string

// The statuses a result can have. Only succeeded is final for the fencing
// rules; dead is permanent for the broker but a redriven job runs again under
// a newer lease, so a newer token may replace it.
const (
	StatusSucceeded Status = "succeeded"
	StatusFailed    Status = "failed"
	StatusDead      Status = "dead"
)

// Valid reports whether s is one of the statuses the schema accepts, so that
// callers can refuse bad input before it reaches the database.
func (s Status) Valid() bool {
	return s == StatusSucceeded || s == StatusFailed || s == StatusDead
}

// Outcome says what StoreResult did with a write. The strings are stored in
// the attempts table: never rename.
type Outcome string

// The outcomes of a write; see Decide for the rules that pick one.
const (
	// OutcomeStored: the write is now the job's result.
	OutcomeStored Outcome = "stored"
	// OutcomeDuplicate: the same lease token was stored before; the write
	// is an idempotent retry and the first write stays.
	OutcomeDuplicate Outcome = "duplicate"
	// OutcomeAlreadySucceeded: an older lease already stored a succeeded
	// result, which is never replaced; the worker should ack.
	OutcomeAlreadySucceeded Outcome = "already_succeeded"
	// OutcomeStale: the write's token is older than the stored one; it was
	// refused (StoreResult returns ErrStaleToken) and only its attempt was
	// recorded.
	OutcomeStale Outcome = "stale"
)

// Sentinel errors returned by the store; callers match them with errors.Is
// and the transports map them to status codes in one place.
var (
	// ErrNotFound means no result is stored for the job.
	ErrNotFound = errors.New("result not found")
	// ErrStaleToken means the write's lease token is older than the stored
	// result's: another lease of the job has written since (guarantee G4).
	ErrStaleToken = errors.New("stale lease token")
	// ErrUnavailable means the database could not be reached or stayed busy
	// after the store's retries; the call may be retried later.
	ErrUnavailable = errors.New("database unavailable")
)

// Result is the one result kept per job. Times are UTC with microsecond
// precision, the precision both backends store.
type Result struct {
	JobID      string
	Queue      string
	Type       string
	LeaseToken uint64
	WorkerID   string
	Attempt    int32
	Status     Status
	Output     []byte
	Error      string
	StartedAt  time.Time // zero when the worker did not say
	FinishedAt time.Time
	// CreatedAt is when svcd first stored a result for the job; UpdatedAt
	// when it last replaced it. Set by the store; ignored on input.
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Attempt is one entry of a job's history: the first write of each distinct
// lease token, whatever became of it.
type Attempt struct {
	JobID      string
	LeaseToken uint64
	WorkerID   string
	Attempt    int32
	Status     Status
	Error      string
	StartedAt  time.Time
	FinishedAt time.Time
	RecordedAt time.Time
	Outcome    Outcome
}

// StoreReply is what StoreResult answers: the outcome and the job's result as
// stored after the call (without its output, which the caller already has or
// can read with GetResult).
type StoreReply struct {
	Outcome Outcome
	Result  Result
}

// Cursor is the position after which a listing continues: keyset pagination
// on (finished_at, job_id) stays correct while rows are inserted.
type Cursor struct {
	FinishedAt time.Time
	JobID      string
}

// Filter selects results for ListResults. Zero fields do not filter.
type Filter struct {
	Queue  string
	Type   string
	Status Status
	// FinishedAfter is inclusive, FinishedBefore exclusive.
	FinishedAfter  time.Time
	FinishedBefore time.Time
	// After continues a listing after the given position.
	After *Cursor
	// Limit is the page size; the store does not cap it (the service does).
	Limit int
	// IncludeOutput reads outputs too; listings leave them out by default
	// because each may be up to the output limit.
	IncludeOutput bool
}

// Stats counts rows, for tests and operators. It is a full count: keep it off
// hot paths.
type Stats struct {
	Results  int64
	Attempts int64
}

// Decide applies the fencing rules to a write with lease token token, given
// the stored result's token and status. It is the whole rule set, kept pure
// so the table in DESIGN.md and the tests check exactly what runs:
//
//	token <  stored token             → stale (refused)
//	token == stored token             → duplicate (idempotent, first write stays)
//	token >  stored, stored succeeded → already succeeded (not replaced; ack)
//	token >  stored, failed or dead   → stored (replaces)
//
// With no stored result every write is stored.
func Decide(storedToken uint64, storedStatus Status, token uint64) Outcome {
	switch {
	case token < storedToken:
		return OutcomeStale
	case token == storedToken:
		return OutcomeDuplicate
	case storedStatus == StatusSucceeded:
		return OutcomeAlreadySucceeded
	default:
		return OutcomeStored
	}
}

// normTime is how every time enters the store: UTC (so SQLite's text
// timestamps compare correctly as strings) truncated to microseconds (what
// PostgreSQL keeps), so both backends give back exactly what was written.
func normTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}
