package store_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"

	"github.com/raftq/raftq/svcd/store"
	"github.com/raftq/raftq/svcd/svcdtest"
)

// The model below restates the fencing rules from the issue independently
// of store.Decide, and the concurrency test computes each job's expected
// result from it.

type modelState struct {
	token  uint64
	status store.Status
}

func modelApply(cur *modelState, token uint64, st store.Status) *modelState {
	switch {
	case cur == nil:
		return &modelState{token, st} // first result
	case token <= cur.token:
		return cur // older: refused; same: idempotent
	case cur.status == store.StatusSucceeded:
		return cur // a success is never replaced
	default:
		return &modelState{token, st} // newer replaces failed/dead
	}
}

// modelFinals returns every final state some order of the writes can reach.
// Repeating a token changes nothing, so orders of distinct tokens suffice.
func modelFinals(seed *modelState, tokens []uint64, status func(uint64) store.Status) map[modelState]bool {
	out := map[modelState]bool{}
	var rec func(cur *modelState, left []uint64)
	rec = func(cur *modelState, left []uint64) {
		if len(left) == 0 {
			out[*cur] = true
			return
		}
		for i, tok := range left {
			rest := append(append([]uint64{}, left[:i]...), left[i+1:]...)
			rec(modelApply(cur, tok, status(tok)), rest)
		}
	}
	rec(seed, tokens)
	return out
}

// concJob is one job of the concurrency test: an optional seed write stored
// before the race, and the tokens the goroutines race with.
type concJob struct {
	id     string
	seed   uint64 // 0: none
	tokens []uint64
	status map[uint64]store.Status
}

func (j concJob) result(token uint64) store.Result {
	r := res(j.id, token, j.status[token])
	r.WorkerID = fmt.Sprintf("worker-%d", token)
	return r
}

func concJobs(n int) []concJob {
	S, F, D := store.StatusSucceeded, store.StatusFailed, store.StatusDead
	kinds := []struct {
		seed   uint64
		status map[uint64]store.Status
	}{
		// Retries that all failed: the newest token wins.
		{0, map[uint64]store.Status{1: F, 2: D, 3: F, 4: F}},
		// Failures then a success under the newest lease.
		{0, map[uint64]store.Status{1: F, 2: F, 3: S}},
		// Succeeded before the race: older tokens are stale, newer ones
		// are told the job already succeeded; nothing replaces it.
		{5, map[uint64]store.Status{3: F, 4: S, 5: S, 6: F, 7: S}},
		// Failed before the race: older tokens stale, newer ones replace.
		{5, map[uint64]store.Status{2: S, 5: F, 6: F, 8: D, 9: F}},
		// Two workers both succeeded (a lease expired, the first worker
		// was slow): either may win, never a failure.
		{0, map[uint64]store.Status{1: F, 2: S, 3: S}},
		// A success racing a newer failure: order decides.
		{0, map[uint64]store.Status{1: S, 2: F}},
	}
	jobs := make([]concJob, n)
	for i := range jobs {
		k := kinds[i%len(kinds)]
		j := concJob{id: fmt.Sprintf("job-%04d", i), seed: k.seed, status: k.status}
		for tok := range k.status {
			j.tokens = append(j.tokens, tok)
		}
		sort.Slice(j.tokens, func(a, b int) bool { return j.tokens[a] < j.tokens[b] })
		jobs[i] = j
	}
	return jobs
}

type concAnswer struct {
	token   uint64
	outcome store.Outcome // OutcomeStale for ErrStaleToken
}

// TestConcurrentWriters: 16 goroutines store results for the same 1,000
// jobs with mixed tokens; every job must end with exactly one row holding
// the result the fencing rules demand, and every answer must agree with it.
func TestConcurrentWriters(t *testing.T) {
	const (
		goroutines = 16
		numJobs    = 1000
	)
	svcdtest.Each(t, func(t *testing.T, b svcdtest.Backend) {
		s := openStore(t, b)
		ctx := context.Background()
		jobs := concJobs(numJobs)
		for _, j := range jobs {
			if j.seed != 0 {
				if _, err := s.StoreResult(ctx, j.result(j.seed)); err != nil {
					t.Fatal(err)
				}
			}
		}

		answers := make([][]concAnswer, numJobs) // per job
		var mu sync.Mutex
		var wg sync.WaitGroup
		errc := make(chan error, goroutines)
		for g := 0; g < goroutines; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// All goroutines walk the jobs in the same order so they
				// collide on the same job at the same time.
				for i, j := range jobs {
					tok := j.tokens[(g+i)%len(j.tokens)]
					reply, err := s.StoreResult(ctx, j.result(tok))
					out := reply.Outcome
					if errors.Is(err, store.ErrStaleToken) {
						out = store.OutcomeStale
					} else if err != nil {
						errc <- fmt.Errorf("%s token %d: %w", j.id, tok, err)
						return
					}
					mu.Lock()
					answers[i] = append(answers[i], concAnswer{tok, out})
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Fatal(err)
		}

		st, err := s.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var wantAttempts int64
		for _, j := range jobs {
			wantAttempts += int64(len(j.tokens))
		}
		if st.Results != numJobs || st.Attempts != wantAttempts {
			t.Fatalf("rows: %d results, %d attempts; want %d and %d", st.Results, st.Attempts, numJobs, wantAttempts)
		}

		orderDependent := 0
		for i, j := range jobs {
			var seed *modelState
			if j.seed != 0 {
				seed = &modelState{j.seed, j.status[j.seed]}
			}
			finals := modelFinals(seed, j.tokens, func(tok uint64) store.Status { return j.status[tok] })
			got, err := s.GetResult(ctx, j.id)
			if err != nil {
				t.Fatal(err)
			}
			gotState := modelState{got.LeaseToken, got.Status}
			if !finals[gotState] {
				t.Fatalf("%s: stored token %d %s; the rules allow only %v", j.id, got.LeaseToken, got.Status, finals)
			}
			if len(finals) > 1 {
				orderDependent++
			}
			// The row holds the whole winning write, not a mix.
			want := j.result(got.LeaseToken)
			if string(got.Output) != string(want.Output) || got.WorkerID != want.WorkerID || got.Error != want.Error ||
				!got.FinishedAt.Equal(want.FinishedAt.Truncate(1000)) {
				t.Fatalf("%s: row %+v does not match the write of token %d", j.id, got, got.LeaseToken)
			}
			// Every answer agrees with the final row.
			stored := map[uint64]int{}
			byToken := map[uint64]map[store.Outcome]bool{}
			for _, a := range answers[i] {
				if byToken[a.token] == nil {
					byToken[a.token] = map[store.Outcome]bool{}
				}
				byToken[a.token][a.outcome] = true
				switch a.outcome {
				case store.OutcomeStored:
					stored[a.token]++
				case store.OutcomeStale:
					if a.token >= got.LeaseToken {
						t.Fatalf("%s: token %d told stale, but the final token is %d", j.id, a.token, got.LeaseToken)
					}
				case store.OutcomeAlreadySucceeded:
					if got.Status != store.StatusSucceeded || a.token <= got.LeaseToken {
						t.Fatalf("%s: token %d told already-succeeded, final is %d %s", j.id, a.token, got.LeaseToken, got.Status)
					}
				case store.OutcomeDuplicate:
				default:
					t.Fatalf("%s: answer %q", j.id, a.outcome)
				}
			}
			for tok, n := range stored {
				if n > 1 {
					t.Fatalf("%s: token %d stored %d times", j.id, tok, n)
				}
			}
			if got.LeaseToken != j.seed && stored[got.LeaseToken] != 1 {
				t.Fatalf("%s: final token %d was never answered stored", j.id, got.LeaseToken)
			}
			// History: one attempt per token, recording what its first
			// write was told.
			atts, err := s.Attempts(ctx, j.id)
			if err != nil {
				t.Fatal(err)
			}
			if len(atts) != len(j.tokens) {
				t.Fatalf("%s: %d attempts, want %d", j.id, len(atts), len(j.tokens))
			}
			for _, a := range atts {
				if a.LeaseToken == j.seed {
					continue
				}
				if !byToken[a.LeaseToken][a.Outcome] {
					t.Fatalf("%s: attempt %d recorded %q, but its writes were told %v", j.id, a.LeaseToken, a.Outcome, byToken[a.LeaseToken])
				}
			}
		}
		t.Logf("%d jobs checked (%d with an order-dependent winner), %d writes", numJobs, orderDependent, numJobs*goroutines)
	})
}
