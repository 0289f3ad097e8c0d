// Package service is svcd's business layer: the Service interface, input
// validation (bad input never reaches the database), cursor pagination, and
// the Go kit endpoints with their logging, instrumentation and rate-limiting
// middlewares. Transports (svcd/transport) only translate wire formats.
package service

import (
	"context"
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/raftq/raftq/svcd/store"
)

// Service is what svcd does, whatever the transport.
type Service interface {
	// StoreResult validates r and stores it under the fencing rules. A stale
	// token is an error wrapping store.ErrStaleToken.
	StoreResult(ctx context.Context, r store.Result) (store.StoreReply, error)
	// GetResult returns a job's result with its output.
	GetResult(ctx context.Context, jobID string) (store.Result, error)
	// ListResults returns one page of results matching the request.
	ListResults(ctx context.Context, req ListRequest) (ListReply, error)
	// ListAttempts returns a job's attempt history, oldest token first.
	ListAttempts(ctx context.Context, jobID string) ([]store.Attempt, error)
}

// Store is the part of *store.Store the service needs; an interface so the
// service can be tested without a database.
type Store interface {
	StoreResult(ctx context.Context, r store.Result) (store.StoreReply, error)
	GetResult(ctx context.Context, jobID string) (store.Result, error)
	ListResults(ctx context.Context, f store.Filter) ([]store.Result, bool, error)
	Attempts(ctx context.Context, jobID string) ([]store.Attempt, error)
}

// Config holds the service's limits. Zero fields take the defaults.
type Config struct {
	// MaxOutputBytes caps a result's output; default 1 MiB.
	MaxOutputBytes int
	// MaxErrorBytes caps a result's error text; default 64 KiB.
	MaxErrorBytes int
	// DefaultPageSize and MaxPageSize bound ListResults pages; defaults
	// 100 and 1000.
	DefaultPageSize int
	MaxPageSize     int
	// PageOutputBudget caps the outputs in one page when they are asked
	// for, so a page stays under gRPC's default 4 MiB message limit;
	// default 2 MiB (a page always holds at least one result).
	PageOutputBudget int
	// Now defaults finished_at when a worker leaves it out; default
	// time.Now.
	Now func() time.Time
	// Verifier, when set, checks every valid result against the broker's
	// record of its job before anything is written (svcd/brokercheck):
	// the job's queue and lease token come from the broker, not from the
	// caller. Nil trusts the caller (standalone svcd, tests).
	Verifier Verifier
}

// Verifier checks a validated result against the broker's record of its
// job. A nil error lets the write through to the fencing rules; an error
// refuses it with nothing written: ErrUnknownJob, an auth permission
// refusal, store.ErrStaleToken, an *InvalidError (the queue is not the
// job's), or ErrBrokerUnavailable (the worker retries).
type Verifier interface {
	VerifyResult(ctx context.Context, r store.Result) error
}

// Limits on identifiers: they are keys and filter values, not payloads.
const maxIDBytes = 255

// DefaultMaxOutputBytes is the default output limit (1 MiB).
const DefaultMaxOutputBytes = 1 << 20

func (c Config) withDefaults() Config {
	if c.MaxOutputBytes <= 0 {
		c.MaxOutputBytes = DefaultMaxOutputBytes
	}
	if c.MaxErrorBytes <= 0 {
		c.MaxErrorBytes = 64 << 10
	}
	if c.DefaultPageSize <= 0 {
		c.DefaultPageSize = 100
	}
	if c.MaxPageSize <= 0 {
		c.MaxPageSize = 1000
	}
	if c.PageOutputBudget <= 0 {
		c.PageOutputBudget = 2 << 20
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

type service struct {
	st  Store
	cfg Config
}

// New returns the Service over st.
func New(st Store, cfg Config) Service {
	return &service{st: st, cfg: cfg.withDefaults()}
}

// StoreResult validates (filling finished_at) and stores.
func (s *service) StoreResult(ctx context.Context, r store.Result) (store.StoreReply, error) {
	if err := s.validate(&r); err != nil {
		return store.StoreReply{}, err
	}
	if s.cfg.Verifier != nil {
		if err := s.cfg.Verifier.VerifyResult(ctx, r); err != nil {
			return store.StoreReply{}, err
		}
	}
	return s.st.StoreResult(ctx, r)
}

// GetResult checks the id and reads.
func (s *service) GetResult(ctx context.Context, jobID string) (store.Result, error) {
	var v violations
	v.id("job_id", jobID, true)
	if err := v.err(); err != nil {
		return store.Result{}, err
	}
	return s.st.GetResult(ctx, jobID)
}

// ListAttempts checks the id and reads the history.
func (s *service) ListAttempts(ctx context.Context, jobID string) ([]store.Attempt, error) {
	var v violations
	v.id("job_id", jobID, true)
	if err := v.err(); err != nil {
		return nil, err
	}
	return s.st.Attempts(ctx, jobID)
}

// ListRequest asks for one page of results. Zero fields do not filter.
type ListRequest struct {
	Queue          string
	Type           string
	Status         store.Status
	FinishedAfter  time.Time // inclusive
	FinishedBefore time.Time // exclusive
	PageSize       int
	// Cursor is NextCursor of the previous page.
	Cursor        string
	IncludeOutput bool
}

// ListReply is one page; NextCursor is empty on the last page.
type ListReply struct {
	Results    []store.Result
	NextCursor string
}

// ListResults validates the filters, caps the page and, with outputs,
// trims the page to the output budget.
func (s *service) ListResults(ctx context.Context, req ListRequest) (ListReply, error) {
	var v violations
	v.id("queue", req.Queue, false)
	v.id("type", req.Type, false)
	if req.Status != "" && !req.Status.Valid() {
		v.add("status", fmt.Sprintf("%q is not one of succeeded, failed, dead", req.Status))
	}
	if req.PageSize < 0 {
		v.add("page_size", "must not be negative")
	}
	if !req.FinishedAfter.IsZero() && !req.FinishedBefore.IsZero() && !req.FinishedAfter.Before(req.FinishedBefore) {
		v.add("finished_before", "must be after finished_after")
	}
	f := store.Filter{
		Queue:          req.Queue,
		Type:           req.Type,
		Status:         req.Status,
		FinishedAfter:  req.FinishedAfter,
		FinishedBefore: req.FinishedBefore,
		IncludeOutput:  req.IncludeOutput,
	}
	if req.Cursor != "" {
		c, err := DecodeCursor(req.Cursor)
		if err != nil {
			v.add("cursor", err.Error())
		} else {
			f.After = &c
		}
	}
	if err := v.err(); err != nil {
		return ListReply{}, err
	}
	f.Limit = req.PageSize
	if f.Limit == 0 {
		f.Limit = s.cfg.DefaultPageSize
	}
	f.Limit = min(f.Limit, s.cfg.MaxPageSize)

	rs, more, err := s.st.ListResults(ctx, f)
	if err != nil {
		return ListReply{}, err
	}
	if req.IncludeOutput {
		budget := s.cfg.PageOutputBudget
		for i, r := range rs {
			budget -= len(r.Output)
			if budget < 0 && i > 0 {
				rs, more = rs[:i], true
				break
			}
		}
	}
	reply := ListReply{Results: rs}
	if more && len(rs) > 0 {
		last := rs[len(rs)-1]
		reply.NextCursor = EncodeCursor(store.Cursor{FinishedAt: last.FinishedAt, JobID: last.JobID})
	}
	return reply, nil
}

// EncodeCursor makes the opaque page token: the position of the last result
// of a page. Clients must not parse it; its form may change.
func EncodeCursor(c store.Cursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte(
		"v1:" + strconv.FormatInt(c.FinishedAt.UnixMicro(), 10) + ":" + c.JobID))
}

// DecodeCursor parses a token made by EncodeCursor.
func DecodeCursor(s string) (store.Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return store.Cursor{}, fmt.Errorf("malformed cursor")
	}
	parts := strings.SplitN(string(b), ":", 3)
	if len(parts) != 3 || parts[0] != "v1" || parts[2] == "" {
		return store.Cursor{}, fmt.Errorf("malformed cursor")
	}
	us, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return store.Cursor{}, fmt.Errorf("malformed cursor")
	}
	return store.Cursor{FinishedAt: time.UnixMicro(us).UTC(), JobID: parts[2]}, nil
}

// validate checks a write and fills defaults; it reports every problem at
// once so a client fixes its request in one go.
func (s *service) validate(r *store.Result) error {
	var v violations
	v.id("job_id", r.JobID, true)
	v.id("queue", r.Queue, true)
	v.id("type", r.Type, false)
	v.id("worker_id", r.WorkerID, false)
	if r.LeaseToken == 0 {
		v.add("lease_token", "is required (the token of the worker's lease)")
	} else if r.LeaseToken > math.MaxInt64 {
		v.add("lease_token", "is out of range")
	}
	if r.Attempt < 0 {
		v.add("attempt", "must not be negative")
	}
	switch {
	case r.Status == "":
		v.add("status", "is required: succeeded, failed or dead")
	case !r.Status.Valid():
		v.add("status", fmt.Sprintf("%q is not one of succeeded, failed, dead", r.Status))
	}
	if len(r.Output) > s.cfg.MaxOutputBytes {
		v.tooLarge("output", fmt.Sprintf("is %d bytes, over the limit of %d", len(r.Output), s.cfg.MaxOutputBytes))
	}
	if len(r.Error) > s.cfg.MaxErrorBytes {
		v.tooLarge("error", fmt.Sprintf("is %d bytes, over the limit of %d", len(r.Error), s.cfg.MaxErrorBytes))
	} else {
		v.text("error", r.Error)
	}
	if r.FinishedAt.IsZero() {
		r.FinishedAt = s.cfg.Now()
	}
	if !r.StartedAt.IsZero() && r.StartedAt.After(r.FinishedAt) {
		v.add("started_at", "is after finished_at")
	}
	r.CreatedAt, r.UpdatedAt = time.Time{}, time.Time{}
	return v.err()
}

// violations collects what is wrong with a request.
type violations struct{ list []Violation }

func (v *violations) add(field, desc string) {
	v.list = append(v.list, Violation{Field: field, Description: desc})
}

func (v *violations) tooLarge(field, desc string) {
	v.list = append(v.list, Violation{Field: field, Description: desc, TooLarge: true})
}

// text refuses strings the databases cannot hold: PostgreSQL's text rejects
// invalid UTF-8 and NUL bytes, and one backend must not accept what the other
// refuses.
func (v *violations) text(field, s string) {
	if !utf8.ValidString(s) {
		v.add(field, "is not valid UTF-8")
	} else if strings.IndexByte(s, 0) >= 0 {
		v.add(field, "contains a NUL byte")
	}
}

func (v *violations) id(field, s string, required bool) {
	switch {
	case s == "":
		if required {
			v.add(field, "is required")
		}
	case len(s) > maxIDBytes:
		v.tooLarge(field, fmt.Sprintf("is %d bytes, over the limit of %d", len(s), maxIDBytes))
	default:
		v.text(field, s)
	}
}

func (v *violations) err() error {
	if len(v.list) == 0 {
		return nil
	}
	return &InvalidError{Violations: v.list}
}
