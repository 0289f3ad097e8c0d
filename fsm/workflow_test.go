package fsm

import (
	"bytes"
	"strings"
	"testing"

	"github.com/raftq/raftq/fsm/fsmpb"
)

// dj is a job of queue q depending on parents.
func dj(id string, parents ...string) *fsmpb.NewJob {
	j := nj(id, "q")
	j.DependsOn = parents
	return j
}

// anyway is j under the run-anyway policy.
func anyway(j *fsmpb.NewJob) *fsmpb.NewJob {
	j.DependencyPolicy = DepPolicyRunAnyway
	return j
}

// succeed leases and acks id at now.
func succeed(h *harness, now int64, id string) {
	h.t.Helper()
	tk := lease(h, now, id)
	if r := h.one(cmdAck(now, ref(id, tk))); r.Items[0].Err != nil {
		h.t.Fatal(r.Items[0].Err)
	}
}

// fail leases id and nacks it permanently (dead).
func fail(h *harness, now int64, id string) {
	h.t.Helper()
	tk := lease(h, now, id)
	if r := h.one(cmdNack(now, &fsmpb.NackItem{JobId: id, Token: tk, Error: "boom", Permanent: true})); r.Items[0].Err != nil {
		h.t.Fatal(r.Items[0].Err)
	}
}

// workflow applies a workflow and fails the test on a refusal.
func workflow(h *harness, now int64, jobs ...*fsmpb.NewJob) Result {
	h.t.Helper()
	r := h.one(cmdWorkflow(now, jobs...))
	if r.Err != nil {
		h.t.Fatal(r.Err)
	}
	return r
}

func TestWorkflowDependencies(t *testing.T) {
	runCases(t, []cmdCase{
		{name: "waits for a live parent", setup: func(h *harness) { enqueue(h, "a") }, run: func(h *harness) Result {
			return h.one(cmdEnqueue(t0, dj("b", "a")))
		}, check: func(t *testing.T, h *harness, r Result) {
			b := h.wantState("b", StateWaiting)
			if !eq(b.Parents, []string{"a"}) || !eq(b.WaitingOn, []string{"a"}) || b.ParentFailed || b.Seq != 0 {
				t.Fatalf("b %+v", b)
			}
			h.wantCounts("q", map[State]int64{StateReady: 1, StateWaiting: 1})
			if got := h.f.ReadyJobs("q", 0, nil); !eq(got, []string{"a"}) {
				t.Fatalf("ReadyJobs %v", got)
			}
			if got := h.f.Dependants("a", 0); !eq(got, []string{"b"}) {
				t.Fatalf("Dependants %v", got)
			}
			// A lease of the waiting job is refused.
			wantIs(t, h.one(cmdLease(t0, "w", "b")).Items[0].Err, ErrWrongState)
			succeed(h, t0+sec, "a")
			b = h.wantState("b", StateReady)
			if len(b.WaitingOn) != 0 || b.Seq == 0 || b.UpdatedAt != t0+sec {
				t.Fatalf("b after a succeeded %+v", b)
			}
			h.wantCounts("q", map[State]int64{StateReady: 1, StateSucceeded: 1})
		}},
		{name: "parent already succeeded: ready at once", setup: func(h *harness) {
			enqueue(h, "a")
			succeed(h, t0, "a")
		}, run: func(h *harness) Result {
			return h.one(cmdEnqueue(t0+sec, dj("b", "a")))
		}, check: func(t *testing.T, h *harness, r Result) {
			h.wantState("b", StateReady)
		}},
		{name: "parent already dead: cancelled at once", setup: func(h *harness) {
			enqueue(h, "a")
			fail(h, t0, "a")
		}, run: func(h *harness) Result {
			return h.one(cmdEnqueue(t0+sec, dj("b", "a")))
		}, check: func(t *testing.T, h *harness, r Result) {
			b := h.wantState("b", StateCancelled)
			if !b.ParentFailed || b.FinishedAt != t0+sec || !strings.Contains(b.LastError, `parent "a" is dead`) {
				t.Fatalf("b %+v", b)
			}
		}},
		{name: "parent already dead, run anyway: ready at once", setup: func(h *harness) {
			enqueue(h, "a")
			fail(h, t0, "a")
		}, run: func(h *harness) Result {
			return h.one(cmdEnqueue(t0+sec, anyway(dj("b", "a"))))
		}, check: func(t *testing.T, h *harness, r Result) {
			if b := h.wantState("b", StateReady); !b.ParentFailed {
				t.Fatalf("b %+v", b)
			}
		}},
		{name: "run_at ahead: scheduled once released", setup: func(h *harness) { enqueue(h, "a") }, run: func(h *harness) Result {
			b := dj("b", "a")
			b.RunAt = t0 + 100*sec
			return h.one(cmdEnqueue(t0, b))
		}, check: func(t *testing.T, h *harness, r Result) {
			h.wantState("b", StateWaiting)
			succeed(h, t0+sec, "a")
			h.wantState("b", StateScheduled)
		}},
		{name: "all parents must succeed", setup: func(h *harness) { enqueue(h, "a", "b") }, run: func(h *harness) Result {
			return h.one(cmdEnqueue(t0, dj("c", "a", "b")))
		}, check: func(t *testing.T, h *harness, r Result) {
			succeed(h, t0+sec, "a")
			if c := h.wantState("c", StateWaiting); !eq(c.WaitingOn, []string{"b"}) {
				t.Fatalf("c %+v", c)
			}
			succeed(h, t0+2*sec, "b")
			h.wantState("c", StateReady)
		}},
		{name: "cancel policy cascades", setup: func(h *harness) {
			enqueue(h, "a")
			h.one(cmdEnqueue(t0, dj("b", "a"), dj("c", "b"), anyway(dj("d", "c")), dj("e", "d")))
		}, run: func(h *harness) Result {
			return h.one(cmdNack(t0+sec, &fsmpb.NackItem{JobId: "a", Token: lease(h, t0+sec, "a"), Permanent: true}))
		}, check: func(t *testing.T, h *harness, r Result) {
			h.wantState("a", StateDead)
			for _, id := range []string{"b", "c"} {
				if j := h.wantState(id, StateCancelled); len(j.WaitingOn) != 0 || j.FinishedAt != t0+sec {
					t.Fatalf("%s %+v", id, j)
				}
			}
			// d runs anyway once c is terminal; e waits for d.
			if d := h.wantState("d", StateReady); !d.ParentFailed {
				t.Fatalf("d %+v", d)
			}
			h.wantState("e", StateWaiting)
			succeed(h, t0+2*sec, "d")
			h.wantState("e", StateReady)
		}},
		{name: "lease expiry exhausting attempts fails dependants", setup: func(h *harness) {
			a := nj("a", "q")
			a.MaxAttempts = 1
			h.one(cmdEnqueue(t0, a, dj("b", "a")))
			lease(h, t0, "a")
		}, run: func(h *harness) Result {
			return h.one(cmdExpire(t0+time60, 0))
		}, check: func(t *testing.T, h *harness, r Result) {
			h.wantState("a", StateDead)
			h.wantState("b", StateCancelled)
		}},
		{name: "cancelling a parent cancels dependants", setup: func(h *harness) {
			h.one(cmdEnqueue(t0, nj("a", "q"), dj("b", "a")))
		}, run: func(h *harness) Result {
			return h.one(cmdCancel(t0+sec, "a"))
		}, check: func(t *testing.T, h *harness, r Result) {
			if b := h.wantState("b", StateCancelled); !strings.Contains(b.LastError, "cancelled") {
				t.Fatalf("b %+v", b)
			}
		}},
		{name: "cancelling a waiting job releases its run-anyway dependants", setup: func(h *harness) {
			h.one(cmdEnqueue(t0, nj("a", "q"), dj("b", "a"), anyway(dj("c", "b"))))
		}, run: func(h *harness) Result {
			return h.one(cmdCancel(t0+sec, "b"))
		}, check: func(t *testing.T, h *harness, r Result) {
			if b := h.wantState("b", StateCancelled); len(b.WaitingOn) != 0 {
				t.Fatalf("b %+v", b)
			}
			h.wantState("c", StateReady)
			h.wantState("a", StateReady)
		}},
		{name: "a redriven parent does not revive cancelled dependants", setup: func(h *harness) {
			h.one(cmdEnqueue(t0, nj("a", "q"), dj("b", "a")))
			fail(h, t0, "a")
		}, run: func(h *harness) Result {
			return h.one(cmdRedrive(t0+sec, "", 0, "a"))
		}, check: func(t *testing.T, h *harness, r Result) {
			h.wantState("a", StateReady)
			h.wantState("b", StateCancelled)
			succeed(h, t0+2*sec, "a")
			h.wantState("b", StateCancelled)
		}},
		{name: "purged parent after dependants resolved is fine", setup: func(h *harness) {
			h.one(cmdEnqueue(t0, nj("a", "q"), dj("b", "a")))
			succeed(h, t0, "a")
		}, run: func(h *harness) Result {
			return h.one(cmdPurge(t0+10*sec, t0+5*sec, 0))
		}, check: func(t *testing.T, h *harness, r Result) {
			if _, ok := h.f.Get("a"); ok {
				t.Fatal("a not purged")
			}
			if b := h.wantState("b", StateReady); !eq(b.Parents, []string{"a"}) {
				t.Fatalf("b %+v", b)
			}
			succeed(h, t0+11*sec, "b")
			h.one(cmdPurge(t0+20*sec, t0+15*sec, 0))
			var n int
			h.f.view(func(st *state) { n = keyN(st.depChildren) + keyN(st.depWaiting) })
			if n != 0 || h.f.Len() != 0 {
				t.Fatalf("%d edges, %d jobs left after purging everything", n, h.f.Len())
			}
		}},
		{name: "unknown parent", err: ErrInvalid, run: func(h *harness) Result {
			return h.one(cmdEnqueue(t0, dj("b", "nope")))
		}, check: func(t *testing.T, h *harness, r Result) {
			if h.f.Len() != 0 || !strings.Contains(r.Items[0].Err.Error(), `unknown parent "nope"`) {
				t.Fatalf("len %d, err %v", h.f.Len(), r.Items[0].Err)
			}
		}},
		{name: "later item of a plain enqueue is unknown", err: ErrInvalid, run: func(h *harness) Result {
			return h.one(cmdEnqueue(t0, dj("b", "a"), nj("a", "q")))
		}, check: func(t *testing.T, h *harness, r Result) {
			if _, ok := h.f.Get("b"); ok {
				t.Fatal("b created")
			}
			h.wantState("a", StateReady)
		}},
		{name: "earlier item of a plain enqueue is a parent", run: func(h *harness) Result {
			return h.one(cmdEnqueue(t0, nj("a", "q"), dj("b", "a")))
		}, check: func(t *testing.T, h *harness, r Result) { h.wantState("b", StateWaiting) }},
		{name: "self", err: ErrInvalid, run: func(h *harness) Result {
			return h.one(cmdEnqueue(t0, dj("b", "b")))
		}},
		{name: "unknown policy", err: ErrInvalid, setup: func(h *harness) { enqueue(h, "a") }, run: func(h *harness) Result {
			b := dj("b", "a")
			b.DependencyPolicy = 7
			return h.one(cmdEnqueue(t0, b))
		}},
	})
}

// time60 is past the default 30 s lease of nj's jobs.
const time60 = 60 * sec

// TestWorkflowAtomic covers EnqueueWorkflow: intra-batch parents in any
// order, and every refusal changes nothing (the hash is unchanged).
func TestWorkflowAtomic(t *testing.T) {
	t.Run("diamond in any order", func(t *testing.T) {
		h := newHarness(t)
		r := workflow(h, t0, dj("d", "b", "c"), dj("b", "a"), dj("c", "a"), nj("a", "q"))
		for i, id := range []string{"d", "b", "c", "a"} {
			if r.Items[i].JobID != id || r.Items[i].Err != nil || r.Items[i].Job == nil {
				t.Fatalf("item %d %+v", i, r.Items[i])
			}
		}
		h.wantState("a", StateReady)
		for _, id := range []string{"b", "c", "d"} {
			h.wantState(id, StateWaiting)
		}
		succeed(h, t0+sec, "a")
		h.wantState("b", StateReady)
		h.wantState("c", StateReady)
		succeed(h, t0+2*sec, "b")
		h.wantState("d", StateWaiting)
		succeed(h, t0+3*sec, "c")
		h.wantState("d", StateReady)
		checkInvariants(t, h.f)
	})
	t.Run("existing and batch parents mixed", func(t *testing.T) {
		h := newHarness(t)
		enqueue(h, "x")
		workflow(h, t0, dj("y", "x", "z"), nj("z", "q"))
		if y := h.wantState("y", StateWaiting); !eq(y.WaitingOn, []string{"x", "z"}) {
			t.Fatalf("y %+v", y)
		}
	})
	t.Run("idempotent resubmission creates nothing", func(t *testing.T) {
		h := newHarness(t)
		mk := func(suffix string) []*fsmpb.NewJob {
			a, b := nj("a"+suffix, "q"), dj("b"+suffix, "a"+suffix)
			a.IdempotencyKey, a.DedupWindow = "ka", 100*sec
			b.IdempotencyKey, b.DedupWindow = "kb", 100*sec
			return []*fsmpb.NewJob{b, a}
		}
		workflow(h, t0, mk("1")...)
		before := h.f.Hash()
		r := workflow(h, t0+sec, mk("2")...)
		if !r.Items[0].Duplicate || r.Items[0].JobID != "b1" || !r.Items[1].Duplicate || r.Items[1].JobID != "a1" {
			t.Fatalf("items %+v", r.Items)
		}
		if h.f.Hash() != before {
			t.Fatal("a duplicate workflow changed state")
		}
	})
	t.Run("a new job under a duplicate parent depends on the existing job", func(t *testing.T) {
		h := newHarness(t)
		a := nj("a1", "q")
		a.IdempotencyKey, a.DedupWindow = "ka", 100*sec
		workflow(h, t0, a)
		a2 := nj("a2", "q")
		a2.IdempotencyKey, a2.DedupWindow = "ka", 100*sec
		workflow(h, t0+sec, a2, dj("c", "a2"))
		if c := h.wantState("c", StateWaiting); !eq(c.Parents, []string{"a1"}) {
			t.Fatalf("c %+v", c)
		}
	})

	many := make([]string, MaxParents+1)
	var manyJobs []*fsmpb.NewJob
	for i := range many {
		many[i] = "p" + string(rune('A'+i/26)) + string(rune('a'+i%26))
		manyJobs = append(manyJobs, nj(many[i], "q"))
	}
	for _, tc := range []struct {
		name, want string
		jobs       []*fsmpb.NewJob
	}{
		{"cycle", `job "a" is part of a dependency cycle`, []*fsmpb.NewJob{dj("a", "c"), dj("b", "a"), dj("c", "b"), nj("ok", "q")}},
		{"two-cycle", `job "a" is part of a dependency cycle`, []*fsmpb.NewJob{nj("ok", "q"), dj("a", "b"), dj("b", "a")}},
		{"self", `job "a" depends on itself`, []*fsmpb.NewJob{nj("ok", "q"), dj("a", "a")}},
		{"unknown parent", `job "b": unknown parent "gone"`, []*fsmpb.NewJob{nj("a", "q"), dj("b", "a", "gone")}},
		{"purged parent", `job "b": unknown parent "old"`, []*fsmpb.NewJob{dj("b", "old")}},
		{"duplicate parent", `job "b" lists parent "x" twice`, []*fsmpb.NewJob{dj("b", "x", "x")}},
		{"too many parents", `job "big" has 65 parents (at most 64)`, append(manyJobs, dj("big", many...))},
		{"empty parent", `job "b": parent 0 has an empty id`, []*fsmpb.NewJob{dj("b", "")}},
		{"bad policy", `job "b": unknown dependency policy 5`, []*fsmpb.NewJob{{Id: "b", Queue: "q", Type: "t", DependencyPolicy: 5}}},
		{"duplicate id in batch", `"a"`, []*fsmpb.NewJob{nj("a", "q"), nj("a", "q")}},
		{"existing id", `"x"`, []*fsmpb.NewJob{nj("y2", "q"), nj("x", "q")}},
		{"unique key", `workflow job "u" has a unique key`, []*fsmpb.NewJob{{Id: "u", Queue: "q", Type: "t", UniqueKey: "k"}}},
		{"missing type", `workflow job 1: id, queue and type are required`, []*fsmpb.NewJob{nj("a", "q"), {Id: "b", Queue: "q"}}},
	} {
		t.Run("refuses "+tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.one(cmdEnqueue(t0, nj("x", "q"), nj("old", "q")))
			h.one(cmdCancel(t0, "old"))
			h.one(cmdPurge(t0+sec, t0+sec, 0))
			before, n := h.f.Hash(), h.f.Len()
			r := h.one(cmdWorkflow(t0+2*sec, tc.jobs...))
			if r.Err == nil || !strings.Contains(r.Err.Error(), tc.want) {
				t.Fatalf("err %v, want one containing %q", r.Err, tc.want)
			}
			if len(r.Items) != 0 || h.f.Hash() != before || h.f.Len() != n {
				t.Fatal("a refused workflow changed state")
			}
			checkInvariants(t, h.f)
		})
	}
}

// TestWorkflowSnapshotAndHash: the dependency state survives a snapshot
// and restore byte for byte, and a store without dependencies hashes as
// before (no new bucket contributes).
func TestWorkflowSnapshotAndHash(t *testing.T) {
	h := newHarness(t)
	enqueue(h, "plain")
	var empty []byte
	h.f.view(func(st *state) {
		if k, _ := st.depChildren.Cursor().First(); k != nil {
			empty = k
		}
	})
	if empty != nil {
		t.Fatal("dep_children holds an edge without workflows")
	}
	plain := h.f.Hash()
	// The hash of a store without workflows does not mention the new
	// buckets: a fresh hasher that skips them agrees.
	workflow(h, t0, dj("b", "a"), nj("a", "q"), anyway(dj("c", "b")))
	if h.f.Hash() == plain {
		t.Fatal("hash ignores a workflow")
	}
	// Each dependency index is hashed: an edge lost behind the FSM's back
	// changes the hash.
	for _, b := range [][]byte{bDepChildren, bDepWaiting} {
		base := h.f.Hash()
		k := depKey("b", "c")
		h.f.update(t, func(st *state) { st.must(st.tx.Bucket(b).Delete(k)) })
		if h.f.Hash() == base {
			t.Fatalf("Hash ignores bucket %s", b)
		}
		h.f.update(t, func(st *state) { st.must(st.tx.Bucket(b).Put(k, nil)) })
		if h.f.Hash() != base {
			t.Fatalf("restoring the %s edge did not restore the hash", b)
		}
	}
	var before bytes.Buffer
	before.WriteString(h.f.Hash())
	snap, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	f2 := New()
	if err := restoreBytes(f2, sink.Bytes()); err != nil {
		t.Fatal(err)
	}
	if f2.Hash() != before.String() {
		t.Fatal("restored workflow state hashes differently")
	}
	checkInvariants(t, f2)
	if j, _ := f2.Get("c"); j.State != StateWaiting || !eq(j.WaitingOn, []string{"b"}) {
		t.Fatalf("restored c %+v", j)
	}
	if got := f2.Dependants("a", 0); !eq(got, []string{"b"}) {
		t.Fatalf("restored Dependants %v", got)
	}
	// The waiting count is stored only when non-zero: once nothing waits
	// the queue record has its old length.
	h.f.view(func(st *state) {
		if v := st.queues.Get([]byte("q")); len(v) != 1+8*NumStates {
			t.Fatalf("queue record with waiting jobs is %d bytes", len(v))
		}
	})
	h.one(cmdCancel(t0+sec, "a", "c"))
	h.f.view(func(st *state) {
		if v := st.queues.Get([]byte("q")); len(v) != 1+8*oldQueueCounts {
			t.Fatalf("queue record without waiting jobs is %d bytes", len(v))
		}
	})
}
