package service_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/kit/ratelimit"
	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/raftq/raftq/svcd/service"
	"github.com/raftq/raftq/svcd/store"
)

// fakeStore records calls; the service must not call it for bad input.
type fakeStore struct {
	stored []store.Result
	rows   []store.Result
	filter store.Filter
}

func (f *fakeStore) StoreResult(_ context.Context, r store.Result) (store.StoreReply, error) {
	f.stored = append(f.stored, r)
	return store.StoreReply{Outcome: store.OutcomeStored, Result: r}, nil
}
func (f *fakeStore) GetResult(_ context.Context, id string) (store.Result, error) {
	return store.Result{}, fmt.Errorf("%w: %s", store.ErrNotFound, id)
}
func (f *fakeStore) ListResults(_ context.Context, flt store.Filter) ([]store.Result, bool, error) {
	f.filter = flt
	n := min(flt.Limit, len(f.rows))
	return f.rows[:n], n < len(f.rows), nil
}
func (f *fakeStore) Attempts(_ context.Context, id string) ([]store.Attempt, error) {
	return nil, nil
}

var now = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func good() store.Result {
	return store.Result{JobID: "j", Queue: "q", LeaseToken: 1, Status: store.StatusSucceeded, FinishedAt: now}
}

func TestValidation(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mod      func(r *store.Result)
		fields   string
		tooLarge bool
	}{
		{"missing job id", func(r *store.Result) { r.JobID = "" }, "[job_id]", false},
		{"missing queue", func(r *store.Result) { r.Queue = "" }, "[queue]", false},
		{"zero token", func(r *store.Result) { r.LeaseToken = 0 }, "[lease_token]", false},
		{"token over int64", func(r *store.Result) { r.LeaseToken = 1 << 63 }, "[lease_token]", false},
		{"negative attempt", func(r *store.Result) { r.Attempt = -1 }, "[attempt]", false},
		{"missing status", func(r *store.Result) { r.Status = "" }, "[status]", false},
		{"bad status", func(r *store.Result) { r.Status = "ok" }, "[status]", false},
		{"output over 1 MiB", func(r *store.Result) { r.Output = make([]byte, 1<<20+1) }, "[output]", true},
		{"error over 64 KiB", func(r *store.Result) { r.Error = strings.Repeat("e", 64<<10+1) }, "[error]", true},
		{"long type", func(r *store.Result) { r.Type = strings.Repeat("t", 256) }, "[type]", true},
		{"invalid UTF-8", func(r *store.Result) { r.WorkerID = "\xff" }, "[worker_id]", false},
		{"NUL", func(r *store.Result) { r.Error = "\x00" }, "[error]", false},
		{"started after finished", func(r *store.Result) { r.StartedAt = now.Add(time.Second) }, "[started_at]", false},
		{"several at once", func(r *store.Result) { r.JobID, r.Status = "", "x" }, "[job_id status]", false},
		{"too large and missing", func(r *store.Result) { r.JobID, r.Output = "", make([]byte, 1<<20+1) }, "[job_id output]", false},
	} {
		fs := &fakeStore{}
		svc := service.New(fs, service.Config{})
		r := good()
		tc.mod(&r)
		_, err := svc.StoreResult(context.Background(), r)
		var inv *service.InvalidError
		if !errors.As(err, &inv) || !errors.Is(err, service.ErrInvalidArgument) {
			t.Errorf("%s: err = %v, want InvalidError", tc.name, err)
			continue
		}
		var fields []string
		for _, v := range inv.Violations {
			fields = append(fields, v.Field)
		}
		if fmt.Sprint(fields) != tc.fields || errors.Is(err, service.ErrTooLarge) != tc.tooLarge {
			t.Errorf("%s: fields %v too-large %v (%v); want %s %v", tc.name, fields, errors.Is(err, service.ErrTooLarge), err, tc.fields, tc.tooLarge)
		}
		if len(fs.stored) != 0 {
			t.Errorf("%s: bad input reached the store", tc.name)
		}
	}
}

func TestDefaults(t *testing.T) {
	fs := &fakeStore{}
	svc := service.New(fs, service.Config{Now: func() time.Time { return now }, MaxOutputBytes: 10})
	r := good()
	r.FinishedAt = time.Time{}
	r.Output = make([]byte, 10)
	if _, err := svc.StoreResult(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if !fs.stored[0].FinishedAt.Equal(now) {
		t.Fatalf("finished_at defaulted to %v", fs.stored[0].FinishedAt)
	}
	r.Output = make([]byte, 11)
	if _, err := svc.StoreResult(context.Background(), r); !errors.Is(err, service.ErrTooLarge) {
		t.Fatalf("configured limit: %v", err)
	}
}

func TestCursor(t *testing.T) {
	c := store.Cursor{FinishedAt: time.Date(2026, 2, 3, 4, 5, 6, 789000, time.UTC), JobID: "a:b/c"}
	got, err := service.DecodeCursor(service.EncodeCursor(c))
	if err != nil || !got.FinishedAt.Equal(c.FinishedAt) || got.JobID != c.JobID {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for _, bad := range []string{"", "!!", "djE6eDp5", "djI6MTox"} { // "", junk, "v1:x:y", "v2:1:1"
		if _, err := service.DecodeCursor(bad); err == nil {
			t.Errorf("DecodeCursor(%q) accepted", bad)
		}
	}
}

func TestListPaging(t *testing.T) {
	fs := &fakeStore{}
	for i := 0; i < 10; i++ {
		fs.rows = append(fs.rows, store.Result{JobID: fmt.Sprint(i), FinishedAt: now, Output: make([]byte, 400)})
	}
	svc := service.New(fs, service.Config{PageOutputBudget: 1000, MaxPageSize: 8})
	ctx := context.Background()

	rep, err := svc.ListResults(ctx, service.ListRequest{PageSize: 50})
	if err != nil || fs.filter.Limit != 8 || len(rep.Results) != 8 || rep.NextCursor == "" {
		t.Fatalf("page size capped: limit %d, %d results, cursor %q, %v", fs.filter.Limit, len(rep.Results), rep.NextCursor, err)
	}
	rep, err = svc.ListResults(ctx, service.ListRequest{IncludeOutput: true})
	if err != nil || len(rep.Results) != 2 || rep.NextCursor == "" {
		t.Fatalf("output budget: %d results, cursor %q, %v", len(rep.Results), rep.NextCursor, err)
	}
	c, _ := service.DecodeCursor(rep.NextCursor)
	if c.JobID != "1" {
		t.Fatalf("cursor after %q, want 1", c.JobID)
	}
	fs.rows[0].Output = make([]byte, 5000) // one huge row still makes a page
	rep, _ = svc.ListResults(ctx, service.ListRequest{IncludeOutput: true})
	if len(rep.Results) != 1 {
		t.Fatalf("huge first row: %d results", len(rep.Results))
	}
	for _, req := range []service.ListRequest{
		{Status: "nope"}, {PageSize: -1}, {Cursor: "??"},
		{FinishedAfter: now, FinishedBefore: now},
	} {
		if _, err := svc.ListResults(ctx, req); !errors.Is(err, service.ErrInvalidArgument) {
			t.Errorf("%+v: %v, want invalid", req, err)
		}
	}
}

type denyAll struct{}

func (denyAll) Allow() bool { return false }

func TestMiddlewares(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := service.NewMetrics(reg)
	var logs bytes.Buffer
	eps := service.MakeEndpoints(service.New(&fakeStore{}, service.Config{}), service.Options{
		Logger: log.NewLogfmtLogger(&logs), Metrics: m,
	})
	ctx := context.Background()
	if _, err := eps.StoreResult(ctx, service.StoreResultRequest{Result: good()}); err != nil {
		t.Fatal(err)
	}
	if _, err := eps.GetResult(ctx, service.GetResultRequest{JobID: "x"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	if _, err := eps.GetResult(ctx, service.GetResultRequest{}); !errors.Is(err, service.ErrInvalidArgument) {
		t.Fatal(err)
	}
	if n := seriesCount(t, reg, "svcd_requests_total"); n != 3 {
		t.Errorf("%d request series, want 3 (ok, not_found, invalid_argument)", n)
	}
	if !strings.Contains(logs.String(), "method=StoreResult") || !strings.Contains(logs.String(), "outcome=stored") ||
		!strings.Contains(logs.String(), "kind=not_found") {
		t.Errorf("logs: %s", logs.String())
	}

	limited := service.MakeEndpoints(service.New(&fakeStore{}, service.Config{}), service.Options{Limiter: denyAll{}})
	if _, err := limited.StoreResult(ctx, service.StoreResultRequest{Result: good()}); !errors.Is(err, ratelimit.ErrLimited) ||
		service.KindOf(err) != service.KindRateLimited {
		t.Fatalf("limited: %v", err)
	}
}

func TestKindOf(t *testing.T) {
	for err, want := range map[error]service.Kind{
		nil:                                      service.KindOK,
		fmt.Errorf("x: %w", store.ErrStaleToken): service.KindStaleToken,
		store.ErrNotFound:                        service.KindNotFound,
		store.ErrUnavailable:                     service.KindUnavailable,
		context.Canceled:                         service.KindCanceled,
		context.DeadlineExceeded:                 service.KindDeadlineExceeded,
		errors.New("disk on fire"):               service.KindInternal,
	} {
		if got := service.KindOf(err); got != want {
			t.Errorf("KindOf(%v) = %s, want %s", err, got, want)
		}
	}
}

func seriesCount(t *testing.T, reg *prometheus.Registry, name string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}
