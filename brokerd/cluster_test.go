package brokerd_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/raftqerr"
)

func TestEnqueueFetchAck(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	cl := c.Client()
	ctx := testutil.Context(t, 30*time.Second)
	res, err := cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: "q", Type: "echo", Payload: []byte("hi")})
	if err != nil {
		t.Fatal(err)
	}
	id := res[0].JobId
	jobs, err := cl.Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{"q"}, MaxJobs: 5, MaxWait: durationpb.New(time.Second), WorkerId: "w1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 1 || jobs[0].Id != id || string(jobs[0].Payload) != "hi" || jobs[0].LeaseToken == 0 {
		t.Fatalf("fetch got %v", jobs)
	}
	if err := cl.Ack(ctx, id, jobs[0].LeaseToken); err != nil {
		t.Fatal(err)
	}
	j, err := cl.GetJob(ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != raftqv1.JobState_JOB_STATE_SUCCEEDED || j.Attempts != 1 {
		t.Fatalf("job after ack: %v", j)
	}
	c.WaitConverged(10 * time.Second)
}

func fetchReq(q string, max int32, wait time.Duration, worker string) *raftqv1.FetchRequest {
	return &raftqv1.FetchRequest{Queues: []string{q}, MaxJobs: max, MaxWait: durationpb.New(wait), WorkerId: worker}
}

// (a) The leader dies during a stream of acknowledged enqueues: every job
// whose enqueue was acknowledged is present after re-election and is
// fetched.
func TestLeaderKilledDuringEnqueueStream(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("nodes=%d", n), func(t *testing.T) {
			c := testcluster.New(t, n, nil)
			cl := c.Client()
			ctx := testutil.Context(t, 90*time.Second)

			var mu sync.Mutex
			acked := map[string]bool{}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for p := 0; p < 4; p++ {
				wg.Add(1)
				go func(p int) {
					defer wg.Done()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
						res, err := cl.Enqueue(cctx, &raftqv1.JobSpec{Queue: "stream", Type: "t", Payload: []byte(fmt.Sprintf("%d-%d", p, i))})
						cancel()
						if err != nil {
							continue // indeterminate or timed out: not acknowledged
						}
						mu.Lock()
						acked[res[0].JobId] = true
						mu.Unlock()
					}
				}(p)
			}
			testutil.WaitFor(t, 20*time.Second, "200 acknowledged enqueues", func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= 200 })
			old := c.Leader()
			c.Kill(old.ID())
			newLeader := c.WaitLeader(30 * time.Second)
			if newLeader.ID() == old.ID() {
				t.Fatal("same leader after kill")
			}
			mu.Lock()
			before := len(acked)
			mu.Unlock()
			testutil.WaitFor(t, 30*time.Second, "200 more under the new leader", func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= before+200 })
			close(stop)
			wg.Wait()

			for id := range acked {
				if _, err := cl.GetJob(ctx, id, 0); err != nil {
					t.Fatalf("acknowledged job %s missing after failover: %v", id, err)
				}
			}
			fetched := map[string]bool{}
			for {
				jobs, err := cl.Fetch(ctx, fetchReq("stream", 500, 0, "drain"))
				if err != nil {
					t.Fatal(err)
				}
				if len(jobs) == 0 {
					break
				}
				for _, j := range jobs {
					fetched[j.Id] = true
				}
			}
			for id := range acked {
				if !fetched[id] {
					t.Fatalf("acknowledged job %s never fetched (%d acked, %d fetched)", id, len(acked), len(fetched))
				}
			}
			t.Logf("%d acknowledged enqueues, %d fetched, leader %s -> %s", len(acked), len(fetched), old.ID(), newLeader.ID())
		})
	}
}

// (b) A leased job whose worker vanishes is redelivered after its lease
// expires, with a greater token; the old token's ack is refused.
func TestLeaseExpiryRedeliversWithGreaterToken(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	cl := c.Client()
	ctx := testutil.Context(t, 30*time.Second)
	res, err := cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: "q", Type: "t", LeaseDuration: durationpb.New(300 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	id := res[0].JobId
	first, err := cl.Fetch(ctx, fetchReq("q", 1, time.Second, "w-dies"))
	if err != nil || len(first) != 1 {
		t.Fatalf("first fetch: %v %v", first, err)
	}
	// w-dies never acks. Another worker waits for the redelivery.
	second, err := cl.Fetch(ctx, fetchReq("q", 1, 10*time.Second, "w2"))
	if err != nil || len(second) != 1 || second[0].Id != id {
		t.Fatalf("redelivery: %v %v", second, err)
	}
	if second[0].LeaseToken <= first[0].LeaseToken {
		t.Fatalf("token did not grow: %d then %d", first[0].LeaseToken, second[0].LeaseToken)
	}
	if second[0].Attempts != 2 {
		t.Fatalf("attempts = %d, want 2", second[0].Attempts)
	}
	err = cl.Ack(ctx, id, first[0].LeaseToken)
	if client.Reason(err) != raftqv1.ErrorDetail_STALE_TOKEN || status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("stale ack: got %v", err)
	}
	j, _ := cl.GetJob(ctx, id, 0)
	if j.State != raftqv1.JobState_JOB_STATE_LEASED || j.LeaseToken != second[0].LeaseToken {
		t.Fatalf("stale ack changed the job: %v", j)
	}
	if err := cl.Ack(ctx, id, second[0].LeaseToken); err != nil {
		t.Fatal(err)
	}
	// The same ack again (a retry after a lost answer) is still a success.
	if err := cl.Ack(ctx, id, second[0].LeaseToken); err != nil {
		t.Fatalf("repeated ack: %v", err)
	}
	// And an acked job is never leased again.
	again, err := cl.Fetch(ctx, fetchReq("q", 1, 500*time.Millisecond, "w3"))
	if err != nil || len(again) != 0 {
		t.Fatalf("acked job fetched again: %v %v", again, err)
	}
}

// (c) Every node stopped and restarted from disk comes back to the same
// state.
func TestFullClusterRestartKeepsState(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	cl := c.Client()
	ctx := testutil.Context(t, 60*time.Second)
	var specs []*raftqv1.JobSpec
	for i := 0; i < 300; i++ {
		specs = append(specs, &raftqv1.JobSpec{Queue: fmt.Sprintf("q%d", i%3), Type: "t", Payload: []byte{byte(i)},
			LeaseDuration: durationpb.New(time.Hour), Priority: int32(i % 5)})
	}
	if _, err := cl.Enqueue(ctx, specs...); err != nil {
		t.Fatal(err)
	}
	jobs, err := cl.Fetch(ctx, fetchReq("q0", 50, time.Second, "w"))
	if err != nil || len(jobs) != 50 {
		t.Fatalf("fetch: %d %v", len(jobs), err)
	}
	for _, j := range jobs[:20] {
		if err := cl.Ack(ctx, j.Id, j.LeaseToken); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.PauseQueue(ctx, "q2"); err != nil {
		t.Fatal(err)
	}
	before := c.WaitConverged(20 * time.Second)
	d1 := dumpState(c.Leader())
	stats, _ := cl.QueueStats(ctx)
	for _, m := range c.Members() {
		c.Kill(m.ID)
	}
	for _, m := range c.Members() {
		c.Restart(m.ID)
	}
	c.WaitLeader(30 * time.Second)
	after := c.WaitConverged(30 * time.Second)
	if before != after {
		d2 := dumpState(c.Leader())
		for k, v := range d1 {
			if d2[k] != v {
				t.Errorf("%s:\n%s\n%s", k, v, d2[k])
			}
		}
		t.Fatalf("state hash changed across restart: %s -> %s", before, after)
	}
	stats2, err := cl.QueueStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(stats) != fmt.Sprint(stats2) {
		t.Fatalf("stats changed across restart:\n%v\n%v", stats, stats2)
	}
	if c.Leader().FSM().Len() != 300 {
		t.Fatalf("jobs after restart: %d", c.Leader().FSM().Len())
	}
}

// (d) A node joined after 10,000 jobs catches up through a snapshot
// install (the leader's log was compacted, so entries alone cannot do it).
func TestJoinCatchesUpBySnapshot(t *testing.T) {
	c := testcluster.New(t, 3, func(cfg *brokerd.Config) {
		cfg.TrailingLogs = 10
		cfg.SnapshotThreshold = 1 << 40 // only the explicit snapshot below
		brokerd.SmallWALSegments(cfg)   // a WAL is compacted by whole segments
	})
	cl := c.Client()
	ctx := testutil.Context(t, 120*time.Second)
	for b := 0; b < 100; b++ {
		var specs []*raftqv1.JobSpec
		for i := 0; i < 100; i++ {
			specs = append(specs, &raftqv1.JobSpec{Queue: "big", Type: "t", Payload: make([]byte, 64)})
		}
		if _, err := cl.Enqueue(ctx, specs...); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range c.Up() {
		if err := n.Raft().Snapshot().Error(); err != nil {
			t.Fatalf("snapshot on %s: %v", n.ID(), err)
		}
	}
	leader := c.Leader()
	first, _ := strconv.ParseUint(leader.Raft().Stats()["last_snapshot_index"], 10, 64)
	if first == 0 {
		t.Fatal("leader has no snapshot")
	}
	m := c.Add()
	testutil.WaitFor(t, 60*time.Second, "the new member to hold the 10000 jobs", func() bool { return m.Node.FSM().Len() == 10000 })
	// Raft records the installed snapshot only after the FSM's Restore
	// returns, so the stat may trail the job count by a moment.
	installed := func() bool {
		snapIdx, _ := strconv.ParseUint(m.Node.Raft().Stats()["last_snapshot_index"], 10, 64)
		return snapIdx > 0
	}
	for deadline := time.Now().Add(10 * time.Second); !installed() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if !installed() {
		t.Fatalf("new node caught up without installing a snapshot: %v", m.Node.Raft().Stats())
	}
	c.WaitConverged(30 * time.Second)
	st, err := cl.Status(ctx, m.GRPCAddr)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Members) != 4 || st.State != "Follower" {
		t.Fatalf("new node status: %v", st)
	}
}

// (e) A job that fails max_attempts times ends dead and can be redriven.
func TestDeadLetterAndRedrive(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	cl := c.Client()
	ctx := testutil.Context(t, 30*time.Second)
	res, err := cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: "dlq", Type: "t", MaxAttempts: 3,
		Retry: &raftqv1.RetryPolicy{InitialBackoff: durationpb.New(20 * time.Millisecond), MaxBackoff: durationpb.New(40 * time.Millisecond)}})
	if err != nil {
		t.Fatal(err)
	}
	id := res[0].JobId
	for attempt := 1; attempt <= 3; attempt++ {
		jobs, err := cl.Fetch(ctx, fetchReq("dlq", 1, 5*time.Second, "w"))
		if err != nil || len(jobs) != 1 || jobs[0].Attempts != int32(attempt) {
			t.Fatalf("attempt %d: %v %v", attempt, jobs, err)
		}
		nr, err := cl.Nack(ctx, &raftqv1.NackRequest{JobId: id, LeaseToken: jobs[0].LeaseToken, Error: fmt.Sprintf("boom %d", attempt)})
		if err != nil {
			t.Fatal(err)
		}
		want := raftqv1.JobState_JOB_STATE_SCHEDULED
		if attempt == 3 {
			want = raftqv1.JobState_JOB_STATE_DEAD
		}
		if nr.State != want {
			t.Fatalf("after nack %d: state %v, want %v", attempt, nr.State, want)
		}
	}
	j, _ := cl.GetJob(ctx, id, 0)
	if j.State != raftqv1.JobState_JOB_STATE_DEAD || j.LastError != "boom 3" {
		t.Fatalf("dead job: %v", j)
	}
	dead, err := cl.ListJobs(ctx, &raftqv1.ListJobsRequest{Queue: "dlq", State: raftqv1.JobState_JOB_STATE_DEAD})
	if err != nil || len(dead.Jobs) != 1 || dead.Jobs[0].Id != id {
		t.Fatalf("dead list: %v %v", dead, err)
	}
	ids, err := cl.Redrive(ctx, "dlq", nil, 0)
	if err != nil || len(ids) != 1 || ids[0] != id {
		t.Fatalf("redrive: %v %v", ids, err)
	}
	jobs, err := cl.Fetch(ctx, fetchReq("dlq", 1, 5*time.Second, "w"))
	if err != nil || len(jobs) != 1 || jobs[0].Id != id || jobs[0].Attempts != 1 {
		t.Fatalf("after redrive: %v %v", jobs, err)
	}
	if err := cl.Ack(ctx, id, jobs[0].LeaseToken); err != nil {
		t.Fatal(err)
	}
}

// (f) A long-poll parked on the leader returns when a job is enqueued, and
// a parked poll survives the leader's death.
func TestLongPollWakesAndFailsOver(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	cl := c.Client()
	ctx := testutil.Context(t, 90*time.Second)

	type got struct {
		jobs []*raftqv1.Job
		err  error
		at   time.Time
	}
	poll := func() chan got {
		ch := make(chan got, 1)
		go func() {
			jobs, err := cl.Fetch(ctx, fetchReq("lp", 1, 30*time.Second, "w"))
			ch <- got{jobs, err, time.Now()}
		}()
		return ch
	}
	ch := poll()
	time.Sleep(300 * time.Millisecond) // let it park
	enqAt := time.Now()
	res, err := cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: "lp", Type: "t"})
	if err != nil {
		t.Fatal(err)
	}
	g := <-ch
	if g.err != nil || len(g.jobs) != 1 || g.jobs[0].Id != res[0].JobId {
		t.Fatalf("parked fetch: %v %v", g.jobs, g.err)
	}
	t.Logf("parked fetch woke %s after the enqueue", g.at.Sub(enqAt))

	// Park again, kill the leader, then enqueue: the same Fetch call must
	// deliver the job from the new leader.
	ch = poll()
	time.Sleep(300 * time.Millisecond)
	old := c.Leader()
	c.Kill(old.ID())
	c.WaitLeader(30 * time.Second)
	res, err = cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: "lp", Type: "t"})
	if err != nil {
		t.Fatal(err)
	}
	g = <-ch
	if g.err != nil || len(g.jobs) != 1 || g.jobs[0].Id != res[0].JobId {
		t.Fatalf("fetch across failover: %v %v", g.jobs, g.err)
	}
}

// A second node on a data dir that a running node holds fails with a clear
// error instead of hanging on bbolt's file lock.
func TestDataDirInUseIsRefused(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	m := c.Members()[0]
	cfg := brokerd.DefaultConfig()
	cfg.NodeID, cfg.DataDir = m.ID, m.Dir
	cfg.RaftAddr, cfg.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Logger = testutil.Logger(t)
	n, err := brokerd.Open(cfg)
	if err == nil {
		n.Kill()
		t.Fatal("second node opened a data dir in use")
	}
	if !strings.Contains(err.Error(), "another brokerd") {
		t.Fatalf("unclear error: %v", err)
	}
}

// Ack and Nack are safe to retry: repeating one whose first try committed
// answers success, while a token that never held the lease is refused.
func TestAckAndNackRetriesAreIdempotent(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	cl := c.Client()
	ctx := testutil.Context(t, 30*time.Second)
	if _, err := cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: "r", Type: "t", Retry: &raftqv1.RetryPolicy{InitialBackoff: durationpb.New(time.Hour), MaxBackoff: durationpb.New(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	jobs, err := cl.Fetch(ctx, fetchReq("r", 1, time.Second, "w"))
	if err != nil || len(jobs) != 1 {
		t.Fatal(jobs, err)
	}
	j := jobs[0]
	first, err := cl.Nack(ctx, &raftqv1.NackRequest{JobId: j.Id, LeaseToken: j.LeaseToken, Error: "x"})
	if err != nil || first.State != raftqv1.JobState_JOB_STATE_SCHEDULED {
		t.Fatal(first, err)
	}
	again, err := cl.Nack(ctx, &raftqv1.NackRequest{JobId: j.Id, LeaseToken: j.LeaseToken, Error: "x"})
	if err != nil || again.State != raftqv1.JobState_JOB_STATE_SCHEDULED {
		t.Fatalf("retried nack: %v %v", again, err)
	}
	if _, err := cl.Nack(ctx, &raftqv1.NackRequest{JobId: j.Id, LeaseToken: j.LeaseToken + 1}); client.Reason(err) != raftqv1.ErrorDetail_STALE_TOKEN {
		t.Fatalf("nack with a token that never leased: %v", err)
	}
	got, _ := cl.GetJob(ctx, j.Id, 0)
	if got.Attempts != 1 || got.State != raftqv1.JobState_JOB_STATE_SCHEDULED {
		t.Fatalf("retries changed the job: %v", got)
	}
}

// A client that starts on a follower learns the leader from the forwarded
// answer's header and sends its next call straight there.
func TestForwardedCallTellsClientTheLeader(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	var follower string
	for _, m := range c.Members() {
		if !m.Node.IsLeaderReady() {
			follower = m.GRPCAddr
		}
	}
	cl, err := client.New([]string{follower}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := testutil.Context(t, 10*time.Second)
	if _, err := cl.QueueStats(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := cl.Leader(), c.Leader().GRPCAddr(); got != want {
		t.Fatalf("client leader %q after a forwarded call, want %q", got, want)
	}
}

// With forwarding off, followers still announce their addresses (their
// Join goes to the leader whatever Forward says), and a client call to a
// follower is answered NOT_LEADER with the leader's address, not forwarded.
func TestForwardOffStillAnnounces(t *testing.T) {
	c := testcluster.New(t, 3, func(cfg *brokerd.Config) { cfg.Forward = false }) // waits for every address
	l := c.WaitLeader(10 * time.Second)
	var f *brokerd.Node
	for _, n := range c.Up() {
		if n != l {
			f = n
		}
	}
	_, err := dial(t, f.GRPCAddr()).Enqueue(testutil.Context(t, 10*time.Second), &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{{Queue: "q", Type: "t"}}})
	if d := raftqerr.Detail(err); d.GetReason() != raftqv1.ErrorDetail_NOT_LEADER || d.GetLeaderAddr() != l.GRPCAddr() {
		t.Fatalf("enqueue at a follower with forwarding off: %v", err)
	}
}
