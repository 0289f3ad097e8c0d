package results_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/raftq/raftq/results"
	"github.com/raftq/raftq/svcd/svcdtest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func startClient(t *testing.T, b svcdtest.Backend) *results.Client {
	t.Helper()
	return svcdtest.Dial(t, svcdtest.Start(t, b)) // no broker verification: the client alone
}

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func result(job string, token uint64, st results.Status) results.Result {
	return results.Result{
		JobID: job, Queue: "emails", Type: "send", LeaseToken: token, WorkerID: fmt.Sprint("w", token),
		Attempt: int32(token), Status: st, Output: []byte("out"),
		StartedAt: t0, FinishedAt: t0.Add(time.Duration(token) * time.Second),
	}
}

// TestWorkerFlow is what a worker sees: the outcomes that mean "ack", and
// the stale-token error that means "your lease is gone".
func TestWorkerFlow(t *testing.T) {
	svcdtest.Each(t, func(t *testing.T, b svcdtest.Backend) {
		c := startClient(t, b)
		ctx := context.Background()
		steps := []struct {
			token uint64
			st    results.Status
			want  results.Outcome
			stale bool
		}{
			{1, results.StatusFailed, results.OutcomeStored, false},
			{1, results.StatusFailed, results.OutcomeDuplicate, false},
			{3, results.StatusSucceeded, results.OutcomeStored, false},
			{2, results.StatusSucceeded, 0, true},
			{4, results.StatusSucceeded, results.OutcomeAlreadySucceeded, false},
		}
		for _, s := range steps {
			out, err := c.StoreResult(ctx, result("job-1", s.token, s.st))
			if s.stale {
				if !errors.Is(err, results.ErrStaleToken) {
					t.Fatalf("token %d: err %v, want ErrStaleToken", s.token, err)
				}
				if status.Code(err) != codes.FailedPrecondition {
					t.Fatalf("token %d: gRPC code %v", s.token, status.Code(err))
				}
				continue
			}
			if err != nil || out != s.want {
				t.Fatalf("token %d: %v, %v; want %v", s.token, out, err, s.want)
			}
		}
		r, err := c.GetResult(ctx, "job-1")
		if err != nil {
			t.Fatal(err)
		}
		want := result("job-1", 3, results.StatusSucceeded)
		if r.LeaseToken != 3 || r.Status != results.StatusSucceeded || !bytes.Equal(r.Output, want.Output) ||
			!r.FinishedAt.Equal(want.FinishedAt) || !r.StartedAt.Equal(t0) || r.CreatedAt.IsZero() || r.UpdatedAt.Before(r.CreatedAt) {
			t.Fatalf("result %+v", r)
		}
		atts, err := c.Attempts(ctx, "job-1")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, a := range atts {
			got = append(got, fmt.Sprintf("%d:%s:%s", a.LeaseToken, a.Status, a.Outcome))
		}
		if fmt.Sprint(got) != "[1:failed:stored 2:succeeded:stale 3:succeeded:stored 4:succeeded:already_succeeded]" {
			t.Fatalf("attempts %v", got)
		}

		if _, err := c.GetResult(ctx, "nope"); !errors.Is(err, results.ErrNotFound) {
			t.Fatalf("missing: %v", err)
		}
		if _, err := c.Attempts(ctx, "nope"); !errors.Is(err, results.ErrNotFound) {
			t.Fatalf("missing attempts: %v", err)
		}
		bad := result("", 1, results.StatusFailed)
		if _, err := c.StoreResult(ctx, bad); !errors.Is(err, results.ErrInvalidArgument) {
			t.Fatalf("missing job id: %v", err)
		}
		if _, err := c.StoreResult(ctx, result("j", 1, "finished")); !errors.Is(err, results.ErrInvalidArgument) {
			t.Fatalf("bad status: %v", err)
		}
		big := result("big", 1, results.StatusSucceeded)
		big.Output = make([]byte, 1<<20+1)
		var e *results.Error
		if _, err := c.StoreResult(ctx, big); !errors.Is(err, results.ErrInvalidArgument) || !errors.As(err, &e) || e.Reason != "TOO_LARGE" {
			t.Fatalf("oversized output: %v", err)
		}
	})
}

func TestListResults(t *testing.T) {
	svcdtest.Each(t, func(t *testing.T, b svcdtest.Backend) {
		c := startClient(t, b)
		ctx := context.Background()
		for i := 0; i < 30; i++ {
			st := []results.Status{results.StatusSucceeded, results.StatusFailed, results.StatusDead}[i%3]
			r := result(fmt.Sprintf("j%02d", i), 1, st)
			r.FinishedAt = t0.Add(time.Duration(i) * time.Minute)
			if _, err := c.StoreResult(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		var ids []string
		opts := results.ListOptions{Status: results.StatusDead, PageSize: 4, IncludeOutput: true,
			FinishedBefore: t0.Add(25 * time.Minute)}
		for {
			p, err := c.ListResults(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range p.Results {
				if string(r.Output) != "out" {
					t.Fatalf("output %q", r.Output)
				}
				ids = append(ids, r.JobID)
			}
			if p.NextCursor == "" {
				break
			}
			opts.Cursor = p.NextCursor
		}
		if fmt.Sprint(ids) != "[j02 j05 j08 j11 j14 j17 j20 j23]" {
			t.Fatalf("listed %v", ids)
		}
		if _, err := c.ListResults(ctx, results.ListOptions{Cursor: "garbage!"}); !errors.Is(err, results.ErrInvalidArgument) {
			t.Fatalf("bad cursor: %v", err)
		}
	})
}

// TestUnavailable: with nothing listening the client retries, then reports
// ErrUnavailable.
func TestUnavailable(t *testing.T) {
	c, err := results.Dial("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = c.GetResult(ctx, "x")
	if !errors.Is(err, results.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}

// TestParentResults: a workflow child reads its parents' results by id;
// a parent without a stored result is left out, not an error.
func TestParentResults(t *testing.T) {
	svcdtest.Each(t, func(t *testing.T, b svcdtest.Backend) {
		c := startClient(t, b)
		ctx := context.Background()
		for _, id := range []string{"p1", "p2"} {
			r := result(id, 1, results.StatusSucceeded)
			r.Output = []byte("out-" + id)
			if _, err := c.StoreResult(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		got, err := c.ParentResults(ctx, []string{"p1", "none", "p2"})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || string(got["p1"].Output) != "out-p1" || string(got["p2"].Output) != "out-p2" {
			t.Fatalf("ParentResults = %+v", got)
		}
		if got, err := c.ParentResults(ctx, nil); err != nil || len(got) != 0 {
			t.Fatalf("no parents: %v %v", got, err)
		}
	})
}
