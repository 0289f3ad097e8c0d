package fsm

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/raftq/raftq/fsm/fsmpb"
)

func spec(name string, overlap int32) *fsmpb.ScheduleSpec {
	return &fsmpb.ScheduleSpec{
		Name: name, Cron: "@every 1s", Overlap: overlap, CatchUp: 3,
		Job: &fsmpb.NewJob{Queue: "q", Type: "t", Payload: []byte("p"), MaxAttempts: 3},
	}
}

func cmdPutSchedule(now int64, sp *fsmpb.ScheduleSpec) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_PUT_SCHEDULE, Now: now,
		Body: &fsmpb.Command_PutSchedule{PutSchedule: sp}}
}

func cmdScheduleRef(t fsmpb.CommandType, now int64, name string) *fsmpb.Command {
	c := &fsmpb.Command{Type: t, Now: now}
	r := &fsmpb.ScheduleRef{Name: name}
	switch t {
	case fsmpb.CommandType_COMMAND_TYPE_PAUSE_SCHEDULE:
		c.Body = &fsmpb.Command_PauseSchedule{PauseSchedule: r}
	case fsmpb.CommandType_COMMAND_TYPE_RESUME_SCHEDULE:
		c.Body = &fsmpb.Command_ResumeSchedule{ResumeSchedule: r}
	default:
		c.Body = &fsmpb.Command_DeleteSchedule{DeleteSchedule: r}
	}
	return c
}

func cmdFire(now int64, name string, version uint64, tick int64, jobID string) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_FIRE_SCHEDULE, Now: now,
		Body: &fsmpb.Command_FireSchedule{FireSchedule: &fsmpb.FireSchedule{
			Name: name, Version: version, Tick: tick,
			Job: &fsmpb.NewJob{Id: jobID, Queue: "q", Type: "t", RunAt: tick},
		}}}
}

// putSched creates a schedule at t0 and returns its version.
func putSched(h *harness, sp *fsmpb.ScheduleSpec) uint64 {
	h.t.Helper()
	r := h.one(cmdPutSchedule(t0, sp))
	if r.Err != nil || r.Schedule == nil {
		h.t.Fatalf("put schedule: %+v", r)
	}
	return r.Schedule.Version
}

// TestFireSameTickTwiceCreatesOneJob is the exactly-once rule: the same
// tick proposed twice (a new leader re-proposing it) creates one job, and
// an older tick is a no-op that changes nothing.
func TestFireSameTickTwiceCreatesOneJob(t *testing.T) {
	h := newHarness(t)
	v := putSched(h, spec("s", OverlapAllow))
	tick := t0 + sec
	r := h.one(cmdFire(tick, "s", v, tick, "j1"))
	if r.Err != nil || r.Fire == nil || r.Fire.Job == nil || r.Fire.Job.ID != "j1" {
		t.Fatalf("first fire: %+v", r)
	}
	j := h.wantState("j1", StateReady)
	if j.ScheduleName != "s" || j.ScheduleTick != tick {
		t.Fatalf("job's schedule %q tick %d", j.ScheduleName, j.ScheduleTick)
	}
	before := h.f.Hash()
	for _, c := range []*fsmpb.Command{
		cmdFire(tick+5, "s", v, tick, "j2"),        // the same tick again
		cmdFire(tick+5, "s", v, tick-sec, "j3"),    // an older tick
		cmdFire(tick+5, "s", v, t0, "j4"),          // the anchor itself
		cmdFire(tick+5, "s", v+99, tick+sec, "j5"), // another version
	} {
		r := h.one(c)
		wantIs(t, r.Err, ErrStaleTick)
		wantIs(t, r.Err, ErrWrongState)
	}
	if got := h.f.Hash(); got != before {
		t.Fatal("a stale tick changed the state")
	}
	if h.f.Len() != 1 {
		t.Fatalf("%d jobs, want 1", h.f.Len())
	}
	sc, _ := h.f.Schedule("s")
	if sc.LastTick != tick || sc.Fired != 1 || sc.LastJobID != "j1" {
		t.Fatalf("schedule after fires: %+v", sc)
	}
	// The next tick fires.
	if r := h.one(cmdFire(tick+sec, "s", v, tick+sec, "j6")); r.Err != nil || r.Fire.Job == nil {
		t.Fatalf("next tick: %+v", r)
	}
}

func TestOverlapPolicies(t *testing.T) {
	for _, tc := range []struct {
		policy    int32
		wantJob   bool
		prevState State
	}{
		{OverlapSkip, false, StateReady},
		{OverlapAllow, true, StateReady},
		{OverlapCancelPrevious, true, StateCancelled},
	} {
		t.Run(fmt.Sprint(tc.policy), func(t *testing.T) {
			h := newHarness(t)
			v := putSched(h, spec("s", tc.policy))
			h.one(cmdFire(t0+sec, "s", v, t0+sec, "j1"))
			r := h.one(cmdFire(t0+2*sec, "s", v, t0+2*sec, "j2"))
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			if (r.Fire.Job != nil) != tc.wantJob || r.Fire.OverlapSkipped == tc.wantJob {
				t.Fatalf("policy %d: %+v", tc.policy, r.Fire)
			}
			h.wantState("j1", tc.prevState)
			sc, _ := h.f.Schedule("s")
			if sc.LastTick != t0+2*sec {
				t.Fatalf("last tick %d", sc.LastTick)
			}
			if !tc.wantJob {
				if sc.Skipped != 1 || sc.LastJobID != "j1" {
					t.Fatalf("skip: %+v", sc)
				}
				// Once the previous job is terminal, the next tick fires.
				h.one(cmdCancel(t0+2*sec, "j1"))
				if r := h.one(cmdFire(t0+3*sec, "s", v, t0+3*sec, "j3")); r.Fire == nil || r.Fire.Job == nil {
					t.Fatalf("after the previous ended: %+v", r)
				}
			}
		})
	}
	// Cancel-previous on a leased job asks the worker to stop.
	h := newHarness(t)
	v := putSched(h, spec("s", OverlapCancelPrevious))
	h.one(cmdFire(t0+sec, "s", v, t0+sec, "j1"))
	h.one(cmdLease(t0+sec, "w", "j1"))
	h.one(cmdFire(t0+2*sec, "s", v, t0+2*sec, "j2"))
	if j := h.wantState("j1", StateLeased); !j.CancelRequested {
		t.Fatal("leased previous job not asked to cancel")
	}
	h.wantState("j2", StateReady)
}

func TestScheduleRefusalsChangeNothing(t *testing.T) {
	h := newHarness(t)
	v := putSched(h, spec("s", OverlapSkip))
	before := h.f.Hash()
	bad := func(mut func(sp *fsmpb.ScheduleSpec)) *fsmpb.Command {
		sp := spec("x", OverlapSkip)
		mut(sp)
		return cmdPutSchedule(t0, sp)
	}
	for i, c := range []*fsmpb.Command{
		bad(func(sp *fsmpb.ScheduleSpec) { sp.Name = "" }),
		bad(func(sp *fsmpb.ScheduleSpec) { sp.Job.Queue = "" }),
		bad(func(sp *fsmpb.ScheduleSpec) { sp.Cron = "" }),
		bad(func(sp *fsmpb.ScheduleSpec) { sp.Interval = sec }),
		bad(func(sp *fsmpb.ScheduleSpec) { sp.Jitter = -1 }),
		bad(func(sp *fsmpb.ScheduleSpec) { sp.CatchUp = -1 }),
		bad(func(sp *fsmpb.ScheduleSpec) { sp.Overlap = 7 }),
		cmdScheduleRef(fsmpb.CommandType_COMMAND_TYPE_PAUSE_SCHEDULE, t0, "nope"),
		cmdScheduleRef(fsmpb.CommandType_COMMAND_TYPE_RESUME_SCHEDULE, t0, "nope"),
		cmdScheduleRef(fsmpb.CommandType_COMMAND_TYPE_DELETE_SCHEDULE, t0, "nope"),
		cmdFire(t0+sec, "nope", v, t0+sec, "j"),
		cmdFire(t0+sec, "s", v, t0+sec, ""),
	} {
		if r := h.one(c); r.Err == nil {
			t.Fatalf("command %d accepted: %+v", i, r)
		}
	}
	// Put of an identical spec changes nothing either.
	if r := h.one(cmdPutSchedule(t0+5*sec, spec("s", OverlapSkip))); r.Err != nil || r.Schedule.Version != v {
		t.Fatalf("identical put: %+v", r)
	}
	if h.f.Hash() != before || h.f.Len() != 0 {
		t.Fatal("a refused command changed the state")
	}
	r := h.one(cmdFire(t0+sec, "nope", v, t0+sec, "j"))
	wantIs(t, r.Err, ErrScheduleNotFound)
	wantIs(t, r.Err, ErrNotFound)
}

// TestPauseResumeAndUpdateMoveTheAnchor: ticks that passed while a
// schedule was paused, or before an update, never fire; an update keeps
// the firing state and makes fires computed for the old spec stale.
func TestPauseResumeAndUpdateMoveTheAnchor(t *testing.T) {
	h := newHarness(t)
	v := putSched(h, spec("s", OverlapAllow))
	h.one(cmdFire(t0+sec, "s", v, t0+sec, "j1"))
	h.one(cmdScheduleRef(fsmpb.CommandType_COMMAND_TYPE_PAUSE_SCHEDULE, t0+2*sec, "s"))
	r := h.one(cmdFire(t0+3*sec, "s", v, t0+3*sec, "j2"))
	wantIs(t, r.Err, ErrWrongState)
	r = h.one(cmdScheduleRef(fsmpb.CommandType_COMMAND_TYPE_RESUME_SCHEDULE, t0+10*sec, "s"))
	if r.Err != nil || r.Schedule.Anchor != t0+10*sec {
		t.Fatalf("resume: %+v", r)
	}
	// A tick from the paused period, proposed late, is stale.
	wantIs(t, h.one(cmdFire(t0+10*sec, "s", v, t0+5*sec, "j3")).Err, ErrStaleTick)
	if r := h.one(cmdFire(t0+11*sec, "s", v, t0+11*sec, "j4")); r.Err != nil {
		t.Fatal(r.Err)
	}
	// Update: a new version, the same counters.
	sp := spec("s", OverlapAllow)
	sp.Cron = "@every 2s"
	r = h.one(cmdPutSchedule(t0+12*sec, sp))
	if r.Err != nil || r.Schedule.Version == v || r.Schedule.Fired != 2 || r.Schedule.CreatedAt != t0 {
		t.Fatalf("update: %+v", r.Schedule)
	}
	wantIs(t, h.one(cmdFire(t0+13*sec, "s", v, t0+13*sec, "j5")).Err, ErrStaleTick)
	if r := h.one(cmdFire(t0+14*sec, "s", r.Schedule.Version, t0+14*sec, "j6")); r.Err != nil {
		t.Fatal(r.Err)
	}
	// Delete, then re-create: the old version's fires are stale.
	h.one(cmdScheduleRef(fsmpb.CommandType_COMMAND_TYPE_DELETE_SCHEDULE, t0+15*sec, "s"))
	if _, ok := h.f.Schedule("s"); ok {
		t.Fatal("deleted schedule still there")
	}
	h.wantState("j6", StateReady) // its jobs stay
	v2 := putSched(h, spec("s", OverlapAllow))
	wantIs(t, h.one(cmdFire(t0+16*sec, "s", v, t0+16*sec, "j7")).Err, ErrStaleTick)
	_ = v2
}

func TestScheduleSnapshotRoundTrip(t *testing.T) {
	h := newHarness(t)
	empty := h.f.Hash()
	v := putSched(h, spec("a", OverlapSkip))
	sp := spec("b", OverlapAllow)
	sp.Cron, sp.Interval, sp.TimeZone, sp.Jitter = "", 60*sec, "Europe/Paris", 5*sec
	putSched(h, sp)
	h.one(cmdFire(t0+sec, "a", v, t0+sec, "j1"))
	h.one(cmdScheduleRef(fsmpb.CommandType_COMMAND_TYPE_PAUSE_SCHEDULE, t0+2*sec, "b"))
	if h.f.Hash() == empty {
		t.Fatal("schedules are not in the hash")
	}
	snap := snapshotBytes(t, h.f)
	g := New()
	if err := restoreBytes(g, snap); err != nil {
		t.Fatal(err)
	}
	if g.Hash() != h.f.Hash() {
		t.Fatal("restored hash differs")
	}
	got := g.Schedules()
	if len(got) != 2 || got[0].Spec.GetName() != "a" || got[0].LastTick != t0+sec || got[0].LastJobID != "j1" ||
		!got[1].Spec.GetPaused() || got[1].Spec.GetTimeZone() != "Europe/Paris" {
		t.Fatalf("restored schedules: %+v %+v", got[0], got[1])
	}
	if j, _ := g.Get("j1"); j.ScheduleName != "a" || j.ScheduleTick != t0+sec {
		t.Fatalf("restored job lost its schedule: %+v", j)
	}
	// The restored FSM goes on refusing the fired tick.
	hg := &harness{t: t, f: g, index: h.index}
	wantIs(t, hg.one(cmdFire(t0+3*sec, "a", v, t0+sec, "j2")).Err, ErrStaleTick)
	if errors.Is(hg.one(cmdFire(t0+3*sec, "a", v, t0+2*sec, "j2")).Err, ErrStaleTick) {
		t.Fatal("the next tick was refused after restore")
	}
}

// TestHashWithoutSchedulesUnchanged: a store with no schedules hashes as
// before schedules existed (mixed-version replicas compare equal).
func TestHashWithoutSchedulesUnchanged(t *testing.T) {
	h := newHarness(t)
	h.one(cmdEnqueue(t0, nj("j1", "q")))
	before := h.f.Hash()
	v := putSched(h, spec("s", OverlapSkip))
	if h.f.Hash() == before {
		t.Fatal("schedule not hashed")
	}
	_ = v
	h.one(cmdScheduleRef(fsmpb.CommandType_COMMAND_TYPE_DELETE_SCHEDULE, t0, "s"))
	if h.f.Hash() != before {
		t.Fatal("hash of a store without schedules changed")
	}
}

// TestFireWithoutJobSkips: the leader's missed-tick policy records dropped
// ticks; they never fire afterwards.
func TestFireWithoutJobSkips(t *testing.T) {
	h := newHarness(t)
	v := putSched(h, spec("s", OverlapAllow))
	c := cmdFire(t0+10*sec, "s", v, t0+5*sec, "")
	c.GetFireSchedule().Job, c.GetFireSchedule().SkippedTicks = nil, 4
	r := h.one(c)
	if r.Err != nil || r.Fire.Job != nil || r.Fire.Schedule.Skipped != 5 || r.Fire.Schedule.LastTick != t0+5*sec {
		t.Fatalf("skip: %+v", r.Fire)
	}
	wantIs(t, h.one(cmdFire(t0+10*sec, "s", v, t0+3*sec, "j1")).Err, ErrStaleTick)
	if h.f.Len() != 0 {
		t.Fatal("a skipped tick created a job")
	}
}

func cmdImportSchedules(now int64, queue string, recs ...*fsmpb.ScheduleRecord) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_IMPORT_SCHEDULES, Now: now,
		Body: &fsmpb.Command_ImportSchedules{ImportSchedules: &fsmpb.ImportSchedules{Queue: queue, Schedules: recs}}}
}

// A moved queue's schedules: the old group (sealed) fires nothing more,
// neither a job nor a skipped tick; the new group imports them with their
// firing state under a new version, fires the next tick and not one fired
// before; an import repeated later changes nothing (not even the ticks
// fired since); one of a name held for another queue is refused whole;
// a snapshot keeps the imported schedule.
func TestImportSchedules(t *testing.T) {
	old := newHarness(t)
	v := putSched(old, spec("s", OverlapAllow))
	if r := old.one(cmdFire(t0+sec, "s", v, t0+sec, "j1")); r.Err != nil {
		t.Fatal(r.Err)
	}
	old.one(cmdSeal("q", true, 2))
	sealedHash := old.f.Hash()
	if r := old.one(cmdFire(t0+2*sec, "s", v, t0+2*sec, "j2")); !errors.Is(r.Err, ErrQueueMoved) {
		t.Fatalf("fire in the sealed group: %+v", r)
	}
	skip := cmdFire(t0+2*sec, "s", v, t0+2*sec, "")
	skip.GetFireSchedule().Job = nil
	if r := old.one(skip); !errors.Is(r.Err, ErrQueueMoved) {
		t.Fatalf("skipped tick in the sealed group: %+v", r)
	}
	if old.f.Hash() != sealedHash {
		t.Fatal("a refused fire changed the sealed group")
	}
	// Nor does a change of the schedule take there: the new group's copy
	// is the one that stays, so a change here would be lost with the copy
	// the move deletes. Each is refused as moved, and changes nothing.
	changed := spec("s", OverlapAllow)
	changed.Cron = "@every 5s"
	newOne := spec("s2", OverlapAllow)
	for _, c := range []*fsmpb.Command{
		cmdScheduleRef(fsmpb.CommandType_COMMAND_TYPE_PAUSE_SCHEDULE, t0+2*sec, "s"),
		cmdPutSchedule(t0+2*sec, changed),
		cmdPutSchedule(t0+2*sec, newOne),
	} {
		if r := old.one(c); !errors.Is(r.Err, ErrQueueMoved) {
			t.Fatalf("%s in the sealed group: %+v", c.GetType(), r)
		}
	}
	if old.f.Hash() != sealedHash {
		t.Fatal("a refused schedule change altered the sealed group")
	}
	src, _ := old.f.Schedule("s")
	rec := scheduleToRecord(src)
	defer func() {
		// The move deletes the copy it left behind: allowed while sealed.
		if r := old.one(cmdScheduleRef(fsmpb.CommandType_COMMAND_TYPE_DELETE_SCHEDULE, t0+6*sec, "s")); r.Err != nil {
			t.Fatalf("delete in the sealed group: %v", r.Err)
		}
		if _, ok := old.f.Schedule("s"); ok {
			t.Fatal("schedule still in the sealed group after its delete")
		}
	}()

	h := newHarness(t)
	h.one(cmdEnqueue(t0, nj("other", "q2"))) // the new group's index differs
	r := h.one(cmdImportSchedules(t0+3*sec, "q", rec))
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	got, ok := h.f.Schedule("s")
	if !ok {
		t.Fatal("imported schedule missing")
	}
	if got.Version != h.index || got.Version == src.Version {
		t.Fatalf("imported version %d, want the import's index %d", got.Version, h.index)
	}
	if got.LastTick != t0+sec || got.Anchor != src.Anchor || got.LastJobID != "j1" || got.Fired != 1 ||
		got.CreatedAt != src.CreatedAt || got.UpdatedAt != src.UpdatedAt || got.Spec.GetName() != "s" {
		t.Fatalf("imported %+v, exported %+v", got, src)
	}
	// The tick fired in the old group does not fire again, nor does a
	// fire computed for the old version; the next tick does.
	for _, c := range []*fsmpb.Command{
		cmdFire(t0+4*sec, "s", got.Version, t0+sec, "dup"),
		cmdFire(t0+4*sec, "s", src.Version, t0+2*sec, "oldv"),
	} {
		if r := h.one(c); !errors.Is(r.Err, ErrStaleTick) {
			t.Fatalf("stale fire after import: %+v", r)
		}
	}
	if r := h.one(cmdFire(t0+4*sec, "s", got.Version, t0+2*sec, "j2")); r.Err != nil || r.Fire.Job == nil {
		t.Fatalf("next tick after import: %+v", r)
	}
	// Repeated (a new leader re-driving the move): nothing changes, and
	// the tick fired here is not taken back.
	before := h.f.Hash()
	if r := h.one(cmdImportSchedules(t0+5*sec, "q", rec)); r.Err != nil {
		t.Fatal(r.Err)
	}
	if h.f.Hash() != before {
		t.Fatal("a repeated import changed the state")
	}
	if sc, _ := h.f.Schedule("s"); sc.LastTick != t0+2*sec || sc.Fired != 2 {
		t.Fatalf("after the repeated import: %+v", sc)
	}
	// A schedule of that name for another queue refuses the import, and
	// a refused import changes nothing, even for its other schedules.
	other := spec("t", OverlapAllow)
	other.Job.Queue = "q3"
	putSched(h, other)
	before = h.f.Hash()
	clash := proto.Clone(rec).(*fsmpb.ScheduleRecord)
	clash.Spec.Name = "t"
	fresh := proto.Clone(rec).(*fsmpb.ScheduleRecord)
	fresh.Spec.Name = "u"
	r = h.one(cmdImportSchedules(t0+5*sec, "q", fresh, clash))
	if !errors.Is(r.Err, ErrWrongState) || !strings.Contains(r.Err.Error(), `queue "q3"`) {
		t.Fatalf("import over another queue's schedule: %v", r.Err)
	}
	wrongQueue := proto.Clone(rec).(*fsmpb.ScheduleRecord)
	wrongQueue.Spec.Name = "w"
	for _, c := range []*fsmpb.Command{
		cmdImportSchedules(t0, "q9", wrongQueue),
		cmdImportSchedules(t0, "", rec),
		cmdImportSchedules(t0, "q", fresh, fresh),
		cmdImportSchedules(t0, "q", &fsmpb.ScheduleRecord{Spec: &fsmpb.ScheduleSpec{Name: "x"}}),
	} {
		if r := h.one(c); !errors.Is(r.Err, ErrInvalid) {
			t.Fatalf("bad import: %v", r.Err)
		}
	}
	if h.f.Hash() != before {
		t.Fatal("a refused import changed the state")
	}
	// A snapshot keeps the imported schedule and its state.
	f := New()
	if err := restoreBytes(f, snapshotBytes(t, h.f)); err != nil {
		t.Fatal(err)
	}
	if f.Hash() != h.f.Hash() {
		t.Fatal("restored state differs")
	}
	if sc, ok := f.Schedule("s"); !ok || sc.Version != got.Version || sc.LastTick != t0+2*sec || sc.Fired != 2 {
		t.Fatalf("restored schedule %+v", sc)
	}
	checkInvariants(t, h.f)
}
