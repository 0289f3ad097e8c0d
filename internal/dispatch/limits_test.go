package dispatch_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/fsm/fsmpb"
	"github.com/raftq/raftq/internal/dispatch"
	"github.com/raftq/raftq/internal/proposer"
)

// limits is a settable dispatch.Limits.
type limits struct {
	mu      sync.Mutex
	m       map[string]dispatch.QueueLimit
	changed chan struct{}
}

func newLimits() *limits {
	return &limits{m: map[string]dispatch.QueueLimit{}, changed: make(chan struct{})}
}

func (l *limits) QueueLimit(q string) dispatch.QueueLimit {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m[q]
}

func (l *limits) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

func (l *limits) set(q string, ql dispatch.QueueLimit) {
	l.mu.Lock()
	l.m[q] = ql
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

func setupLimits(t *testing.T) (*dispatch.Dispatcher, *direct, *clock, *limits) {
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	p := &direct{f: fsm.New(), clk: clk}
	lim := newLimits()
	d := dispatch.New(p.f, p, dispatch.Options{Clock: clk.Now, PurgeInterval: time.Hour, Limits: lim})
	t.Cleanup(d.Stop)
	return d, p, clk, lim
}

func ack(t *testing.T, p *direct, j fsm.Job) {
	t.Helper()
	done := make(chan proposer.Response, 1)
	p.Submit(&fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_ACK,
		Body: &fsmpb.Command_Ack{Ack: &fsmpb.Ack{Items: []*fsmpb.LeaseRef{{JobId: j.ID, Token: j.LeaseToken}}}}},
		func(r proposer.Response) { done <- r })
	if r := <-done; r.Err != nil || r.Result.Items[0].Err != nil {
		t.Fatalf("ack %s: %+v", j.ID, r)
	}
}

func leasedCount(p *direct, q string) int64 {
	return p.f.Stats([]string{q})[0].Counts[fsm.StateLeased]
}

// A queue's cap bounds its leased jobs over all fetches; an ack frees a
// slot; other queues are not held back; raising the cap wakes parked
// fetches at once.
func TestConcurrencyCap(t *testing.T) {
	d, p, clk, lim := setupLimits(t)
	lim.set("capped", dispatch.QueueLimit{MaxInFlight: 2})
	enqueue(p, "capped", 10, clk.Now(), time.Hour)
	other := enqueue(p, "free", 3, clk.Now(), time.Hour)

	jobs, err := d.Fetch(context.Background(), dispatch.FetchRequest{Queues: []string{"capped"}, Max: 5, WorkerID: "a"})
	if err != nil || len(jobs) != 2 {
		t.Fatalf("first fetch: %d jobs, %v", len(jobs), err)
	}
	// A second worker gets nothing from the capped queue but is served
	// from the next queue in its preference list.
	more, _ := d.Fetch(context.Background(), dispatch.FetchRequest{Queues: []string{"capped", "free"}, Max: 5, WorkerID: "b"})
	if len(more) != 3 || more[0].ID != other[0] {
		t.Fatalf("second fetch: %v", more)
	}
	if n := leasedCount(p, "capped"); n != 2 {
		t.Fatalf("%d leased in capped queue, cap 2", n)
	}
	// Parked: waits while at the cap, wakes when an ack frees a slot.
	f := park(d, dispatch.FetchRequest{Queues: []string{"capped"}, Max: 5, Wait: time.Hour, WorkerID: "c"})
	f.asleep(t) // at the cap
	ack(t, p, jobs[0])
	if j := f.woken(t, "an ack"); len(j) != 1 {
		t.Fatalf("after one ack: %d jobs, want 1", len(j))
	}
	if n := leasedCount(p, "capped"); n != 2 {
		t.Fatalf("%d leased after the ack and refill, cap 2", n)
	}
	// Raising the cap takes effect without any other event.
	f = park(d, dispatch.FetchRequest{Queues: []string{"capped"}, Max: 10, Wait: time.Hour, WorkerID: "d"})
	lim.set("capped", dispatch.QueueLimit{MaxInFlight: 5})
	if j := f.woken(t, "raising the cap"); len(j) != 3 {
		t.Fatalf("after raising the cap to 5: %d more jobs, want 3", len(j))
	}
}

// Many concurrent fetchers never push a queue past its cap, counting
// leases still being proposed.
func TestConcurrencyCapUnderConcurrentFetches(t *testing.T) {
	d, p, clk, lim := setupLimits(t)
	lim.set("q", dispatch.QueueLimit{MaxInFlight: 3})
	enqueue(p, "q", 100, clk.Now(), time.Hour)
	acked := flowUnderCap(t, d, p, 10, 2, 30, func() string {
		if n := leasedCount(p, "q"); n > 3 {
			return fmt.Sprintf("%d jobs leased, cap 3", n)
		}
		return ""
	})
	if acked[""] < 30 {
		t.Fatalf("only %d jobs flowed under the cap", acked[""])
	}
}

// flowUnderCap runs fetchers concurrent long polls for up to max jobs
// each of queue q, and acks what they get one job at a time until want
// are acked or 20 s have passed. Before every ack it asks over whether a
// cap is exceeded, and fails t with its answer if so. It returns the
// acked jobs per concurrency key.
func flowUnderCap(t *testing.T, d *dispatch.Dispatcher, p *direct, fetchers, max, want int, over func() string) map[string]int {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	var mu sync.Mutex
	var held []fsm.Job
	for range fetchers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				jobs, _ := d.Fetch(ctx, dispatch.FetchRequest{Queues: []string{"q"}, Max: max, Wait: time.Hour, WorkerID: "w"})
				mu.Lock()
				held = append(held, jobs...)
				mu.Unlock()
			}
		}()
	}
	acked := map[string]int{}
	deadline := time.Now().Add(20 * time.Second)
	for total := 0; total < want && time.Now().Before(deadline); {
		if why := over(); why != "" {
			t.Fatal(why)
		}
		mu.Lock()
		var j *fsm.Job
		if len(held) > 0 {
			j = &held[0]
			held = held[1:]
		}
		mu.Unlock()
		if j == nil {
			time.Sleep(time.Millisecond)
			continue
		}
		ack(t, p, *j)
		acked[j.ConcurrencyKey]++
		total++
	}
	return acked
}

// The rate limit bounds leases per second of the leader's clock: a burst
// at once, then one more per 1/rate, with a parked fetch woken by the
// limiter's own timer.
func TestRateLimit(t *testing.T) {
	d, p, clk, lim := setupLimits(t)
	lim.set("slow", dispatch.QueueLimit{RatePerSec: 2, Burst: 3})
	enqueue(p, "slow", 20, clk.Now(), time.Hour)
	jobs, _ := d.Fetch(context.Background(), dispatch.FetchRequest{Queues: []string{"slow"}, Max: 10, WorkerID: "a"})
	if len(jobs) != 3 {
		t.Fatalf("burst: %d jobs, want 3", len(jobs))
	}
	jobs, _ = d.Fetch(context.Background(), dispatch.FetchRequest{Queues: []string{"slow"}, Max: 10, WorkerID: "a"})
	if len(jobs) != 0 {
		t.Fatalf("bucket empty, yet %d jobs", len(jobs))
	}
	clk.Add(time.Second) // two tokens at 2/s
	jobs, _ = d.Fetch(context.Background(), dispatch.FetchRequest{Queues: []string{"slow"}, Max: 10, WorkerID: "a"})
	if len(jobs) != 2 {
		t.Fatalf("after 1s at 2/s: %d jobs, want 2", len(jobs))
	}
	// A parked fetch is woken when the next token is due: the clock moves
	// while the fetch waits, and the dispatcher's timer notices.
	f := park(d, dispatch.FetchRequest{Queues: []string{"slow"}, Max: 10, Wait: time.Hour, WorkerID: "b"})
	clk.Add(500 * time.Millisecond)
	if j := f.woken(t, "the rate limiter"); len(j) != 1 {
		t.Fatalf("after 0.5s at 2/s: %d jobs, want 1", len(j))
	}
	// Removing the limit lets everything through.
	lim.set("slow", dispatch.QueueLimit{})
	jobs, _ = d.Fetch(context.Background(), dispatch.FetchRequest{Queues: []string{"slow"}, Max: 100, WorkerID: "a"})
	if len(jobs) != 14 {
		t.Fatalf("unlimited: %d jobs, want the other 14", len(jobs))
	}
}
