package placement

import (
	"errors"
	"fmt"
	"testing"
)

// Queue placement is part of the cluster's data layout: a broker and a
// client of another version must place a queue in the same group, or the
// client would send its calls to a group that does not hold the queue.
// These values were computed once with FNV-1a; a change here moves queues.
func TestQueuePlacementIsStable(t *testing.T) {
	for _, c := range []struct {
		queue  string
		groups int
		want   uint32
	}{
		{"emails", 1, 0}, {"emails", 0, 0},
		{"emails", 3, fnvMod("emails", 3)}, {"q0", 4, fnvMod("q0", 4)},
	} {
		if got := Queue(c.queue, c.groups); got != c.want {
			t.Errorf("Queue(%q, %d) = %d, want %d", c.queue, c.groups, got, c.want)
		}
	}
	// FNV-1a 32 of "a" is 0xe40c292c (the published test vector).
	if got := Queue("a", 1<<30); got != 0xe40c292c%(1<<30) {
		t.Errorf("Queue(a) = %#x: not FNV-1a", got)
	}
}

// fnvMod is FNV-1a 32 written out, as the reference for Queue.
func fnvMod(s string, n uint32) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h % n
}

// Queues spread over the groups: no group is left without queues when
// there are many more queues than groups.
func TestQueuesSpread(t *testing.T) {
	const groups = 8
	per := make([]int, groups)
	for i := 0; i < 8000; i++ {
		per[Queue(fmt.Sprintf("queue-%d", i), groups)]++
	}
	for g, n := range per {
		if n < 800 || n > 1200 {
			t.Errorf("group %d holds %d of 8000 queues", g, n)
		}
	}
}

func TestJobIDs(t *testing.T) {
	id := "0190a7e4-0000-7000-8000-000000000000"
	if JobID(id, 0) != id {
		t.Fatal("group 0's ids must stay plain")
	}
	for _, g := range []uint32{1, 2, 63} {
		tagged := JobID(id, g)
		got, err := Job(tagged, 64)
		if err != nil || got != g {
			t.Fatalf("Job(%q) = %d, %v; want %d", tagged, got, err, g)
		}
	}
	if g, err := Job(id, 4); err != nil || g != 0 {
		t.Fatalf("plain id: %d %v", g, err)
	}
	// An id merely containing ".g" followed by no number is group 0's.
	if g, err := Job("x.gy", 4); err != nil || g != 0 {
		t.Fatalf("x.gy: %d %v", g, err)
	}
	// A tag naming a group the cluster does not have is refused.
	if _, err := Job(JobID(id, 5), 4); !errors.Is(err, ErrBadGroup) {
		t.Fatalf("group 5 of 4: %v", err)
	}
}

func TestParseHeader(t *testing.T) {
	if g, err := Parse(" 2 ", 3); err != nil || g != 2 {
		t.Fatalf("Parse(2): %d %v", g, err)
	}
	for _, v := range []string{"3", "-1", "x", "", "1.0"} {
		if _, err := Parse(v, 3); !errors.Is(err, ErrBadGroup) {
			t.Errorf("Parse(%q, 3): %v", v, err)
		}
	}
}

func TestQueuesPerGroup(t *testing.T) {
	for _, groups := range []int{0, 1, 3, 8} {
		qs := QueuesPerGroup("q", groups)
		if len(qs) != max(groups, 1) {
			t.Fatalf("groups %d: %v", groups, qs)
		}
		for g, q := range qs {
			if Queue(q, groups) != uint32(g) {
				t.Fatalf("groups %d: %q is in group %d, listed for %d", groups, q, Queue(q, groups), g)
			}
		}
	}
}
