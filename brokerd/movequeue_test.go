package brokerd_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/internal/placement"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/raftqerr"
)

// A queue moved to another group under load: producers keep enqueueing
// through every node (unary and streamed, with and without idempotency
// keys) and workers keep fetching and acking while it moves. Every job
// accepted is run and acked exactly once by these workers; an idempotency
// key used before the move still answers its first job while the old
// group drains; the move finishes once the old group has nothing left;
// then the queue's new jobs are in the new group, and a call naming the
// old group is refused as moved, writing nothing.
func TestGroupsMoveQueueUnderLoad(t *testing.T) {
	const groups = 3
	c := groupsCluster(t, groups)
	ctx := testutil.Context(t, 120*time.Second)
	q := queuesPerGroup(groups)[1]
	addrs := c.Addrs()
	window := durationpb.New(time.Minute)
	spec := func(key string) *raftqv1.JobSpec {
		return &raftqv1.JobSpec{Queue: q, Type: "t", IdempotencyKey: key, DedupWindow: window}
	}

	var mu sync.Mutex
	accepted := map[string]bool{} // job ids the producers were given
	record := func(id string) {
		mu.Lock()
		accepted[id] = true
		mu.Unlock()
	}
	// A backlog with keys in the old group.
	firstIDs := map[string]string{}
	for i := 0; i < 40; i++ {
		key := fmt.Sprintf("before-%d", i)
		res, err := dial(t, addrs[i%3]).Enqueue(ctx, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{spec(key)}})
		if err != nil {
			t.Fatal(err)
		}
		id := res.Results[0].JobId
		if g, _ := placement.Job(id, groups); g != 1 {
			t.Fatalf("job %s before the move is in group %d", id, g)
		}
		firstIDs[key] = id
		record(id)
	}

	// Producers: unary through each node, and the SDK's stream.
	stop := make(chan struct{})
	var prodWG sync.WaitGroup
	var produced atomic.Int64
	for p := 0; p < 3; p++ {
		prodWG.Add(1)
		go func() {
			defer prodWG.Done()
			in := dial(t, addrs[p])
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := ""
				if i%2 == 0 {
					key = fmt.Sprintf("p%d-%d", p, i)
				}
				res, err := in.Enqueue(ctx, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{spec(key), spec("")}})
				if err != nil {
					t.Errorf("producer %d: %v", p, err)
					return
				}
				for _, r := range res.Results {
					record(r.JobId)
				}
				produced.Add(2)
			}
		}()
	}
	cl, err := client.New(addrs, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	prodWG.Add(1)
	go func() {
		defer prodWG.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id, _, err := cl.EnqueueOne(ctx, q, "t", nil, client.WithIdempotencyKey(fmt.Sprintf("s-%d", i)), client.WithDedupWindow(time.Minute))
			if err != nil {
				t.Errorf("stream producer: %v", err)
				return
			}
			record(id)
			produced.Add(1)
		}
	}()

	// Workers through every node.
	var acked sync.Map // id → attempts seen
	var workWG sync.WaitGroup
	workCtx, stopWork := context.WithCancel(ctx)
	defer stopWork()
	for w := 0; w < 3; w++ {
		workWG.Add(1)
		go func() {
			defer workWG.Done()
			in := dial(t, addrs[w])
			for workCtx.Err() == nil {
				f, err := in.Fetch(workCtx, &raftqv1.FetchRequest{Queues: []string{q}, MaxJobs: 16,
					MaxWait: durationpb.New(300 * time.Millisecond), WorkerId: fmt.Sprint("w", w)})
				if err != nil {
					continue
				}
				for _, j := range f.Jobs {
					if _, err := in.Ack(workCtx, &raftqv1.AckRequest{JobId: j.Id, LeaseToken: j.LeaseToken}); err != nil {
						t.Errorf("ack %s: %v", j.Id, err)
						continue
					}
					if _, dup := acked.LoadOrStore(j.Id, true); dup {
						t.Errorf("job %s acked twice", j.Id)
					}
				}
			}
		}()
	}

	time.Sleep(500 * time.Millisecond)
	adm := raftqv1.NewAdminClient(mustConn(t, addrs[2]))
	mv, err := adm.MoveQueue(ctx, &raftqv1.MoveQueueRequest{Queue: q, ToGroup: 2})
	if err != nil {
		t.Fatal(err)
	}
	if p := mv.Placement; p.Group != 2 || p.FromGroup != 1 || p.Phase == "done" {
		t.Fatalf("MoveQueue answered %v", p)
	}
	// A second move while this one runs is refused.
	if _, err := adm.MoveQueue(ctx, &raftqv1.MoveQueueRequest{Queue: q, ToGroup: 0}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("second move: %v", err)
	}
	// While it drains, the keys of the old group still answer their jobs.
	for key, id := range firstIDs {
		res, err := dial(t, addrs[0]).Enqueue(ctx, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{spec(key)}})
		if err != nil {
			t.Fatal(err)
		}
		if r := res.Results[0]; !r.Duplicate || r.JobId != id {
			t.Fatalf("key %s during the move answered %v, want duplicate %s", key, r, id)
		}
	}
	time.Sleep(time.Second)
	close(stop)
	prodWG.Wait()
	if produced.Load() == 0 {
		t.Fatal("nothing was produced during the move")
	}

	// The move finishes once group 1 has nothing left of the queue.
	deadline := time.Now().Add(60 * time.Second)
	for {
		ls, err := adm.ListPlacements(ctx, &raftqv1.ListPlacementsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(ls.Placements) == 1 && ls.Placements[0].Phase == "done" && ls.Placements[0].Group == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("move not done: %v", ls.Placements)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Every accepted job is acked, once.
	mu.Lock()
	want := len(accepted)
	ids := make([]string, 0, want)
	for id := range accepted {
		ids = append(ids, id)
	}
	mu.Unlock()
	inGroup := map[uint32]int{}
	for _, id := range ids {
		g, _ := placement.Job(id, groups)
		inGroup[g]++
	}
	if inGroup[1] == 0 || inGroup[2] == 0 || inGroup[0] != 0 {
		t.Fatalf("jobs per group %v: want some in the old group 1 and some in the new group 2", inGroup)
	}
	for time.Now().Before(deadline) {
		n := 0
		acked.Range(func(any, any) bool { n++; return true })
		if n >= want {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	stopWork()
	workWG.Wait()
	for _, id := range ids {
		if _, ok := acked.Load(id); !ok {
			j, err := dial(t, addrs[0]).GetJob(ctx, &raftqv1.GetJobRequest{JobId: id})
			t.Fatalf("job %s was accepted but never run (%v, %v)", id, j.GetJob().GetState(), err)
		}
	}

	// After the move: new jobs in group 2; a call naming group 1 is
	// refused as moved and writes nothing.
	res, err := dial(t, addrs[1]).Enqueue(ctx, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{spec("")}})
	if err != nil {
		t.Fatal(err)
	}
	if g, _ := placement.Job(res.Results[0].JobId, groups); g != 2 {
		t.Fatalf("new job after the move in group %d", g)
	}
	// A key used before the move still answers its first job, now from
	// the keys the new group imported.
	for key, id := range firstIDs {
		res, err := dial(t, addrs[2]).Enqueue(ctx, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{spec(key)}})
		if err != nil {
			t.Fatal(err)
		}
		if r := res.Results[0]; !r.Duplicate || r.JobId != id {
			t.Fatalf("key %s after the move answered %v, want duplicate %s", key, r, id)
		}
		break
	}
	named := metadata.AppendToOutgoingContext(ctx, placement.Header, "1")
	_, err = dial(t, addrs[0]).Enqueue(named, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{spec("")}})
	if to, moved := raftqerr.IsQueueMoved(err); !moved || to != 2 || status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("enqueue naming the old group: %v", err)
	}
	st, err := dial(t, addrs[0]).QueueStats(ctx, &raftqv1.QueueStatsRequest{Queues: []string{q}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("moved %s with %d jobs produced during the move (%v per group); stats %v", q, produced.Load(), inGroup, st)
}

// Bad moves are refused and change nothing.
func TestGroupsMoveQueueRefusals(t *testing.T) {
	c := groupsCluster(t, 2)
	ctx := testutil.Context(t, 30*time.Second)
	adm := raftqv1.NewAdminClient(mustConn(t, c.Addrs()[0]))
	for _, tc := range []struct {
		req  *raftqv1.MoveQueueRequest
		code codes.Code
	}{
		{&raftqv1.MoveQueueRequest{Queue: "", ToGroup: 1}, codes.InvalidArgument},
		{&raftqv1.MoveQueueRequest{Queue: "q", ToGroup: 2}, codes.InvalidArgument},
	} {
		if _, err := adm.MoveQueue(ctx, tc.req); status.Code(err) != tc.code {
			t.Fatalf("MoveQueue %v: %v, want %v", tc.req, err, tc.code)
		}
	}
	// A move to where the queue already is changes nothing.
	q := queuesPerGroup(2)[0]
	res, err := adm.MoveQueue(ctx, &raftqv1.MoveQueueRequest{Queue: q, ToGroup: 0})
	if err != nil || res.Placement.Phase != "done" || res.Placement.Group != 0 {
		t.Fatalf("move in place: %v %v", res, err)
	}
	// SealQueue needs a group.
	if _, err := adm.SealQueue(ctx, &raftqv1.SealQueueRequest{Queue: q, Sealed: true, ToGroup: 1}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("SealQueue without a group: %v", err)
	}
	ls, err := adm.ListPlacements(ctx, &raftqv1.ListPlacementsRequest{})
	if err != nil || len(ls.Placements) != 0 {
		t.Fatalf("placements after refusals: %v %v", ls, err)
	}
}

// A move carries the queue's schedules: an every-second schedule of the
// queue keeps firing through the move, into the old group until the seal
// and into the new group after it, with one job per tick and no tick lost
// (each 1s after the one before); afterwards the schedule lives in the new
// group only (listed once, found by name, paused there), with its fired
// count carried, and its new jobs are in the new group.
func TestGroupsMoveQueueCarriesSchedules(t *testing.T) {
	const groups = 3
	c := groupsCluster(t, groups)
	ctx := testutil.Context(t, 90*time.Second)
	q := queuesPerGroup(groups)[1]
	cl := c.Client()
	spec := client.CronSchedule("mv", "@every 1s", client.NewJob(q, "beat", nil))
	spec.Overlap = raftqv1.OverlapPolicy_OVERLAP_POLICY_ALLOW
	spec.CatchUp = 10
	if _, _, err := cl.PutSchedule(ctx, spec); err != nil {
		t.Fatal(err)
	}
	schedIn := func(g int) (*fsm.Schedule, bool) {
		l := c.GroupLeader(g)
		if l == nil {
			return nil, false
		}
		return l.Groups()[g].FSM().Schedule("mv")
	}
	testutil.WaitFor(t, 20*time.Second, "the schedule to fire twice in group 1", func() bool {
		sc, ok := schedIn(1)
		return ok && sc.Fired >= 2
	})
	adm := raftqv1.NewAdminClient(mustConn(t, c.Addrs()[0]))
	if _, err := adm.MoveQueue(ctx, &raftqv1.MoveQueueRequest{Queue: q, ToGroup: 2}); err != nil {
		t.Fatal(err)
	}
	var firedAtMove int64
	testutil.WaitFor(t, 20*time.Second, "the schedule to move to group 2", func() bool {
		sc, ok := schedIn(2)
		_, still := schedIn(1)
		if ok {
			firedAtMove = sc.Fired
		}
		return ok && !still && c.GroupLeader(1) != nil
	})
	testutil.WaitFor(t, 20*time.Second, "the schedule to fire 3 ticks in group 2", func() bool {
		sc, ok := schedIn(2)
		return ok && sc.Fired >= firedAtMove+3
	})
	if _, err := cl.PauseSchedule(ctx, "mv"); err != nil {
		t.Fatal(err)
	}
	c.WaitConverged(20 * time.Second)
	list, err := cl.ListSchedules(ctx, 0)
	if err != nil || len(list) != 1 || list[0].GetSpec().GetName() != "mv" || !list[0].GetSpec().GetPaused() {
		t.Fatalf("schedules after the move: %v %v", list, err)
	}
	if _, still := schedIn(1); still {
		t.Fatal("the schedule is still in group 1")
	}
	sc, _ := schedIn(2)
	if !sc.Spec.GetPaused() {
		t.Fatal("the pause did not reach the schedule in group 2")
	}
	got, err := cl.GetSchedule(ctx, "mv", 0)
	if err != nil || got.GetFired() != sc.Fired {
		t.Fatalf("GetSchedule after the move: %v %v", got, err)
	}

	// One job per tick, over both groups, and none lost.
	old := scheduledTicks(t, c.GroupLeader(1).Groups()[1].FSM(), q, "mv")
	nu := scheduledTicks(t, c.GroupLeader(2).Groups()[2].FSM(), q, "mv")
	if len(old) < 2 || len(nu) < 3 {
		t.Fatalf("%d ticks fired in group 1, %d in group 2", len(old), len(nu))
	}
	seen := map[int64]bool{}
	var ticks []int64
	for _, tk := range append(old, nu...) {
		if seen[tk] {
			t.Fatalf("tick %s fired in both groups", time.Unix(0, tk).UTC())
		}
		seen[tk] = true
		ticks = append(ticks, tk)
	}
	sort.Slice(ticks, func(i, k int) bool { return ticks[i] < ticks[k] })
	if old[len(old)-1] >= nu[0] {
		t.Fatalf("group 1 fired tick %d after group 2 fired %d", old[len(old)-1], nu[0])
	}
	for i := 1; i < len(ticks); i++ {
		if d := time.Duration(ticks[i] - ticks[i-1]); d != time.Second {
			t.Fatalf("ticks %s and %s are %s apart: a tick was lost", time.Unix(0, ticks[i-1]).UTC(), time.Unix(0, ticks[i]).UTC(), d)
		}
	}
	if int64(len(ticks)) != sc.Fired || sc.Skipped != 0 || sc.LastTick != ticks[len(ticks)-1] {
		t.Fatalf("%d jobs over both groups, schedule fired %d skipped %d last tick %d", len(ticks), sc.Fired, sc.Skipped, sc.LastTick)
	}
	for _, j := range c.GroupLeader(2).Groups()[2].FSM().List(q, fsm.StateReady, "", 0) {
		if g, _ := placement.Job(j.ID, groups); g != 2 {
			t.Fatalf("job %s in group 2's store names group %d", j.ID, g)
		}
	}
	t.Logf("%d ticks in group 1, %d in group 2, one job each", len(old), len(nu))
}

// fireCounter is a Testing.WrapFSM wrapper counting the FIRE_SCHEDULE
// commands of one schedule that reach the log: refused ones included, since
// a refusal is still applied as an entry.
type fireCounter struct {
	raft.FSM
	name  string
	fires *atomic.Int64
}

func (f *fireCounter) count(l *raft.Log) {
	if l.Type != raft.LogCommand {
		return
	}
	e, err := fsm.Decode(l.Data)
	if err != nil {
		return
	}
	for _, c := range e.GetCommands() {
		if c.GetFireSchedule().GetName() == f.name {
			f.fires.Add(1)
		}
	}
}

func (f *fireCounter) Apply(l *raft.Log) any {
	f.count(l)
	return f.FSM.Apply(l)
}

func (f *fireCounter) ApplyBatch(logs []*raft.Log) []any {
	for _, l := range logs {
		f.count(l)
	}
	return f.FSM.(raft.BatchingFSM).ApplyBatch(logs)
}

func (f *fireCounter) StopWaitingForSpace() {
	f.FSM.(interface{ StopWaitingForSpace() }).StopWaitingForSpace()
}

// While a queue is sealed in its group (handed to another, its schedules
// not yet deleted there), that group's leader proposes no tick of the
// queue's schedules: the FSM would refuse every one, and the leader used
// to propose one, and log its refusal, every second. Once the seal is
// lifted the schedule fires there again.
func TestGroupsSealedQueueScheduleNotProposed(t *testing.T) {
	const groups, name = 2, "sealed"
	var fires atomic.Int64 // over every node's replicas
	c := testcluster.New(t, 3, func(cfg *brokerd.Config) {
		cfg.Groups = groups
		cfg.Testing = &brokerd.Testing{WrapFSM: func(f raft.FSM) raft.FSM {
			return &fireCounter{FSM: f, name: name, fires: &fires}
		}}
	})
	c.WaitGroupsSettled(30 * time.Second)
	ctx := testutil.Context(t, 60*time.Second)
	q := queuesPerGroup(groups)[1]
	spec := client.CronSchedule(name, "@every 1s", client.NewJob(q, "beat", nil))
	spec.Overlap = raftqv1.OverlapPolicy_OVERLAP_POLICY_ALLOW
	if _, _, err := c.Client().PutSchedule(ctx, spec); err != nil {
		t.Fatal(err)
	}
	schedIn1 := func() *fsm.Schedule {
		l := c.GroupLeader(1)
		if l == nil {
			return nil
		}
		sc, _ := l.Groups()[1].FSM().Schedule(name)
		return sc
	}
	testutil.WaitFor(t, 20*time.Second, "the schedule to fire in group 1", func() bool {
		sc := schedIn1()
		return sc != nil && sc.Fired >= 1
	})

	// Seal the queue in group 1 as a move does, but with no move to go
	// on and delete the schedule there: the seal holds.
	adm := raftqv1.NewAdminClient(mustConn(t, c.Addrs()[0]))
	seal := func(sealed bool) {
		t.Helper()
		gctx := metadata.AppendToOutgoingContext(ctx, placement.Header, "1")
		if _, err := adm.SealQueue(gctx, &raftqv1.SealQueueRequest{Queue: q, Sealed: sealed, ToGroup: 0}); err != nil {
			t.Fatalf("SealQueue %v: %v", sealed, err)
		}
	}
	// applied1 waits until every replica of group 1 has applied what its
	// leader has (c.WaitConverged looks at group 0 only).
	applied1 := func() {
		t.Helper()
		testutil.WaitFor(t, 20*time.Second, "group 1's replicas to catch up", func() bool {
			l := c.GroupLeader(1)
			if l == nil {
				return false
			}
			idx := l.Groups()[1].FSM().LastIndex()
			for _, n := range c.Up() {
				if n.Groups()[1].FSM().LastIndex() < idx {
					return false
				}
			}
			return true
		})
	}
	seal(true)
	// A tick proposed before the seal may still be in flight: count from
	// when every replica has applied everything up to the seal.
	applied1()
	before, atSeal := fires.Load(), schedIn1()
	time.Sleep(3500 * time.Millisecond) // three ticks due
	applied1()
	if d := fires.Load() - before; d != 0 {
		t.Fatalf("%d FIRE_SCHEDULE entries of %q applied (over all replicas) while its queue was sealed in the group", d, name)
	}
	if sc := schedIn1(); sc == nil || sc.LastTick != atSeal.LastTick || sc.Fired != atSeal.Fired || sc.Skipped != atSeal.Skipped {
		t.Fatalf("schedule changed while sealed: %+v, at the seal %+v", sc, atSeal)
	}

	seal(false)
	testutil.WaitFor(t, 20*time.Second, "the schedule to fire again once unsealed", func() bool {
		sc := schedIn1()
		return sc != nil && sc.Fired > atSeal.Fired
	})
}

// TestGroupsScheduleChangesDuringHandOver: while a moved queue's schedule
// is in both groups (imported into the new one, not yet deleted from the
// old one), a pause, resume, update or delete sent without a group, by a
// router whose placement table still names the old group, lands on the
// copy that stays: the old group refuses changes to a schedule of a
// queue sealed there, and the router goes on to the next group; a delete
// removes both copies.
func TestGroupsScheduleChangesDuringHandOver(t *testing.T) {
	const groups, name = 3, "handover"
	c := testcluster.New(t, 3, func(cfg *brokerd.Config) { cfg.Groups = groups })
	c.WaitGroupsSettled(30 * time.Second)
	ctx := testutil.Context(t, 90*time.Second)
	q := queuesPerGroup(groups)[1]
	spec := client.CronSchedule(name, "@every 1h", client.NewJob(q, "beat", nil))
	if _, _, err := c.Client().PutSchedule(ctx, spec); err != nil {
		t.Fatal(err)
	}
	adm := raftqv1.NewAdminClient(mustConn(t, c.Addrs()[0]))
	inGroup := func(g string) context.Context { return metadata.AppendToOutgoingContext(ctx, placement.Header, g) }
	// The first steps of a move, without the move: seal the queue in
	// group 1 towards group 2, import its schedules into group 2.
	if _, err := adm.SealQueue(inGroup("1"), &raftqv1.SealQueueRequest{Queue: q, Sealed: true, ToGroup: 2}); err != nil {
		t.Fatal(err)
	}
	// The new group's leader reads its own replica of group 1, and asks
	// for a retry until that shows the seal.
	testutil.WaitFor(t, 20*time.Second, "the import into group 2", func() bool {
		_, err := adm.ImportSchedules(inGroup("2"), &raftqv1.ImportSchedulesRequest{Queue: q, FromGroup: 1})
		if err != nil && status.Code(err) != codes.Unavailable {
			t.Fatal(err)
		}
		return err == nil
	})
	// copies is the schedule as every node's replica of group g has it
	// once they agree (nil: not there).
	copies := func(g int) *fsm.Schedule {
		t.Helper()
		var out *fsm.Schedule
		testutil.WaitFor(t, 20*time.Second, fmt.Sprintf("group %d's replicas to agree", g), func() bool {
			var first *fsm.Schedule
			for i, n := range c.Up() {
				sc, _ := n.Groups()[g].FSM().Schedule(name)
				if i == 0 {
					first = sc
					continue
				}
				if (sc == nil) != (first == nil) || (sc != nil && (sc.Version != first.Version ||
					sc.Spec.GetPaused() != first.Spec.GetPaused() || sc.Spec.GetCron() != first.Spec.GetCron())) {
					return false
				}
			}
			out = first
			return true
		})
		return out
	}
	old, nu := copies(1), copies(2)
	if old == nil || nu == nil {
		t.Fatalf("schedule in group 1: %v, in group 2: %v; want both", old != nil, nu != nil)
	}
	cl := c.Client()
	if _, err := cl.PauseSchedule(ctx, name); err != nil {
		t.Fatalf("pause during the hand-over: %v", err)
	}
	if !copies(2).Spec.GetPaused() || copies(1).Spec.GetPaused() {
		t.Fatalf("after pause: paused in group 1 %v, in group 2 %v; want only group 2's copy paused",
			copies(1).Spec.GetPaused(), copies(2).Spec.GetPaused())
	}
	if _, err := cl.ResumeSchedule(ctx, name); err != nil {
		t.Fatalf("resume during the hand-over: %v", err)
	}
	if copies(2).Spec.GetPaused() {
		t.Fatal("group 2's copy still paused after resume")
	}
	spec.Cron = "@every 2h"
	if _, _, err := cl.PutSchedule(ctx, spec); err != nil {
		t.Fatalf("update during the hand-over: %v", err)
	}
	if copies(2).Spec.GetCron() != "@every 2h" || copies(1).Spec.GetCron() != "@every 1h" {
		t.Fatalf("after update: group 1 %q, group 2 %q; want only group 2's copy changed",
			copies(1).Spec.GetCron(), copies(2).Spec.GetCron())
	}
	if err := cl.DeleteSchedule(ctx, name); err != nil {
		t.Fatalf("delete during the hand-over: %v", err)
	}
	if copies(1) != nil || copies(2) != nil {
		t.Fatal("a copy of the schedule is left after its delete")
	}
	if err := cl.DeleteSchedule(ctx, name); status.Code(err) != codes.NotFound {
		t.Fatalf("second delete: %v, want NotFound", err)
	}
}
