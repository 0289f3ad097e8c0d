package dispatch_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/fsm/fsmpb"
	"github.com/raftq/raftq/internal/dispatch"
	"github.com/raftq/raftq/internal/proposer"
)

// enqueueKeyed enqueues n ready jobs of queue with concurrency key key.
func enqueueKeyed(p *direct, queue, key string, n int, at time.Time) {
	var jobs []*fsmpb.NewJob
	for i := range n {
		jobs = append(jobs, &fsmpb.NewJob{Id: fmt.Sprintf("%s-%s-%05d", queue, key, i), Queue: queue, Type: "t",
			RunAt: at.UnixNano(), MaxAttempts: 5, LeaseDuration: int64(time.Hour), InitialBackoff: int64(time.Second),
			MaxBackoff: int64(time.Minute), ConcurrencyKey: key})
	}
	done := make(chan struct{})
	p.Submit(&fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_ENQUEUE,
		Body: &fsmpb.Command_Enqueue{Enqueue: &fsmpb.Enqueue{Jobs: jobs}}}, func(proposer.Response) { close(done) })
	<-done
}

func keysLeased(p *direct, q string, keys ...string) map[string]int {
	out := map[string]int{}
	for _, k := range keys {
		out[k] = p.f.LeasedOfKey(q, k)
	}
	return out
}

// One key with 10,000 ready jobs, enqueued first, cannot starve nine keys
// of 10 each: the first fetch of 10 serves all ten keys, and after three
// fetches of 10 each small key has had its share (3 jobs).
func TestFairDispatchAcrossKeys(t *testing.T) {
	d, p, clk := setup(t)
	enqueueKeyed(p, "q", "big", 10000, clk.Now())
	var small []string
	for k := range 9 {
		small = append(small, fmt.Sprintf("small-%d", k))
		enqueueKeyed(p, "q", small[k], 10, clk.Now())
	}
	served := map[string]int{}
	for f := range 3 {
		jobs, err := d.Fetch(context.Background(), dispatch.FetchRequest{Queues: []string{"q"}, Max: 10, WorkerID: "w"})
		if err != nil || len(jobs) != 10 {
			t.Fatalf("fetch %d: %d jobs, %v", f, len(jobs), err)
		}
		keys := map[string]bool{}
		for _, j := range jobs {
			served[j.ConcurrencyKey]++
			keys[j.ConcurrencyKey] = true
		}
		if len(keys) != 10 {
			t.Fatalf("fetch %d served %d keys, want all 10: %v", f, len(keys), keys)
		}
	}
	for _, k := range small {
		if served[k] != 3 {
			t.Fatalf("key %s served %d times in 3 fetches: %v", k, served[k], served)
		}
	}
	// FIFO within a key: big's jobs came in enqueue order.
	for i, want := range []string{"q-big-00000", "q-big-00001", "q-big-00002"} {
		if j, ok := p.f.Get(want); !ok || j.State != fsm.StateLeased {
			t.Fatalf("big job %d (%s) not leased", i, want)
		}
	}
	if j, ok := p.f.Get("q-big-00003"); !ok || j.State != fsm.StateReady {
		t.Fatal("big's fourth job leased out of order")
	}
}

// The per-key cap holds across many concurrent fetches (counting leases
// still being proposed) while other keys flow; raising it live lets more
// of the key's jobs out at once.
func TestPerKeyCapConcurrentAndLiveRaise(t *testing.T) {
	d, p, clk, lim := setupLimits(t)
	lim.set("q", dispatch.QueueLimit{MaxInFlightPerKey: 2})
	keys := []string{"a", "b", "c"}
	for _, k := range keys {
		enqueueKeyed(p, "q", k, 50, clk.Now())
	}
	acked := flowUnderCap(t, d, p, 8, 3, 60, func() string {
		for k, n := range keysLeased(p, "q", keys...) {
			if n > 2 {
				return fmt.Sprintf("key %s has %d leased, cap 2", k, n)
			}
		}
		return ""
	})
	for _, k := range keys {
		if acked[k] < 10 {
			t.Fatalf("key %s: only %d jobs flowed under the cap: %v", k, acked[k], acked)
		}
	}
}

// Raising the per-key cap live (etcd) wakes a parked fetch at once.
func TestPerKeyCapRaisedLive(t *testing.T) {
	d, p, clk, lim := setupLimits(t)
	lim.set("q", dispatch.QueueLimit{MaxInFlightPerKey: 2})
	keys := []string{"a", "b", "c"}
	for _, k := range keys {
		enqueueKeyed(p, "q", k, 50, clk.Now())
	}
	jobs, err := d.Fetch(context.Background(), dispatch.FetchRequest{Queues: []string{"q"}, Max: 30, WorkerID: "w"})
	if err != nil || len(jobs) != 6 {
		t.Fatalf("first fetch: %d jobs (want 2 per key), %v", len(jobs), err)
	}
	f := park(d, dispatch.FetchRequest{Queues: []string{"q"}, Max: 30, Wait: time.Hour, WorkerID: "x"})
	f.asleep(t) // at the cap
	lim.set("q", dispatch.QueueLimit{MaxInFlightPerKey: 5})
	if j := f.woken(t, "raising the cap"); len(j) != 9 {
		t.Fatalf("after raising the cap to 5: %d jobs, want 9 (3 per key)", len(j))
	}
	for k, n := range keysLeased(p, "q", keys...) {
		if n != 5 {
			t.Fatalf("key %s: %d leased, want 5", k, n)
		}
	}
}

// The rate per key, on the leader's injected clock: each key gets its
// bucket (2 at 2/s) at once, then one job per 1/rate; one key without
// tokens does not hold back another, nor the jobs without a key; a parked
// fetch is woken when a key's next token is due.
func TestRatePerKey(t *testing.T) {
	d, p, clk, lim := setupLimits(t)
	lim.set("q", dispatch.QueueLimit{RatePerKey: 2})
	enqueueKeyed(p, "q", "a", 20, clk.Now())
	fetch := func(max int) map[string]int {
		t.Helper()
		jobs, err := d.Fetch(context.Background(), dispatch.FetchRequest{Queues: []string{"q"}, Max: max, WorkerID: "w"})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int{}
		for _, j := range jobs {
			out[j.ConcurrencyKey]++
		}
		return out
	}
	if got := fetch(10); got["a"] != 2 || len(got) != 1 {
		t.Fatalf("burst: %v, want a:2", got)
	}
	enqueueKeyed(p, "q", "b", 20, clk.Now())
	enqueue(p, "q", 3, clk.Now(), time.Hour) // no key: not limited
	if got := fetch(10); got["a"] != 0 || got["b"] != 2 || got[""] != 3 {
		t.Fatalf("a empty, b fresh: %v, want b:2 and the 3 unkeyed", got)
	}
	clk.Add(time.Second) // two tokens each at 2/s
	if got := fetch(10); got["a"] != 2 || got["b"] != 2 {
		t.Fatalf("after 1s: %v, want 2 each", got)
	}
	f := park(d, dispatch.FetchRequest{Queues: []string{"q"}, Max: 10, Wait: time.Hour, WorkerID: "b"})
	clk.Add(500 * time.Millisecond)
	if j := f.woken(t, "a key's rate limiter"); len(j) != 2 {
		t.Fatalf("after 0.5s at 2/s: %d jobs, want 1 per key", len(j))
	}
}
