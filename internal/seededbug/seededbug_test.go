package seededbug_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/internal/seededbug"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// withBugs installs the named seeded bugs on every node, as the jepsen
// build of cmd/brokerd does (the FSM bound through the FSM wrapper).
func withBugs(t *testing.T, list string) func(*brokerd.Config) {
	return func(cfg *brokerd.Config) {
		var f atomic.Pointer[fsm.FSM]
		ics, err := seededbug.Interceptors(list, f.Load)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Testing = &brokerd.Testing{
			UnaryInterceptors: ics,
			WrapFSM: func(r raft.FSM) raft.FSM {
				f.Store(r.(*fsm.FSM))
				return r
			},
		}
	}
}

// staleAck leases a job, lets the lease run out, leases it again, and
// acks with the first (stale) token: the ack's error.
func staleAck(t *testing.T, tune func(*brokerd.Config)) error {
	c := testcluster.New(t, 1, tune)
	c.WaitLeader(30 * time.Second)
	cl := c.Client()
	ctx := testutil.Context(t, time.Minute)
	if _, err := cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: "q", Type: "t", LeaseDuration: durationpb.New(300 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	fetch := func() *raftqv1.Job {
		jobs, err := cl.Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{"q"}, MaxJobs: 1, MaxWait: durationpb.New(10 * time.Second), WorkerId: "w"})
		if err != nil || len(jobs) != 1 {
			t.Fatalf("fetch: %v (%d jobs)", err, len(jobs))
		}
		return jobs[0]
	}
	first := fetch()
	second := fetch() // after the first lease ran out
	if second.LeaseToken <= first.LeaseToken {
		t.Fatalf("second lease token %d not above the first %d", second.LeaseToken, first.LeaseToken)
	}
	return cl.Ack(ctx, first.Id, first.LeaseToken)
}

// The stale-ack interceptor really breaks fencing: a stale token's ack
// succeeds with it and is refused without it.
func TestStaleAckAcceptsStaleToken(t *testing.T) {
	if err := staleAck(t, nil); err == nil {
		t.Fatal("without the seeded bug, an ack with a stale token succeeded")
	}
	if err := staleAck(t, withBugs(t, seededbug.StaleAck)); err != nil {
		t.Fatalf("with stale-ack, the stale ack failed: %v", err)
	}
}

// The early-enqueue-ack interceptor answers before anything is committed:
// right after the answer the job is not in the FSM, and it appears only
// later (under other ids than the answer's).
func TestEarlyEnqueueAckAnswersBeforeCommit(t *testing.T) {
	c := testcluster.New(t, 1, withBugs(t, seededbug.EarlyEnqueueAck))
	leader := c.WaitLeader(30 * time.Second)
	cl := c.Client()
	ctx := testutil.Context(t, time.Minute)
	res, err := cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: "q", Type: "t", Payload: []byte("v")})
	if err != nil || len(res) != 1 || res[0].JobId == "" {
		t.Fatalf("enqueue: %v %v", res, err)
	}
	if n := len(leader.FSM().List("q", fsm.StateReady, "", 0)); n != 0 {
		t.Fatalf("%d jobs committed when the early answer came; want 0", n)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(leader.FSM().List("q", fsm.StateReady, "", 0)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the early-answered job was never enqueued")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Names the harness passes are checked: an unknown one is an error, none
// installs nothing.
func TestInterceptorsNames(t *testing.T) {
	if _, err := seededbug.Interceptors("stale-ack,nope", func() *fsm.FSM { return nil }); err == nil {
		t.Fatal("unknown bug name accepted")
	}
	ics, err := seededbug.Interceptors(" ", func() *fsm.FSM { return nil })
	if err != nil || len(ics) != 0 {
		t.Fatalf("empty list: %d interceptors, %v", len(ics), err)
	}
	// move-skip-drain is a hook, not an interceptor: a known name that
	// installs no interceptor, and the hook only when asked for.
	ics, err = seededbug.Interceptors("move-skip-drain", func() *fsm.FSM { return nil })
	if err != nil || len(ics) != 0 {
		t.Fatalf("move-skip-drain: %d interceptors, %v", len(ics), err)
	}
	if h := seededbug.HooksFor("stale-ack"); h.MoveLeft != nil {
		t.Fatal("MoveLeft hook without move-skip-drain")
	}
	h := seededbug.HooksFor("stale-ack, move-skip-drain")
	if h.MoveLeft == nil || h.MoveLeft("q", 7) != 0 {
		t.Fatal("move-skip-drain: no MoveLeft hook answering 0")
	}
}
