package fsm

import (
	"testing"

	"github.com/raftq/raftq/fsm/fsmpb"
)

func cmdDeleteDead(now int64, queue string, limit int32, ids ...string) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_DELETE_DEAD, Now: now,
		Body: &fsmpb.Command_DeleteDead{DeleteDead: &fsmpb.DeleteDead{Queue: queue, JobIds: ids, Limit: limit}}}
}

func TestDeleteDead(t *testing.T) {
	runCases(t, []cmdCase{
		{name: "listed", setup: func(h *harness) { killJobs(h, "a", "b") }, run: func(h *harness) Result {
			return h.one(cmdDeleteDead(t0+2*sec, "", 0, "a"))
		}, check: func(t *testing.T, h *harness, r Result) {
			if len(r.Items) != 1 || r.Items[0].JobID != "a" {
				t.Fatalf("items %+v", r.Items)
			}
			if _, ok := h.f.Get("a"); ok {
				t.Fatal("purged job still there")
			}
			h.wantCounts("q", map[State]int64{StateDead: 1})
			if got := ids(h.f.List("q", StateDead, "", 0)); !eq(got, []string{"b"}) {
				t.Fatalf("List dead %v", got)
			}
		}},
		{name: "listed in its queue", setup: func(h *harness) { killJobs(h, "a") }, run: func(h *harness) Result {
			return h.one(cmdDeleteDead(t0, "q", 0, "a"))
		}, check: func(t *testing.T, h *harness, r Result) { h.wantCounts("q", map[State]int64{}) }},
		{name: "listed not dead", err: ErrWrongState, setup: func(h *harness) { enqueue(h, "a") }, run: func(h *harness) Result {
			return h.one(cmdDeleteDead(t0, "", 0, "a"))
		}, check: func(t *testing.T, h *harness, r Result) { h.wantState("a", StateReady) }},
		{name: "listed unknown", err: ErrNotFound, run: func(h *harness) Result {
			return h.one(cmdDeleteDead(t0, "", 0, "a"))
		}},
		{name: "listed in another queue", err: ErrNotFound, setup: func(h *harness) { killJobs(h, "a") }, run: func(h *harness) Result {
			return h.one(cmdDeleteDead(t0, "other", 0, "a"))
		}, check: func(t *testing.T, h *harness, r Result) { h.wantState("a", StateDead) }},
		{name: "one refusal leaves the others", err: ErrNotFound, setup: func(h *harness) { killJobs(h, "a", "b") }, run: func(h *harness) Result {
			return h.one(cmdDeleteDead(t0, "", 0, "zz", "a", "b"))
		}, check: func(t *testing.T, h *harness, r Result) {
			if len(r.Items) != 3 || r.Items[1].Err != nil || r.Items[2].Err != nil {
				t.Fatalf("items %+v", r.Items)
			}
			if h.f.Len() != 0 {
				t.Fatalf("%d jobs left", h.f.Len())
			}
		}},
		{name: "by queue in id order with limit", setup: func(h *harness) { killJobs(h, "c", "a", "b") }, run: func(h *harness) Result {
			return h.one(cmdDeleteDead(t0+2*sec, "q", 2))
		}, check: func(t *testing.T, h *harness, r Result) {
			if got := []string{r.Items[0].JobID, r.Items[1].JobID}; len(r.Items) != 2 || !eq(got, []string{"a", "b"}) {
				t.Fatalf("items %+v", r.Items)
			}
			h.wantState("c", StateDead)
			h.wantCounts("q", map[State]int64{StateDead: 1})
		}},
		{name: "by queue leaves other states", setup: func(h *harness) { killJobs(h, "a"); enqueue(h, "b") }, run: func(h *harness) Result {
			return h.one(cmdDeleteDead(t0+2*sec, "q", 0))
		}, check: func(t *testing.T, h *harness, r Result) {
			if len(r.Items) != 1 || r.Items[0].JobID != "a" {
				t.Fatalf("items %+v", r.Items)
			}
			h.wantState("b", StateReady)
		}},
		{name: "idempotency key survives", setup: func(h *harness) {
			j := nj("a", "q")
			j.IdempotencyKey, j.DedupWindow = "k", 100*sec
			h.one(cmdEnqueue(t0, j))
			tk := lease(h, t0, "a")
			h.one(cmdNack(t0+sec, &fsmpb.NackItem{JobId: "a", Token: tk, Permanent: true}))
		}, run: func(h *harness) Result {
			return h.one(cmdDeleteDead(t0+2*sec, "q", 0))
		}, check: func(t *testing.T, h *harness, r Result) {
			j := nj("a2", "q")
			j.IdempotencyKey = "k"
			again := h.one(cmdEnqueue(t0+3*sec, j))
			if it := again.Items[0]; !it.Duplicate || it.JobID != "a" || h.f.Len() != 0 {
				t.Fatalf("re-enqueue with the key: %+v, %d jobs", it, h.f.Len())
			}
		}},
		{name: "nothing named", err: ErrInvalid, run: func(h *harness) Result {
			return h.one(cmdDeleteDead(t0, "", 0))
		}},
	})
}
