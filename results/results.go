// Package results is the Go client of svcd, raftq's results service. Workers
// store each job's outcome with StoreResult before they ack; producers read
// outcomes with GetResult, ListResults and Attempts.
//
// svcd keeps exactly one result per job and fences writes with the lease
// token: a write with an older token than the stored one fails with
// ErrStaleToken (the worker lost its lease: it must not ack), the same token
// again is an idempotent success (OutcomeDuplicate), and a newer token
// replaces a failed or dead result but never a succeeded one
// (OutcomeAlreadySucceeded). Every outcome StoreResult returns without error
// means the worker should ack its lease.
package results

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/raftq/raftq/internal/bearer"
	"github.com/raftq/raftq/internal/tracectx"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/raftqerr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Status is the outcome of an attempt at a job.
type Status string

// The statuses a result can have.
const (
	// StatusSucceeded is final: no later lease replaces it.
	StatusSucceeded Status = "succeeded"
	// StatusFailed is a retryable failure.
	StatusFailed Status = "failed"
	// StatusDead is a permanent failure (or attempts exhausted).
	StatusDead Status = "dead"
)

// Outcome says what svcd did with a write. Whatever the outcome, a nil error
// from StoreResult means the worker should ack.
type Outcome int

// The outcomes.
const (
	OutcomeUnknown Outcome = iota
	// OutcomeStored: the write is now the job's result.
	OutcomeStored
	// OutcomeDuplicate: this lease token's result was stored before (a
	// retry); the first write stays.
	OutcomeDuplicate
	// OutcomeAlreadySucceeded: an older lease already stored a succeeded
	// result, which is kept; the job is done, so ack.
	OutcomeAlreadySucceeded
	// OutcomeStale appears only in attempt history: the write was refused
	// (StoreResult returned ErrStaleToken).
	OutcomeStale
)

// String names the outcome as svcd's logs and HTTP API do.
func (o Outcome) String() string {
	switch o {
	case OutcomeStored:
		return "stored"
	case OutcomeDuplicate:
		return "duplicate"
	case OutcomeAlreadySucceeded:
		return "already_succeeded"
	case OutcomeStale:
		return "stale"
	}
	return "unknown"
}

// Errors to match with errors.Is. Every error from a Client call that svcd
// answered is an *Error, which also carries the gRPC status.
var (
	// ErrStaleToken: the lease token is older than the one svcd holds for
	// the job; another lease has written since. Do not ack.
	ErrStaleToken = errors.New("stale lease token")
	// ErrNotFound: no result is stored for the job.
	ErrNotFound = errors.New("result not found")
	// ErrUnknownJob: svcd verified the result with the brokers and they
	// know no such job, so no lease on it can be held. Do not ack.
	ErrUnknownJob = errors.New("job unknown to the broker")
	// ErrInvalidArgument: svcd refused the request as malformed (missing
	// job id, output over the limit, bad status, ...); nothing was written.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrUnavailable: svcd or its database is unavailable (after the
	// client's own retries); try again later.
	ErrUnavailable = errors.New("results service unavailable")
)

// Error is an error answer from svcd.
type Error struct {
	// Code is the gRPC status code.
	Code codes.Code
	// Reason is the raftq ErrorDetail reason (e.g. "STALE_TOKEN"), if any.
	Reason  string
	Message string
	kind    error
}

// Error gives svcd's message, which names the field or token at fault.
func (e *Error) Error() string { return "results: " + e.Message }

// Is matches the package's sentinel errors.
func (e *Error) Is(target error) bool { return e.kind != nil && target == e.kind }

// GRPCStatus lets status.FromError see the original status.
func (e *Error) GRPCStatus() *status.Status { return status.New(e.Code, e.Message) }

// Result is a job's result.
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
	StartedAt  time.Time
	// FinishedAt defaults to the time svcd receives the write.
	FinishedAt time.Time
	// CreatedAt and UpdatedAt are set by svcd: when it first stored a
	// result for the job, and when it last replaced it.
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Attempt is one entry of a job's history: one per lease token that wrote.
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
	// Outcome is what svcd did with the token's first write.
	Outcome Outcome
}

// ListOptions filters and pages ListResults. Zero fields do not filter.
type ListOptions struct {
	Queue  string
	Type   string
	Status Status
	// FinishedAfter is inclusive, FinishedBefore exclusive.
	FinishedAfter  time.Time
	FinishedBefore time.Time
	// PageSize defaults to 100 (at most 1000).
	PageSize int
	// Cursor is NextCursor of the previous page.
	Cursor string
	// IncludeOutput reads outputs too (pages may then be shorter).
	IncludeOutput bool
}

// Page is one page of ListResults; NextCursor is empty on the last page.
type Page struct {
	Results    []Result
	NextCursor string
}

// Client talks to one svcd. It is safe for concurrent use.
type Client struct {
	conn *grpc.ClientConn
	rpc  raftqv1.ResultsClient
}

// retryConfig retries calls that failed with UNAVAILABLE (svcd restarting,
// its database briefly unreachable). Safe for StoreResult too: a replay of a
// write that did land is answered as a duplicate.
const retryConfig = `{` + retryMethodConfig + `}`

const retryMethodConfig = `
  "methodConfig": [{
    "name": [{"service": "raftq.v1.Results"}],
    "retryPolicy": {
      "maxAttempts": 5,
      "initialBackoff": "0.1s",
      "maxBackoff": "2s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
`

// roundRobinConfig is retryConfig plus round-robin balancing over every
// address a target resolves to (DialTarget).
const roundRobinConfig = `{
  "loadBalancingConfig": [{"round_robin": {}}],` + retryMethodConfig + `}`

// Dial makes a client for the svcd at addr (host:port). It connects lazily;
// extra gRPC options (credentials, interceptors) follow the defaults, which
// are plaintext, retries of UNAVAILABLE, and message limits that fit the
// largest outputs.
func Dial(addr string, opts ...grpc.DialOption) (*Client, error) {
	base := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(retryConfig),
		// The caller's span (the worker's store-result span) goes with
		// the call, so svcd's span joins the job's trace.
		grpc.WithChainUnaryInterceptor(tracectx.UnaryClientInterceptor()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)),
	}
	conn, err := grpc.NewClient(addr, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("results: dial %s: %w", addr, err)
	}
	return &Client{conn: conn, rpc: raftqv1.NewResultsClient(conn)}, nil
}

// DialTarget makes a client for a gRPC target that resolves to several svcd
// instances, such as etcdresolver.SvcdTarget(prefix) with
// etcdresolver.SvcdDialOptions(cli)..., and spreads calls round-robin over
// them. It exists because a service config passed in opts (as
// SvcdDialOptions does, for round_robin) would replace Dial's, losing its
// retries: here the balancing and the retries are one config, applied after
// opts. Otherwise it is Dial: lazy, plaintext unless opts say otherwise, the
// same message limits.
func DialTarget(target string, opts ...grpc.DialOption) (*Client, error) {
	base := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)),
		grpc.WithChainUnaryInterceptor(tracectx.UnaryClientInterceptor()),
	}
	all := append(append(base, opts...), grpc.WithDefaultServiceConfig(roundRobinConfig))
	conn, err := grpc.NewClient(target, all...)
	if err != nil {
		return nil, fmt.Errorf("results: dial %s: %w", target, err)
	}
	return &Client{conn: conn, rpc: raftqv1.NewResultsClient(conn)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// WithTLS is a Dial option that connects over TLS with cfg: svcd is
// verified against its RootCAs and its client certificate is presented
// when svcd asks (client.LoadTLS builds one from files).
func WithTLS(cfg *tls.Config) grpc.DialOption {
	return grpc.WithTransportCredentials(credentials.NewTLS(cfg))
}

// WithToken is a Dial option that sends token as the bearer token of
// every call (svcd's auth). It needs WithTLS: the token never crosses a
// network in clear.
func WithToken(token string) grpc.DialOption {
	return grpc.WithPerRPCCredentials(bearer.Credentials{Token: token})
}

// StoreResult stores r, the outcome of the worker's attempt under lease
// r.LeaseToken. A nil error means ack (see Outcome); ErrStaleToken means the
// lease is lost: do not ack.
func (c *Client) StoreResult(ctx context.Context, r Result) (Outcome, error) {
	if r.Status != StatusSucceeded && r.Status != StatusFailed && r.Status != StatusDead {
		return OutcomeUnknown, &Error{Code: codes.InvalidArgument, Reason: raftqv1.ErrorDetail_INVALID_ARGUMENT.String(),
			Message: fmt.Sprintf("status %q is not one of succeeded, failed, dead", r.Status), kind: ErrInvalidArgument}
	}
	resp, err := c.rpc.StoreResult(ctx, &raftqv1.StoreResultRequest{
		JobId:      r.JobID,
		Queue:      r.Queue,
		Type:       r.Type,
		LeaseToken: r.LeaseToken,
		WorkerId:   r.WorkerID,
		Attempt:    r.Attempt,
		Status:     statusToPB(r.Status),
		Output:     r.Output,
		Error:      r.Error,
		StartedAt:  timeToPB(r.StartedAt),
		FinishedAt: timeToPB(r.FinishedAt),
	})
	if err != nil {
		return OutcomeUnknown, convertErr(err)
	}
	return outcomeFromPB(resp.GetOutcome()), nil
}

// GetResult reads a job's result, output included.
func (c *Client) GetResult(ctx context.Context, jobID string) (Result, error) {
	resp, err := c.rpc.GetResult(ctx, &raftqv1.GetResultRequest{JobId: jobID})
	if err != nil {
		return Result{}, convertErr(err)
	}
	return resultFromPB(resp.GetResult()), nil
}

// ParentResults reads the results of a workflow job's parents (worker
// Job.Parents, or client.Client.Parents) by job id. A parent without a
// stored result (it stored none, or its result expired) is left out of the
// map; any other error ends the call.
func (c *Client) ParentResults(ctx context.Context, parents []string) (map[string]Result, error) {
	out := make(map[string]Result, len(parents))
	for _, id := range parents {
		r, err := c.GetResult(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("result of parent %s: %w", id, err)
		}
		out[id] = r
	}
	return out, nil
}

// ListResults reads one page of results in (finished_at, job_id) order.
func (c *Client) ListResults(ctx context.Context, o ListOptions) (Page, error) {
	resp, err := c.rpc.ListResults(ctx, &raftqv1.ListResultsRequest{
		Queue:          o.Queue,
		Type:           o.Type,
		Status:         statusToPB(o.Status),
		FinishedAfter:  timeToPB(o.FinishedAfter),
		FinishedBefore: timeToPB(o.FinishedBefore),
		PageSize:       int32(min(o.PageSize, 1<<30)),
		Cursor:         o.Cursor,
		IncludeOutput:  o.IncludeOutput,
	})
	if err != nil {
		return Page{}, convertErr(err)
	}
	p := Page{NextCursor: resp.GetNextCursor()}
	for _, r := range resp.GetResults() {
		p.Results = append(p.Results, resultFromPB(r))
	}
	return p, nil
}

// Attempts reads a job's attempt history, oldest lease token first.
func (c *Client) Attempts(ctx context.Context, jobID string) ([]Attempt, error) {
	resp, err := c.rpc.ListAttempts(ctx, &raftqv1.ListAttemptsRequest{JobId: jobID})
	if err != nil {
		return nil, convertErr(err)
	}
	out := make([]Attempt, 0, len(resp.GetAttempts()))
	for _, a := range resp.GetAttempts() {
		out = append(out, Attempt{
			JobID:      a.GetJobId(),
			LeaseToken: a.GetLeaseToken(),
			WorkerID:   a.GetWorkerId(),
			Attempt:    a.GetAttempt(),
			Status:     statusFromPB(a.GetStatus()),
			Error:      a.GetError(),
			StartedAt:  timeFromPB(a.GetStartedAt()),
			FinishedAt: timeFromPB(a.GetFinishedAt()),
			RecordedAt: timeFromPB(a.GetRecordedAt()),
			Outcome:    outcomeFromPB(a.GetOutcome()),
		})
	}
	return out, nil
}

func convertErr(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	e := &Error{Code: st.Code(), Message: st.Message()}
	if d := raftqerr.Detail(err); d != nil {
		e.Reason = d.GetReason().String()
	}
	switch {
	case e.Reason == raftqv1.ErrorDetail_STALE_TOKEN.String():
		e.kind = ErrStaleToken
	case st.Code() == codes.FailedPrecondition && e.Reason == raftqv1.ErrorDetail_NOT_FOUND.String():
		e.kind = ErrUnknownJob
	case st.Code() == codes.NotFound:
		e.kind = ErrNotFound
	case st.Code() == codes.InvalidArgument:
		e.kind = ErrInvalidArgument
	case st.Code() == codes.Unavailable:
		e.kind = ErrUnavailable
	}
	return e
}

func statusToPB(s Status) raftqv1.ResultStatus {
	switch s {
	case StatusSucceeded:
		return raftqv1.ResultStatus_RESULT_STATUS_SUCCEEDED
	case StatusFailed:
		return raftqv1.ResultStatus_RESULT_STATUS_FAILED
	case StatusDead:
		return raftqv1.ResultStatus_RESULT_STATUS_DEAD
	}
	return raftqv1.ResultStatus_RESULT_STATUS_UNSPECIFIED
}

func statusFromPB(s raftqv1.ResultStatus) Status {
	switch s {
	case raftqv1.ResultStatus_RESULT_STATUS_SUCCEEDED:
		return StatusSucceeded
	case raftqv1.ResultStatus_RESULT_STATUS_FAILED:
		return StatusFailed
	case raftqv1.ResultStatus_RESULT_STATUS_DEAD:
		return StatusDead
	}
	return ""
}

func outcomeFromPB(o raftqv1.StoreOutcome) Outcome {
	switch o {
	case raftqv1.StoreOutcome_STORE_OUTCOME_STORED:
		return OutcomeStored
	case raftqv1.StoreOutcome_STORE_OUTCOME_DUPLICATE:
		return OutcomeDuplicate
	case raftqv1.StoreOutcome_STORE_OUTCOME_ALREADY_SUCCEEDED:
		return OutcomeAlreadySucceeded
	case raftqv1.StoreOutcome_STORE_OUTCOME_STALE:
		return OutcomeStale
	}
	return OutcomeUnknown
}

func timeToPB(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func timeFromPB(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}

func resultFromPB(r *raftqv1.JobResult) Result {
	return Result{
		JobID:      r.GetJobId(),
		Queue:      r.GetQueue(),
		Type:       r.GetType(),
		LeaseToken: r.GetLeaseToken(),
		WorkerID:   r.GetWorkerId(),
		Attempt:    r.GetAttempt(),
		Status:     statusFromPB(r.GetStatus()),
		Output:     r.GetOutput(),
		Error:      r.GetError(),
		StartedAt:  timeFromPB(r.GetStartedAt()),
		FinishedAt: timeFromPB(r.GetFinishedAt()),
		CreatedAt:  timeFromPB(r.GetCreatedAt()),
		UpdatedAt:  timeFromPB(r.GetUpdatedAt()),
	}
}
