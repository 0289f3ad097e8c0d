// Package fsm is raftq's replicated state machine: the job queue that every
// broker node rebuilds by applying the same Raft log.
//
// Apply is deterministic: it reads no clock, randomness, map order or I/O.
// Time, job ids and lease tokens come in the commands (stamped by the
// leader) or from the log index. See DESIGN.md.
package fsm

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"github.com/google/btree"
	"github.com/hashicorp/raft"
)

// FSM is the job queue state machine. It implements raft.BatchingFSM; its
// read methods are safe to call concurrently with Apply and serve the
// leader's dispatcher and the read APIs.
type FSM struct {
	mu sync.RWMutex
	st *state

	// lastIndex is written under mu and read without it.
	lastIndex atomic.Uint64

	// sigMu guards the two signal channels. They are created lazily, so an
	// Apply with nobody waiting allocates nothing for them.
	sigMu   sync.Mutex
	changed chan struct{} // closed when state changes
	applied chan struct{} // closed when lastIndex advances
}

var _ raft.BatchingFSM = (*FSM)(nil)

// New returns an empty FSM, as a node starts before Raft restores a
// snapshot and replays the log into it.
func New() *FSM {
	return &FSM{st: newState()}
}

// Apply applies one committed log entry. For a LogCommand it returns
// []Result, one per command of the entry, in order; for other log types,
// and for an entry at or below LastIndex (already applied: logs may be
// replayed after a restart), it returns nil.
//
// Apply panics on an entry it cannot decode: an undecodable committed entry
// is a bug that must stop the node, because skipping it would make this node
// diverge from the others.
func (f *FSM) Apply(l *raft.Log) interface{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	changed := false
	r := f.applyLocked(l, &changed)
	f.signal(changed)
	return r
}

// ApplyBatch applies consecutive committed entries under one lock
// acquisition and returns one Apply result per entry. It makes the FSM a
// raft.BatchingFSM, so Raft hands over everything one fsync committed.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	f.mu.Lock()
	defer f.mu.Unlock()
	changed := false
	// Signal even if a later entry panics: the earlier ones were applied.
	defer func() { f.signal(changed) }()
	for i, l := range logs {
		out[i] = f.applyLocked(l, &changed)
	}
	return out
}

func (f *FSM) applyLocked(l *raft.Log, changed *bool) interface{} {
	if l == nil || l.Index <= f.lastIndex.Load() {
		return nil
	}
	if l.Type != raft.LogCommand {
		// Configuration entries change no state, but count as applied so
		// that WaitApplied on their index returns.
		f.lastIndex.Store(l.Index)
		return nil
	}
	e, err := Decode(l.Data)
	if err != nil {
		panic(fmt.Sprintf("fsm: cannot apply raft log entry %d (term %d, %d bytes): %v; "+
			"an undecodable committed entry means this node cannot follow the log, stopping",
			l.Index, l.Term, len(l.Data), err))
	}
	a := applier{st: f.st, index: l.Index}
	res := make([]Result, len(e.Commands))
	for i, c := range e.Commands {
		res[i] = a.command(c)
	}
	f.lastIndex.Store(l.Index)
	if a.dirty {
		*changed = true
	}
	return res
}

// signal wakes WaitApplied callers and, if state changed, Changed waiters.
func (f *FSM) signal(changed bool) {
	f.sigMu.Lock()
	if f.applied != nil {
		close(f.applied)
		f.applied = nil
	}
	if changed && f.changed != nil {
		close(f.changed)
		f.changed = nil
	}
	f.sigMu.Unlock()
}

// LastIndex is the index of the last log entry applied (or restored from a
// snapshot). It is not part of Hash: replicas with equal state may have
// reached it at different indexes (e.g. configuration entries).
func (f *FSM) LastIndex() uint64 { return f.lastIndex.Load() }

// WaitApplied returns nil once LastIndex() >= index, or ctx's error. A
// linearizable read waits here for the commit index it observed as leader.
//
// Only entries handed to the FSM advance LastIndex (commands and
// configuration changes, not Raft's no-op and barrier entries), so wait for
// the index of an entry the FSM receives, or use raft.Barrier.
func (f *FSM) WaitApplied(ctx context.Context, index uint64) error {
	for {
		f.sigMu.Lock()
		if f.lastIndex.Load() >= index {
			f.sigMu.Unlock()
			return nil
		}
		if f.applied == nil {
			f.applied = make(chan struct{})
		}
		ch := f.applied
		f.sigMu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Changed returns a channel that is closed after the next Apply or Restore
// that changes state, so the dispatcher can re-scan ready jobs without
// polling. Take the channel before reading state (ch := Changed(); read;
// <-ch) and a new one after each wake-up; then no change is missed.
func (f *FSM) Changed() <-chan struct{} {
	f.sigMu.Lock()
	defer f.sigMu.Unlock()
	if f.changed == nil {
		f.changed = make(chan struct{})
	}
	return f.changed
}

func copyJob(j *Job) *Job {
	c := *j
	return &c
}

// Get returns a copy of the job with this id. Callers may keep and modify
// it; the FSM's own copy never changes.
func (f *FSM) Get(id string) (Job, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	j := f.st.job(id)
	if j == nil {
		return Job{}, false
	}
	return *j, true
}

// Len is the number of jobs held, in any state.
func (f *FSM) Len() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.jobs.Len()
}

// ReadyJobs lists up to max (all when max <= 0) ready job ids of queue in
// dispatch order: priority descending, then FIFO. Ids for which skip (may
// be nil) returns true are passed over, so the dispatcher can leave out jobs
// it has already proposed to lease. It returns nil for a paused queue.
// skip runs under the FSM's read lock: it must not call back into the FSM.
func (f *FSM) ReadyJobs(queue string, max int, skip func(id string) bool) []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.st.paused(queue) {
		return nil
	}
	var out []string
	f.st.ready.AscendGreaterOrEqual(readyKey{queue: queue, prio: math.MaxInt32}, func(k readyKey) bool {
		if k.queue != queue {
			return false
		}
		if skip != nil && skip(k.id) {
			return true
		}
		out = append(out, k.id)
		return max <= 0 || len(out) < max
	})
	return out
}

// NextWakeup is the earliest time at which a command would change state by
// itself: the run_at of a scheduled job (Promote) or the deadline of a
// lease (ExpireLeases). ok is false when no job waits for time. The leader
// sleeps until then.
func (f *FSM) NextWakeup() (at int64, ok bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if k, has := f.st.scheduled.Min(); has {
		at, ok = k.t, true
	}
	if k, has := f.st.leases.Min(); has && (!ok || k.t < at) {
		at, ok = k.t, true
	}
	return at, ok
}

// Stats returns the named queues' counts (every known queue when queues is
// empty), sorted by name, without duplicates. A named queue the FSM has
// never seen is reported with zero counts. Counts are kept incrementally,
// so Stats costs O(log n) per queue.
func (f *FSM) Stats(queues []string) []QueueStats {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []QueueStats
	add := func(q queueRec) {
		qs := QueueStats{Queue: q.name, Paused: q.paused, Counts: q.counts}
		// The first ready job of the queue in creation order is the oldest.
		f.st.readyAge.AscendGreaterOrEqual(ageKey{queue: q.name, created: math.MinInt64}, func(k ageKey) bool {
			if k.queue == q.name {
				qs.OldestReadyCreatedAt = k.created
			}
			return false
		})
		out = append(out, qs)
	}
	if len(queues) == 0 {
		f.st.queues.Ascend(func(q queueRec) bool { add(q); return true })
		return out
	}
	names := btree.NewG(8, func(a, b string) bool { return a < b })
	for _, n := range queues {
		names.ReplaceOrInsert(n)
	}
	names.Ascend(func(n string) bool {
		q, _ := f.st.queue(n)
		q.name = n
		add(q)
		return true
	})
	return out
}

// List returns copies of queue's jobs in state, ordered by id, with ids
// greater than after (pagination), at most limit (all when limit <= 0).
func (f *FSM) List(queue string, state State, after string, limit int) []Job {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []Job
	f.st.byState.AscendGreaterOrEqual(stateKey{queue: queue, state: state, id: after}, func(k stateKey) bool {
		if k.queue != queue || k.state != state {
			return false
		}
		if k.id == after {
			return true
		}
		if j := f.st.job(k.id); j != nil {
			out = append(out, *j)
		}
		return limit <= 0 || len(out) < limit
	})
	return out
}

// Nodes returns every node's addresses sorted by node id, so any node can
// tell a client where the leader serves.
func (f *FSM) Nodes() []NodeMeta {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]NodeMeta, 0, f.st.nodes.Len())
	f.st.nodes.Ascend(func(n NodeMeta) bool { out = append(out, n); return true })
	return out
}
