package fsm

import (
	"errors"
	"testing"

	"github.com/raftq/raftq/fsm/fsmpb"
)

func cmdExpireTimeouts(now int64, limit int32) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_EXPIRE_TIMEOUTS, Now: now,
		Body: &fsmpb.Command_ExpireTimeouts{ExpireTimeouts: &fsmpb.ExpireTimeouts{Limit: limit}}}
}

// timed is a job with a schedule-to-start deadline at start (absolute) and
// a start-to-close of stc.
func timed(id string, start, stc int64) *fsmpb.NewJob {
	j := nj(id, "q")
	j.StartDeadline, j.StartToClose = start, stc
	return j
}

func uniq(id, key string, mode int32) *fsmpb.NewJob {
	j := nj(id, "q")
	j.UniqueKey, j.UniqueMode = key, mode
	return j
}

func TestScheduleToStart(t *testing.T) {
	runCases(t, []cmdCase{
		{name: "never leased goes dead at the deadline", setup: func(h *harness) {
			h.one(cmdEnqueue(t0, timed("a", t0+10*sec, 0), nj("b", "q")))
			if at, ok := h.f.NextTimeout(); !ok || at != t0+10*sec {
				h.t.Fatalf("NextTimeout %d %v", at-t0, ok)
			}
			if at, _ := h.f.NextWakeup(); at != t0+10*sec {
				h.t.Fatalf("NextWakeup %d", at-t0)
			}
			if r := h.one(cmdExpireTimeouts(t0+10*sec-1, 0)); len(r.Items) != 0 {
				h.t.Fatalf("expired early: %+v", r.Items)
			}
		}, run: func(h *harness) Result {
			return h.one(cmdExpireTimeouts(t0+10*sec, 0))
		}, check: func(t *testing.T, h *harness, r Result) {
			j := h.wantState("a", StateDead)
			if j.LastError != ScheduleToStartError || j.FinishedAt != t0+10*sec || len(r.Items) != 1 {
				t.Fatalf("job %+v items %d", j, len(r.Items))
			}
			h.wantState("b", StateReady)
			if _, ok := h.f.NextTimeout(); ok {
				t.Fatal("timeout index kept the job")
			}
		}},
		{name: "a scheduled job times out too", setup: func(h *harness) {
			j := timed("a", t0+20*sec, 0)
			j.RunAt = t0 + 10*sec
			h.one(cmdEnqueue(t0, j))
		}, run: func(h *harness) Result {
			return h.one(cmdExpireTimeouts(t0+20*sec, 0))
		}, check: func(t *testing.T, h *harness, r Result) {
			h.wantState("a", StateDead)
		}},
		{name: "leased in time: the deadline no longer applies", setup: func(h *harness) {
			h.one(cmdEnqueue(t0, timed("a", t0+10*sec, 0)))
			tok = lease(h, t0+5*sec, "a")
			// Failed and retried: still started in time.
			h.one(cmdNack(t0+6*sec, &fsmpb.NackItem{JobId: "a", Token: tok, RetryAfter: 0}))
		}, run: func(h *harness) Result {
			return h.one(cmdExpireTimeouts(t0+60*sec, 0))
		}, check: func(t *testing.T, h *harness, r Result) {
			if len(r.Items) != 0 {
				t.Fatalf("items %+v", r.Items)
			}
			h.wantState("a", StateReady)
		}},
		{name: "a released lease counts as never started", setup: func(h *harness) {
			h.one(cmdEnqueue(t0, timed("a", t0+10*sec, 0)))
			tok = lease(h, t0+5*sec, "a")
			h.one(cmdNack(t0+6*sec, &fsmpb.NackItem{JobId: "a", Token: tok, RetryAfter: -1, Release: true}))
		}, run: func(h *harness) Result {
			return h.one(cmdExpireTimeouts(t0+10*sec, 0))
		}, check: func(t *testing.T, h *harness, r Result) {
			h.wantState("a", StateDead)
		}},
		{name: "limit", setup: func(h *harness) {
			h.one(cmdEnqueue(t0, timed("a", t0+sec, 0), timed("b", t0+2*sec, 0)))
		}, run: func(h *harness) Result {
			return h.one(cmdExpireTimeouts(t0+10*sec, 1))
		}, check: func(t *testing.T, h *harness, r Result) {
			h.wantState("a", StateDead)
			h.wantState("b", StateReady)
		}},
		{name: "redrive drops the deadline", setup: func(h *harness) {
			h.one(cmdEnqueue(t0, timed("a", t0+sec, 0)))
			h.one(cmdExpireTimeouts(t0+sec, 0))
		}, run: func(h *harness) Result {
			return h.one(cmdRedrive(t0+2*sec, "", 0, "a"))
		}, check: func(t *testing.T, h *harness, r Result) {
			h.one(cmdExpireTimeouts(t0+3*sec, 0))
			if j := h.wantState("a", StateReady); j.StartDeadline != 0 {
				t.Fatalf("deadline kept: %+v", j)
			}
		}},
	})
}

func TestStartToClose(t *testing.T) {
	runCases(t, []cmdCase{
		{name: "an attempt past its deadline fails though its lease was extended", setup: func(h *harness) {
			h.one(cmdEnqueue(t0, timed("a", 0, 60*sec)))
			tok = lease(h, t0, "a")
			if j := h.get("a"); j.AttemptDeadline != t0+60*sec {
				h.t.Fatalf("attempt deadline %d", j.AttemptDeadline-t0)
			}
			for i := int64(1); i <= 3; i++ {
				if r := h.one(cmdExtend(t0+i*20*sec, ref("a", tok))); r.Items[0].Err != nil {
					h.t.Fatal(r.Items[0].Err)
				}
			}
			if r := h.one(cmdExpire(t0+60*sec, 0)); len(r.Items) != 0 {
				h.t.Fatal("the extended lease expired")
			}
		}, run: func(h *harness) Result {
			return h.one(cmdExpireTimeouts(t0+60*sec, 0))
		}, check: func(t *testing.T, h *harness, r Result) {
			j := h.wantState("a", StateScheduled) // back-off of attempt 1: 1s + jitter
			if j.LastError != StartToCloseError || j.LeasedBy != "" || j.AttemptDeadline != 0 || j.Attempts != 1 || j.RunAt <= t0+60*sec {
				t.Fatalf("job %+v", j)
			}
			// The worker's token is stale: its ack is refused.
			wantIs(t, h.one(cmdAck(t0+61*sec, ref("a", tok))).Items[0].Err, ErrStaleToken)
		}},
		{name: "the last attempt dead-letters", setup: func(h *harness) {
			j := timed("a", 0, 40*sec)
			j.MaxAttempts = 1
			h.one(cmdEnqueue(t0, j))
			lease(h, t0, "a")
		}, run: func(h *harness) Result {
			return h.one(cmdExpireTimeouts(t0+40*sec, 0))
		}, check: func(t *testing.T, h *harness, r Result) {
			if j := h.wantState("a", StateDead); j.LastError != StartToCloseError {
				t.Fatalf("job %+v", j)
			}
		}},
		{name: "a cancel requested ends as cancelled", setup: func(h *harness) {
			h.one(cmdEnqueue(t0, timed("a", 0, 40*sec)))
			lease(h, t0, "a")
			h.one(cmdCancel(t0+sec, "a"))
		}, run: func(h *harness) Result {
			return h.one(cmdExpireTimeouts(t0+40*sec, 0))
		}, check: func(t *testing.T, h *harness, r Result) {
			h.wantState("a", StateCancelled)
		}},
		{name: "acked in time: nothing to expire", setup: func(h *harness) {
			h.one(cmdEnqueue(t0, timed("a", 0, 40*sec)))
			tok = lease(h, t0, "a")
			h.one(cmdAck(t0+sec, ref("a", tok)))
		}, run: func(h *harness) Result {
			return h.one(cmdExpireTimeouts(t0+40*sec, 0))
		}, check: func(t *testing.T, h *harness, r Result) {
			if len(r.Items) != 0 {
				t.Fatal("expired an acked job")
			}
			h.wantState("a", StateSucceeded)
		}},
		{name: "each attempt gets its own deadline", setup: func(h *harness) {
			h.one(cmdEnqueue(t0, timed("a", 0, 40*sec)))
			tok = lease(h, t0, "a")
			h.one(cmdNack(t0+sec, &fsmpb.NackItem{JobId: "a", Token: tok, RetryAfter: 0}))
			lease(h, t0+30*sec, "a")
		}, run: func(h *harness) Result {
			return h.one(cmdExpireTimeouts(t0+69*sec, 0))
		}, check: func(t *testing.T, h *harness, r Result) {
			if len(r.Items) != 0 {
				t.Fatal("second attempt expired by the first one's deadline")
			}
			if j := h.wantState("a", StateLeased); j.AttemptDeadline != t0+70*sec {
				t.Fatalf("attempt deadline %d", j.AttemptDeadline-t0)
			}
		}},
	})
}

func TestTimeoutRefusals(t *testing.T) {
	for name, j := range map[string]*fsmpb.NewJob{
		"negative start deadline":         timed("a", -1, 0),
		"negative start_to_close":         timed("a", 0, -1),
		"start_to_close under lease":      timed("a", 0, 29*sec),
		"unknown unique mode":             uniq("a", "k", 7),
		"negative unique mode":            uniq("a", "k", -1),
		"unique key over the store limit": uniq("a", string(make([]byte, maxKeyPart+1)), 0),
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			h.one(cmdEnqueue(t0, nj("x", "q")))
			before := h.f.Hash()
			r := h.one(cmdEnqueue(t0, j))
			wantIs(t, r.Items[0].Err, ErrInvalid)
			if h.f.Hash() != before {
				t.Fatal("refused enqueue changed the state")
			}
		})
	}
}

func TestUniqueByState(t *testing.T) {
	runCases(t, []cmdCase{
		{name: "return existing while not terminal", setup: func(h *harness) {
			h.one(cmdEnqueue(t0, uniq("a", "k", UniqueReturnExisting)))
		}, run: func(h *harness) Result {
			return h.one(cmdEnqueue(t0+sec, uniq("b", "k", UniqueReturnExisting)))
		}, check: func(t *testing.T, h *harness, r Result) {
			if it := r.Items[0]; it.JobID != "a" || !it.Duplicate || it.Debounced || it.Job == nil || it.Job.ID != "a" {
				t.Fatalf("item %+v", it)
			}
			if has(h, "b") {
				t.Fatal("b created")
			}
		}},
		{name: "free again once terminal", setup: func(h *harness) {
			h.one(cmdEnqueue(t0, uniq("a", "k", UniqueReject)))
			tok = lease(h, t0, "a")
			h.one(cmdAck(t0+sec, ref("a", tok)))
		}, run: func(h *harness) Result {
			return h.one(cmdEnqueue(t0+2*sec, uniq("b", "k", UniqueReject)))
		}, check: func(t *testing.T, h *harness, r Result) {
			if it := r.Items[0]; it.JobID != "b" || it.Duplicate {
				t.Fatalf("item %+v", it)
			}
			h.wantState("b", StateReady)
		}},
		{name: "other queues and keys are independent", setup: func(h *harness) {
			h.one(cmdEnqueue(t0, uniq("a", "k", UniqueReject)))
		}, run: func(h *harness) Result {
			o := uniq("b", "k", UniqueReject)
			o.Queue = "other"
			return h.one(cmdEnqueue(t0, o, uniq("c", "k2", UniqueReject)))
		}, check: func(t *testing.T, h *harness, r Result) {
			h.wantState("b", StateReady)
			h.wantState("c", StateReady)
		}},
		{name: "reject refuses the whole enqueue", setup: func(h *harness) {
			h.one(cmdEnqueue(t0, uniq("a", "k", UniqueReject)))
		}, run: func(h *harness) Result {
			before := h.f.Hash()
			r := h.one(cmdEnqueue(t0+sec, nj("x", "q"), uniq("b", "k", UniqueReject)))
			if h.f.Hash() != before {
				h.t.Fatal("refused enqueue changed the state")
			}
			return r
		}, err: ErrUniqueConflict, check: func(t *testing.T, h *harness, r Result) {
			var ue *UniqueConflictError
			if !errors.As(r.Err, &ue) || ue.JobID != "a" || ue.Item != 1 || ue.Key != "k" {
				t.Fatalf("err %v", r.Err)
			}
			if has(h, "x") || has(h, "b") {
				t.Fatal("a job of the refused enqueue exists")
			}
		}},
		{name: "reject within one batch", run: func(h *harness) Result {
			return h.one(cmdEnqueue(t0, uniq("a", "k", UniqueReject), uniq("b", "k", UniqueReject)))
		}, err: ErrUniqueConflict, check: func(t *testing.T, h *harness, r Result) {
			if has(h, "a") {
				t.Fatal("a created")
			}
		}},
		{name: "idempotent retry of a unique job is a duplicate, not a conflict", setup: func(h *harness) {
			j := uniq("a", "k", UniqueReject)
			j.IdempotencyKey, j.DedupWindow = "i", 60*sec
			h.one(cmdEnqueue(t0, j))
		}, run: func(h *harness) Result {
			j := uniq("b", "k", UniqueReject)
			j.IdempotencyKey, j.DedupWindow = "i", 60*sec
			return h.one(cmdEnqueue(t0+sec, j))
		}, check: func(t *testing.T, h *harness, r Result) {
			if it := r.Items[0]; it.JobID != "a" || !it.Duplicate {
				t.Fatalf("item %+v", it)
			}
		}},
		{name: "debounce moves a scheduled job and replaces its payload", setup: func(h *harness) {
			j := uniq("a", "k", UniqueDebounce)
			j.RunAt, j.StartDeadline = t0+10*sec, t0+15*sec
			h.one(cmdEnqueue(t0, j))
		}, run: func(h *harness) Result {
			j := uniq("b", "k", UniqueDebounce)
			j.RunAt, j.Payload = t0+25*sec, []byte("new")
			return h.one(cmdEnqueue(t0+5*sec, j))
		}, check: func(t *testing.T, h *harness, r Result) {
			if it := r.Items[0]; it.JobID != "a" || !it.Duplicate || !it.Debounced {
				t.Fatalf("item %+v", it)
			}
			j := h.wantState("a", StateScheduled)
			if j.RunAt != t0+25*sec || string(j.Payload) != "new" || j.StartDeadline != t0+30*sec {
				t.Fatalf("job %+v", j)
			}
			if has(h, "b") {
				t.Fatal("b created")
			}
			if at, _ := h.f.NextWakeup(); at != t0+25*sec {
				t.Fatalf("NextWakeup %d", at-t0)
			}
		}},
		{name: "debounce to now makes it ready", setup: func(h *harness) {
			j := uniq("a", "k", UniqueDebounce)
			j.RunAt = t0 + 10*sec
			h.one(cmdEnqueue(t0, j))
		}, run: func(h *harness) Result {
			j := uniq("b", "k", UniqueDebounce)
			j.RunAt = t0 + sec
			return h.one(cmdEnqueue(t0+sec, j))
		}, check: func(t *testing.T, h *harness, r Result) {
			h.wantState("a", StateReady)
		}},
		{name: "debounce of a ready job returns it unchanged", setup: func(h *harness) {
			h.one(cmdEnqueue(t0, uniq("a", "k", UniqueDebounce)))
		}, run: func(h *harness) Result {
			j := uniq("b", "k", UniqueDebounce)
			j.RunAt, j.Payload = t0+25*sec, []byte("new")
			return h.one(cmdEnqueue(t0+sec, j))
		}, check: func(t *testing.T, h *harness, r Result) {
			if it := r.Items[0]; it.JobID != "a" || !it.Duplicate || it.Debounced {
				t.Fatalf("item %+v", it)
			}
			if j := h.wantState("a", StateReady); string(j.Payload) != "p-a" {
				t.Fatalf("payload %q", j.Payload)
			}
		}},
		{name: "debounce leaves a retry back-off alone", setup: func(h *harness) {
			h.one(cmdEnqueue(t0, uniq("a", "k", UniqueDebounce)))
			tok = lease(h, t0, "a")
			h.one(cmdNack(t0+sec, &fsmpb.NackItem{JobId: "a", Token: tok, RetryAfter: 10 * sec}))
		}, run: func(h *harness) Result {
			j := uniq("b", "k", UniqueDebounce)
			j.RunAt = t0 + 100*sec
			return h.one(cmdEnqueue(t0+2*sec, j))
		}, check: func(t *testing.T, h *harness, r Result) {
			if it := r.Items[0]; it.Debounced {
				t.Fatal("debounced a retry")
			}
			if j := h.wantState("a", StateScheduled); j.RunAt != t0+11*sec {
				t.Fatalf("run_at %d", j.RunAt-t0)
			}
		}},
		{name: "redrive refused while another job holds the key", setup: func(h *harness) {
			j := uniq("a", "k", UniqueReject)
			j.MaxAttempts = 1
			h.one(cmdEnqueue(t0, j))
			tok = lease(h, t0, "a")
			h.one(cmdNack(t0+sec, &fsmpb.NackItem{JobId: "a", Token: tok, Permanent: true}))
			h.one(cmdEnqueue(t0+2*sec, uniq("b", "k", UniqueReject)))
		}, run: func(h *harness) Result {
			return h.one(cmdRedrive(t0+3*sec, "", 0, "a"))
		}, err: ErrWrongState, check: func(t *testing.T, h *harness, r Result) {
			h.wantState("a", StateDead)
		}},
	})
}

// TestTimeoutsAndUniqueSnapshot: a snapshot restores the timeout and
// uniqueness indexes (rebuilt from the jobs) to a byte-equal state, and
// restored state keeps enforcing them.
func TestTimeoutsAndUniqueSnapshot(t *testing.T) {
	h := newHarness(t)
	h.one(cmdEnqueue(t0, timed("a", t0+10*sec, 0), timed("b", 0, 40*sec), uniq("c", "k", UniqueReject)))
	lease(h, t0, "b")
	want := h.f.Hash()
	snap := snapshotBytes(t, h.f)
	g := newHarness(t)
	if err := restoreBytes(g.f, snap); err != nil {
		t.Fatal(err)
	}
	g.index = h.index
	if g.f.Hash() != want {
		t.Fatal("restored hash differs")
	}
	checkInvariants(t, g.f)
	if at, ok := g.f.NextTimeout(); !ok || at != t0+10*sec {
		t.Fatalf("NextTimeout %d %v", at-t0, ok)
	}
	wantIs(t, g.one(cmdEnqueue(t0+sec, uniq("d", "k", UniqueReject))).Err, ErrUniqueConflict)
	r := g.one(cmdExpireTimeouts(t0+40*sec, 0))
	if len(r.Items) != 2 {
		t.Fatalf("items %+v", r.Items)
	}
	g.wantState("a", StateDead)
}

// TestNoNewOptionsHashAsBefore: jobs without the new options leave the
// new indexes empty, so their state hashes as before the feature.
func TestNoNewOptionsHashAsBefore(t *testing.T) {
	h := newHarness(t)
	h.one(cmdEnqueue(t0, nj("a", "q")))
	lease(h, t0, "a")
	h.f.view(func(st *state) {
		if keyN(st.toStart)+keyN(st.toClose)+keyN(st.unique) != 0 {
			t.Fatal("new indexes hold entries for plain jobs")
		}
	})
}

func has(h *harness, id string) bool { _, ok := h.f.Get(id); return ok }

// A schedule's job keeps its template's start_to_close (the leader copies
// the template into FireSchedule); a fire whose job has a bad one is
// refused and changes nothing.
func TestFiredJobKeepsStartToClose(t *testing.T) {
	h := newHarness(t)
	v := putSched(h, spec("s", OverlapAllow))
	fire := cmdFire(t0+sec, "s", v, t0+sec, "j1")
	fire.GetFireSchedule().Job.LeaseDuration, fire.GetFireSchedule().Job.StartToClose = 10*sec, 5*sec
	before := h.f.Hash()
	wantIs(t, h.one(fire).Err, ErrInvalid)
	if h.f.Hash() != before {
		t.Fatal("refused fire changed the state")
	}
	fire = cmdFire(t0+sec, "s", v, t0+sec, "j1")
	fire.GetFireSchedule().Job.LeaseDuration, fire.GetFireSchedule().Job.StartToClose = 10*sec, 20*sec
	if r := h.one(fire); r.Err != nil || r.Fire.Job == nil {
		t.Fatalf("fire: %+v", r)
	}
	lease(h, t0+2*sec, "j1")
	if j := h.get("j1"); j.StartToClose != 20*sec || j.AttemptDeadline != t0+22*sec {
		t.Fatalf("fired job %+v", j)
	}
}
