package fsm

import (
	"fmt"

	"github.com/raftq/raftq/fsm/fsmpb"
	"google.golang.org/protobuf/proto"
)

// Overlap policies of a schedule: what a tick does while the job of the
// previous tick is not terminal. The numbers are raftq.v1.OverlapPolicy's.
const (
	// OverlapSkip skips the tick (counted in Skipped).
	OverlapSkip int32 = 0
	// OverlapAllow creates the tick's job anyway.
	OverlapAllow int32 = 1
	// OverlapCancelPrevious cancels the previous job, then creates the
	// tick's job.
	OverlapCancelPrevious int32 = 2
)

// Schedule is a periodic schedule as the FSM holds it: the spec an
// operator set (as the leader validated it) and its firing state.
type Schedule struct {
	// Spec is the definition. Apply never parses its cron expression or
	// loads its time zone: the leader does, and carries tick times in
	// FireSchedule commands.
	Spec *fsmpb.ScheduleSpec
	// Version is the log index of the PutSchedule that set Spec. A fire
	// computed for another version is refused.
	Version uint64
	// Anchor: ticks at or before it never fire. Set to the command's time
	// on create, update and resume, so an update or a resume does not fire
	// the ticks that passed before it.
	Anchor int64
	// LastTick is the last tick fired or skipped for overlap (0: none).
	LastTick  int64
	LastJobID string
	Fired     int64
	Skipped   int64
	CreatedAt int64
	UpdatedAt int64
}

// After is the time after which the schedule's next tick lies: the later
// of its anchor and its last tick.
func (s *Schedule) After() int64 { return max(s.Anchor, s.LastTick) }

// FireOutcome says what a FireSchedule command did; it is the Result's
// Fire field. A FireSchedule without a job records its tick (and the
// skipped ticks before it) as skipped: the leader's missed-tick policy
// dropped them.
type FireOutcome struct {
	// Schedule is the schedule after the command.
	Schedule *Schedule
	// Job is the job the tick created; nil when the tick was skipped.
	Job *Job
	// OverlapSkipped: the previous job was not terminal and the policy is
	// skip.
	OverlapSkipped bool
	// Cancelled is the previous job, cancelled (or asked to cancel) under
	// the cancel-previous policy.
	Cancelled *Job
}

// scheduleNotFound is ErrScheduleNotFound: its own message, but
// errors.Is(err, ErrNotFound) holds, so the API maps it to NotFound.
type scheduleNotFound struct{}

func (scheduleNotFound) Error() string        { return "schedule not found" }
func (scheduleNotFound) Is(target error) bool { return target == ErrNotFound }

// staleTick is ErrStaleTick; it is a wrong-state refusal.
type staleTick struct{}

func (staleTick) Error() string        { return "tick already fired or before the schedule's anchor" }
func (staleTick) Is(target error) bool { return target == ErrWrongState }

var (
	// ErrScheduleNotFound: no schedule with that name (errors.Is it
	// ErrNotFound too).
	ErrScheduleNotFound error = scheduleNotFound{}
	// ErrStaleTick: a FireSchedule for a tick at or before the schedule's
	// last tick or anchor, or for an older version of the schedule; the
	// tick was fired already (a tick proposed again after a leader change)
	// or must not fire. Nothing changed. errors.Is it ErrWrongState too.
	ErrStaleTick error = staleTick{}
)

func decodeSchedule(name string, v []byte) *Schedule {
	r := &fsmpb.ScheduleRecord{}
	if err := proto.Unmarshal(v, r); err != nil || r.GetSpec().GetName() != name {
		panic(corrupt("schedule record %q", name))
	}
	return recordToSchedule(r)
}

func recordToSchedule(r *fsmpb.ScheduleRecord) *Schedule {
	return &Schedule{
		Spec: r.GetSpec(), Version: r.GetVersion(), Anchor: r.GetAnchor(), LastTick: r.GetLastTick(),
		LastJobID: r.GetLastJobId(), Fired: r.GetFired(), Skipped: r.GetSkipped(),
		CreatedAt: r.GetCreatedAt(), UpdatedAt: r.GetUpdatedAt(),
	}
}

// ScheduleRecordOf is s as stored and in snapshots: what an
// ImportSchedules command carries to another group.
func ScheduleRecordOf(s *Schedule) *fsmpb.ScheduleRecord { return scheduleToRecord(copySchedule(s)) }

func scheduleToRecord(s *Schedule) *fsmpb.ScheduleRecord {
	return &fsmpb.ScheduleRecord{
		Spec: s.Spec, Version: s.Version, Anchor: s.Anchor, LastTick: s.LastTick,
		LastJobId: s.LastJobID, Fired: s.Fired, Skipped: s.Skipped,
		CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt,
	}
}

func copySchedule(s *Schedule) *Schedule {
	c := *s
	c.Spec = proto.Clone(s.Spec).(*fsmpb.ScheduleSpec)
	return &c
}

func (s *state) schedule(name string) *Schedule {
	v := s.schedules.Get([]byte(name))
	if v == nil {
		return nil
	}
	return decodeSchedule(name, v)
}

func (s *state) setSchedule(sc *Schedule) {
	v, err := marshalOpts.Marshal(scheduleToRecord(sc))
	s.must(err)
	s.must(s.schedules.Put([]byte(sc.Spec.GetName()), v))
}

// checkScheduleSpec makes Apply's structural checks of a spec: what no
// configuration changes (the API checks the rest before proposing).
func checkScheduleSpec(sp *fsmpb.ScheduleSpec) error {
	j := sp.GetJob()
	switch {
	case sp.GetName() == "":
		return fmt.Errorf("%w: schedule name is required", ErrInvalid)
	case j.GetQueue() == "" || j.GetType() == "":
		return fmt.Errorf("%w: schedule %q: job queue and type are required", ErrInvalid, sp.GetName())
	case (sp.GetCron() == "") == (sp.GetInterval() <= 0):
		return fmt.Errorf("%w: schedule %q: exactly one of cron and interval", ErrInvalid, sp.GetName())
	case sp.GetJitter() < 0 || sp.GetCatchUp() < 0:
		return fmt.Errorf("%w: schedule %q: negative jitter or catch-up", ErrInvalid, sp.GetName())
	case sp.GetOverlap() < OverlapSkip || sp.GetOverlap() > OverlapCancelPrevious:
		return fmt.Errorf("%w: schedule %q: unknown overlap policy %d", ErrInvalid, sp.GetName(), sp.GetOverlap())
	}
	return checkKeySizes(sp.GetName(), j.GetQueue())
}

// putSchedule creates a schedule or replaces its spec. The firing state
// stays, so an update never fires a tick again; the anchor moves to now
// so that ticks of the new spec that passed before it do not fire.
func (a *applier) putSchedule(now int64, sp *fsmpb.ScheduleSpec) Result {
	if err := checkScheduleSpec(sp); err != nil {
		return Result{Err: err}
	}
	if err := a.st.moved(sp.GetJob().GetQueue()); err != nil {
		// The queue moved away, and its schedules with it: a change here
		// would be lost with the copy the move deletes.
		return Result{Err: fmt.Errorf("put schedule %q: %w", sp.GetName(), err)}
	}
	old := a.st.schedule(sp.GetName())
	if old != nil && proto.Equal(old.Spec, sp) {
		return Result{Schedule: old} // nothing changes
	}
	nu := &Schedule{CreatedAt: now}
	if old != nil {
		nu = copySchedule(old)
	}
	nu.Spec = proto.Clone(sp).(*fsmpb.ScheduleSpec)
	nu.Version = a.index
	nu.Anchor = now
	nu.UpdatedAt = now
	a.st.setSchedule(nu)
	a.dirty = true
	return Result{Schedule: copySchedule(nu)}
}

func (a *applier) setSchedulePaused(now int64, b *fsmpb.ScheduleRef, paused bool) Result {
	sc := a.st.schedule(b.GetName())
	if sc == nil {
		return Result{Err: fmt.Errorf("%w: %q", ErrScheduleNotFound, b.GetName())}
	}
	if err := a.st.moved(sc.Spec.GetJob().GetQueue()); err != nil {
		// As for putSchedule: the copy that counts is in the new group.
		return Result{Err: fmt.Errorf("pause or resume of schedule %q: %w", b.GetName(), err)}
	}
	if sc.Spec.GetPaused() == paused {
		return Result{Schedule: sc}
	}
	sc.Spec.Paused = paused
	sc.UpdatedAt = now
	if !paused {
		sc.Anchor = now // ticks that passed while paused never fire
	}
	a.st.setSchedule(sc)
	a.dirty = true
	return Result{Schedule: copySchedule(sc)}
}

// deleteSchedule deletes a schedule, also one whose queue moved away: the
// move deletes the copy it left behind this way once the new group holds
// its own.
func (a *applier) deleteSchedule(b *fsmpb.ScheduleRef) Result {
	if a.st.schedule(b.GetName()) == nil {
		return Result{Err: fmt.Errorf("%w: %q", ErrScheduleNotFound, b.GetName())}
	}
	a.st.must(a.st.schedules.Delete([]byte(b.GetName())))
	a.dirty = true
	return Result{}
}

// importSchedules applies an ImportSchedules: schedules of a queue that
// moved here, with the firing state they had in the group it left (sealed
// there, so they fired their last tick there). Each is stored as it came,
// under a new version (this entry's index); a schedule of the same name
// already here for the same queue is kept as it is, so an import repeated
// by a new leader of group 0 changes nothing, and in particular does not
// take back ticks fired here since. The checks come first: a refused
// import changes nothing.
func (a *applier) importSchedules(c *fsmpb.ImportSchedules) Result {
	q := c.GetQueue()
	if q == "" {
		return Result{Err: fmt.Errorf("%w: schedule import without a queue", ErrInvalid)}
	}
	seen := map[string]bool{}
	for _, r := range c.GetSchedules() {
		sp := r.GetSpec()
		if err := checkScheduleSpec(sp); err != nil {
			return Result{Err: fmt.Errorf("schedule import: %w", err)}
		}
		name := sp.GetName()
		if sp.GetJob().GetQueue() != q {
			return Result{Err: fmt.Errorf("%w: imported schedule %q sends its jobs to queue %q, not to queue %q",
				ErrInvalid, name, sp.GetJob().GetQueue(), q)}
		}
		if seen[name] {
			return Result{Err: fmt.Errorf("%w: schedule %q imported twice in one command", ErrInvalid, name)}
		}
		seen[name] = true
		if old := a.st.schedule(name); old != nil && old.Spec.GetJob().GetQueue() != q {
			return Result{Err: fmt.Errorf("%w: cannot import schedule %q of queue %q: this group has a schedule of that name for queue %q",
				ErrWrongState, name, q, old.Spec.GetJob().GetQueue())}
		}
	}
	for _, r := range c.GetSchedules() {
		if a.st.schedule(r.GetSpec().GetName()) != nil {
			continue // imported already
		}
		sc := recordToSchedule(r)
		sc.Spec = proto.Clone(r.GetSpec()).(*fsmpb.ScheduleSpec)
		sc.Version = a.index
		a.st.setSchedule(sc)
		a.dirty = true
	}
	return Result{}
}

// fireSchedule is one tick: it creates the tick's job only if the tick is
// after the schedule's last tick and anchor and the version matches, so a
// tick proposed again (by a new leader that did not see the first
// proposal's outcome) is a no-op. Everything time-dependent (tick, the
// job's run_at with its jitter, the job id) comes from the leader.
func (a *applier) fireSchedule(now int64, b *fsmpb.FireSchedule) Result {
	sc := a.st.schedule(b.GetName())
	nj := b.GetJob()
	var movedAway error // the schedule's queue moved to another group
	if sc != nil {
		movedAway = a.st.moved(sc.Spec.GetJob().GetQueue())
	}
	switch {
	case sc == nil:
		return Result{Err: fmt.Errorf("%w: %q", ErrScheduleNotFound, b.GetName())}
	case sc.Version != b.GetVersion() || b.GetTick() <= sc.After():
		return Result{Err: fmt.Errorf("%w: schedule %q tick %d (version %d; schedule at version %d, last tick %d, anchor %d)",
			ErrStaleTick, b.GetName(), b.GetTick(), b.GetVersion(), sc.Version, sc.LastTick, sc.Anchor)}
	case sc.Spec.GetPaused():
		return Result{Err: fmt.Errorf("%w: schedule %q is paused", ErrWrongState, b.GetName())}
	case movedAway != nil:
		// The queue moved away: its schedules move with it (brokerd
		// imports them into the new group, then deletes them here). From
		// the seal on, no tick fires or is skipped here, so the firing
		// state the import carries is final.
		return Result{Err: fmt.Errorf("fire of %q: %w", b.GetName(), movedAway)}
	case b.GetSkippedTicks() < 0:
		return Result{Err: fmt.Errorf("%w: fire of %q: negative skipped ticks", ErrInvalid, b.GetName())}
	case nj == nil:
		// The leader gives up ticks its missed-tick policy drops: they
		// are counted, and never fire later.
		sc.LastTick = b.GetTick()
		sc.Skipped += b.GetSkippedTicks() + 1
		sc.UpdatedAt = now
		a.st.setSchedule(sc)
		a.dirty = true
		return Result{Fire: &FireOutcome{Schedule: copySchedule(sc)}}
	case nj.GetId() == "" || nj.GetQueue() == "" || nj.GetType() == "":
		return Result{Err: fmt.Errorf("%w: fire of %q: job id, queue and type are required", ErrInvalid, b.GetName())}
	case checkKeySizes(nj.GetId(), nj.GetQueue(), nj.GetIdempotencyKey(), nj.GetConcurrencyKey()) != nil:
		return Result{Err: checkKeySizes(nj.GetId(), nj.GetQueue(), nj.GetIdempotencyKey(), nj.GetConcurrencyKey())}
	case a.st.job(nj.GetId()) != nil:
		return Result{Err: fmt.Errorf("%w: %q", ErrDuplicateID, nj.GetId())}
	case a.st.moved(nj.GetQueue()) != nil:
		// A job for another queue than the schedule's (only a buggy
		// leader proposes one) whose queue moved away.
		return Result{Err: fmt.Errorf("fire of %q: %w", b.GetName(), a.st.moved(nj.GetQueue()))}
	case checkNewJobOptions(nj) != nil:
		return Result{Err: fmt.Errorf("fire of %q: %w", b.GetName(), checkNewJobOptions(nj))}
	}
	out := &FireOutcome{}
	sc.LastTick = b.GetTick()
	sc.Skipped += b.GetSkippedTicks()
	sc.UpdatedAt = now
	prev := a.st.job(sc.LastJobID)
	if prev != nil && !prev.State.Terminal() {
		switch sc.Spec.GetOverlap() {
		case OverlapSkip:
			sc.Skipped++
			out.OverlapSkipped = true
		case OverlapCancelPrevious:
			nu := copyJob(prev)
			nu.UpdatedAt = now
			if prev.State == StateLeased {
				nu.CancelRequested = true // finished by the worker's nack or the lease expiry
			} else {
				nu.State, nu.FinishedAt = StateCancelled, now
			}
			a.put(prev, nu)
			out.Cancelled = copyJob(nu)
		}
	}
	if !out.OverlapSkipped {
		j := &Job{
			ID: nj.GetId(), Queue: nj.GetQueue(), Type: nj.GetType(), Payload: nj.GetPayload(),
			Priority: nj.GetPriority(), MaxAttempts: nj.GetMaxAttempts(), LeaseDuration: nj.GetLeaseDuration(),
			InitialBackoff: nj.GetInitialBackoff(), MaxBackoff: nj.GetMaxBackoff(),
			IdempotencyKey: nj.GetIdempotencyKey(), DedupWindow: nj.GetDedupWindow(),
			ConcurrencyKey: nj.GetConcurrencyKey(),
			// Start-to-close applies to each tick's job; a start deadline
			// and a unique key do not (brokerd refuses them in a
			// schedule's job: the overlap policy plays that part).
			StartToClose: nj.GetStartToClose(),
			RunAt:        nj.GetRunAt(), CreatedAt: now, UpdatedAt: now,
			ScheduleName: sc.Spec.GetName(), ScheduleTick: b.GetTick(),
		}
		if j.RunAt <= now {
			j.State, j.Seq = StateReady, a.st.nextSeq()
		} else {
			j.State = StateScheduled
		}
		a.put(nil, j)
		sc.LastJobID = j.ID
		sc.Fired++
		out.Job = copyJob(j)
	}
	a.st.setSchedule(sc)
	a.dirty = true
	out.Schedule = copySchedule(sc)
	r := Result{Fire: out}
	if out.Job != nil {
		r.Items = []ItemResult{{JobID: out.Job.ID, Job: copyJob(out.Job)}}
	}
	return r
}

// Schedule returns a copy of the named schedule.
func (f *FSM) Schedule(name string) (*Schedule, bool) {
	var sc *Schedule
	f.view(func(st *state) { sc = st.schedule(name) })
	return sc, sc != nil
}

// Schedules returns every schedule, sorted by name.
func (f *FSM) Schedules() []*Schedule {
	var out []*Schedule
	f.view(func(st *state) {
		_ = st.schedules.ForEach(func(k, v []byte) error {
			out = append(out, decodeSchedule(string(k), v))
			return nil
		})
	})
	return out
}

// restoreSchedule adds one snapshot record's schedule.
func restoreSchedule(st *state, r *fsmpb.ScheduleRecord) error {
	if err := checkScheduleSpec(r.GetSpec()); err != nil {
		return err
	}
	if st.schedule(r.GetSpec().GetName()) != nil {
		return fmt.Errorf("schedule %q twice", r.GetSpec().GetName())
	}
	st.setSchedule(recordToSchedule(r))
	return nil
}

// writeSchedules writes one snapshot record per schedule, in name order.
func writeSchedules(st *state, rw *recordWriter) error {
	rec := &fsmpb.SnapshotRecord{}
	return st.schedules.ForEach(func(k, v []byte) error {
		rec.Record = &fsmpb.SnapshotRecord_Schedule{Schedule: scheduleToRecord(decodeSchedule(string(k), v))}
		return rw.write(rec)
	})
}

// hashSchedules adds the schedules bucket to a Hash, only when it holds
// something: a store without schedules hashes as it did before schedules
// existed, so replicas of both versions compare equal.
func hashSchedules(st *state, put func([]byte), mark func(byte)) {
	if k, _ := st.schedules.Cursor().First(); k == nil {
		return
	}
	put(bSchedules)
	_ = st.schedules.ForEach(func(k, v []byte) error {
		mark(1)
		put(k)
		put(v)
		return nil
	})
	mark(0)
}
