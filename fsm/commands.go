package fsm

import (
	"fmt"
	"math"

	"github.com/raftq/raftq/fsm/fsmpb"
)

// defaultRedriveLimit bounds a Redrive by queue that names no limit, so one
// command cannot stall Apply on a huge dead-letter set.
const defaultRedriveLimit = 1000

// leaseExpiredError is the LastError of a job whose lease ran out.
const leaseExpiredError = "lease expired"

// maxKeyPart bounds a job id, queue name, idempotency key and node id in
// Apply and Restore. It is structural, not configuration: bbolt refuses
// keys over 32 KiB, and the longest composite key (expiry, escaped queue,
// idempotency key) must stay under that on every node alike. The API's
// limits are far smaller.
const maxKeyPart = 8192

// checkKeySizes refuses names too long to be store keys.
func checkKeySizes(parts ...string) error {
	for _, p := range parts {
		if len(p) > maxKeyPart {
			return fmt.Errorf("%w: a name of %d bytes (at most %d)", ErrInvalid, len(p), maxKeyPart)
		}
	}
	return nil
}

// applier applies the commands of one log entry.
type applier struct {
	st    *state
	index uint64 // the entry's log index: the lease token of its Lease commands
	dirty bool   // some state changed
}

func (a *applier) command(c *fsmpb.Command) Result {
	now := c.GetNow()
	switch c.GetType() {
	case fsmpb.CommandType_COMMAND_TYPE_ENQUEUE:
		return a.enqueue(now, c.GetEnqueue())
	case fsmpb.CommandType_COMMAND_TYPE_LEASE:
		return a.lease(now, c.GetLease())
	case fsmpb.CommandType_COMMAND_TYPE_EXTEND_LEASE:
		return a.extend(now, c.GetExtendLease())
	case fsmpb.CommandType_COMMAND_TYPE_ACK:
		return a.ack(now, c.GetAck())
	case fsmpb.CommandType_COMMAND_TYPE_NACK:
		return a.nack(now, c.GetNack())
	case fsmpb.CommandType_COMMAND_TYPE_EXPIRE_LEASES:
		return a.expire(now, c.GetExpireLeases())
	case fsmpb.CommandType_COMMAND_TYPE_PROMOTE:
		return a.promote(now, c.GetPromote())
	case fsmpb.CommandType_COMMAND_TYPE_CANCEL:
		return a.cancel(now, c.GetCancel())
	case fsmpb.CommandType_COMMAND_TYPE_PAUSE_QUEUE:
		return a.setPaused(c.GetPauseQueue(), true)
	case fsmpb.CommandType_COMMAND_TYPE_RESUME_QUEUE:
		return a.setPaused(c.GetResumeQueue(), false)
	case fsmpb.CommandType_COMMAND_TYPE_REDRIVE:
		return a.redrive(now, c.GetRedrive())
	case fsmpb.CommandType_COMMAND_TYPE_PURGE:
		return a.purge(now, c.GetPurge())
	case fsmpb.CommandType_COMMAND_TYPE_SET_NODE:
		return a.setNode(c.GetSetNode())
	case fsmpb.CommandType_COMMAND_TYPE_DELETE_DEAD:
		return a.deleteDead(c.GetDeleteDead())
	case fsmpb.CommandType_COMMAND_TYPE_PUT_SCHEDULE:
		return a.putSchedule(now, c.GetPutSchedule())
	case fsmpb.CommandType_COMMAND_TYPE_PAUSE_SCHEDULE:
		return a.setSchedulePaused(now, c.GetPauseSchedule(), true)
	case fsmpb.CommandType_COMMAND_TYPE_RESUME_SCHEDULE:
		return a.setSchedulePaused(now, c.GetResumeSchedule(), false)
	case fsmpb.CommandType_COMMAND_TYPE_DELETE_SCHEDULE:
		return a.deleteSchedule(c.GetDeleteSchedule())
	case fsmpb.CommandType_COMMAND_TYPE_FIRE_SCHEDULE:
		return a.fireSchedule(now, c.GetFireSchedule())
	case fsmpb.CommandType_COMMAND_TYPE_EXPIRE_TIMEOUTS:
		return a.expireTimeouts(now, c.GetExpireTimeouts())
	case fsmpb.CommandType_COMMAND_TYPE_CHECK_HASH:
		// No state changes: the FSM hashes the state as of this entry
		// once it is committed (check.go).
		a.st.checkAt = a.index
		return Result{}
	case fsmpb.CommandType_COMMAND_TYPE_ENQUEUE_WORKFLOW:
		return a.enqueueWorkflow(now, c.GetEnqueueWorkflow())
	case fsmpb.CommandType_COMMAND_TYPE_PLACE_QUEUE:
		return a.placeQueue(c.GetPlaceQueue())
	case fsmpb.CommandType_COMMAND_TYPE_SEAL_QUEUE:
		return a.sealQueue(c.GetSealQueue())
	case fsmpb.CommandType_COMMAND_TYPE_IMPORT_KEYS:
		return a.importKeys(now, c.GetImportKeys())
	case fsmpb.CommandType_COMMAND_TYPE_IMPORT_SCHEDULES:
		return a.importSchedules(c.GetImportSchedules())
	case fsmpb.CommandType_COMMAND_TYPE_SET_GROUP_MEMBERS:
		return a.setGroupMembers(c.GetSetGroupMembers())
	}
	// Decode refuses unknown types; reaching here is a bug in this file.
	panic(fmt.Sprintf("fsm: no handler for command type %v", c.GetType()))
}

// put stores nu in place of old and marks the entry as changing state. A
// job that becomes terminal here settles the jobs waiting on it
// (workflows), whichever command ended it.
func (a *applier) put(old, nu *Job) {
	a.st.put(old, nu)
	a.dirty = true
	if nu.State.Terminal() && old != nil && !old.State.Terminal() {
		a.resolveDependants(nu.UpdatedAt, nu)
	}
}

// satAdd adds a duration to a time, saturating instead of wrapping, so a
// huge window or delay means "far future", never "long ago".
func satAdd(t, d int64) int64 {
	if d > 0 && t > math.MaxInt64-d {
		return math.MaxInt64
	}
	if d < 0 && t < math.MinInt64-d {
		return math.MinInt64
	}
	return t + d
}

// found returns the item result for job j with err, carrying a copy of j so
// the caller sees the state that caused a refusal.
func found(j *Job, err error) ItemResult {
	return ItemResult{JobID: j.ID, Err: err, Job: copyJob(j)}
}

func notFound(id string) ItemResult {
	return ItemResult{JobID: id, Err: fmt.Errorf("%w: %q", ErrNotFound, id)}
}

// checkNewJobOptions refuses timeouts and unique modes Apply cannot
// honour. brokerd checks the same (with clearer limits) first.
func checkNewJobOptions(nj *fsmpb.NewJob) error {
	switch {
	case nj.GetStartDeadline() < 0:
		return fmt.Errorf("%w: negative start_deadline", ErrInvalid)
	case nj.GetStartToClose() < 0:
		return fmt.Errorf("%w: negative start_to_close", ErrInvalid)
	case nj.GetStartToClose() > 0 && nj.GetStartToClose() < nj.GetLeaseDuration():
		return fmt.Errorf("%w: start_to_close %d ns is shorter than the lease duration %d ns", ErrInvalid, nj.GetStartToClose(), nj.GetLeaseDuration())
	case nj.GetUniqueMode() < UniqueReturnExisting || nj.GetUniqueMode() > UniqueDebounce:
		return fmt.Errorf("%w: unique_mode %d", ErrInvalid, nj.GetUniqueMode())
	}
	return nil
}

// uniqueConflict finds the first item of an Enqueue refused by a unique
// key in UniqueReject mode, following the order the items apply in (an
// earlier item of the batch can hold the key a later one names), so
// that such an Enqueue is refused as a whole before anything changes.
func (a *applier) uniqueConflict(now int64, jobs []*fsmpb.NewJob) error {
	type qk struct{ queue, key string }
	claimed := map[qk]string{}
	idem := map[qk]bool{}
	for i, nj := range jobs {
		q, ik, uk := nj.GetQueue(), nj.GetIdempotencyKey(), nj.GetUniqueKey()
		if ik != "" {
			if e, ok := a.st.idemGet(q, ik); (ok && e.expires > now) || idem[qk{q, ik}] {
				continue // a duplicate: creates nothing
			}
		}
		if uk == "" {
			continue
		}
		holder, held := claimed[qk{q, uk}]
		if !held {
			holder, held = a.st.uniqueHolder(q, uk)
		}
		if held {
			if nj.GetUniqueMode() == UniqueReject {
				return &UniqueConflictError{Item: i, Queue: q, Key: uk, JobID: holder}
			}
			continue
		}
		claimed[qk{q, uk}] = nj.GetId()
		if ik != "" && satAdd(now, nj.GetDedupWindow()) > now {
			idem[qk{q, ik}] = true
		}
	}
	return nil
}

// debounce moves h, a still-scheduled job holding the unique key nj
// names, to nj's run_at and payload. Its schedule-to-start deadline keeps
// its distance from when the job is due.
func (a *applier) debounce(now int64, h *Job, nj *fsmpb.NewJob) *Job {
	nu := copyJob(h)
	nu.RunAt = nj.GetRunAt()
	nu.Payload = nj.GetPayload()
	nu.UpdatedAt = now
	if h.StartDeadline > 0 {
		nu.StartDeadline = satAdd(max(nu.RunAt, now), h.StartDeadline-max(h.RunAt, h.CreatedAt))
	}
	if nu.RunAt <= now {
		nu.State = StateReady
		nu.Seq = a.st.nextSeq()
	}
	a.put(h, nu)
	return nu
}

func (a *applier) enqueue(now int64, b *fsmpb.Enqueue) Result {
	if err := a.uniqueConflict(now, b.GetJobs()); err != nil {
		return Result{Err: err}
	}
	items := make([]ItemResult, len(b.GetJobs()))
	for i, nj := range b.GetJobs() {
		id, queue, key := nj.GetId(), nj.GetQueue(), nj.GetIdempotencyKey()
		items[i].JobID = id
		if id == "" || queue == "" || nj.GetType() == "" {
			items[i].Err = fmt.Errorf("%w: enqueue item %d: id, queue and type are required", ErrInvalid, i)
			continue
		}
		if err := checkKeySizes(id, queue, key, nj.GetConcurrencyKey(), nj.GetTraceParent(), nj.GetTraceState(), nj.GetUniqueKey()); err != nil {
			items[i].Err = fmt.Errorf("enqueue item %d: %w", i, err)
			continue
		}
		if err := checkNewJobOptions(nj); err != nil {
			items[i].Err = fmt.Errorf("enqueue item %d: %w", i, err)
			continue
		}
		if key != "" {
			if e, ok := a.st.idemGet(queue, key); ok && e.expires > now {
				items[i] = ItemResult{JobID: e.jobID, Duplicate: true}
				if j := a.st.job(e.jobID); j != nil {
					items[i].Job = copyJob(j)
				}
				continue
			}
		}
		if uk := nj.GetUniqueKey(); uk != "" {
			if hid, held := a.st.uniqueHolder(queue, uk); held {
				h := a.st.job(hid)
				if h == nil {
					panic(corrupt("unique key %q/%q held by missing job %q", queue, uk, hid))
				}
				// UniqueReject was refused before anything applied.
				items[i] = ItemResult{JobID: hid, Duplicate: true}
				if nj.GetUniqueMode() == UniqueDebounce && h.State == StateScheduled && h.Attempts == 0 {
					h = a.debounce(now, h, nj)
					items[i].Debounced = true
				}
				items[i].Job = copyJob(h)
				continue
			}
		}
		// A queue that moved away takes no new job here; the keys above
		// still answer duplicates, since the jobs they name are here.
		if err := a.st.moved(queue); err != nil {
			items[i].Err = err
			continue
		}
		if a.st.job(id) != nil {
			items[i].Err = fmt.Errorf("%w: %q", ErrDuplicateID, id)
			continue
		}
		if err := a.checkExistingParents(nj); err != nil {
			items[i].Err = err
			continue
		}
		j := a.createJob(now, nj, nj.GetDependsOn())
		items[i].Job = copyJob(j)
	}
	return Result{Items: items}
}

func (a *applier) lease(now int64, b *fsmpb.Lease) Result {
	token := a.index
	items := make([]ItemResult, len(b.GetItems()))
	for i, it := range b.GetItems() {
		j := a.st.job(it.GetJobId())
		switch {
		case j == nil:
			items[i] = notFound(it.GetJobId())
			continue
		case a.st.paused(j.Queue):
			items[i] = found(j, fmt.Errorf("%w: %q", ErrQueuePaused, j.Queue))
			continue
		case !(j.State == StateReady || (j.State == StateScheduled && j.RunAt <= now)):
			items[i] = found(j, fmt.Errorf("%w: lease of %q in state %s", ErrWrongState, j.ID, j.State))
			continue
		case j.LeaseToken >= token:
			// Leased, then released, again within this entry: a second
			// lease would reuse the token, and tokens must grow.
			items[i] = found(j, fmt.Errorf("%w: %q was already leased with token %d", ErrWrongState, j.ID, token))
			continue
		}
		nu := copyJob(j)
		nu.State = StateLeased
		if nu.Attempts < math.MaxInt32 {
			nu.Attempts++
		}
		nu.LeaseToken = token
		nu.LeasedBy = b.GetWorkerId()
		nu.HasProgress, nu.Progress, nu.ProgressMessage = false, 0, "" // a new attempt
		d := it.GetLeaseDuration()
		if d <= 0 {
			d = j.LeaseDuration
		}
		nu.LeaseDeadline = satAdd(now, d)
		if j.StartToClose > 0 {
			nu.AttemptDeadline = satAdd(now, j.StartToClose)
		}
		nu.UpdatedAt = now
		a.put(j, nu)
		items[i] = ItemResult{JobID: nu.ID, Job: copyJob(nu)}
	}
	return Result{Items: items}
}

// checkLease decides whether token names j's current lease. A token other
// than the job's is stale. The job's own token on a job that is no longer
// leased is stale too when the lease ended by expiry or nack (the job will
// run again), and a wrong-state refusal when the job is terminal (for an
// ack: already done).
func checkLease(j *Job, token uint64) error {
	switch {
	case j.State == StateLeased && j.LeaseToken == token:
		return nil
	case j.LeaseToken != token:
		return fmt.Errorf("%w: %q has token %d, not %d", ErrStaleToken, j.ID, j.LeaseToken, token)
	case j.State.Terminal():
		return fmt.Errorf("%w: %q is %s", ErrWrongState, j.ID, j.State)
	default:
		return fmt.Errorf("%w: lease %d of %q has ended, job is %s", ErrStaleToken, token, j.ID, j.State)
	}
}

// leaseTarget resolves one lease reference: the job, or a refusal.
func (a *applier) leaseTarget(id string, token uint64) (*Job, ItemResult, bool) {
	j := a.st.job(id)
	if j == nil {
		return nil, notFound(id), false
	}
	if err := checkLease(j, token); err != nil {
		return nil, found(j, err), false
	}
	return j, ItemResult{}, true
}

// MaxProgressMessage is the longest progress note a job keeps, in bytes:
// progress is a status line, not a log, and it is replicated and stored
// with the job on every report.
const MaxProgressMessage = 256

// checkProgress refuses progress outside 0..1 (NaN included) or with an
// overlong note. brokerd checks the same first; Apply checks again so a
// bad command can never be stored, whoever proposed it.
func checkProgress(it *fsmpb.LeaseRef) error {
	if !it.GetSetProgress() {
		return nil
	}
	if p := it.GetProgress(); !(p >= 0 && p <= 1) {
		return fmt.Errorf("%w: progress %v is not a fraction from 0 to 1", ErrInvalid, p)
	}
	if n := len(it.GetProgressMessage()); n > MaxProgressMessage {
		return fmt.Errorf("%w: a progress message of %d bytes (at most %d)", ErrInvalid, n, MaxProgressMessage)
	}
	return nil
}

func (a *applier) extend(now int64, b *fsmpb.ExtendLease) Result {
	items := make([]ItemResult, len(b.GetItems()))
	for i, it := range b.GetItems() {
		if err := checkProgress(it); err != nil {
			items[i] = ItemResult{JobID: it.GetJobId(), Err: err}
			continue
		}
		j, r, ok := a.leaseTarget(it.GetJobId(), it.GetToken())
		if !ok {
			items[i] = r
			continue
		}
		nu := copyJob(j)
		d := it.GetDuration()
		if d <= 0 {
			d = j.LeaseDuration
		}
		nu.LeaseDeadline = satAdd(now, d)
		nu.UpdatedAt = now
		if it.GetSetProgress() {
			nu.HasProgress, nu.Progress, nu.ProgressMessage = true, it.GetProgress(), it.GetProgressMessage()
		}
		a.put(j, nu)
		items[i] = ItemResult{JobID: nu.ID, Job: copyJob(nu)}
	}
	return Result{Items: items}
}

func (a *applier) ack(now int64, b *fsmpb.Ack) Result {
	items := make([]ItemResult, len(b.GetItems()))
	for i, it := range b.GetItems() {
		j, r, ok := a.leaseTarget(it.GetJobId(), it.GetToken())
		if !ok {
			items[i] = r
			continue
		}
		nu := copyJob(j)
		nu.State = StateSucceeded // lease fields stay, as history
		nu.FinishedAt = now
		nu.UpdatedAt = now
		a.put(j, nu)
		items[i] = ItemResult{JobID: nu.ID, Job: copyJob(nu)}
	}
	return Result{Items: items}
}

// endLease is the part of a nack or an expiry that does not depend on why
// the lease ended: the token stays (it must only grow), the holder and the
// deadline go, and a cancel request or exhausted attempts end the job.
// It reports whether the job was finished.
func endLease(nu *Job, now int64, lastError string, permanent bool) bool {
	nu.LastError = lastError
	nu.LeasedBy = ""
	nu.LeaseDeadline = 0
	nu.AttemptDeadline = 0
	nu.UpdatedAt = now
	switch {
	case nu.CancelRequested:
		nu.State = StateCancelled
	case permanent || nu.Attempts >= nu.MaxAttempts:
		nu.State = StateDead
	default:
		return false
	}
	nu.FinishedAt = now
	return true
}

func (a *applier) nack(now int64, b *fsmpb.Nack) Result {
	items := make([]ItemResult, len(b.GetItems()))
	for i, it := range b.GetItems() {
		j, r, ok := a.leaseTarget(it.GetJobId(), it.GetToken())
		if !ok {
			items[i] = r
			continue
		}
		nu := copyJob(j)
		if it.GetRelease() {
			// The lease never reached a worker: undo its attempt.
			nu.LeasedBy, nu.LeaseDeadline, nu.AttemptDeadline, nu.UpdatedAt = "", 0, 0, now
			if nu.Attempts > 0 {
				nu.Attempts--
			}
			if nu.CancelRequested {
				nu.State, nu.FinishedAt = StateCancelled, now
			} else {
				nu.State, nu.Seq = StateReady, a.st.nextSeq()
			}
			a.put(j, nu)
			items[i] = ItemResult{JobID: nu.ID, Job: copyJob(nu)}
			continue
		}
		if !endLease(nu, now, it.GetError(), it.GetPermanent()) {
			delay := it.GetRetryAfter()
			if delay < 0 {
				delay = Backoff(nu)
			}
			a.retryAfter(now, nu, delay)
		}
		a.put(j, nu)
		items[i] = ItemResult{JobID: nu.ID, Job: copyJob(nu)}
	}
	return Result{Items: items}
}

// retryAfter makes a job whose attempt failed ready again after delay.
func (a *applier) retryAfter(now int64, nu *Job, delay int64) {
	if delay == 0 {
		nu.State = StateReady
		nu.Seq = a.st.nextSeq()
	} else {
		nu.State = StateScheduled
		nu.RunAt = satAdd(now, delay)
	}
}

// expireTimeouts ends, up to limit each, the jobs whose schedule-to-start
// deadline passed before any lease (dead: they can no longer start in
// time) and the leased jobs whose attempt ran past its start-to-close
// deadline (the attempt fails as a nack would: the lease ends, its token
// goes stale, and the job is retried after its back-off or dead-lettered
// when out of attempts, or cancelled when a cancel was asked for).
func (a *applier) expireTimeouts(now int64, b *fsmpb.ExpireTimeouts) Result {
	limit := int(b.GetLimit())
	due := func(t int64) bool { return t <= now }
	var items []ItemResult
	for _, id := range timeIDs(a.st.toStart, due, limit) {
		j := a.st.job(id)
		nu := copyJob(j)
		nu.State = StateDead
		nu.LastError = ScheduleToStartError
		nu.FinishedAt, nu.UpdatedAt = now, now
		a.put(j, nu)
		items = append(items, ItemResult{JobID: id, Job: copyJob(nu)})
	}
	for _, id := range timeIDs(a.st.toClose, due, limit) {
		j := a.st.job(id)
		nu := copyJob(j)
		if !endLease(nu, now, StartToCloseError, false) {
			a.retryAfter(now, nu, Backoff(nu))
		}
		a.put(j, nu)
		items = append(items, ItemResult{JobID: id, Job: copyJob(nu)})
	}
	return Result{Items: items}
}

func (a *applier) expire(now int64, b *fsmpb.ExpireLeases) Result {
	limit := int(b.GetLimit())
	ids := timeIDs(a.st.leases, func(t int64) bool { return t <= now }, limit)
	items := make([]ItemResult, 0, len(ids))
	for _, id := range ids {
		j := a.st.job(id)
		nu := copyJob(j)
		if !endLease(nu, now, leaseExpiredError, false) {
			nu.State = StateReady
			nu.Seq = a.st.nextSeq()
		}
		a.put(j, nu)
		items = append(items, ItemResult{JobID: id, Job: copyJob(nu)})
	}
	return Result{Items: items}
}

func (a *applier) promote(now int64, b *fsmpb.Promote) Result {
	limit := int(b.GetLimit())
	ids := timeIDs(a.st.sched, func(t int64) bool { return t <= now }, limit)
	items := make([]ItemResult, 0, len(ids))
	for _, id := range ids {
		j := a.st.job(id)
		nu := copyJob(j)
		nu.State = StateReady
		nu.Seq = a.st.nextSeq()
		nu.UpdatedAt = now
		a.put(j, nu)
		items = append(items, ItemResult{JobID: id, Job: copyJob(nu)})
	}
	return Result{Items: items}
}

func (a *applier) cancel(now int64, b *fsmpb.Cancel) Result {
	items := make([]ItemResult, len(b.GetJobIds()))
	for i, id := range b.GetJobIds() {
		j := a.st.job(id)
		if j == nil {
			items[i] = notFound(id)
			continue
		}
		if j.State.Terminal() {
			items[i] = found(j, fmt.Errorf("%w: cancel of %q, which is %s", ErrWrongState, id, j.State))
			continue
		}
		if j.State == StateLeased && j.CancelRequested {
			items[i] = found(j, nil) // already asked; nothing changes
			continue
		}
		nu := copyJob(j)
		nu.UpdatedAt = now
		if j.State == StateLeased {
			// The worker learns it on its next extend; its nack or the
			// lease expiry finishes the job as cancelled.
			nu.CancelRequested = true
		} else {
			nu.State = StateCancelled
			nu.FinishedAt = now
			nu.WaitingOn = nil // a waiting job waits no more
		}
		a.put(j, nu)
		items[i] = ItemResult{JobID: id, Job: copyJob(nu)}
	}
	return Result{Items: items}
}

func (a *applier) setPaused(b *fsmpb.QueueRef, paused bool) Result {
	name := b.GetQueue()
	if name == "" {
		return Result{Err: fmt.Errorf("%w: queue name is required", ErrInvalid)}
	}
	if err := checkKeySizes(name); err != nil {
		return Result{Err: err}
	}
	q, ok := a.st.queue(name)
	if ok && q.paused == paused {
		return Result{}
	}
	q.paused = paused
	a.st.setQueue(q)
	a.dirty = true
	return Result{}
}

func (a *applier) redrive(now int64, b *fsmpb.Redrive) Result {
	queue := b.GetQueue()
	if len(b.GetJobIds()) > 0 {
		items := make([]ItemResult, len(b.GetJobIds()))
		for i, id := range b.GetJobIds() {
			j := a.st.job(id)
			switch {
			case j == nil:
				items[i] = notFound(id)
			case queue != "" && j.Queue != queue:
				items[i] = ItemResult{JobID: id, Err: fmt.Errorf("%w: %q is not in queue %q", ErrNotFound, id, queue)}
			case j.State != StateDead:
				items[i] = found(j, fmt.Errorf("%w: redrive of %q, which is %s", ErrWrongState, id, j.State))
			default:
				items[i] = a.revive(now, j)
			}
		}
		return Result{Items: items}
	}
	if queue == "" {
		return Result{Err: fmt.Errorf("%w: redrive needs a queue or job ids", ErrInvalid)}
	}
	ids := a.deadIDs(queue, b.GetLimit())
	items := make([]ItemResult, len(ids))
	for i, id := range ids {
		items[i] = a.revive(now, a.st.job(id))
	}
	return Result{Items: items}
}

// revive moves a dead job back to ready with fresh attempts. LastError
// stays so the operator still sees why it died; LeaseToken stays because
// tokens only grow.
//
// A job whose unique key another job now holds stays dead (a wrong-state
// refusal): reviving it would make two jobs hold one key. Its
// schedule-to-start deadline is dropped: the operator asked for it to run.
func (a *applier) revive(now int64, j *Job) ItemResult {
	if j.UniqueKey != "" {
		if h, held := a.st.uniqueHolder(j.Queue, j.UniqueKey); held && h != j.ID {
			return found(j, fmt.Errorf("%w: redrive of %q: its unique key %q is held by job %s", ErrWrongState, j.ID, j.UniqueKey, h))
		}
	}
	nu := copyJob(j)
	nu.StartDeadline = 0
	nu.State = StateReady
	nu.Attempts = 0
	nu.FinishedAt = 0
	nu.CancelRequested = false
	nu.Seq = a.st.nextSeq()
	nu.UpdatedAt = now
	a.put(j, nu)
	return ItemResult{JobID: nu.ID, Job: copyJob(nu)}
}

func (a *applier) purge(now int64, b *fsmpb.Purge) Result {
	limit := int(b.GetLimit())
	before := b.GetBefore()
	ids := timeIDs(a.st.term, func(t int64) bool { return t < before }, limit)
	items := make([]ItemResult, len(ids))
	for i, id := range ids {
		a.st.remove(a.st.job(id))
		items[i] = ItemResult{JobID: id}
	}
	if len(ids) > 0 {
		a.dirty = true
	}
	// Idempotency keys whose window has closed, under the same limit.
	for _, k := range a.st.expiredIdem(now, limit) {
		a.st.deleteIdem(k.expires, k.queue, k.key)
		a.dirty = true
	}
	return Result{Items: items}
}

func (a *applier) setNode(b *fsmpb.NodeMeta) Result {
	n := NodeMeta{NodeID: b.GetNodeId(), GRPCAddr: b.GetGrpcAddr(), RaftAddr: b.GetRaftAddr()}
	if n.NodeID == "" {
		return Result{Err: fmt.Errorf("%w: node id is required", ErrInvalid)}
	}
	if err := checkKeySizes(n.NodeID); err != nil {
		return Result{Err: err}
	}
	if old, ok := a.st.node(n.NodeID); ok && old == n {
		return Result{}
	}
	a.st.setNode(n)
	a.dirty = true
	return Result{}
}

// deleteDead removes dead jobs for good (the dead-letter purge). Like
// Redrive: the listed jobs (each must be dead, and in queue when one is
// named), or up to limit of queue's dead jobs in id order. Idempotency keys
// stay until their windows end, so a retried enqueue still answers with the
// first job's id rather than creating a second job.
func (a *applier) deleteDead(b *fsmpb.DeleteDead) Result {
	queue := b.GetQueue()
	if len(b.GetJobIds()) > 0 {
		items := make([]ItemResult, len(b.GetJobIds()))
		for i, id := range b.GetJobIds() {
			j := a.st.job(id)
			switch {
			case j == nil:
				items[i] = notFound(id)
			case queue != "" && j.Queue != queue:
				items[i] = ItemResult{JobID: id, Err: fmt.Errorf("%w: %q is not in queue %q", ErrNotFound, id, queue)}
			case j.State != StateDead:
				items[i] = found(j, fmt.Errorf("%w: purge of %q, which is %s", ErrWrongState, id, j.State))
			default:
				a.st.remove(j)
				a.dirty = true
				items[i] = ItemResult{JobID: id}
			}
		}
		return Result{Items: items}
	}
	if queue == "" {
		return Result{Err: fmt.Errorf("%w: dead-letter purge needs a queue or job ids", ErrInvalid)}
	}
	ids := a.deadIDs(queue, b.GetLimit())
	items := make([]ItemResult, len(ids))
	for i, id := range ids {
		a.st.remove(a.st.job(id))
		items[i] = ItemResult{JobID: id}
	}
	if len(ids) > 0 {
		a.dirty = true
	}
	return Result{Items: items}
}

// deadIDs lists up to limit (default defaultRedriveLimit) dead jobs of
// queue in id order, for the by-queue forms of Redrive and DeleteDead.
func (a *applier) deadIDs(queue string, limit32 int32) []string {
	limit := int(limit32)
	if limit <= 0 {
		limit = defaultRedriveLimit
	}
	return a.st.stateIDs(queue, StateDead, "", limit)
}
