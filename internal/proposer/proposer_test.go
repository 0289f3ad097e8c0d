package proposer_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/fsm/fsmpb"
	"github.com/raftq/raftq/internal/apierr"
	"github.com/raftq/raftq/internal/proposer"
	"github.com/raftq/raftq/internal/testutil"
)

// future is a raft.ApplyFuture completed by the fake.
type future struct {
	done  chan struct{}
	err   error
	resp  interface{}
	index uint64
}

func (f *future) Error() error          { <-f.done; return f.err }
func (f *future) Response() interface{} { return f.resp }
func (f *future) Index() uint64         { return f.index }

// fakeRaft applies entries to a real FSM after release is signalled, so a
// test can hold entries "in flight" and see requests pile up.
type fakeRaft struct {
	mu      sync.Mutex
	f       *fsm.FSM
	idx     uint64
	entries [][]*fsmpb.Command
	release chan struct{}
	err     error
}

func (r *fakeRaft) Apply(cmd []byte, _ time.Duration) raft.ApplyFuture {
	e, err := fsm.Decode(cmd)
	if err != nil {
		panic(err)
	}
	r.mu.Lock()
	r.idx++
	idx := r.idx
	r.entries = append(r.entries, e.Commands)
	r.mu.Unlock()
	fu := &future{done: make(chan struct{}), index: idx}
	go func() {
		<-r.release
		if r.err != nil {
			fu.err = r.err
		} else {
			fu.resp = r.f.Apply(&raft.Log{Index: idx, Type: raft.LogCommand, Data: cmd})
		}
		close(fu.done)
	}()
	return fu
}

func enqueueCmd(id string) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_ENQUEUE, Body: &fsmpb.Command_Enqueue{Enqueue: &fsmpb.Enqueue{
		Jobs: []*fsmpb.NewJob{{Id: id, Queue: "q", Type: "t", MaxAttempts: 1, LeaseDuration: int64(time.Second)}}}}}
}

// While the in-flight window is full, waiting requests are packed into one
// entry, and each caller gets its own command's result.
func TestRequestsShareEntriesWhileWindowIsFull(t *testing.T) {
	r := &fakeRaft{f: fsm.New(), release: make(chan struct{})}
	now := time.Unix(1_800_000_000, 0)
	p := proposer.New(r, proposer.Options{MaxInFlight: 1, Clock: func() time.Time { return now }})
	defer p.Stop()
	var wg sync.WaitGroup
	results := make([]proposer.Response, 50)
	for i := range results {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			results[i] = p.Propose(context.Background(), enqueueCmd(string(rune('A'+i))))
		}(i)
	}
	// Let every request queue up behind the first entry, then release.
	testutil.WaitFor(t, 10*time.Second, "an entry to reach Raft", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return len(r.entries) >= 1 })
	time.Sleep(100 * time.Millisecond)
	close(r.release)
	wg.Wait()
	r.mu.Lock()
	entries := len(r.entries)
	r.mu.Unlock()
	if entries > 3 {
		t.Fatalf("50 requests took %d entries with a window of 1", entries)
	}
	for i, res := range results {
		if res.Err != nil || len(res.Result.Items) != 1 || res.Result.Items[0].JobID != string(rune('A'+i)) {
			t.Fatalf("request %d: %+v", i, res)
		}
		if res.Result.Items[0].Job.CreatedAt != now.UnixNano() {
			t.Fatalf("now not stamped: %d", res.Result.Items[0].Job.CreatedAt)
		}
	}
	if r.f.Len() != 50 {
		t.Fatalf("fsm has %d jobs", r.f.Len())
	}
}

func TestRaftErrorsAreClassified(t *testing.T) {
	for _, tc := range []struct {
		err           error
		indeterminate bool
	}{
		{raft.ErrNotLeader, false},
		{raft.ErrLeadershipTransferInProgress, false},
		{raft.ErrEnqueueTimeout, false},
		{raft.ErrLeadershipLost, true},
		{raft.ErrRaftShutdown, true},
	} {
		r := &fakeRaft{f: fsm.New(), release: make(chan struct{}), err: tc.err}
		close(r.release)
		p := proposer.New(r, proposer.Options{})
		res := p.Propose(context.Background(), enqueueCmd("x"))
		p.Stop()
		if errors.Is(res.Err, apierr.ErrIndeterminate) != tc.indeterminate || errors.Is(res.Err, apierr.ErrNotLeader) == tc.indeterminate {
			t.Errorf("%v: got %v", tc.err, res.Err)
		}
	}
}

func TestStopFailsQueuedRequestsDefinitely(t *testing.T) {
	r := &fakeRaft{f: fsm.New(), release: make(chan struct{})}
	p := proposer.New(r, proposer.Options{MaxInFlight: 1})
	first := make(chan proposer.Response, 1)
	p.Submit(enqueueCmd("a"), func(res proposer.Response) { first <- res })
	testutil.WaitFor(t, 10*time.Second, "one entry to reach Raft", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return len(r.entries) == 1 })
	queued := make(chan proposer.Response, 1)
	p.Submit(enqueueCmd("b"), func(res proposer.Response) { queued <- res })
	go func() { time.Sleep(50 * time.Millisecond); close(r.release) }()
	p.Stop()
	if res := <-first; res.Err != nil {
		t.Fatalf("in-flight entry: %v", res.Err)
	}
	if res := <-queued; !errors.Is(res.Err, apierr.ErrNotLeader) {
		t.Fatalf("queued request after stop: %v", res.Err)
	}
	if r.f.Len() != 1 {
		t.Fatalf("fsm has %d jobs, want 1", r.f.Len())
	}
}

// A command the Gate refuses is answered at once with the Gate's error and
// never reaches Raft; once the Gate lets commands through, they commit.
func TestGateRefusesBeforeProposing(t *testing.T) {
	r := &fakeRaft{f: fsm.New(), release: make(chan struct{})}
	close(r.release)
	full := errors.New("disk full")
	var refuse atomic.Bool
	refuse.Store(true)
	p := proposer.New(r, proposer.Options{Gate: func(*fsmpb.Command) error {
		if refuse.Load() {
			return full
		}
		return nil
	}})
	defer p.Stop()
	if res := p.Propose(context.Background(), enqueueCmd("a")); !errors.Is(res.Err, full) {
		t.Fatalf("refused command: %+v", res)
	}
	r.mu.Lock()
	n := len(r.entries)
	r.mu.Unlock()
	if n != 0 || r.f.Len() != 0 {
		t.Fatalf("a refused command reached raft: %d entries, %d jobs", n, r.f.Len())
	}
	refuse.Store(false)
	if res := p.Propose(context.Background(), enqueueCmd("b")); res.Err != nil || r.f.Len() != 1 {
		t.Fatalf("after the gate opened: %+v, %d jobs", res, r.f.Len())
	}
}

// doneFuture is an ApplyFuture that has already failed.
type doneFuture struct{}

func (doneFuture) Error() error          { return raft.ErrNotLeader }
func (doneFuture) Response() interface{} { return nil }
func (doneFuture) Index() uint64         { return 0 }

type failingRaft struct{}

func (failingRaft) Apply([]byte, time.Duration) raft.ApplyFuture { return doneFuture{} }

// Every Submit gets its answer exactly once, also when it races Stop: a
// request that lands in the queue after the proposer stopped draining it
// is failed (ErrNotLeader) rather than left unanswered. Submit's last
// select may pick the send over a closed stop channel; before the fix such
// a request's done was never called, and a caller without a deadline
// waited forever.
func TestSubmitRacingStopIsAnsweredOnce(t *testing.T) {
	for round := 0; round < 300; round++ {
		p := proposer.New(failingRaft{}, proposer.Options{})
		const n = 32
		var calls [n]atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				p.Submit(enqueueCmd("j"), func(proposer.Response) { calls[i].Add(1) })
			}()
		}
		close(start)
		p.Stop()
		wg.Wait()
		deadline := time.Now().Add(2 * time.Second)
		for i := 0; i < n; i++ {
			for calls[i].Load() == 0 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if got := calls[i].Load(); got != 1 {
				t.Fatalf("round %d: request %d answered %d times, want once", round, i, got)
			}
		}
	}
}
