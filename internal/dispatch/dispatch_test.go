package dispatch_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/fsm/fsmpb"
	"github.com/raftq/raftq/internal/dispatch"
	"github.com/raftq/raftq/internal/proposer"
	"github.com/raftq/raftq/internal/testutil"
)

// clock is a manual clock; the dispatcher's timers still run on real time,
// so tests move it forward and then poke the dispatcher with an FSM change.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// direct applies each command straight to a real FSM as its own log entry,
// standing in for Raft: what the dispatcher proposes is what the FSM does.
type direct struct {
	mu    sync.Mutex
	f     *fsm.FSM
	clk   *clock
	index uint64
	cmds  []*fsmpb.Command
}

func (d *direct) Submit(cmd *fsmpb.Command, done func(proposer.Response)) {
	d.mu.Lock()
	d.index++
	cmd.Now = d.clk.Now().UnixNano()
	d.cmds = append(d.cmds, cmd)
	data, err := fsm.Encode(&fsmpb.Entry{Version: fsm.EntryVersion, Commands: []*fsmpb.Command{cmd}})
	if err != nil {
		panic(err)
	}
	idx := d.index
	res := d.f.Apply(&raft.Log{Index: idx, Type: raft.LogCommand, Data: data}).([]fsm.Result)
	d.mu.Unlock()
	go done(proposer.Response{Result: res[0], Index: idx})
}

func (d *direct) count(t fsmpb.CommandType) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, c := range d.cmds {
		if c.Type == t {
			n++
		}
	}
	return n
}

func enqueue(p *direct, queue string, n int, runAt time.Time, lease time.Duration) []string {
	var jobs []*fsmpb.NewJob
	var ids []string
	for i := 0; i < n; i++ {
		p.mu.Lock()
		id := fmt.Sprintf("%s-%03d-%d", queue, i, p.index)
		p.mu.Unlock()
		ids = append(ids, id)
		jobs = append(jobs, &fsmpb.NewJob{Id: id, Queue: queue, Type: "t", RunAt: runAt.UnixNano(),
			MaxAttempts: 5, LeaseDuration: int64(lease), InitialBackoff: int64(time.Second), MaxBackoff: int64(time.Minute)})
	}
	done := make(chan struct{})
	p.Submit(&fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_ENQUEUE,
		Body: &fsmpb.Command_Enqueue{Enqueue: &fsmpb.Enqueue{Jobs: jobs}}}, func(proposer.Response) { close(done) })
	<-done
	return ids
}

func setup(t *testing.T) (*dispatch.Dispatcher, *direct, *clock) {
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	p := &direct{f: fsm.New(), clk: clk}
	d := dispatch.New(p.f, p, dispatch.Options{Clock: clk.Now, PurgeInterval: time.Hour})
	t.Cleanup(d.Stop)
	return d, p, clk
}

func TestFetchReturnsReadyJobsInOrder(t *testing.T) {
	d, p, clk := setup(t)
	ids := enqueue(p, "q", 5, clk.Now(), time.Minute)
	jobs, err := d.Fetch(context.Background(), dispatch.FetchRequest{Queues: []string{"q"}, Max: 3, WorkerID: "w"})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 3 {
		t.Fatalf("got %d jobs", len(jobs))
	}
	for i, j := range jobs {
		if j.ID != ids[i] || j.State != fsm.StateLeased || j.LeasedBy != "w" || j.LeaseToken == 0 {
			t.Fatalf("job %d: %+v", i, j)
		}
	}
}

func TestZeroWaitWithNothingReadyAnswersEmpty(t *testing.T) {
	d, _, _ := setup(t)
	jobs, err := d.Fetch(context.Background(), dispatch.FetchRequest{Queues: []string{"q"}, Max: 1})
	if err != nil || len(jobs) != 0 {
		t.Fatalf("%v %v", jobs, err)
	}
}

func TestConcurrentWaitersNeverShareAJob(t *testing.T) {
	d, p, clk := setup(t)
	const waiters = 20
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	got := make(chan fsm.Job, 1000)
	for w := 0; w < waiters; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for ctx.Err() == nil {
				jobs, _ := d.Fetch(ctx, dispatch.FetchRequest{Queues: []string{"q"}, Max: 3, Wait: time.Hour, WorkerID: fmt.Sprint(w)})
				for _, j := range jobs {
					got <- j
				}
			}
		}(w)
	}
	for i := 0; i < 10; i++ {
		enqueue(p, "q", 50, clk.Now(), time.Hour)
	}
	seen := map[string]bool{}
	timeout := time.After(30 * time.Second)
	for len(seen) < 500 {
		select {
		case j := <-got:
			if seen[j.ID] {
				t.Fatalf("job %s leased twice", j.ID)
			}
			seen[j.ID] = true
		case <-timeout:
			t.Fatalf("leased %d of 500", len(seen))
		}
	}
	cancel()
	wg.Wait()
	close(got)
	for j := range got {
		t.Fatalf("job %s leased beyond the 500", j.ID)
	}
	if n := p.count(fsmpb.CommandType_COMMAND_TYPE_LEASE); n > 500 {
		t.Fatalf("%d lease commands for 500 jobs", n)
	}
}

func TestParkedFetchWakesOnEnqueueAndPreferenceOrder(t *testing.T) {
	d, p, clk := setup(t)
	f := park(d, dispatch.FetchRequest{Queues: []string{"hi", "lo"}, Max: 10, Wait: time.Minute})
	lo := enqueue(p, "lo", 1, clk.Now(), time.Hour)
	jobs := f.woken(t, "an enqueue")
	if len(jobs) != 1 || jobs[0].ID != lo[0] {
		t.Fatalf("woken with %v", jobs)
	}
	enqueue(p, "lo", 2, clk.Now(), time.Hour)
	hi := enqueue(p, "hi", 2, clk.Now(), time.Hour)
	jobs, _ = d.Fetch(context.Background(), dispatch.FetchRequest{Queues: []string{"hi", "lo"}, Max: 3})
	if len(jobs) != 3 || jobs[0].ID != hi[0] || jobs[1].ID != hi[1] || jobs[2].Queue != "lo" {
		t.Fatalf("preference order: %v", jobs)
	}
}

// Scheduled jobs become fetchable when the leader's clock passes run_at,
// and expired leases are redelivered: both by commands the dispatcher
// proposes with the injected clock's time.
func TestClockDrivesPromotionAndExpiry(t *testing.T) {
	d, p, clk := setup(t)
	ids := enqueue(p, "q", 1, clk.Now().Add(10*time.Second), 5*time.Second)
	jobs, _ := d.Fetch(context.Background(), dispatch.FetchRequest{Queues: []string{"q"}, Max: 1})
	if len(jobs) != 0 {
		t.Fatalf("scheduled job leased early: %v", jobs)
	}
	clk.Add(9 * time.Second)
	jobs, _ = d.Fetch(context.Background(), dispatch.FetchRequest{Queues: []string{"q"}, Max: 1})
	if len(jobs) != 0 || p.count(fsmpb.CommandType_COMMAND_TYPE_PROMOTE) != 0 {
		t.Fatalf("scheduled job promoted 1s early: %v", jobs)
	}
	clk.Add(11 * time.Second)
	jobs, err := d.Fetch(context.Background(), dispatch.FetchRequest{Queues: []string{"q"}, Max: 1, Wait: 5 * time.Second, WorkerID: "a"})
	if err != nil || len(jobs) != 1 || jobs[0].ID != ids[0] {
		t.Fatalf("after run_at: %v %v", jobs, err)
	}
	first := jobs[0].LeaseToken
	if p.count(fsmpb.CommandType_COMMAND_TYPE_PROMOTE) == 0 {
		t.Fatal("no promote proposed")
	}
	// Lease (5s) not yet expired by the leader's clock: nothing to fetch
	// (the clock stands still, so only the caller's context ends the wait).
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	jobs, _ = d.Fetch(ctx, dispatch.FetchRequest{Queues: []string{"q"}, Max: 1, Wait: time.Hour})
	cancel()
	if len(jobs) != 0 {
		t.Fatalf("leased job handed out again: %v", jobs)
	}
	clk.Add(6 * time.Second)
	jobs, err = d.Fetch(context.Background(), dispatch.FetchRequest{Queues: []string{"q"}, Max: 1, Wait: 5 * time.Second, WorkerID: "b"})
	if err != nil || len(jobs) != 1 || jobs[0].LeaseToken <= first || jobs[0].Attempts != 2 {
		t.Fatalf("after expiry: %v %v", jobs, err)
	}
}

func TestStopAnswersParkedFetchesNotLeader(t *testing.T) {
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	p := &direct{f: fsm.New(), clk: clk}
	d := dispatch.New(p.f, p, dispatch.Options{Clock: clk.Now})
	errc := make(chan error, 1)
	go func() {
		_, err := d.Fetch(context.Background(), dispatch.FetchRequest{Queues: []string{"q"}, Max: 1, Wait: time.Minute})
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	d.Stop()
	if err := <-errc; err == nil || err.Error() != "not the leader" {
		t.Fatalf("parked fetch after stop: %v", err)
	}
}

// gated holds lease outcomes until released, so a test can make the caller
// give up while its lease is being committed.
type gated struct {
	*direct
	gate chan struct{}
}

func (g *gated) Submit(cmd *fsmpb.Command, done func(proposer.Response)) {
	if cmd.Type != fsmpb.CommandType_COMMAND_TYPE_LEASE {
		g.direct.Submit(cmd, done)
		return
	}
	g.direct.Submit(cmd, func(r proposer.Response) {
		<-g.gate
		done(r)
	})
}

// A fetch abandoned while its lease commits does not strand the job until
// the lease expires: it goes back to ready with the attempt undone.
func TestAbandonedFetchReleasesItsJobs(t *testing.T) {
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	p := &gated{direct: &direct{f: fsm.New(), clk: clk}, gate: make(chan struct{})}
	d := dispatch.New(p.f, p, dispatch.Options{Clock: clk.Now, PurgeInterval: time.Hour})
	defer d.Stop()
	ids := enqueue(p.direct, "q", 1, clk.Now(), time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := d.Fetch(ctx, dispatch.FetchRequest{Queues: []string{"q"}, Max: 1, Wait: time.Hour})
		errc <- err
	}()
	testutil.WaitFor(t, 10*time.Second, "the job to be leased", func() bool { j, _ := p.f.Get(ids[0]); return j.State == fsm.StateLeased })
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("abandoned fetch returned no error")
	}
	close(p.gate)
	testutil.WaitFor(t, 10*time.Second, "the abandoned lease to be released", func() bool { j, _ := p.f.Get(ids[0]); return j.State == fsm.StateReady })
	j, _ := p.f.Get(ids[0])
	if j.Attempts != 0 || j.LeasedBy != "" {
		t.Fatalf("released job %+v", j)
	}
	// And it is fetchable again at once.
	jobs, err := d.Fetch(context.Background(), dispatch.FetchRequest{Queues: []string{"q"}, Max: 1})
	if err != nil || len(jobs) != 1 || jobs[0].ID != ids[0] || jobs[0].Attempts != 1 {
		t.Fatalf("refetch: %v %v", jobs, err)
	}
}

// parked is a Fetch waiting in the background for its answer.
type parked chan []fsm.Job

// park starts a Fetch that waits (req.Wait) and gives it a moment to park
// before the test does what should, or should not, wake it.
func park(d *dispatch.Dispatcher, req dispatch.FetchRequest) parked {
	ch := make(parked, 1)
	go func() {
		j, _ := d.Fetch(context.Background(), req)
		ch <- j
	}()
	time.Sleep(50 * time.Millisecond)
	return ch
}

// asleep fails t when the fetch answers within 200 ms: nothing that
// happened should have woken it.
func (p parked) asleep(t *testing.T) {
	t.Helper()
	select {
	case j := <-p:
		t.Fatalf("parked fetch answered with %v, yet nothing should have woken it", j)
	case <-time.After(200 * time.Millisecond):
	}
}

// woken is the fetch's answer once by has woken it (the timeout is a hang
// guard, not a timing assertion).
func (p parked) woken(t *testing.T, by string) []fsm.Job {
	t.Helper()
	select {
	case j := <-p:
		return j
	case <-time.After(10 * time.Second):
		t.Fatalf("parked fetch not woken by %s", by)
		return nil
	}
}
