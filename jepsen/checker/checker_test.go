package checker

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/raftq/raftq/jepsen/history"
)

// b builds hand-made histories: each op gets the next index, and times are
// given in milliseconds.
type b struct{ ops []history.Op }

func (h *b) add(op history.Op, start, end int64) *b {
	op.Index = len(h.ops)
	op.Start, op.End = start*1e6, end*1e6
	if op.Status == "" {
		op.Status = history.OK
	}
	h.ops = append(h.ops, op)
	return h
}

func enq(v, id string) history.Op { return history.Op{Kind: history.Enqueue, Value: v, JobID: id} }
func fetch(id, v string, tok uint64) history.Op {
	return history.Op{Kind: history.Fetch, JobID: id, Value: v, Token: tok}
}
func store(id string, tok uint64, outcome string) history.Op {
	return history.Op{Kind: history.Store, JobID: id, Token: tok, State: outcome}
}
func ack(id string, tok uint64) history.Op {
	return history.Op{Kind: history.Ack, JobID: id, Token: tok}
}
func read(id, state string, tok uint64) history.Op {
	return history.Op{Kind: history.Read, JobID: id, State: state, Token: tok}
}
func with(op history.Op, st history.Status) history.Op { op.Status = st; return op }

// good is a correct history of two jobs from one producer, one of them
// redelivered after its first lease ran out.
func good() *b {
	h := &b{}
	h.add(enq("p0-0", "a"), 0, 10).
		add(enq("p0-1", "b"), 11, 20).
		add(fetch("a", "p0-0", 5), 21, 25).
		add(fetch("b", "p0-1", 6), 22, 26).
		add(store("a", 5, "stored"), 27, 28).
		add(ack("a", 5), 29, 30).
		add(read("a", "succeeded", 5), 31, 32).
		add(read("b", "leased", 6), 31, 32).
		// b's lease ran out; a second worker gets it, the first one's
		// late ack is refused.
		add(fetch("b", "p0-1", 9), 40, 41).
		add(with(ack("b", 6), history.Fail), 42, 43).
		add(store("b", 9, "stored"), 44, 45).
		add(ack("b", 9), 46, 47).
		add(read("b", "succeeded", 9), 48, 49)
	return h
}

func rows() []Row {
	return []Row{{JobID: "a", Token: 5, Status: "succeeded"}, {JobID: "b", Token: 9, Status: "succeeded"}}
}

func TestGoodHistoryIsValid(t *testing.T) {
	ops := good().ops
	for _, r := range []Result{Queue(ops), AckDurability(ops), Fencing(ops, rows()), Linearizable(ops, time.Second)} {
		if !r.Valid {
			t.Errorf("%s: invalid on a correct history: %+v", r.Name, r.Failures)
		}
	}
	q := Queue(ops)
	if q.Counts["duplicated"] != 1 || q.Counts["lost"] != 0 || q.Counts["enqueued"] != 2 {
		t.Errorf("queue counts: %v", q.Counts)
	}
}

func wantInvalid(t *testing.T, r Result, count, msg string) {
	t.Helper()
	if r.Valid {
		t.Fatalf("%s: valid, want invalid (%s)", r.Name, msg)
	}
	if count != "" && r.Counts[count] == 0 {
		t.Errorf("%s: count %s is 0: %v", r.Name, count, r.Counts)
	}
	found := false
	for _, f := range r.Failures {
		found = found || strings.Contains(f.Msg, msg)
	}
	if !found {
		t.Errorf("%s: no failure mentions %q: %+v", r.Name, msg, r.Failures)
	}
}

func TestQueueLost(t *testing.T) {
	h := &b{}
	h.add(enq("p0-0", "a"), 0, 1).add(enq("p0-1", "b"), 2, 3).add(enq("p0-2", "c"), 4, 5).
		add(fetch("a", "p0-0", 7), 6, 7).add(fetch("c", "p0-2", 8), 6, 8)
	r := Queue(h.ops)
	wantInvalid(t, r, "lost_middle", "lost-middle: p0-1")
	if r.Counts["lost"] != 1 {
		t.Errorf("lost = %d", r.Counts["lost"])
	}
	// The last value lost is plain loss, not lost-middle.
	h = &b{}
	h.add(enq("p0-0", "a"), 0, 1).add(enq("p0-1", "b"), 2, 3).add(fetch("a", "p0-0", 7), 6, 7)
	r = Queue(h.ops)
	wantInvalid(t, r, "lost", "lost: p0-1")
	if r.Counts["lost_middle"] != 0 {
		t.Errorf("lost_middle = %d", r.Counts["lost_middle"])
	}
}

func TestQueueUnexpectedAndFailedDequeued(t *testing.T) {
	h := &b{}
	h.add(enq("p0-0", "a"), 0, 1).add(fetch("a", "p0-0", 3), 2, 3).add(fetch("x", "p9-9", 4), 2, 4)
	wantInvalid(t, Queue(h.ops), "unexpected", "unexpected: p9-9")

	h = &b{}
	h.add(with(enq("p0-0", ""), history.Fail), 0, 1).add(fetch("a", "p0-0", 3), 2, 3)
	wantInvalid(t, Queue(h.ops), "failed_but_dequeued", "failed definitely")

	// An indeterminate enqueue that shows up is recovered, and valid.
	h = &b{}
	h.add(with(enq("p0-0", ""), history.Info), 0, 1).add(fetch("a", "p0-0", 3), 2, 3)
	r := Queue(h.ops)
	if !r.Valid || r.Counts["recovered"] != 1 {
		t.Errorf("recovered: valid=%v counts=%v", r.Valid, r.Counts)
	}
}

func TestAckDurabilityResurrection(t *testing.T) {
	ops := good().add(fetch("a", "p0-0", 12), 60, 61).ops
	wantInvalid(t, AckDurability(ops), "resurrected", "resurrection: job a")
	// A lease handed out later but with an older token is impossible in
	// time order; an invocation after the ack is enough on its own too.
	ops = good().add(fetch("a", "p0-0", 5), 60, 61).ops
	wantInvalid(t, AckDurability(ops), "resurrected", "leased again")
}

func TestFencingStaleAckAccepted(t *testing.T) {
	h := &b{}
	h.add(enq("p0-0", "a"), 0, 1).
		add(fetch("a", "p0-0", 5), 2, 3).
		add(fetch("a", "p0-0", 9), 10, 11). // the lease ran out; worker 2
		add(store("a", 9, "stored"), 12, 13).
		add(ack("a", 5), 14, 15). // the zombie's stale ack, accepted
		add(ack("a", 9), 16, 17)
	r := Fencing(h.ops, []Row{{JobID: "a", Token: 9, Status: "succeeded"}})
	wantInvalid(t, r, "stale_acks_accepted", "stale ack accepted")
	wantInvalid(t, r, "multi_token_acks", "two accepted acks")
	// The newer lease came before the stale ack: no resurrection, the
	// failure is fencing's alone.
	if a := AckDurability(h.ops); !a.Valid {
		t.Errorf("ack-durability blames a stale ack as a resurrection: %+v", a.Failures)
	}
}

func TestFencingStores(t *testing.T) {
	h := &b{}
	h.add(enq("p0-0", "a"), 0, 1).
		add(fetch("a", "p0-0", 5), 2, 3).
		add(fetch("a", "p0-0", 9), 10, 11).
		add(store("a", 9, "stored"), 12, 13).
		add(store("a", 5, "stored"), 14, 15). // svcd accepted an older token
		add(ack("a", 9), 16, 17)
	r := Fencing(h.ops, []Row{{JobID: "a", Token: 9, Status: "succeeded"}})
	wantInvalid(t, r, "stale_stores_accepted", "stale result accepted")
	wantInvalid(t, r, "multi_stored", "two results stored")
}

func TestFencingRows(t *testing.T) {
	ops := good().ops
	wantInvalid(t, Fencing(ops, rows()[:1]), "rows_missing", "no result row in svcd for job b")
	wantInvalid(t, Fencing(ops, append(rows(), Row{JobID: "zz", Token: 1, Status: "succeeded"})), "rows_unexpected", "never leased")
	wantInvalid(t, Fencing(ops, append(rows(), rows()[0])), "rows_duplicate", "two result rows")
	bad := rows()
	bad[0].Status = "failed"
	wantInvalid(t, Fencing(ops, bad), "rows_wrong", "not succeeded")
	wantInvalid(t, Fencing(ops, nil), "", "could not be read")
}

func TestLinearizableStaleRead(t *testing.T) {
	// A read that sees the job leased under an older token after the ack
	// completed: the read was served by a deposed leader.
	ops := good().add(read("b", "leased", 6), 50, 51).ops
	wantInvalid(t, Linearizable(ops, time.Second), "illegal", "job b")
	// Not found after the enqueue returned.
	ops = good().add(read("a", history.NotFound, 0), 50, 51).ops
	wantInvalid(t, Linearizable(ops, time.Second), "illegal", "job a")
	// Acked OK with a token that is not the job's current lease.
	h := &b{}
	h.add(enq("p0-0", "a"), 0, 1).add(fetch("a", "p0-0", 5), 2, 3).add(fetch("a", "p0-0", 9), 10, 11).add(ack("a", 5), 14, 15)
	wantInvalid(t, Linearizable(h.ops, time.Second), "illegal", "job a")
}

func TestLinearizableUnseenLeaseAndMaybeAck(t *testing.T) {
	h := &b{}
	h.add(enq("p0-0", "a"), 0, 1).
		add(read("a", "ready", 0), 2, 3).
		// A fetch whose answer was lost leased the job under 7: only a
		// read saw it. Legal.
		add(read("a", "leased", 7), 4, 5).
		add(fetch("a", "p0-0", 9), 6, 7).
		// An ack that timed out may have landed: a later read decides.
		add(with(ack("a", 9), history.Info), 8, 9).
		add(read("a", "succeeded", 9), 10, 11)
	if r := Linearizable(h.ops, time.Second); !r.Valid {
		t.Fatalf("invalid: %+v", r.Failures)
	}
	// Concurrent read and lease: the read may see either.
	h = &b{}
	h.add(enq("p0-0", "a"), 0, 1).add(fetch("a", "p0-0", 9), 2, 10).add(read("a", "leased", 9), 3, 4).add(read("a", "ready", 0), 5, 6)
	if r := Linearizable(h.ops, time.Second); r.Valid {
		t.Fatal("a read of the old state after a read of the new one was accepted")
	}
}

func TestDivergence(t *testing.T) {
	same := []NodeState{{Node: "n1", AppliedIndex: 9, Hash: "x"}, {Node: "n2", AppliedIndex: 9, Hash: "x"}}
	if r := Divergence(same); !r.Valid {
		t.Fatalf("equal states invalid: %+v", r.Failures)
	}
	wantInvalid(t, Divergence([]NodeState{{Node: "n1", AppliedIndex: 9, Hash: "x"}, {Node: "n2", AppliedIndex: 9, Hash: "y"}}), "", "hashes differ")
	wantInvalid(t, Divergence([]NodeState{{Node: "n1", AppliedIndex: 9, Hash: "x"}, {Node: "n2", AppliedIndex: 8, Hash: "x"}}), "", "applied up to")
	wantInvalid(t, Divergence([]NodeState{{Node: "n1", Err: "down"}}), "", "did not report")
	wantInvalid(t, Divergence(nil), "", "no node")
}

func TestValue(t *testing.T) {
	p, s, ok := ParseValue(Value(3, 41))
	if !ok || p != 3 || s != 41 {
		t.Fatalf("round trip: %d %d %v", p, s, ok)
	}
	if _, _, ok := ParseValue("x-1"); ok {
		t.Fatal("parsed garbage")
	}
}

// TestDuplicateJobIsInvalid: one value answered with two job ids was
// created twice (the idempotency key failed); a redelivery of one job is
// not a duplicate job.
func TestDuplicateJobIsInvalid(t *testing.T) {
	if q := Queue(good().ops); q.Counts["duplicate_jobs"] != 0 {
		t.Fatalf("redelivery counted as a duplicate job: %v", q.Counts)
	}
	h := &b{}
	h.add(enq("p0-0", "a"), 0, 10).add(fetch("a", "p0-0", 5), 11, 12).add(fetch("a2", "p0-0", 7), 13, 14)
	wantInvalid(t, Queue(h.ops), "duplicate_jobs", "duplicate job")
	// An enqueue answered with an id that was never fetched is not a
	// second job (the seeded early-enqueue-ack bug answers ids of its own).
	h = &b{}
	h.add(enq("p0-0", "x"), 0, 10).add(fetch("a", "p0-0", 5), 11, 12)
	if q := Queue(h.ops); q.Counts["duplicate_jobs"] != 0 {
		t.Fatalf("answered id counted as a second job: %v", q.Counts)
	}
}

// groupsGood is good() spread over three groups: group 0 has the good
// history's jobs, groups 1 and 2 one job each, worked once.
func groupsGood() *b {
	h := good()
	for g, id := range map[uint32]string{1: "c.g1", 2: "d.g2"} {
		v := fmt.Sprintf("p1-%d", g)
		e := enq(v, id)
		e.Group = g
		f := fetch(id, v, 3)
		f.Group = g
		h.add(e, 50, 51).add(f, 52, 53).add(store(id, 3, "stored"), 54, 55).add(ack(id, 3), 56, 57)
	}
	return h
}

func groupsRows() []Row {
	return append(rows(), Row{JobID: "c.g1", Token: 3, Status: "succeeded"}, Row{JobID: "d.g2", Token: 3, Status: "succeeded"})
}

// TestGroupsChecker: a correct three-group history is valid with every
// group's counts; a value lost in one group, a stale ack accepted in one
// group, a job id of the wrong group and a group without load each fail,
// and the failure names the group.
func TestGroupsChecker(t *testing.T) {
	r := Groups(groupsGood().ops, groupsRows(), 3, "", time.Second)
	if !r.Valid {
		t.Fatalf("correct history invalid: %+v", r.Failures)
	}
	if len(r.PerGroup) != 3 || r.PerGroup[0]["enqueued"] != 2 || r.PerGroup[1]["enqueued"] != 1 || r.PerGroup[2]["dequeued"] != 1 ||
		r.PerGroup[0]["redelivered"] != 1 || r.Counts["redelivered"] != 1 {
		t.Fatalf("per-group counts: %v (totals %v)", r.PerGroup, r.Counts)
	}

	// Group 2's value is enqueued OK, never fetched.
	h := groupsGood()
	lostV := history.Op{Kind: history.Enqueue, Value: "p2-0", JobID: "e.g2", Group: 2}
	h.add(lostV, 60, 61)
	r = Groups(h.ops, groupsRows(), 3, "", time.Second)
	if r.Valid || r.Counts["lost"] != 1 || r.PerGroup[2]["lost"] != 1 || r.PerGroup[0]["lost"] != 0 {
		t.Fatalf("lost value in group 2: valid=%v counts=%v per group=%v", r.Valid, r.Counts, r.PerGroup)
	}
	if !strings.Contains(r.Failures[0].Msg, "group 2 queue") {
		t.Fatalf("failure does not name the group: %q", r.Failures[0].Msg)
	}

	// Group 1 accepts a zombie's stale ack after a newer lease.
	h = groupsGood()
	f := fetch("c.g1", "p1-1", 8)
	f.Group = 1
	h.add(f, 60, 61).add(ack("c.g1", 8), 62, 63)
	h.ops[len(h.ops)-1].Token = 3 // acked with the old token, accepted
	r = Groups(h.ops, groupsRows(), 3, "", time.Second)
	if r.Valid || r.PerGroup[1]["fencing"] == 0 || r.PerGroup[0]["fencing"] != 0 || r.PerGroup[2]["fencing"] != 0 {
		t.Fatalf("stale ack in group 1: valid=%v per group=%v", r.Valid, r.PerGroup)
	}

	// A fetch of group 1's queue handed a job of group 2.
	h = groupsGood()
	f = fetch("d.g2", "p1-2", 4)
	f.Group = 1
	h.add(f, 60, 61)
	wantInvalid(t, Groups(h.ops, groupsRows(), 3, "", time.Second), "misplaced", "misplaced")

	// Group 1's queue moved to group 2 (a move nemesis op): an enqueue
	// and a fetch of it answered from group 2 after the move began are in
	// place; one from group 0, or from group 2 before the move, is not.
	moved := func() *b {
		h := groupsGood()
		h.add(history.Op{Process: -1, Kind: history.Nemesis, Family: "move", Group: 1, MoveTo: []uint32{2}}, 50, 50)
		return h
	}
	h = moved()
	e := history.Op{Kind: history.Enqueue, Value: "p1-9", JobID: "m.g2", Group: 1}
	f = fetch("m.g2", "p1-9", 5)
	f.Group = 1
	h.add(e, 60, 61).add(f, 62, 63).add(ack("m.g2", 5), 64, 65)
	if r := Groups(h.ops, append(groupsRows(), Row{JobID: "m.g2", Token: 5, Status: "succeeded"}), 3, "", time.Second); !r.Valid {
		t.Fatalf("job of a moved queue in its new group: %+v", r.Failures)
	}
	h = moved()
	h.add(history.Op{Kind: history.Enqueue, Value: "p1-9", JobID: "m.g2", Group: 1}, 40, 41)
	wantInvalid(t, Groups(h.ops, groupsRows(), 3, "", time.Second), "misplaced", "misplaced")
	h = moved()
	h.add(history.Op{Kind: history.Enqueue, Value: "p1-9", JobID: "m", Group: 1}, 60, 61)
	wantInvalid(t, Groups(h.ops, groupsRows(), 3, "", time.Second), "misplaced", "misplaced")

	// Four groups, nothing enqueued to group 3.
	wantInvalid(t, Groups(groupsGood().ops, groupsRows(), 4, "", time.Second), "idle_groups", "no value was enqueued")
}

// TestDivergencePerGroup: each group is compared on its own (groups have
// different logs, so their indexes differ legitimately); a hash that
// differs inside one group fails and names it.
func TestDivergencePerGroup(t *testing.T) {
	ok := []NodeState{
		{Node: "n1", AppliedIndex: 9, Hash: "x"}, {Node: "n2", AppliedIndex: 9, Hash: "x"},
		{Node: "n1", Group: 1, AppliedIndex: 4, Hash: "y"}, {Node: "n2", Group: 1, AppliedIndex: 4, Hash: "y"},
	}
	if r := Divergence(ok); !r.Valid || r.Counts["nodes"] != 2 || r.Counts["groups"] != 2 {
		t.Fatalf("agreeing groups: valid=%v counts=%v %+v", r.Valid, r.Counts, r.Failures)
	}
	bad := append([]NodeState(nil), ok...)
	bad[3].Hash = "z"
	wantInvalid(t, Divergence(bad), "", "group 1: state hashes differ")
}
