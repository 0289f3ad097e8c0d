package fsm

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftq/raftq/fsm/fsmpb"
)

func cmdCheck(now int64) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_CHECK_HASH, Now: now,
		Body: &fsmpb.Command_CheckHash{CheckHash: &fsmpb.CheckHash{}}}
}

// waitCheck waits until f reports a check at index.
func waitCheck(t *testing.T, f *FSM, index uint64) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if i, h := f.LastCheck(); i == index {
			return h
		}
		time.Sleep(5 * time.Millisecond)
	}
	i, _ := f.LastCheck()
	t.Fatalf("no check at %d (last at %d)", index, i)
	return ""
}

// A check entry in the middle of a batch hashes exactly the state as of
// that entry, not of the batch's end; it changes no state; and two replicas
// report the same hash for it however their batches were cut.
func TestCheckHashesStateAsOfItsEntry(t *testing.T) {
	var logs []*raft.Log
	add := func(c *fsmpb.Command) {
		logs = append(logs, &raft.Log{Index: uint64(len(logs) + 1), Type: raft.LogCommand, Data: entry(c)})
	}
	add(cmdEnqueue(t0, njs("a", 0, 50)...))
	add(cmdEnqueue(t0+1, njs("b", 0, 50)...))
	add(cmdCheck(t0 + 2)) // index 3
	add(cmdEnqueue(t0+3, njs("c", 0, 50)...))
	add(cmdLease(t0+4, "w", "a-000001"))

	// Replica a: all five entries in one batch.
	a := New()
	res := a.ApplyBatch(logs)
	if len(res) != len(logs) || a.LastIndex() != 5 {
		t.Fatalf("%d results, last index %d", len(res), a.LastIndex())
	}
	if r := res[2].([]Result); len(r) != 1 || r[0].Err != nil {
		t.Fatalf("check entry answered %+v", r)
	}
	if r := res[4].([]Result); len(r) != 1 || r[0].Items[0].Err != nil {
		t.Fatalf("entries after the check were not applied: %+v", r)
	}
	got := waitCheck(t, a, 3)

	// The state as of index 3, from a replica that stops there.
	upTo := New()
	upTo.ApplyBatch(logs[:2])
	if got != upTo.Hash() {
		t.Fatal("check hash is not the state as of its entry")
	}
	// The check entry itself changes nothing.
	upTo.Apply(logs[2])
	if upTo.Hash() != got {
		t.Fatal("the check entry changed the state")
	}
	// Replica b: one entry at a time, same hash at the same index.
	b := New()
	for _, l := range logs {
		b.Apply(l)
	}
	if waitCheck(t, b, 3) != got || b.Hash() != a.Hash() {
		t.Fatal("replicas disagree")
	}
	// A replayed check entry (after a restart) is skipped like any other.
	a.Apply(logs[2])
	if i, _ := a.LastCheck(); i != 3 {
		t.Fatalf("replay moved the check to %d", i)
	}
}
