package fsm

import (
	"math"
	"testing"

	"github.com/raftq/raftq/fsm/fsmpb"
)

// cmdCase is one row of a per-command table test: setup builds the state,
// run applies the command under test, err is the wanted error of its first
// item (or of the whole command when it has no items), check asserts the
// resulting state through the read API. Invariants are checked after each.
type cmdCase struct {
	name  string
	setup func(h *harness)
	run   func(h *harness) Result
	err   error
	check func(t *testing.T, h *harness, r Result)
}

func runCases(t *testing.T, cases []cmdCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if tc.setup != nil {
				tc.setup(h)
			}
			r := tc.run(h)
			if len(r.Items) > 0 {
				wantIs(t, r.Items[0].Err, tc.err)
			} else {
				wantIs(t, r.Err, tc.err)
			}
			if tc.check != nil {
				tc.check(t, h, r)
			}
			checkInvariants(t, h.f)
		})
	}
}

// enqueue puts ready jobs with these ids into queue q at t0.
func enqueue(h *harness, ids ...string) {
	h.t.Helper()
	var jobs []*fsmpb.NewJob
	for _, id := range ids {
		jobs = append(jobs, nj(id, "q"))
	}
	for _, it := range h.one(cmdEnqueue(t0, jobs...)).Items {
		if it.Err != nil {
			h.t.Fatal(it.Err)
		}
	}
}

// lease leases id at now and returns its token.
func lease(h *harness, now int64, id string) uint64 {
	h.t.Helper()
	r := h.one(cmdLease(now, "w1", id))
	if r.Items[0].Err != nil {
		h.t.Fatal(r.Items[0].Err)
	}
	return r.Items[0].Job.LeaseToken
}

// tok remembers a token across setup and run.
var tok uint64

func TestEnqueue(t *testing.T) {
	runCases(t, []cmdCase{
		{name: "ready", run: func(h *harness) Result {
			return h.one(cmdEnqueue(t0, nj("a", "q")))
		}, check: func(t *testing.T, h *harness, r Result) {
			j := h.wantState("a", StateReady)
			if j.Seq != 1 || j.Attempts != 0 || j.CreatedAt != t0 || j.UpdatedAt != t0 || string(j.Payload) != "p-a" ||
				j.MaxAttempts != 3 || j.LeaseDuration != 30*sec || j.Type != "t" {
				t.Fatalf("job %+v", j)
			}
			if r.Items[0].JobID != "a" || r.Items[0].Job == nil || r.Items[0].Job.State != StateReady || r.Items[0].Duplicate {
				t.Fatalf("item %+v", r.Items[0])
			}
			h.wantCounts("q", map[State]int64{StateReady: 1})
			if got := h.f.ReadyJobs("q", 10, nil); !eq(got, []string{"a"}) {
				t.Fatalf("ReadyJobs %v", got)
			}
			if got := ids(h.f.List("q", StateReady, "", 0)); !eq(got, []string{"a"}) {
				t.Fatalf("List %v", got)
			}
			if st := h.f.Stats(nil); len(st) != 1 || st[0].OldestReadyCreatedAt != t0 {
				t.Fatalf("Stats %+v", st)
			}
			if _, ok := h.f.NextWakeup(); ok {
				t.Fatal("NextWakeup with nothing scheduled or leased")
			}
		}},
		{name: "run_at now is ready", run: func(h *harness) Result {
			j := nj("a", "q")
			j.RunAt = t0
			return h.one(cmdEnqueue(t0, j))
		}, check: func(t *testing.T, h *harness, r Result) { h.wantState("a", StateReady) }},
		{name: "scheduled", run: func(h *harness) Result {
			j := nj("a", "q")
			j.RunAt = t0 + 10*sec
			return h.one(cmdEnqueue(t0, j))
		}, check: func(t *testing.T, h *harness, r Result) {
			j := h.wantState("a", StateScheduled)
			if j.Seq != 0 || j.RunAt != t0+10*sec {
				t.Fatalf("job %+v", j)
			}
			h.wantCounts("q", map[State]int64{StateScheduled: 1})
			if at, ok := h.f.NextWakeup(); !ok || at != t0+10*sec {
				t.Fatalf("NextWakeup %d %v", at, ok)
			}
			if got := h.f.ReadyJobs("q", 10, nil); len(got) != 0 {
				t.Fatalf("ReadyJobs %v", got)
			}
			if st := h.f.Stats([]string{"q"}); st[0].OldestReadyCreatedAt != 0 {
				t.Fatalf("Stats %+v", st)
			}
		}},
		{name: "empty id", err: ErrInvalid, run: func(h *harness) Result {
			return h.one(cmdEnqueue(t0, nj("", "q")))
		}, check: func(t *testing.T, h *harness, r Result) {
			if h.f.Len() != 0 || len(h.f.Stats(nil)) != 0 {
				t.Fatal("invalid job left state")
			}
		}},
		{name: "empty queue", err: ErrInvalid, run: func(h *harness) Result {
			return h.one(cmdEnqueue(t0, nj("a", "")))
		}},
		{name: "empty type", err: ErrInvalid, run: func(h *harness) Result {
			j := nj("a", "q")
			j.Type = ""
			return h.one(cmdEnqueue(t0, j))
		}},
		{name: "invalid item does not stop the others", run: func(h *harness) Result {
			return h.one(cmdEnqueue(t0, nj("a", "q"), nj("", "q"), nj("b", "q")))
		}, check: func(t *testing.T, h *harness, r Result) {
			wantIs(t, r.Items[1].Err, ErrInvalid)
			wantIs(t, r.Items[2].Err, nil)
			if h.f.Len() != 2 {
				t.Fatalf("Len %d", h.f.Len())
			}
		}},
		{name: "duplicate id", err: ErrDuplicateID, setup: func(h *harness) { enqueue(h, "a") }, run: func(h *harness) Result {
			j := nj("a", "other")
			return h.one(cmdEnqueue(t0+sec, j))
		}, check: func(t *testing.T, h *harness, r Result) {
			if j := h.get("a"); j.Queue != "q" || j.UpdatedAt != t0 {
				t.Fatalf("job changed: %+v", j)
			}
			if len(h.f.Stats(nil)) != 1 {
				t.Fatal("refused enqueue created a queue")
			}
		}},
		{name: "idempotency key inside window", setup: func(h *harness) {
			j := nj("a", "q")
			j.IdempotencyKey, j.DedupWindow = "k", 60*sec
			h.one(cmdEnqueue(t0, j))
		}, run: func(h *harness) Result {
			j := nj("b", "q")
			j.IdempotencyKey, j.DedupWindow = "k", 60*sec
			return h.one(cmdEnqueue(t0+59*sec, j))
		}, check: func(t *testing.T, h *harness, r Result) {
			it := r.Items[0]
			if !it.Duplicate || it.JobID != "a" || it.Job == nil || it.Job.ID != "a" {
				t.Fatalf("item %+v", it)
			}
			if _, ok := h.f.Get("b"); ok || h.f.Len() != 1 {
				t.Fatal("duplicate created a job")
			}
		}},
		{name: "idempotency key after window", setup: func(h *harness) {
			j := nj("a", "q")
			j.IdempotencyKey, j.DedupWindow = "k", 60*sec
			h.one(cmdEnqueue(t0, j))
		}, run: func(h *harness) Result {
			j := nj("b", "q")
			j.IdempotencyKey, j.DedupWindow = "k", 60*sec
			return h.one(cmdEnqueue(t0+60*sec, j))
		}, check: func(t *testing.T, h *harness, r Result) {
			if r.Items[0].Duplicate || r.Items[0].JobID != "b" {
				t.Fatalf("item %+v", r.Items[0])
			}
			h.wantState("b", StateReady)
			// The key now points at b for another window.
			j := nj("c", "q")
			j.IdempotencyKey = "k"
			if it := h.one(cmdEnqueue(t0+61*sec, j)).Items[0]; !it.Duplicate || it.JobID != "b" {
				t.Fatalf("item %+v", it)
			}
		}},
		{name: "huge window saturates", setup: func(h *harness) {
			j := nj("a", "q")
			j.IdempotencyKey, j.DedupWindow = "k", math.MaxInt64
			h.one(cmdEnqueue(t0, j))
		}, run: func(h *harness) Result {
			j := nj("b", "q")
			j.IdempotencyKey = "k"
			return h.one(cmdEnqueue(t0+3600*sec, j))
		}, check: func(t *testing.T, h *harness, r Result) {
			if !r.Items[0].Duplicate {
				t.Fatal("window overflowed into the past")
			}
		}},
		{name: "same key twice in one command", run: func(h *harness) Result {
			a, b := nj("a", "q"), nj("b", "q")
			a.IdempotencyKey, a.DedupWindow = "k", sec
			b.IdempotencyKey, b.DedupWindow = "k", sec
			return h.one(cmdEnqueue(t0, a, b))
		}, check: func(t *testing.T, h *harness, r Result) {
			if r.Items[0].Duplicate || !r.Items[1].Duplicate || r.Items[1].JobID != "a" {
				t.Fatalf("items %+v", r.Items)
			}
		}},
		{name: "same key other queue", run: func(h *harness) Result {
			a, b := nj("a", "q"), nj("b", "q2")
			a.IdempotencyKey, a.DedupWindow = "k", sec
			b.IdempotencyKey, b.DedupWindow = "k", sec
			return h.one(cmdEnqueue(t0, a, b))
		}, check: func(t *testing.T, h *harness, r Result) {
			if r.Items[1].Duplicate || h.f.Len() != 2 {
				t.Fatalf("items %+v", r.Items)
			}
		}},
		{name: "key of a purged job", setup: func(h *harness) {
			j := nj("a", "q")
			j.IdempotencyKey, j.DedupWindow = "k", 3600*sec
			h.one(cmdEnqueue(t0, j))
			h.one(cmdCancel(t0, "a"))
			h.one(cmdPurge(t0+sec, t0+sec, 0))
		}, run: func(h *harness) Result {
			j := nj("b", "q")
			j.IdempotencyKey = "k"
			return h.one(cmdEnqueue(t0+2*sec, j))
		}, check: func(t *testing.T, h *harness, r Result) {
			if it := r.Items[0]; !it.Duplicate || it.JobID != "a" || it.Job != nil {
				t.Fatalf("item %+v", it)
			}
		}},
		{name: "dispatch order", run: func(h *harness) Result {
			hi := func(id string) *fsmpb.NewJob { j := nj(id, "q"); j.Priority = 5; return j }
			h.one(cmdEnqueue(t0, nj("a", "q"), hi("b")))
			return h.one(cmdEnqueue(t0+sec, nj("c", "q"), hi("d")))
		}, check: func(t *testing.T, h *harness, r Result) {
			if got := h.f.ReadyJobs("q", 0, nil); !eq(got, []string{"b", "d", "a", "c"}) {
				t.Fatalf("ReadyJobs %v", got)
			}
			if got := h.f.ReadyJobs("q", 2, nil); !eq(got, []string{"b", "d"}) {
				t.Fatalf("ReadyJobs max 2 %v", got)
			}
			if got := h.f.ReadyJobs("q", 2, func(id string) bool { return id == "b" }); !eq(got, []string{"d", "a"}) {
				t.Fatalf("ReadyJobs skip b %v", got)
			}
			if got := h.f.ReadyJobs("other", 0, nil); len(got) != 0 {
				t.Fatalf("ReadyJobs other %v", got)
			}
			if st := h.f.Stats([]string{"q"}); st[0].OldestReadyCreatedAt != t0 || st[0].Counts[StateReady] != 4 {
				t.Fatalf("Stats %+v", st)
			}
		}},
	})
}

func TestLease(t *testing.T) {
	runCases(t, []cmdCase{
		{name: "ready", setup: func(h *harness) { enqueue(h, "a", "b") }, run: func(h *harness) Result {
			return h.one(cmdLease(t0+sec, "w1", "a"))
		}, check: func(t *testing.T, h *harness, r Result) {
			j := h.wantState("a", StateLeased)
			if j.Attempts != 1 || j.LeaseToken != h.index || j.LeasedBy != "w1" ||
				j.LeaseDeadline != t0+31*sec || j.UpdatedAt != t0+sec {
				t.Fatalf("job %+v", j)
			}
			if r.Items[0].Job == nil || r.Items[0].Job.LeaseToken != h.index {
				t.Fatalf("item %+v", r.Items[0])
			}
			h.wantCounts("q", map[State]int64{StateReady: 1, StateLeased: 1})
			if got := h.f.ReadyJobs("q", 0, nil); !eq(got, []string{"b"}) {
				t.Fatalf("ReadyJobs %v", got)
			}
			if at, ok := h.f.NextWakeup(); !ok || at != t0+31*sec {
				t.Fatalf("NextWakeup %d %v", at, ok)
			}
			if got := ids(h.f.List("q", StateLeased, "", 0)); !eq(got, []string{"a"}) {
				t.Fatalf("List %v", got)
			}
		}},
		{name: "item lease duration", setup: func(h *harness) { enqueue(h, "a") }, run: func(h *harness) Result {
			c := cmdLease(t0, "w1", "a")
			c.GetLease().Items[0].LeaseDuration = 5 * sec
			return h.one(c)
		}, check: func(t *testing.T, h *harness, r Result) {
			if j := h.get("a"); j.LeaseDeadline != t0+5*sec {
				t.Fatalf("deadline %d", j.LeaseDeadline-t0)
			}
		}},
		{name: "huge duration saturates", setup: func(h *harness) { enqueue(h, "a") }, run: func(h *harness) Result {
			c := cmdLease(t0, "w1", "a")
			c.GetLease().Items[0].LeaseDuration = math.MaxInt64
			return h.one(c)
		}, check: func(t *testing.T, h *harness, r Result) {
			if j := h.get("a"); j.LeaseDeadline != math.MaxInt64 {
				t.Fatalf("deadline %d", j.LeaseDeadline)
			}
			if r := h.one(cmdExpire(t0+3600*sec, 0)); len(r.Items) != 0 {
				t.Fatal("lease expired at once")
			}
		}},
		{name: "unknown", err: ErrNotFound, run: func(h *harness) Result {
			return h.one(cmdLease(t0, "w1", "nope"))
		}},
		{name: "paused queue", err: ErrQueuePaused, setup: func(h *harness) {
			enqueue(h, "a")
			h.one(cmdPause(t0, "q"))
		}, run: func(h *harness) Result {
			return h.one(cmdLease(t0, "w1", "a"))
		}, check: func(t *testing.T, h *harness, r Result) {
			h.wantState("a", StateReady)
		}},
		{name: "scheduled in the future", err: ErrWrongState, setup: func(h *harness) {
			j := nj("a", "q")
			j.RunAt = t0 + 10*sec
			h.one(cmdEnqueue(t0, j))
		}, run: func(h *harness) Result {
			return h.one(cmdLease(t0+9*sec, "w1", "a"))
		}, check: func(t *testing.T, h *harness, r Result) { h.wantState("a", StateScheduled) }},
		{name: "scheduled and due", setup: func(h *harness) {
			j := nj("a", "q")
			j.RunAt = t0 + 10*sec
			h.one(cmdEnqueue(t0, j))
		}, run: func(h *harness) Result {
			return h.one(cmdLease(t0+10*sec, "w1", "a"))
		}, check: func(t *testing.T, h *harness, r Result) {
			h.wantState("a", StateLeased)
			h.wantCounts("q", map[State]int64{StateLeased: 1})
			if at, _ := h.f.NextWakeup(); at != t0+40*sec {
				t.Fatalf("NextWakeup %d: scheduled index kept the job", at-t0)
			}
		}},
		{name: "already leased", err: ErrWrongState, setup: func(h *harness) {
			enqueue(h, "a")
			lease(h, t0, "a")
		}, run: func(h *harness) Result {
			return h.one(cmdLease(t0, "w2", "a"))
		}, check: func(t *testing.T, h *harness, r Result) {
			if j := h.get("a"); j.LeasedBy != "w1" || j.Attempts != 1 {
				t.Fatalf("job %+v", j)
			}
		}},
		{name: "terminal", err: ErrWrongState, setup: func(h *harness) {
			enqueue(h, "a")
			h.one(cmdCancel(t0, "a"))
		}, run: func(h *harness) Result {
			return h.one(cmdLease(t0, "w1", "a"))
		}},
		{name: "twice in one command", run: func(h *harness) Result {
			enqueue(h, "a")
			return h.one(cmdLease(t0, "w1", "a", "a"))
		}, check: func(t *testing.T, h *harness, r Result) {
			wantIs(t, r.Items[1].Err, ErrWrongState)
			if j := h.get("a"); j.Attempts != 1 {
				t.Fatalf("attempts %d", j.Attempts)
			}
		}},
		{name: "token is not reused within an entry", setup: func(h *harness) {
			enqueue(h, "a")
		}, run: func(h *harness) Result {
			// Lease, expire and lease again in one entry: the second lease
			// would carry the same token, so it is refused.
			c1 := cmdLease(t0, "w1", "a")
			c1.GetLease().Items[0].LeaseDuration = 1
			res := h.apply(c1, cmdExpire(t0+1, 0), cmdLease(t0+1, "w2", "a"))
			return res[2]
		}, err: ErrWrongState, check: func(t *testing.T, h *harness, r Result) {
			h.wantState("a", StateReady)
		}},
		{name: "token grows across leases", setup: func(h *harness) {
			enqueue(h, "a")
			tok = lease(h, t0, "a")
			h.one(cmdExpire(t0+31*sec, 0))
		}, run: func(h *harness) Result {
			return h.one(cmdLease(t0+32*sec, "w2", "a"))
		}, check: func(t *testing.T, h *harness, r Result) {
			j := h.wantState("a", StateLeased)
			if j.LeaseToken <= tok || j.Attempts != 2 || j.LeasedBy != "w2" {
				t.Fatalf("job %+v, first token %d", j, tok)
			}
		}},
	})
}

func TestExtendLease(t *testing.T) {
	leased := func(h *harness) {
		enqueue(h, "a")
		tok = lease(h, t0, "a")
	}
	runCases(t, []cmdCase{
		{name: "job duration", setup: leased, run: func(h *harness) Result {
			return h.one(cmdExtend(t0+20*sec, ref("a", tok)))
		}, check: func(t *testing.T, h *harness, r Result) {
			j := h.wantState("a", StateLeased)
			if j.LeaseDeadline != t0+50*sec || j.UpdatedAt != t0+20*sec || r.Items[0].Job.LeaseDeadline != j.LeaseDeadline {
				t.Fatalf("job %+v", j)
			}
			if at, _ := h.f.NextWakeup(); at != t0+50*sec {
				t.Fatalf("NextWakeup %d", at-t0)
			}
		}},
		{name: "given duration", setup: leased, run: func(h *harness) Result {
			r := ref("a", tok)
			r.Duration = 5 * sec
			return h.one(cmdExtend(t0+20*sec, r))
		}, check: func(t *testing.T, h *harness, r Result) {
			if j := h.get("a"); j.LeaseDeadline != t0+25*sec {
				t.Fatalf("deadline %d", j.LeaseDeadline-t0)
			}
		}},
		{name: "stale token", err: ErrStaleToken, setup: leased, run: func(h *harness) Result {
			return h.one(cmdExtend(t0+20*sec, ref("a", tok-1)))
		}, check: func(t *testing.T, h *harness, r Result) {
			if j := h.get("a"); j.LeaseDeadline != t0+30*sec {
				t.Fatal("refused extend moved the deadline")
			}
		}},
		{name: "unknown", err: ErrNotFound, run: func(h *harness) Result {
			return h.one(cmdExtend(t0, ref("nope", 1)))
		}},
		{name: "not leased any more", err: ErrWrongState, setup: func(h *harness) {
			leased(h)
			h.one(cmdAck(t0, ref("a", tok)))
		}, run: func(h *harness) Result {
			return h.one(cmdExtend(t0, ref("a", tok)))
		}},
		{name: "lease expired", err: ErrStaleToken, setup: func(h *harness) {
			leased(h)
			h.one(cmdExpire(t0+30*sec, 0))
		}, run: func(h *harness) Result {
			return h.one(cmdExtend(t0+31*sec, ref("a", tok)))
		}, check: func(t *testing.T, h *harness, r Result) { h.wantState("a", StateReady) }},
		{name: "tells cancel requested", setup: func(h *harness) {
			leased(h)
			h.one(cmdCancel(t0, "a"))
		}, run: func(h *harness) Result {
			return h.one(cmdExtend(t0+sec, ref("a", tok)))
		}, check: func(t *testing.T, h *harness, r Result) {
			if !r.Items[0].Job.CancelRequested {
				t.Fatalf("item %+v", r.Items[0])
			}
		}},
	})
}

func TestAck(t *testing.T) {
	leased := func(h *harness) {
		enqueue(h, "a")
		tok = lease(h, t0, "a")
	}
	runCases(t, []cmdCase{
		{name: "ok", setup: leased, run: func(h *harness) Result {
			return h.one(cmdAck(t0+sec, ref("a", tok)))
		}, check: func(t *testing.T, h *harness, r Result) {
			j := h.wantState("a", StateSucceeded)
			if j.FinishedAt != t0+sec || j.UpdatedAt != t0+sec || j.LeaseToken != tok || j.LeasedBy != "w1" || j.LeaseDeadline != t0+30*sec {
				t.Fatalf("job %+v", j)
			}
			h.wantCounts("q", map[State]int64{StateSucceeded: 1})
			if _, ok := h.f.NextWakeup(); ok {
				t.Fatal("acked job still in lease index")
			}
			if got := ids(h.f.List("q", StateSucceeded, "", 0)); !eq(got, []string{"a"}) {
				t.Fatalf("List %v", got)
			}
		}},
		{name: "twice", err: ErrWrongState, setup: func(h *harness) {
			leased(h)
			h.one(cmdAck(t0+sec, ref("a", tok)))
		}, run: func(h *harness) Result {
			return h.one(cmdAck(t0+2*sec, ref("a", tok)))
		}, check: func(t *testing.T, h *harness, r Result) {
			if r.Items[0].Job == nil || r.Items[0].Job.State != StateSucceeded || h.get("a").FinishedAt != t0+sec {
				t.Fatalf("item %+v", r.Items[0])
			}
		}},
		{name: "stale token", err: ErrStaleToken, setup: leased, run: func(h *harness) Result {
			return h.one(cmdAck(t0+sec, ref("a", tok+1)))
		}, check: func(t *testing.T, h *harness, r Result) { h.wantState("a", StateLeased) }},
		{name: "old lease after re-lease", err: ErrStaleToken, setup: func(h *harness) {
			leased(h)
			h.one(cmdExpire(t0+30*sec, 0))
			lease(h, t0+31*sec, "a")
		}, run: func(h *harness) Result {
			return h.one(cmdAck(t0+32*sec, ref("a", tok)))
		}, check: func(t *testing.T, h *harness, r Result) { h.wantState("a", StateLeased) }},
		{name: "lease expired, job ready again", err: ErrStaleToken, setup: func(h *harness) {
			leased(h)
			h.one(cmdExpire(t0+30*sec, 0))
		}, run: func(h *harness) Result {
			return h.one(cmdAck(t0+31*sec, ref("a", tok)))
		}, check: func(t *testing.T, h *harness, r Result) { h.wantState("a", StateReady) }},
		{name: "unknown", err: ErrNotFound, run: func(h *harness) Result {
			return h.one(cmdAck(t0, ref("nope", 1)))
		}},
		{name: "ack wins over cancel request", setup: func(h *harness) {
			leased(h)
			h.one(cmdCancel(t0, "a"))
		}, run: func(h *harness) Result {
			return h.one(cmdAck(t0+sec, ref("a", tok)))
		}, check: func(t *testing.T, h *harness, r Result) { h.wantState("a", StateSucceeded) }},
	})
}

func TestNack(t *testing.T) {
	leased := func(h *harness) {
		enqueue(h, "a", "b")
		tok = lease(h, t0, "a")
	}
	nackItem := func(retry int64) *fsmpb.NackItem {
		return &fsmpb.NackItem{JobId: "a", Token: tok, Error: "boom", RetryAfter: retry}
	}
	runCases(t, []cmdCase{
		{name: "back-off", setup: leased, run: func(h *harness) Result {
			return h.one(cmdNack(t0+sec, nackItem(-1)))
		}, check: func(t *testing.T, h *harness, r Result) {
			j := h.wantState("a", StateScheduled)
			if d := j.RunAt - (t0 + sec); d != Backoff(&j) || d < sec/2 || d > sec {
				t.Fatalf("run_at now+%d, Backoff %d", d, Backoff(&j))
			}
			if j.LastError != "boom" || j.LeasedBy != "" || j.LeaseDeadline != 0 || j.LeaseToken != tok || j.Attempts != 1 {
				t.Fatalf("job %+v", j)
			}
			h.wantCounts("q", map[State]int64{StateReady: 1, StateScheduled: 1})
			if at, _ := h.f.NextWakeup(); at != j.RunAt {
				t.Fatalf("NextWakeup %d want %d", at, j.RunAt)
			}
		}},
		{name: "retry now goes to the back", setup: leased, run: func(h *harness) Result {
			return h.one(cmdNack(t0+sec, nackItem(0)))
		}, check: func(t *testing.T, h *harness, r Result) {
			j := h.wantState("a", StateReady)
			if j.Seq <= h.get("b").Seq {
				t.Fatalf("seq %d not after b's %d", j.Seq, h.get("b").Seq)
			}
			if got := h.f.ReadyJobs("q", 0, nil); !eq(got, []string{"b", "a"}) {
				t.Fatalf("ReadyJobs %v", got)
			}
		}},
		{name: "release undoes the attempt", setup: leased, run: func(h *harness) Result {
			return h.one(cmdNack(t0+sec, &fsmpb.NackItem{JobId: "a", Token: tok, Error: "ignored", RetryAfter: -1, Release: true}))
		}, check: func(t *testing.T, h *harness, r Result) {
			j := h.wantState("a", StateReady)
			if j.Attempts != 0 || j.LastError != "" || j.LeasedBy != "" || j.LeaseDeadline != 0 || j.LeaseToken != tok {
				t.Fatalf("released job %+v", j)
			}
			h.wantCounts("q", map[State]int64{StateReady: 2})
		}},
		{name: "release with a stale token is refused", err: ErrStaleToken, setup: leased, run: func(h *harness) Result {
			return h.one(cmdNack(t0+sec, &fsmpb.NackItem{JobId: "a", Token: tok + 1, RetryAfter: -1, Release: true}))
		}, check: func(t *testing.T, h *harness, r Result) {
			h.wantState("a", StateLeased)
		}},
		{name: "retry after", setup: leased, run: func(h *harness) Result {
			return h.one(cmdNack(t0+sec, nackItem(5*sec)))
		}, check: func(t *testing.T, h *harness, r Result) {
			if j := h.wantState("a", StateScheduled); j.RunAt != t0+6*sec {
				t.Fatalf("run_at %d", j.RunAt-t0)
			}
		}},
		{name: "permanent", setup: leased, run: func(h *harness) Result {
			it := nackItem(0)
			it.Permanent = true
			return h.one(cmdNack(t0+sec, it))
		}, check: func(t *testing.T, h *harness, r Result) {
			if j := h.wantState("a", StateDead); j.FinishedAt != t0+sec {
				t.Fatalf("job %+v", j)
			}
			h.wantCounts("q", map[State]int64{StateReady: 1, StateDead: 1})
		}},
		{name: "attempts exhausted", setup: func(h *harness) {
			j := nj("a", "q")
			j.MaxAttempts = 1
			h.one(cmdEnqueue(t0, j))
			tok = lease(h, t0, "a")
		}, run: func(h *harness) Result {
			return h.one(cmdNack(t0+sec, nackItem(0)))
		}, check: func(t *testing.T, h *harness, r Result) { h.wantState("a", StateDead) }},
		{name: "cancel requested", setup: func(h *harness) {
			leased(h)
			h.one(cmdCancel(t0, "a"))
		}, run: func(h *harness) Result {
			return h.one(cmdNack(t0+sec, nackItem(0)))
		}, check: func(t *testing.T, h *harness, r Result) {
			if j := h.wantState("a", StateCancelled); j.FinishedAt != t0+sec {
				t.Fatalf("job %+v", j)
			}
		}},
		{name: "stale token", err: ErrStaleToken, setup: leased, run: func(h *harness) Result {
			it := nackItem(0)
			it.Token++
			return h.one(cmdNack(t0+sec, it))
		}, check: func(t *testing.T, h *harness, r Result) { h.wantState("a", StateLeased) }},
		{name: "not leased", err: ErrStaleToken, setup: func(h *harness) {
			leased(h)
			h.one(cmdNack(t0+sec, nackItem(0)))
		}, run: func(h *harness) Result {
			return h.one(cmdNack(t0+sec, nackItem(0)))
		}},
		{name: "unknown", err: ErrNotFound, run: func(h *harness) Result {
			return h.one(cmdNack(t0, &fsmpb.NackItem{JobId: "x", Token: 1}))
		}},
	})
}

func TestBackoff(t *testing.T) {
	job := func(id string, initial, max int64, attempts int32) *Job {
		return &Job{ID: id, InitialBackoff: initial, MaxBackoff: max, Attempts: attempts}
	}
	for _, tc := range []struct {
		name string
		j    *Job
		full int64 // d before jitter: the result is in [full/2, full]
	}{
		{"first attempt", job("a", sec, 60*sec, 1), sec},
		{"zero attempts as first", job("a", sec, 60*sec, 0), sec},
		{"doubling", job("a", sec, 60*sec, 4), 8 * sec},
		{"capped", job("a", sec, 60*sec, 10), 60 * sec},
		{"shift overflow", job("a", sec, 60*sec, 200), 60 * sec},
		{"product overflow", job("a", 1<<40, 0, 40), 1<<63 - 1},
		{"no initial", job("a", 0, 60*sec, 3), 0},
		{"one ns", job("a", 1, 60*sec, 1), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Backoff(tc.j)
			if d < tc.full/2 || d > tc.full {
				t.Fatalf("Backoff = %d, want in [%d, %d]", d, tc.full/2, tc.full)
			}
			if d != Backoff(tc.j) {
				t.Fatal("Backoff is not deterministic")
			}
		})
	}
	// The jitter depends on the id and the attempt.
	seen := map[int64]bool{}
	for i := 0; i < 20; i++ {
		seen[Backoff(job(string(rune('a'+i)), 60*sec, 0, 1))] = true
	}
	if len(seen) < 15 {
		t.Fatalf("jitter gives %d distinct delays of 20", len(seen))
	}
}

func TestExpireLeases(t *testing.T) {
	threeLeased := func(h *harness) {
		enqueue(h, "a", "b", "c")
		for i, id := range []string{"c", "a", "b"} { // deadlines c < a < b
			c := cmdLease(t0, "w1", id)
			c.GetLease().Items[0].LeaseDuration = int64(i+1) * sec
			h.one(c)
		}
	}
	runCases(t, []cmdCase{
		{name: "expired", setup: func(h *harness) {
			enqueue(h, "a", "b")
			tok = lease(h, t0, "a")
		}, run: func(h *harness) Result {
			return h.one(cmdExpire(t0+30*sec, 0)) // deadline == now expires
		}, check: func(t *testing.T, h *harness, r Result) {
			j := h.wantState("a", StateReady)
			if j.LastError != "lease expired" || j.LeasedBy != "" || j.LeaseDeadline != 0 || j.LeaseToken != tok ||
				j.Attempts != 1 || j.Seq <= h.get("b").Seq || j.UpdatedAt != t0+30*sec {
				t.Fatalf("job %+v", j)
			}
			if len(r.Items) != 1 || r.Items[0].JobID != "a" || r.Items[0].Job.State != StateReady {
				t.Fatalf("items %+v", r.Items)
			}
			h.wantCounts("q", map[State]int64{StateReady: 2})
			if got := h.f.ReadyJobs("q", 0, nil); !eq(got, []string{"b", "a"}) {
				t.Fatalf("ReadyJobs %v", got)
			}
		}},
		{name: "not due", setup: func(h *harness) {
			enqueue(h, "a")
			lease(h, t0, "a")
		}, run: func(h *harness) Result {
			return h.one(cmdExpire(t0+30*sec-1, 0))
		}, check: func(t *testing.T, h *harness, r Result) {
			if len(r.Items) != 0 {
				t.Fatalf("items %+v", r.Items)
			}
			h.wantState("a", StateLeased)
		}},
		{name: "limit takes earliest deadlines", setup: threeLeased, run: func(h *harness) Result {
			return h.one(cmdExpire(t0+10*sec, 2))
		}, check: func(t *testing.T, h *harness, r Result) {
			if len(r.Items) != 2 || r.Items[0].JobID != "c" || r.Items[1].JobID != "a" {
				t.Fatalf("items %+v", r.Items)
			}
			h.wantState("b", StateLeased)
		}},
		{name: "attempts exhausted", setup: func(h *harness) {
			j := nj("a", "q")
			j.MaxAttempts = 1
			h.one(cmdEnqueue(t0, j))
			lease(h, t0, "a")
		}, run: func(h *harness) Result {
			return h.one(cmdExpire(t0+60*sec, 0))
		}, check: func(t *testing.T, h *harness, r Result) {
			if j := h.wantState("a", StateDead); j.FinishedAt != t0+60*sec || j.LastError != "lease expired" {
				t.Fatalf("job %+v", j)
			}
		}},
		{name: "cancel requested", setup: func(h *harness) {
			enqueue(h, "a")
			lease(h, t0, "a")
			h.one(cmdCancel(t0, "a"))
		}, run: func(h *harness) Result {
			return h.one(cmdExpire(t0+60*sec, 0))
		}, check: func(t *testing.T, h *harness, r Result) { h.wantState("a", StateCancelled) }},
	})
}

func TestPromote(t *testing.T) {
	scheduled := func(h *harness) {
		var jobs []*fsmpb.NewJob
		for i, id := range []string{"c", "a", "b"} { // run_at c < a < b
			j := nj(id, "q")
			j.RunAt = t0 + int64(i+1)*sec
			jobs = append(jobs, j)
		}
		h.one(cmdEnqueue(t0, jobs...))
	}
	runCases(t, []cmdCase{
		{name: "due jobs in run_at order", setup: scheduled, run: func(h *harness) Result {
			return h.one(cmdPromote(t0+2*sec, 0))
		}, check: func(t *testing.T, h *harness, r Result) {
			if len(r.Items) != 2 || r.Items[0].JobID != "c" || r.Items[1].JobID != "a" {
				t.Fatalf("items %+v", r.Items)
			}
			if got := h.f.ReadyJobs("q", 0, nil); !eq(got, []string{"c", "a"}) {
				t.Fatalf("ReadyJobs %v", got)
			}
			if j := h.get("c"); j.UpdatedAt != t0+2*sec || j.Seq == 0 {
				t.Fatalf("job %+v", j)
			}
			h.wantState("b", StateScheduled)
			h.wantCounts("q", map[State]int64{StateReady: 2, StateScheduled: 1})
			if at, _ := h.f.NextWakeup(); at != t0+3*sec {
				t.Fatalf("NextWakeup %d", at-t0)
			}
		}},
		{name: "limit", setup: scheduled, run: func(h *harness) Result {
			return h.one(cmdPromote(t0+10*sec, 1))
		}, check: func(t *testing.T, h *harness, r Result) {
			if len(r.Items) != 1 || r.Items[0].JobID != "c" {
				t.Fatalf("items %+v", r.Items)
			}
		}},
		{name: "nothing due", setup: scheduled, run: func(h *harness) Result {
			return h.one(cmdPromote(t0, 0))
		}, check: func(t *testing.T, h *harness, r Result) {
			if len(r.Items) != 0 {
				t.Fatalf("items %+v", r.Items)
			}
		}},
	})
}

func TestCancel(t *testing.T) {
	runCases(t, []cmdCase{
		{name: "ready", setup: func(h *harness) { enqueue(h, "a") }, run: func(h *harness) Result {
			return h.one(cmdCancel(t0+sec, "a"))
		}, check: func(t *testing.T, h *harness, r Result) {
			if j := h.wantState("a", StateCancelled); j.FinishedAt != t0+sec || j.UpdatedAt != t0+sec {
				t.Fatalf("job %+v", j)
			}
			h.wantCounts("q", map[State]int64{StateCancelled: 1})
			if len(h.f.ReadyJobs("q", 0, nil)) != 0 {
				t.Fatal("cancelled job still ready")
			}
		}},
		{name: "scheduled", setup: func(h *harness) {
			j := nj("a", "q")
			j.RunAt = t0 + 10*sec
			h.one(cmdEnqueue(t0, j))
		}, run: func(h *harness) Result {
			return h.one(cmdCancel(t0+sec, "a"))
		}, check: func(t *testing.T, h *harness, r Result) {
			h.wantState("a", StateCancelled)
			if _, ok := h.f.NextWakeup(); ok {
				t.Fatal("cancelled job still scheduled")
			}
		}},
		{name: "leased is marked", setup: func(h *harness) {
			enqueue(h, "a")
			tok = lease(h, t0, "a")
		}, run: func(h *harness) Result {
			return h.one(cmdCancel(t0+sec, "a"))
		}, check: func(t *testing.T, h *harness, r Result) {
			j := h.wantState("a", StateLeased)
			if !j.CancelRequested || j.FinishedAt != 0 || !r.Items[0].Job.CancelRequested {
				t.Fatalf("job %+v", j)
			}
			h.wantCounts("q", map[State]int64{StateLeased: 1})
			// Asking again changes nothing and is no error.
			r2 := h.one(cmdCancel(t0+2*sec, "a"))
			wantIs(t, r2.Items[0].Err, nil)
			if j2 := h.get("a"); j2.UpdatedAt != j.UpdatedAt || !j2.CancelRequested {
				t.Fatalf("second cancel changed %+v", j2)
			}
		}},
		{name: "terminal", err: ErrWrongState, setup: func(h *harness) {
			enqueue(h, "a")
			h.one(cmdCancel(t0, "a"))
		}, run: func(h *harness) Result {
			return h.one(cmdCancel(t0+sec, "a"))
		}, check: func(t *testing.T, h *harness, r Result) {
			if j := h.get("a"); j.FinishedAt != t0 {
				t.Fatal("refused cancel changed the job")
			}
		}},
		{name: "unknown", err: ErrNotFound, run: func(h *harness) Result {
			return h.one(cmdCancel(t0, "nope"))
		}},
	})
}

func TestPauseResume(t *testing.T) {
	runCases(t, []cmdCase{
		{name: "pause creates the queue", run: func(h *harness) Result {
			return h.one(cmdPause(t0, "fresh"))
		}, check: func(t *testing.T, h *harness, r Result) {
			st := h.f.Stats(nil)
			if len(st) != 1 || st[0].Queue != "fresh" || !st[0].Paused || st[0].Counts != [NumStates]int64{} {
				t.Fatalf("Stats %+v", st)
			}
		}},
		{name: "paused hides ready jobs", setup: func(h *harness) { enqueue(h, "a") }, run: func(h *harness) Result {
			return h.one(cmdPause(t0, "q"))
		}, check: func(t *testing.T, h *harness, r Result) {
			if got := h.f.ReadyJobs("q", 0, nil); got != nil {
				t.Fatalf("ReadyJobs %v", got)
			}
			wantIs(t, h.one(cmdLease(t0, "w", "a")).Items[0].Err, ErrQueuePaused)
			h.wantCounts("q", map[State]int64{StateReady: 1})
		}},
		{name: "resume", setup: func(h *harness) {
			enqueue(h, "a")
			h.one(cmdPause(t0, "q"))
		}, run: func(h *harness) Result {
			return h.one(cmdResume(t0, "q"))
		}, check: func(t *testing.T, h *harness, r Result) {
			if got := h.f.ReadyJobs("q", 0, nil); !eq(got, []string{"a"}) {
				t.Fatalf("ReadyJobs %v", got)
			}
			if st := h.f.Stats([]string{"q"}); st[0].Paused {
				t.Fatal("still paused")
			}
			wantIs(t, h.one(cmdLease(t0, "w", "a")).Items[0].Err, nil)
		}},
		{name: "resume creates the queue too", run: func(h *harness) Result {
			return h.one(cmdResume(t0, "fresh"))
		}, check: func(t *testing.T, h *harness, r Result) {
			if st := h.f.Stats(nil); len(st) != 1 || st[0].Paused {
				t.Fatalf("Stats %+v", st)
			}
		}},
		{name: "empty name", err: ErrInvalid, run: func(h *harness) Result {
			return h.one(cmdPause(t0, ""))
		}},
	})
}

func TestRedrive(t *testing.T) {
	runCases(t, []cmdCase{
		{name: "listed", setup: func(h *harness) { killJobs(h, "a", "b") }, run: func(h *harness) Result {
			return h.one(cmdRedrive(t0+2*sec, "", 0, "a"))
		}, check: func(t *testing.T, h *harness, r Result) {
			j := h.wantState("a", StateReady)
			if j.Attempts != 0 || j.FinishedAt != 0 || j.LastError != "bad" || j.Seq == 0 || j.UpdatedAt != t0+2*sec {
				t.Fatalf("job %+v", j)
			}
			h.wantCounts("q", map[State]int64{StateReady: 1, StateDead: 1})
			if got := ids(h.f.List("q", StateDead, "", 0)); !eq(got, []string{"b"}) {
				t.Fatalf("List dead %v", got)
			}
			// Its next lease still gets a bigger token.
			old := j.LeaseToken
			if tk := lease(h, t0+3*sec, "a"); tk <= old {
				t.Fatalf("token %d after %d", tk, old)
			}
		}},
		{name: "listed not dead", err: ErrWrongState, setup: func(h *harness) { enqueue(h, "a") }, run: func(h *harness) Result {
			return h.one(cmdRedrive(t0, "", 0, "a"))
		}},
		{name: "listed unknown", err: ErrNotFound, run: func(h *harness) Result {
			return h.one(cmdRedrive(t0, "", 0, "a"))
		}},
		{name: "listed in another queue", err: ErrNotFound, setup: func(h *harness) { killJobs(h, "a") }, run: func(h *harness) Result {
			return h.one(cmdRedrive(t0, "other", 0, "a"))
		}, check: func(t *testing.T, h *harness, r Result) { h.wantState("a", StateDead) }},
		{name: "by queue in id order with limit", setup: func(h *harness) { killJobs(h, "c", "a", "b") }, run: func(h *harness) Result {
			return h.one(cmdRedrive(t0+2*sec, "q", 2))
		}, check: func(t *testing.T, h *harness, r Result) {
			if got := []string{r.Items[0].JobID, r.Items[1].JobID}; len(r.Items) != 2 || !eq(got, []string{"a", "b"}) {
				t.Fatalf("items %+v", r.Items)
			}
			h.wantState("c", StateDead)
			h.wantCounts("q", map[State]int64{StateReady: 2, StateDead: 1})
		}},
		{name: "by queue default limit", setup: func(h *harness) { killJobs(h, "c", "a", "b") }, run: func(h *harness) Result {
			return h.one(cmdRedrive(t0+2*sec, "q", 0))
		}, check: func(t *testing.T, h *harness, r Result) {
			if len(r.Items) != 3 {
				t.Fatalf("items %+v", r.Items)
			}
		}},
		{name: "nothing named", err: ErrInvalid, run: func(h *harness) Result {
			return h.one(cmdRedrive(t0, "", 0))
		}},
	})
}

func TestPurge(t *testing.T) {
	finished := func(h *harness) {
		enqueue(h, "a", "b", "c", "live")
		h.one(cmdCancel(t0+3*sec, "c"))
		h.one(cmdCancel(t0+1*sec, "a"))
		h.one(cmdCancel(t0+2*sec, "b"))
	}
	runCases(t, []cmdCase{
		{name: "before", setup: finished, run: func(h *harness) Result {
			return h.one(cmdPurge(t0+10*sec, t0+3*sec, 0))
		}, check: func(t *testing.T, h *harness, r Result) {
			if len(r.Items) != 2 || r.Items[0].JobID != "a" || r.Items[1].JobID != "b" {
				t.Fatalf("items %+v", r.Items)
			}
			if _, ok := h.f.Get("a"); ok || h.f.Len() != 2 {
				t.Fatal("purged job still there")
			}
			h.wantState("c", StateCancelled)
			h.wantState("live", StateReady)
			h.wantCounts("q", map[State]int64{StateReady: 1, StateCancelled: 1})
			if got := ids(h.f.List("q", StateCancelled, "", 0)); !eq(got, []string{"c"}) {
				t.Fatalf("List %v", got)
			}
		}},
		{name: "limit takes oldest", setup: finished, run: func(h *harness) Result {
			return h.one(cmdPurge(t0+10*sec, t0+10*sec, 1))
		}, check: func(t *testing.T, h *harness, r Result) {
			if len(r.Items) != 1 || r.Items[0].JobID != "a" {
				t.Fatalf("items %+v", r.Items)
			}
		}},
		{name: "queue record stays", setup: finished, run: func(h *harness) Result {
			h.one(cmdCancel(t0+4*sec, "live"))
			return h.one(cmdPurge(t0+10*sec, t0+10*sec, 0))
		}, check: func(t *testing.T, h *harness, r Result) {
			if st := h.f.Stats(nil); len(st) != 1 || st[0].Counts != [NumStates]int64{} || h.f.Len() != 0 {
				t.Fatalf("Stats %+v", st)
			}
		}},
		{name: "expired idempotency keys", setup: func(h *harness) {
			for i, id := range []string{"a", "b"} {
				j := nj(id, "q")
				j.IdempotencyKey, j.DedupWindow = id, int64(i+1)*10*sec
				h.one(cmdEnqueue(t0, j))
			}
		}, run: func(h *harness) Result {
			return h.one(cmdPurge(t0+10*sec, 0, 0))
		}, check: func(t *testing.T, h *harness, r Result) {
			var n int
			h.f.view(func(st *state) { n = keyN(st.idem) })
			if n != 1 {
				t.Fatalf("%d idempotency entries, want 1", n)
			}
			if h.f.Len() != 2 {
				t.Fatal("purge of keys removed jobs")
			}
		}},
	})
}

func TestSetNode(t *testing.T) {
	runCases(t, []cmdCase{
		{name: "upsert", run: func(h *harness) Result {
			h.one(cmdSetNode(t0, "n2", "g2", "r2"))
			h.one(cmdSetNode(t0, "n1", "g1", "r1"))
			return h.one(cmdSetNode(t0, "n2", "g2b", "r2b"))
		}, check: func(t *testing.T, h *harness, r Result) {
			want := []NodeMeta{{"n1", "g1", "r1"}, {"n2", "g2b", "r2b"}}
			if got := h.f.Nodes(); !eq(got, want) {
				t.Fatalf("Nodes %+v", got)
			}
		}},
		{name: "empty id", err: ErrInvalid, run: func(h *harness) Result {
			return h.one(cmdSetNode(t0, "", "g", "r"))
		}, check: func(t *testing.T, h *harness, r Result) {
			if len(h.f.Nodes()) != 0 {
				t.Fatal("node stored")
			}
		}},
	})
}
