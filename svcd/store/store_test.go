package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/raftq/raftq/svcd/store"
	"github.com/raftq/raftq/svcd/svcdtest"
)

func cfgFor(b svcdtest.Backend) store.Config {
	return store.Config{Driver: b.Driver, DSN: b.DSN, DataDir: b.DataDir}
}

func openStore(t testing.TB, b svcdtest.Backend) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), cfgFor(b))
	if err != nil {
		t.Fatalf("open %s: %v", b.Name, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func res(job string, token uint64, st store.Status) store.Result {
	return store.Result{
		JobID:      job,
		Queue:      "q",
		Type:       "email",
		LeaseToken: token,
		WorkerID:   fmt.Sprintf("w%d", token),
		Attempt:    int32(token),
		Status:     st,
		Output:     []byte(fmt.Sprintf("out-%s-%d", job, token)),
		Error:      map[store.Status]string{store.StatusFailed: "boom", store.StatusDead: "fatal"}[st],
		StartedAt:  t0.Add(time.Duration(token) * time.Second),
		FinishedAt: t0.Add(time.Duration(token)*time.Second + 500*time.Millisecond + 123456789),
	}
}

func TestDecide(t *testing.T) {
	S, F, D := store.StatusSucceeded, store.StatusFailed, store.StatusDead
	for _, tc := range []struct {
		stored uint64
		status store.Status
		token  uint64
		want   store.Outcome
	}{
		{5, F, 4, store.OutcomeStale},
		{5, S, 4, store.OutcomeStale},
		{5, D, 1, store.OutcomeStale},
		{5, F, 5, store.OutcomeDuplicate},
		{5, S, 5, store.OutcomeDuplicate},
		{5, D, 5, store.OutcomeDuplicate},
		{5, S, 6, store.OutcomeAlreadySucceeded},
		{5, F, 6, store.OutcomeStored},
		{5, D, 9, store.OutcomeStored},
	} {
		if got := store.Decide(tc.stored, tc.status, tc.token); got != tc.want {
			t.Errorf("Decide(stored %d %s, token %d) = %s, want %s", tc.stored, tc.status, tc.token, got, tc.want)
		}
	}
}

// TestFencing walks each rule through the real database, checking the
// answer, the row left behind and the history.
func TestFencing(t *testing.T) {
	S, F, D := store.StatusSucceeded, store.StatusFailed, store.StatusDead
	type step struct {
		token   uint64
		status  store.Status
		want    store.Outcome // OutcomeStale means ErrStaleToken
		wantTok uint64        // stored token after the step
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"first write is stored", []step{{3, F, store.OutcomeStored, 3}}},
		{"same token is a duplicate and the first write stays", []step{{3, F, store.OutcomeStored, 3}, {3, S, store.OutcomeDuplicate, 3}}},
		{"older token is refused", []step{{5, F, store.OutcomeStored, 5}, {4, S, store.OutcomeStale, 5}}},
		{"older token after success is refused", []step{{5, S, store.OutcomeStored, 5}, {2, S, store.OutcomeStale, 5}}},
		{"newer token replaces failed", []step{{1, F, store.OutcomeStored, 1}, {2, S, store.OutcomeStored, 2}}},
		{"newer token replaces dead (redrive)", []step{{1, D, store.OutcomeStored, 1}, {7, F, store.OutcomeStored, 7}}},
		{"newer token never replaces succeeded", []step{{1, S, store.OutcomeStored, 1}, {2, F, store.OutcomeAlreadySucceeded, 1}, {3, S, store.OutcomeAlreadySucceeded, 1}}},
		{"retry chain", []step{{1, F, store.OutcomeStored, 1}, {2, F, store.OutcomeStored, 2}, {1, F, store.OutcomeStale, 2}, {3, S, store.OutcomeStored, 3}, {3, S, store.OutcomeDuplicate, 3}, {4, F, store.OutcomeAlreadySucceeded, 3}}},
	}
	svcdtest.Each(t, func(t *testing.T, b svcdtest.Backend) {
		s := openStore(t, b)
		ctx := context.Background()
		for i, tc := range cases {
			job := fmt.Sprintf("job-%d", i)
			writes := map[uint64]store.Result{}
			for n, st := range tc.steps {
				in := res(job, st.token, st.status)
				if _, seen := writes[st.token]; !seen {
					writes[st.token] = in
				}
				reply, err := s.StoreResult(ctx, in)
				if st.want == store.OutcomeStale {
					if !errors.Is(err, store.ErrStaleToken) {
						t.Fatalf("%s step %d: err = %v, want ErrStaleToken", tc.name, n, err)
					}
				} else if err != nil {
					t.Fatalf("%s step %d: %v", tc.name, n, err)
				} else if reply.Outcome != st.want {
					t.Fatalf("%s step %d: outcome %s, want %s", tc.name, n, reply.Outcome, st.want)
				}
				if reply.Result.LeaseToken != st.wantTok {
					t.Fatalf("%s step %d: reply token %d, want %d", tc.name, n, reply.Result.LeaseToken, st.wantTok)
				}
				got, err := s.GetResult(ctx, job)
				if err != nil {
					t.Fatal(err)
				}
				want := writes[st.wantTok]
				if got.LeaseToken != want.LeaseToken || got.Status != want.Status || !bytes.Equal(got.Output, want.Output) ||
					got.WorkerID != want.WorkerID || got.Error != want.Error ||
					!got.StartedAt.Equal(want.StartedAt.Truncate(time.Microsecond)) ||
					!got.FinishedAt.Equal(want.FinishedAt.Truncate(time.Microsecond)) {
					t.Fatalf("%s step %d: stored %+v, want %+v", tc.name, n, got, want)
				}
			}
			atts, err := s.Attempts(ctx, job)
			if err != nil {
				t.Fatal(err)
			}
			if len(atts) != len(writes) {
				t.Fatalf("%s: %d attempts, want %d (one per distinct token)", tc.name, len(atts), len(writes))
			}
			for i := 1; i < len(atts); i++ {
				if atts[i-1].LeaseToken >= atts[i].LeaseToken {
					t.Fatalf("%s: attempts not in token order: %+v", tc.name, atts)
				}
			}
		}
	})
}

func TestResultRoundTrip(t *testing.T) {
	svcdtest.Each(t, func(t *testing.T, b svcdtest.Backend) {
		now := time.Date(2026, 1, 2, 3, 4, 5, 6789, time.FixedZone("x", 3600))
		cfg := cfgFor(b)
		cfg.Now = func() time.Time { return now }
		s, err := store.Open(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ctx := context.Background()
		in := res("rt", 42, store.StatusSucceeded)
		in.StartedAt = time.Time{} // optional
		in.Output = bytes.Repeat([]byte{0, 1, 2, 255}, 1000)
		in.Error = "ünïcode ✓"
		if _, err := s.StoreResult(ctx, in); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetResult(ctx, "rt")
		if err != nil {
			t.Fatal(err)
		}
		wantNow := now.UTC().Truncate(time.Microsecond)
		if !got.CreatedAt.Equal(wantNow) || !got.UpdatedAt.Equal(wantNow) || got.CreatedAt.Location() != time.UTC {
			t.Errorf("created/updated = %v/%v, want %v UTC", got.CreatedAt, got.UpdatedAt, wantNow)
		}
		if !got.StartedAt.IsZero() || !bytes.Equal(got.Output, in.Output) || got.Error != in.Error || got.Type != "email" || got.Attempt != 42 {
			t.Errorf("round trip: got %+v", got)
		}
		if _, err := s.GetResult(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("missing job: err = %v, want ErrNotFound", err)
		}
		if _, err := s.Attempts(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("missing job attempts: err = %v, want ErrNotFound", err)
		}
		// Replacement keeps created_at and moves updated_at.
		in2 := res("rt2", 1, store.StatusFailed)
		if _, err := s.StoreResult(ctx, in2); err != nil {
			t.Fatal(err)
		}
		now = now.Add(time.Minute)
		if _, err := s.StoreResult(ctx, res("rt2", 2, store.StatusSucceeded)); err != nil {
			t.Fatal(err)
		}
		got, _ = s.GetResult(ctx, "rt2")
		if !got.CreatedAt.Equal(wantNow) || !got.UpdatedAt.Equal(wantNow.Add(time.Minute)) {
			t.Errorf("after replace created/updated = %v/%v", got.CreatedAt, got.UpdatedAt)
		}
	})
}

func TestListResults(t *testing.T) {
	svcdtest.Each(t, func(t *testing.T, b svcdtest.Backend) {
		s := openStore(t, b)
		ctx := context.Background()
		statuses := []store.Status{store.StatusSucceeded, store.StatusFailed, store.StatusDead}
		const n = 60
		for i := 0; i < n; i++ {
			in := res(fmt.Sprintf("j%03d", i), 1, statuses[i%3])
			in.Queue = []string{"a", "b"}[i%2]
			in.Type = []string{"x", "y", "z", "w"}[i%4]
			// Pairs share a finished_at so job_id breaks the tie.
			in.FinishedAt = t0.Add(time.Duration(i/2) * time.Millisecond)
			if _, err := s.StoreResult(ctx, in); err != nil {
				t.Fatal(err)
			}
		}
		list := func(f store.Filter) []string {
			t.Helper()
			var ids []string
			f.Limit = 7
			for pages := 0; ; pages++ {
				rs, more, err := s.ListResults(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range rs {
					ids = append(ids, r.JobID)
					if (r.Output != nil) != f.IncludeOutput {
						t.Fatalf("output present = %v, include_output = %v", r.Output != nil, f.IncludeOutput)
					}
				}
				if !more {
					return ids
				}
				last := rs[len(rs)-1]
				f.After = &store.Cursor{FinishedAt: last.FinishedAt, JobID: last.JobID}
				if pages > n {
					t.Fatal("pagination does not end")
				}
			}
		}
		want := func(pred func(i int) bool) []string {
			var ids []string
			for i := 0; i < n; i++ {
				if pred(i) {
					ids = append(ids, fmt.Sprintf("j%03d", i))
				}
			}
			return ids
		}
		for _, tc := range []struct {
			name string
			f    store.Filter
			want []string
		}{
			{"all", store.Filter{}, want(func(int) bool { return true })},
			{"with output", store.Filter{IncludeOutput: true}, want(func(int) bool { return true })},
			{"queue", store.Filter{Queue: "b"}, want(func(i int) bool { return i%2 == 1 })},
			{"type", store.Filter{Type: "z"}, want(func(i int) bool { return i%4 == 2 })},
			{"status", store.Filter{Status: store.StatusDead}, want(func(i int) bool { return i%3 == 2 })},
			{"queue+status", store.Filter{Queue: "a", Status: store.StatusSucceeded}, want(func(i int) bool { return i%2 == 0 && i%3 == 0 })},
			{"time range", store.Filter{FinishedAfter: t0.Add(5 * time.Millisecond), FinishedBefore: t0.Add(10 * time.Millisecond)},
				want(func(i int) bool { return i/2 >= 5 && i/2 < 10 })},
			{"nothing", store.Filter{Queue: "none"}, nil},
		} {
			if got := list(tc.f); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
			}
		}
	})
}

func TestMigrationsIdempotent(t *testing.T) {
	svcdtest.Each(t, func(t *testing.T, b svcdtest.Backend) {
		ctx := context.Background()
		// Several processes starting at once on a fresh database, then
		// again on a migrated one.
		for round := 0; round < 2; round++ {
			errs := make(chan error, 3)
			for i := 0; i < 3; i++ {
				go func() {
					s, err := store.Open(ctx, cfgFor(b))
					if err == nil {
						_, err = s.StoreResult(ctx, res(fmt.Sprintf("m%d-%d", round, i), 1, store.StatusSucceeded))
						s.Close()
					}
					errs <- err
				}()
			}
			for i := 0; i < 3; i++ {
				if err := <-errs; err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
			}
		}
		s := openStore(t, b)
		st, err := s.Stats(ctx)
		if err != nil || st.Results != 6 || st.Attempts != 6 {
			t.Fatalf("stats = %+v, %v; want 6 results, 6 attempts", st, err)
		}
	})
}

func TestIsTransient(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&pgconn.PgError{Code: "40001"}, true},
		{fmt.Errorf("wrapped: %w", &pgconn.PgError{Code: "40P01"}), true},
		{&pgconn.PgError{Code: "08006"}, true},
		{&pgconn.PgError{Code: "57P01"}, true},
		{&pgconn.PgError{Code: "23505"}, false}, // unique_violation
		{&pgconn.PgError{Code: "23514"}, false}, // check_violation
		{context.Canceled, false},
		{context.DeadlineExceeded, false},
		{errors.New("syntax error"), false},
		{nil, false},
	} {
		if got := store.IsTransient(tc.err); got != tc.want {
			t.Errorf("IsTransient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
