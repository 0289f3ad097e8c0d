package fsm

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/raftq/raftq/fsm/fsmpb"
)

// kj is a new job of queue q with concurrency key key and priority prio.
func kj(id, q, key string, prio int32) *fsmpb.NewJob {
	j := nj(id, q)
	j.ConcurrencyKey, j.Priority = key, prio
	return j
}

func pickIDs(rs []ReadyJob) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

func TestConcurrencyKeyStoredHashedAndSnapshotted(t *testing.T) {
	a, b := newHarness(t), newHarness(t)
	a.one(cmdEnqueue(t0, nj("j", "q")))
	b.one(cmdEnqueue(t0, kj("j", "q", "tenant-1", 0)))
	if got := b.get("j").ConcurrencyKey; got != "tenant-1" {
		t.Fatalf("key %q", got)
	}
	if a.f.Hash() == b.f.Hash() {
		t.Fatal("hash ignores the concurrency key")
	}
	// Leased, the job is in the leased-by-key index; the hash sees that too.
	b.one(cmdLease(t0, "w", "j"))
	if n := b.f.LeasedOfKey("q", "tenant-1"); n != 1 {
		t.Fatalf("LeasedOfKey %d", n)
	}
	b.one(cmdEnqueue(t0, kj("k", "q", "tenant-2", 0)))
	checkInvariants(t, b.f)
	want := b.f.Hash()
	f := New()
	if err := restoreBytes(f, snapshotBytes(t, b.f)); err != nil {
		t.Fatal(err)
	}
	if f.Hash() != want {
		t.Fatal("restored hash differs")
	}
	checkInvariants(t, f)
	hh := &harness{t: t, f: f, index: f.LastIndex()}
	if got := hh.get("k").ConcurrencyKey; got != "tenant-2" {
		t.Fatalf("restored key %q", got)
	}
	if n := f.LeasedOfKey("q", "tenant-1"); n != 1 {
		t.Fatalf("restored LeasedOfKey %d", n)
	}
	if got := pickIDs(f.PickReady("q", ReadyPick{})); !eq(got, []string{"k"}) {
		t.Fatalf("restored ready %v", got)
	}
	// The key leaves the leased index with the lease.
	hh.one(cmdAck(t0, ref("j", b.index-1)))
	if n := f.LeasedOfKey("q", "tenant-1"); n != 0 {
		t.Fatalf("LeasedOfKey after ack %d", n)
	}
	checkInvariants(t, f)
}

func TestConcurrencyKeyTooLongRefusedChangesNothing(t *testing.T) {
	h := newHarness(t)
	h.one(cmdEnqueue(t0, nj("a", "q")))
	before := h.f.Hash()
	r := h.one(cmdEnqueue(t0, kj("b", "q", strings.Repeat("k", maxKeyPart+1), 0)))
	if r.Items[0].Err == nil || !errors.Is(r.Items[0].Err, ErrInvalid) {
		t.Fatalf("err %v", r.Items[0].Err)
	}
	if h.f.Hash() != before {
		t.Fatal("refused enqueue changed the state")
	}
}

func TestPickReadyFairAcrossKeys(t *testing.T) {
	h := newHarness(t)
	var jobs []*fsmpb.NewJob
	for i := range 10000 {
		jobs = append(jobs, kj(fmt.Sprintf("big-%05d", i), "q", "big", 0))
	}
	h.one(cmdEnqueue(t0, jobs...))
	jobs = nil
	for k := range 9 {
		for i := range 10 {
			jobs = append(jobs, kj(fmt.Sprintf("s%d-%02d", k, i), "q", fmt.Sprintf("small-%d", k), 0))
		}
	}
	h.one(cmdEnqueue(t0+sec, jobs...))
	got := h.f.PickReady("q", ReadyPick{Max: 10})
	keys := map[string]bool{}
	for _, r := range got {
		keys[r.Key] = true
	}
	if len(got) != 10 || len(keys) != 10 {
		t.Fatalf("first fetch of 10 served %d keys: %v", len(keys), got)
	}
	// FIFO within a key: each key's head.
	if got[0].ID != "big-00000" || got[1].ID != "s0-00" {
		t.Fatalf("heads %v", got[:2])
	}
	// Resuming after the last key served, and skipping what was taken,
	// round two again gives every key one job, each its second.
	taken := map[string]bool{}
	for _, r := range got {
		taken[r.ID] = true
	}
	skip := func(id string) bool { return taken[id] }
	got = h.f.PickReady("q", ReadyPick{Max: 10, After: got[9].Key, Skip: skip})
	if got[0].ID != "big-00001" || got[9].ID != "s8-01" || len(got) != 10 {
		t.Fatalf("second round %v", pickIDs(got))
	}
}

func TestPickReadyPriorityRotationAndCap(t *testing.T) {
	h := newHarness(t)
	h.one(cmdEnqueue(t0,
		kj("a1", "q", "a", 0), kj("a2", "q", "a", 0), kj("a3", "q", "a", 0),
		kj("b1", "q", "b", 0), nj("n1", "q"), nj("n2", "q"),
		kj("hi", "q", "b", 5)))
	// Higher priority first, whatever its key; then round-robin at priority
	// 0 from the key after "a": b, the unkeyed group, a; then a again.
	got := pickIDs(h.f.PickReady("q", ReadyPick{After: "a"}))
	if !eq(got, []string{"hi", "b1", "n1", "a1", "n2", "a2", "a3"}) {
		t.Fatalf("order %v", got)
	}
	// ReadyJobs gives the same order from the start of the rotation.
	if got := h.f.ReadyJobs("q", 3, nil); !eq(got, []string{"hi", "a1", "b1"}) {
		t.Fatalf("ReadyJobs %v", got)
	}
	// A cap of 2 per key, with one job of a leased and one being leased:
	// a gets none; b gets 2 (hi, b1); unkeyed jobs are not capped.
	h.one(cmdLease(t0, "w", "a1"))
	inflight := func(k string) int {
		if k == "a" {
			return 1
		}
		return 0
	}
	got = pickIDs(h.f.PickReady("q", ReadyPick{KeyCap: 2, InFlight: inflight}))
	if !eq(got, []string{"hi", "b1", "n1", "n2"}) {
		t.Fatalf("capped %v", got)
	}
	h.one(cmdPause(t0, "q"))
	if got := h.f.PickReady("q", ReadyPick{}); got != nil {
		t.Fatalf("paused %v", got)
	}
	checkInvariants(t, h.f)
}
