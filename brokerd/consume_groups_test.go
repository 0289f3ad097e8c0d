package brokerd_test

import (
	"context"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/placement"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/raftqerr"
)

// consumeReader reads a Consume stream's frames on a goroutine of its
// own, so a test can wait for a frame with a deadline, or for none.
type consumeReader struct {
	frames chan *raftqv1.ConsumeResponse
	err    chan error
}

func readConsume(st raftqv1.Broker_ConsumeClient) *consumeReader {
	r := &consumeReader{frames: make(chan *raftqv1.ConsumeResponse, 1000), err: make(chan error, 1)}
	go func() {
		for {
			m, err := st.Recv()
			if err != nil {
				r.err <- err
				close(r.frames)
				return
			}
			r.frames <- m
		}
	}()
	return r
}

// next is the next frame within d; nil when none came (the test fails
// when the stream ended).
func (r *consumeReader) next(t *testing.T, d time.Duration) *raftqv1.ConsumeResponse {
	t.Helper()
	select {
	case m, ok := <-r.frames:
		if !ok {
			t.Fatalf("the stream ended: %v", <-r.err)
		}
		return m
	case <-time.After(d):
		return nil
	}
}

// end waits for the stream's end and returns its error.
func (r *consumeReader) end(t *testing.T) error {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case _, ok := <-r.frames:
			if !ok {
				return <-r.err
			}
		case <-deadline:
			t.Fatal("the stream did not end within 30s")
		}
	}
}

// held is what a worker that withholds its acks holds: the jobs pushed
// to it and not settled, checked against the credit it granted on every
// frame.
type held struct {
	t       *testing.T
	granted int // credit granted in all
	pushed  int
	settled int
	jobs    map[string]*raftqv1.Job
	seen    map[string]bool // every job id pushed
	byGroup map[uint32]int
	notices []*raftqv1.ConsumeNotice
}

func newHeld(t *testing.T, credit int) *held {
	return &held{t: t, granted: credit, jobs: map[string]*raftqv1.Job{}, seen: map[string]bool{}, byGroup: map[uint32]int{}}
}

// take applies one frame: a job must be within the credit and never
// pushed before (its lease is long), a notice is kept.
func (h *held) take(m *raftqv1.ConsumeResponse, groups int) {
	h.t.Helper()
	if j := m.GetJob(); j != nil {
		h.pushed++
		if h.pushed-h.settled > h.granted-h.settled || h.pushed > h.granted {
			h.t.Fatalf("job %d pushed with %d granted in all (%d settled): the worker holds %d, over its credit",
				h.pushed, h.granted, h.settled, h.pushed-h.settled)
		}
		if h.seen[j.GetId()] {
			h.t.Fatalf("job %s pushed twice while its lease is valid", j.GetId())
		}
		h.seen[j.GetId()] = true
		h.jobs[j.GetId()] = j
		g, err := placement.Job(j.GetId(), groups)
		if err != nil {
			h.t.Fatal(err)
		}
		h.byGroup[g]++
		return
	}
	if n := m.GetNotice(); n != nil {
		h.notices = append(h.notices, n)
		return
	}
	h.t.Fatalf("unexpected frame %v", m)
}

// drain takes frames until none comes for quiet.
func (h *held) drain(r *consumeReader, groups int, quiet time.Duration) {
	h.t.Helper()
	for {
		m := r.next(h.t, quiet)
		if m == nil {
			return
		}
		h.take(m, groups)
	}
}

// waitJobs takes frames until the worker holds n jobs (30s at most).
func (h *held) waitJobs(r *consumeReader, groups, n int) {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(h.jobs) < n {
		m := r.next(h.t, time.Until(deadline))
		if m == nil {
			h.t.Fatalf("the worker holds %d jobs after 30s, want %d (granted %d, pushed %d)", len(h.jobs), n, h.granted, h.pushed)
		}
		h.take(m, groups)
	}
}

// ack settles the job and forgets it.
func (h *held) ack(ctx context.Context, cl *client.Client, id string) {
	h.t.Helper()
	j := h.jobs[id]
	if err := cl.Ack(ctx, id, j.GetLeaseToken()); err != nil {
		h.t.Fatalf("ack %s: %v", id, err)
	}
	delete(h.jobs, id)
	h.settled++
}

func (h *held) credit(st raftqv1.Broker_ConsumeClient, n int) {
	h.t.Helper()
	if err := st.Send(creditFrame(int32(n))); err != nil {
		h.t.Fatal(err)
	}
	h.granted += n
}

// leasedIn sums the leased jobs of queues.
func leasedIn(t *testing.T, ctx context.Context, cl *client.Client, queues []string) int64 {
	t.Helper()
	var n int64
	for _, q := range queues {
		l, _ := leasedCount(t, ctx, cl, q)
		n += l
	}
	return n
}

// One Consume stream over queues of three groups, opened on any node,
// gets jobs of every group, never more than the credit its worker
// granted: a worker that withholds its acks holds exactly its credit,
// and no group leases more for it (the rest stay ready). Each ack and
// credit brings one more job; a cancel of a job of each group comes as a
// notice.
func TestConsumeGroupsCreditAcrossGroups(t *testing.T) {
	const groups, credit, perQueue = 3, 4, 6
	c := groupsCluster(t, groups)
	ctx := testutil.Context(t, 2*time.Minute)
	cl := c.Client()
	qs := queuesPerGroup(groups)
	for _, q := range qs {
		consumeEnqueue(t, ctx, cl, q, perQueue, client.WithLeaseDuration(time.Hour))
	}
	bc := plainBroker(t, c.Addrs()[0])
	st, err := consumeFirst(t, ctx, bc, openFrame(&raftqv1.ConsumeOpen{Queues: qs, WorkerId: "w", Credit: credit}))
	if err != nil {
		t.Fatalf("open over %d groups: %v", groups, err)
	}
	r := readConsume(st)
	h := newHeld(t, credit)
	h.waitJobs(r, groups, credit)
	h.drain(r, groups, time.Second)
	if len(h.jobs) != credit {
		t.Fatalf("the worker holds %d jobs for a credit of %d", len(h.jobs), credit)
	}
	for g := range groups {
		if h.byGroup[uint32(g)] == 0 {
			t.Fatalf("no job of group %d among the first %d (by group %v): a group without credit", g, credit, h.byGroup)
		}
	}
	if l := leasedIn(t, ctx, cl, qs); l != credit {
		t.Fatalf("%d jobs leased over the groups for a stream with credit %d", l, credit)
	}

	// A cancel of a held job of each group reaches the worker.
	cancelled, byQueue := map[string]bool{}, map[string]bool{}
	for id, j := range h.jobs {
		g, _ := placement.Job(id, groups)
		if byQueue[j.GetQueue()] {
			continue
		}
		byQueue[j.GetQueue()], cancelled[id] = true, true
		if _, err := cl.CancelJob(ctx, id); err != nil {
			t.Fatalf("cancel %s (group %d): %v", id, g, err)
		}
	}
	for len(h.notices) < len(cancelled) {
		m := r.next(t, 10*time.Second)
		if m == nil {
			t.Fatalf("%d cancel notices of %d", len(h.notices), len(cancelled))
		}
		h.take(m, groups)
	}
	for _, n := range h.notices {
		j := h.jobs[n.GetJobId()]
		if j == nil || n.GetKind() != raftqv1.ConsumeNotice_KIND_CANCEL_REQUESTED || n.GetLeaseToken() != j.GetLeaseToken() {
			t.Fatalf("notice %v, want a cancel of a held job", n)
		}
	}
	// The cancelled jobs are nacked (they end cancelled), the others acked.
	for id, j := range h.jobs {
		if !cancelled[id] {
			h.ack(ctx, cl, id)
			continue
		}
		if _, err := cl.Nack(ctx, &raftqv1.NackRequest{JobId: id, LeaseToken: j.GetLeaseToken(), Error: "cancelled"}); err != nil {
			t.Fatal(err)
		}
		delete(h.jobs, id)
		h.settled++
	}

	// Settle and grant one at a time: each grant brings one job, the
	// worker never holds more than its credit, and every job of every
	// group comes.
	h.credit(st, credit)
	for h.pushed < perQueue*groups {
		h.waitJobs(r, groups, min(credit, len(h.jobs)+perQueue*groups-h.pushed))
		for id := range h.jobs {
			h.ack(ctx, cl, id)
			h.credit(st, 1)
			break
		}
	}
	h.drain(r, groups, 500*time.Millisecond)
	if h.pushed != perQueue*groups {
		t.Fatalf("%d jobs pushed, want all %d", h.pushed, perQueue*groups)
	}
	for g := range groups {
		if h.byGroup[uint32(g)] != perQueue {
			t.Fatalf("jobs by group %v, want %d each", h.byGroup, perQueue)
		}
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := r.end(t); err != io.EOF {
		t.Fatalf("end after CloseSend: %v, want io.EOF", err)
	}
}

// A worker with less credit than there are groups still gets a job of
// any group promptly: the credit moves from an idle group to the one
// with a job ready, without the worker returning any.
func TestConsumeGroupsCreditMovesToReadyGroup(t *testing.T) {
	const groups = 3
	c := groupsCluster(t, groups)
	ctx := testutil.Context(t, 2*time.Minute)
	cl := c.Client()
	qs := queuesPerGroup(groups)
	st, err := consumeFirst(t, ctx, plainBroker(t, c.Addrs()[1]), openFrame(&raftqv1.ConsumeOpen{Queues: qs, WorkerId: "w", Credit: 1}))
	if err != nil {
		t.Fatal(err)
	}
	r := readConsume(st)
	h := newHeld(t, 1)
	time.Sleep(300 * time.Millisecond) // the credit settles in one group
	// Each group in turn, twice (the credit is wherever the last job
	// came from, or idle elsewhere).
	for round := range 2 * groups {
		q := qs[(round*2)%groups]
		ids := consumeEnqueue(t, ctx, cl, q, 1, client.WithLeaseDuration(time.Hour))
		at := time.Now()
		h.waitJobs(r, groups, 1)
		if h.jobs[ids[0]] == nil {
			t.Fatalf("round %d: got %v, want %s of %s", round, h.jobs, ids[0], q)
		}
		if d := time.Since(at); d > 2*time.Second {
			t.Fatalf("round %d: the job of %s came after %v", round, q, d)
		}
		h.ack(ctx, cl, ids[0])
		if l := leasedIn(t, ctx, cl, qs); l != 0 {
			t.Fatalf("round %d: %d jobs leased with all acked", round, l)
		}
		h.credit(st, 1)
	}
	st.CloseSend()
	if err := r.end(t); err != io.EOF {
		t.Fatalf("end after CloseSend: %v", err)
	}
}

// A group's leadership moves while a stream over two groups is open on
// its old leader: the stream stays up, the group's jobs keep coming
// (through the new leader), the job pushed before the move is not pushed
// again while its lease holds and still counts against the credit, and
// its cancel still reaches the worker.
func TestConsumeGroupsOutlivesALeaderMove(t *testing.T) {
	const groups = 2
	c := groupsCluster(t, groups)
	ctx := testutil.Context(t, 2*time.Minute)
	cl := c.Client()
	qs := queuesPerGroup(groups)
	old := c.GroupLeader(1)
	st, err := consumeFirst(t, ctx, plainBroker(t, old.GRPCAddr()), openFrame(&raftqv1.ConsumeOpen{Queues: qs, WorkerId: "w", Credit: 2}))
	if err != nil {
		t.Fatal(err)
	}
	r := readConsume(st)
	h := newHeld(t, 2)
	before := consumeEnqueue(t, ctx, cl, qs[1], 1, client.WithLeaseDuration(time.Hour))[0]
	h.waitJobs(r, groups, 1)
	if h.jobs[before] == nil {
		t.Fatalf("got %v, want %s", h.jobs, before)
	}

	if err := old.Groups()[1].Raft().LeadershipTransfer().Error(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "another node leads group 1", func() bool {
		l := c.GroupLeader(1)
		return l != nil && l != old
	})
	// Three more of group 1: one fits the credit left.
	consumeEnqueue(t, ctx, cl, qs[1], 3, client.WithLeaseDuration(time.Hour))
	h.waitJobs(r, groups, 2)
	h.drain(r, groups, time.Second)
	if len(h.jobs) != 2 {
		t.Fatalf("the worker holds %d jobs for a credit of 2", len(h.jobs))
	}
	// The job pushed before the move: its cancel comes from the router,
	// which watches it now that its part ended.
	if _, err := cl.CancelJob(ctx, before); err != nil {
		t.Fatal(err)
	}
	for len(h.notices) == 0 {
		m := r.next(t, 10*time.Second)
		if m == nil {
			t.Fatal("no cancel notice for the job pushed before the move")
		}
		h.take(m, groups)
	}
	if n := h.notices[0]; n.GetJobId() != before || n.GetKind() != raftqv1.ConsumeNotice_KIND_CANCEL_REQUESTED {
		t.Fatalf("notice %v, want a cancel of %s", n, before)
	}
	if _, err := cl.Nack(ctx, &raftqv1.NackRequest{JobId: before, LeaseToken: h.jobs[before].GetLeaseToken(), Error: "cancelled"}); err != nil {
		t.Fatal(err)
	}
	delete(h.jobs, before)
	h.settled++
	for id := range h.jobs {
		h.ack(ctx, cl, id)
	}
	// The rest of group 1, and group 0, come on the same stream.
	zero := consumeEnqueue(t, ctx, cl, qs[0], 1, client.WithLeaseDuration(time.Hour))[0]
	h.credit(st, 2)
	h.waitJobs(r, groups, 2)
	h.drain(r, groups, time.Second)
	for id := range h.jobs {
		h.ack(ctx, cl, id)
	}
	h.credit(st, 2)
	h.waitJobs(r, groups, 1)
	h.drain(r, groups, time.Second)
	if h.pushed != 5 || !h.seen[zero] || h.byGroup[1] != 4 {
		t.Fatalf("pushed %d (by group %v, group 0's job seen: %v), want all 4 of group 1 and 1 of group 0", h.pushed, h.byGroup, h.seen[zero])
	}
	st.CloseSend()
	if err := r.end(t); err != io.EOF {
		t.Fatalf("end after CloseSend: %v", err)
	}
}

// A stream over queues of several groups refuses bad frames as a
// one-group stream does, with InvalidArgument, and leases nothing for
// a stream it refused at open.
func TestConsumeGroupsBadFrames(t *testing.T) {
	const groups = 2
	c := groupsCluster(t, groups)
	ctx := testutil.Context(t, 2*time.Minute)
	cl := c.Client()
	qs := queuesPerGroup(groups)
	for _, q := range qs {
		consumeEnqueue(t, ctx, cl, q, 2, client.WithLeaseDuration(time.Hour))
	}
	bc := plainBroker(t, c.Addrs()[2])
	// Refused opens name the queues with jobs; the frames after an open
	// go to empty queues (a refused stream's pushed jobs stay leased).
	empty := placement.QueuesPerGroup("empty", groups)
	open := func(credit int32) *raftqv1.ConsumeRequest {
		return openFrame(&raftqv1.ConsumeOpen{Queues: qs, WorkerId: "w", Credit: credit})
	}
	openEmpty := func(credit int32) *raftqv1.ConsumeRequest {
		return openFrame(&raftqv1.ConsumeOpen{Queues: empty, WorkerId: "w", Credit: credit})
	}
	st, err := consumeFirst(t, ctx, bc, open(0))
	if err != nil {
		t.Fatal(err)
	}
	st.CloseSend()
	r := readConsume(st)
	if err := r.end(t); err != io.EOF {
		t.Fatalf("a stream closed after its open: %v, want io.EOF", err)
	}
	// The limit, from a good stream's opened frame.
	probe, err := bc.Consume(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := probe.Send(open(0)); err != nil {
		t.Fatal(err)
	}
	m, err := probe.Recv()
	if err != nil {
		t.Fatal(err)
	}
	maxCredit := m.GetOpened().GetMaxCredit()
	probe.CloseSend()
	if maxCredit < 2 {
		t.Fatalf("max credit %d", maxCredit)
	}

	cases := []struct {
		name   string
		frames []*raftqv1.ConsumeRequest
		reason raftqv1.ErrorDetail_Reason
	}{
		{"credit first", []*raftqv1.ConsumeRequest{creditFrame(1)}, raftqv1.ErrorDetail_INVALID_ARGUMENT},
		{"closed before open", nil, raftqv1.ErrorDetail_INVALID_ARGUMENT},
		{"open credit over the limit", []*raftqv1.ConsumeRequest{open(maxCredit + 1)}, 0},
		{"negative open credit", []*raftqv1.ConsumeRequest{open(-1)}, 0},
		{"credit 0", []*raftqv1.ConsumeRequest{openEmpty(0), creditFrame(0)}, raftqv1.ErrorDetail_INVALID_ARGUMENT},
		{"negative credit", []*raftqv1.ConsumeRequest{openEmpty(0), creditFrame(-3)}, raftqv1.ErrorDetail_INVALID_ARGUMENT},
		{"credit over the limit", []*raftqv1.ConsumeRequest{openEmpty(1), creditFrame(maxCredit)}, raftqv1.ErrorDetail_TOO_LARGE},
		{"second open", []*raftqv1.ConsumeRequest{openEmpty(0), openEmpty(0)}, raftqv1.ErrorDetail_INVALID_ARGUMENT},
		{"empty frame", []*raftqv1.ConsumeRequest{openEmpty(0), {}}, raftqv1.ErrorDetail_INVALID_ARGUMENT},
	}
	for _, tc := range cases {
		st, err := bc.Consume(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range tc.frames {
			if err := st.Send(f); err != nil && err != io.EOF {
				t.Fatal(err)
			}
		}
		if tc.frames == nil {
			st.CloseSend()
		}
		r := readConsume(st)
		err = r.end(t)
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("%s: %v, want InvalidArgument", tc.name, err)
		}
		if tc.reason != 0 && raftqerr.Reason(err) != tc.reason {
			t.Fatalf("%s: %v, want reason %v", tc.name, err, tc.reason)
		}
	}
	// The streams refused at open leased nothing.
	time.Sleep(500 * time.Millisecond)
	if l := leasedIn(t, ctx, cl, qs); l != 0 {
		t.Fatalf("%d jobs leased by refused streams", l)
	}
}
