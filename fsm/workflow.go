package fsm

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/raftq/raftq/fsm/fsmpb"
	"go.etcd.io/bbolt"
)

// Workflows: jobs that depend on other jobs. See DESIGN.md "Workflows".
//
// A job with parents is created WAITING unless every parent is already
// terminal. Each time a job becomes terminal (through any command: the
// hook is applier.put), the jobs still waiting on it are settled: the
// parent leaves their WaitingOn, a dead or cancelled parent sets
// ParentFailed, and then a job under DepPolicyCancel whose parent failed
// is cancelled (its own dependants follow, in cascade), and a job that
// waits on nobody any more becomes ready (or scheduled, if its run_at is
// still ahead).

// checkParents makes the structural checks of job id's parent list: at
// most MaxParents, none empty, none the job itself, none twice.
func checkParents(id string, parents []string) error {
	if len(parents) > MaxParents {
		return fmt.Errorf("%w: job %q has %d parents (at most %d)", ErrInvalid, id, len(parents), MaxParents)
	}
	for i, p := range parents {
		switch {
		case p == "":
			return fmt.Errorf("%w: job %q: parent %d has an empty id", ErrInvalid, id, i)
		case p == id:
			return fmt.Errorf("%w: job %q depends on itself", ErrInvalid, id)
		case slices.Contains(parents[:i], p):
			return fmt.Errorf("%w: job %q lists parent %q twice", ErrInvalid, id, p)
		}
		if err := checkKeySizes(p); err != nil {
			return fmt.Errorf("job %q: %w", id, err)
		}
	}
	return nil
}

// checkPolicy refuses a dependency policy Apply does not know.
func checkPolicy(id string, p int32) error {
	if p != DepPolicyCancel && p != DepPolicyRunAnyway {
		return fmt.Errorf("%w: job %q: unknown dependency policy %d", ErrInvalid, id, p)
	}
	return nil
}

// settle sets nu's state from its dependencies: cancelled when a parent
// failed under DepPolicyCancel (failedParent names it, for LastError),
// else WAITING while it waits on a parent, else ready or scheduled.
func (a *applier) settle(now int64, nu *Job, failedParent string, failedState State) {
	switch {
	case nu.ParentFailed && nu.DependencyPolicy == DepPolicyCancel:
		nu.State = StateCancelled
		nu.FinishedAt = now
		nu.WaitingOn = nil
		nu.LastError = fmt.Sprintf("parent %q is %s", failedParent, failedState)
	case len(nu.WaitingOn) > 0:
		nu.State = StateWaiting
	case nu.RunAt > now:
		nu.State = StateScheduled
	default:
		nu.State = StateReady
		nu.Seq = a.st.nextSeq()
	}
}

// resolveDependants settles the jobs waiting on p, which has just become
// terminal. Cancelling one recurses through put (the cascade).
func (a *applier) resolveDependants(now int64, p *Job) {
	ids := children(a.st.depWaiting, p.ID, 0)
	for _, id := range ids {
		if !hasKey(a.st.depWaiting, depKey(p.ID, id)) {
			// Settled meanwhile by a cascade from an earlier sibling (a
			// job depending on p and on that sibling).
			continue
		}
		c := a.st.job(id)
		if c == nil || c.State != StateWaiting {
			panic(corrupt("dep_waiting edge %q → %q to a job not waiting", p.ID, id))
		}
		nu := copyJob(c)
		nu.WaitingOn = slices.DeleteFunc(slices.Clone(c.WaitingOn), func(s string) bool { return s == p.ID })
		failed := p.State != StateSucceeded
		if failed {
			nu.ParentFailed = true
		}
		nu.UpdatedAt = now
		a.settle(now, nu, p.ID, p.State)
		a.put(c, nu)
	}
}

// linkParents fills a new job's dependency fields from its parents (all
// existing; checked by the caller) and settles its state.
func (a *applier) linkParents(now int64, j *Job, parents []string, policy int32) {
	if len(parents) == 0 {
		return
	}
	j.Parents = slices.Clone(parents)
	j.DependencyPolicy = policy
	failedParent, failedState := "", StateUnspecified
	for _, pid := range parents {
		p := a.st.job(pid)
		switch {
		case p == nil:
			panic(fmt.Sprintf("fsm: linkParents: parent %q of %q vanished", pid, j.ID))
		case !p.State.Terminal():
			j.WaitingOn = append(j.WaitingOn, pid)
		case p.State != StateSucceeded:
			if !j.ParentFailed {
				failedParent, failedState = pid, p.State
			}
			j.ParentFailed = true
		}
	}
	a.settle(now, j, failedParent, failedState)
}

// wfItem is one job of a workflow being validated.
type wfItem struct {
	nj      *fsmpb.NewJob
	dup     string // an idempotency match: the existing (or earlier) job's id
	parents []string
}

// enqueueWorkflow applies an Enqueue all or nothing: every job is checked
// first (structure, duplicate ids, parents that exist or are in the
// batch, no cycle), and any fault refuses the whole command with
// ErrInvalid naming the job, changing nothing. Jobs are then created in
// dependency order (parents first, else batch order), so a job may name a
// parent later in the batch. A job matched by its idempotency key is not
// created; jobs of the batch depending on it depend on the job it matched.
func (a *applier) enqueueWorkflow(now int64, b *fsmpb.Enqueue) Result {
	jobs := b.GetJobs()
	items := make([]wfItem, len(jobs))
	pos := map[string]int{} // id in the batch → index
	alias := map[string]string{}
	batchIdem := map[string]string{} // queue\x00key → id, within the batch
	for i, nj := range jobs {
		id, queue, key := nj.GetId(), nj.GetQueue(), nj.GetIdempotencyKey()
		if id == "" || queue == "" || nj.GetType() == "" {
			return Result{Err: fmt.Errorf("%w: workflow job %d: id, queue and type are required", ErrInvalid, i)}
		}
		if err := checkKeySizes(id, queue, key, nj.GetConcurrencyKey(), nj.GetTraceParent(), nj.GetTraceState()); err != nil {
			return Result{Err: fmt.Errorf("workflow job %q: %w", id, err)}
		}
		if err := checkParents(id, nj.GetDependsOn()); err != nil {
			return Result{Err: err}
		}
		if err := checkPolicy(id, nj.GetDependencyPolicy()); err != nil {
			return Result{Err: err}
		}
		if nj.GetUniqueKey() != "" {
			// Uniqueness by state may answer with another job or debounce
			// it, which an all-or-nothing workflow cannot express yet.
			return Result{Err: fmt.Errorf("%w: workflow job %q has a unique key (not supported in a workflow)", ErrInvalid, id)}
		}
		if _, ok := pos[id]; ok {
			return Result{Err: fmt.Errorf("%w: workflow job %q appears twice in the batch", ErrDuplicateID, id)}
		}
		pos[id] = i
		items[i] = wfItem{nj: nj, parents: nj.GetDependsOn()}
		if key != "" {
			if e, ok := a.st.idemGet(queue, key); ok && e.expires > now {
				items[i].dup = e.jobID
			} else if first, ok := batchIdem[queue+"\x00"+key]; ok {
				items[i].dup = first
			} else {
				batchIdem[queue+"\x00"+key] = id
			}
		}
		if items[i].dup != "" {
			alias[id] = items[i].dup
			continue
		}
		if a.st.job(id) != nil {
			return Result{Err: fmt.Errorf("%w: workflow job %q", ErrDuplicateID, id)}
		}
		// All or nothing: one job of a queue that moved away refuses the
		// workflow (brokerd sends it again to the queue's new group).
		if err := a.st.moved(queue); err != nil {
			return Result{Err: fmt.Errorf("workflow job %q: %w", id, err)}
		}
	}
	// Parents: in the batch, or existing. Then order the batch so every
	// parent in it comes before its children (Kahn, by batch index).
	indeg := make([]int, len(items))
	kids := make([][]int, len(items))
	for i, it := range items {
		if it.dup != "" {
			continue
		}
		for _, p := range it.parents {
			t := resolveAlias(alias, p)
			if k, ok := pos[t]; ok && items[k].dup == "" {
				indeg[i]++
				kids[k] = append(kids[k], i)
				continue
			}
			if a.st.job(t) == nil {
				return Result{Err: fmt.Errorf("%w: job %q: unknown parent %q (no such job, or purged)", ErrInvalid, it.nj.GetId(), p)}
			}
		}
	}
	order := make([]int, 0, len(items))
	var queue []int
	for i := range items {
		if items[i].dup == "" && indeg[i] == 0 {
			queue = append(queue, i)
		}
	}
	for len(queue) > 0 {
		i := queue[0]
		queue = queue[1:]
		order = append(order, i)
		for _, k := range kids[i] {
			if indeg[k]--; indeg[k] == 0 {
				queue = append(queue, k)
			}
		}
	}
	for i := range items {
		if items[i].dup == "" && indeg[i] > 0 {
			return Result{Err: fmt.Errorf("%w: job %q is part of a dependency cycle", ErrInvalid, items[i].nj.GetId())}
		}
	}
	// Apply. Nothing below refuses.
	out := make([]ItemResult, len(items))
	for i, it := range items {
		if it.dup != "" {
			out[i] = ItemResult{JobID: it.dup, Duplicate: true}
		}
	}
	for _, i := range order {
		nj := items[i].nj
		parents := make([]string, len(items[i].parents))
		for k, p := range items[i].parents {
			parents[k] = resolveAlias(alias, p)
		}
		if dupParents(parents) {
			// Two parents aliased to one job: keep it once.
			parents = slices.Compact(slices.Sorted(slices.Values(parents)))
		}
		j := a.createJob(now, nj, parents)
		out[i] = ItemResult{JobID: j.ID, Job: copyJob(j)}
	}
	for i := range out {
		if out[i].Duplicate {
			if j := a.st.job(out[i].JobID); j != nil {
				out[i].Job = copyJob(j)
			}
		}
	}
	return Result{Items: out}
}

// resolveAlias follows idempotency aliases within a batch to the job that
// exists.
func resolveAlias(alias map[string]string, id string) string {
	for range len(alias) + 1 {
		to, ok := alias[id]
		if !ok {
			return id
		}
		id = to
	}
	return id
}

func dupParents(ps []string) bool {
	for i, p := range ps {
		if slices.Contains(ps[:i], p) {
			return true
		}
	}
	return false
}

// createJob stores a new job from nj (checked by the caller) with the
// given parents (existing jobs), records its idempotency key, and returns
// it.
func (a *applier) createJob(now int64, nj *fsmpb.NewJob, parents []string) *Job {
	id, queue, key := nj.GetId(), nj.GetQueue(), nj.GetIdempotencyKey()
	j := &Job{
		ID:             id,
		Queue:          queue,
		Type:           nj.GetType(),
		Payload:        nj.GetPayload(),
		Priority:       nj.GetPriority(),
		MaxAttempts:    nj.GetMaxAttempts(),
		LeaseDuration:  nj.GetLeaseDuration(),
		InitialBackoff: nj.GetInitialBackoff(),
		MaxBackoff:     nj.GetMaxBackoff(),
		IdempotencyKey: key,
		ConcurrencyKey: nj.GetConcurrencyKey(),
		TraceParent:    nj.GetTraceParent(),
		TraceState:     nj.GetTraceState(),
		DedupWindow:    nj.GetDedupWindow(),
		RunAt:          nj.GetRunAt(),
		CreatedAt:      now,
		UpdatedAt:      now,
		StartDeadline:  nj.GetStartDeadline(),
		StartToClose:   nj.GetStartToClose(),
		UniqueKey:      nj.GetUniqueKey(),
	}
	if len(parents) > 0 {
		a.linkParents(now, j, parents, nj.GetDependencyPolicy())
	} else if j.RunAt <= now {
		j.State = StateReady
		j.Seq = a.st.nextSeq()
	} else {
		j.State = StateScheduled
	}
	a.put(nil, j)
	if key != "" {
		if exp := satAdd(now, j.DedupWindow); exp > now {
			a.st.setIdem(idemEntry{queue: queue, key: key, jobID: id, expires: exp})
		}
	}
	return j
}

// Dependants lists, in id order, the jobs that depend on id (at most
// limit; all when limit <= 0), whatever their state.
func (f *FSM) Dependants(id string, limit int) []string {
	var out []string
	f.view(func(st *state) { out = children(st.depChildren, id, limit) })
	return out
}

// checkExistingParents is the per-item check of a plain Enqueue's
// dependencies: structure, policy, and every parent an existing job (an
// earlier item of the same Enqueue exists by then).
func (a *applier) checkExistingParents(nj *fsmpb.NewJob) error {
	id := nj.GetId()
	if err := checkParents(id, nj.GetDependsOn()); err != nil {
		return err
	}
	if err := checkPolicy(id, nj.GetDependencyPolicy()); err != nil {
		return err
	}
	for _, p := range nj.GetDependsOn() {
		if a.st.job(p) == nil {
			return fmt.Errorf("%w: job %q: unknown parent %q (no such job, or purged)", ErrInvalid, id, p)
		}
	}
	return nil
}

// hasKey reports whether bucket b holds key k. The index buckets store
// empty values, and bbolt's Get returns nil for an empty value written
// earlier in the same transaction, so Get cannot tell.
func hasKey(b *bbolt.Bucket, k []byte) bool {
	got, _ := b.Cursor().Seek(k)
	return got != nil && bytes.Equal(got, k)
}
