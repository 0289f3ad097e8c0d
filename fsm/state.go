package fsm

import (
	"strings"

	"github.com/google/btree"
)

// btreeDegree is the fan-out of every tree. 32 keeps trees shallow (4 levels
// hold millions of items) while copy-on-write after a snapshot copies nodes
// of a few KiB at most.
const btreeDegree = 32

// jobEntry is the jobs tree item. The id is kept beside the pointer so that a
// lookup key is a stack value (no allocation per Get).
type jobEntry struct {
	id  string
	job *Job
}

// readyKey orders ready jobs for dispatch: queue, priority descending, Seq
// ascending (FIFO); id only breaks ties a corrupt snapshot could create.
type readyKey struct {
	queue string
	prio  int32
	seq   uint64
	id    string
}

// ageKey orders ready jobs of a queue by creation time, for
// QueueStats.OldestReadyCreatedAt.
type ageKey struct {
	queue   string
	created int64
	id      string
}

// timeKey orders jobs by a time (run_at, lease deadline, finished_at).
type timeKey struct {
	t  int64
	id string
}

// stateKey is the (queue, state, id) index behind List and Redrive.
type stateKey struct {
	queue string
	state State
	id    string
}

// idemEntry maps (queue, key) to the job enqueued with that key.
type idemEntry struct {
	queue   string
	key     string
	jobID   string
	expires int64
}

// idemExpKey orders idempotency entries by expiry for Purge.
type idemExpKey struct {
	expires int64
	queue   string
	key     string
}

// queueRec is a queue's record. Stored by value, so a snapshot's clone of
// the tree never sees later count changes.
type queueRec struct {
	name   string
	paused bool
	counts [7]int64
}

func lessJob(a, b jobEntry) bool { return a.id < b.id }

func lessReady(a, b readyKey) bool {
	if c := strings.Compare(a.queue, b.queue); c != 0 {
		return c < 0
	}
	if a.prio != b.prio {
		return a.prio > b.prio
	}
	if a.seq != b.seq {
		return a.seq < b.seq
	}
	return a.id < b.id
}

func lessAge(a, b ageKey) bool {
	if c := strings.Compare(a.queue, b.queue); c != 0 {
		return c < 0
	}
	if a.created != b.created {
		return a.created < b.created
	}
	return a.id < b.id
}

func lessTime(a, b timeKey) bool {
	if a.t != b.t {
		return a.t < b.t
	}
	return a.id < b.id
}

func lessState(a, b stateKey) bool {
	if c := strings.Compare(a.queue, b.queue); c != 0 {
		return c < 0
	}
	if a.state != b.state {
		return a.state < b.state
	}
	return a.id < b.id
}

func lessIdem(a, b idemEntry) bool {
	if c := strings.Compare(a.queue, b.queue); c != 0 {
		return c < 0
	}
	return a.key < b.key
}

func lessIdemExp(a, b idemExpKey) bool {
	if a.expires != b.expires {
		return a.expires < b.expires
	}
	if c := strings.Compare(a.queue, b.queue); c != 0 {
		return c < 0
	}
	return a.key < b.key
}

func lessQueue(a, b queueRec) bool { return a.name < b.name }

func lessNode(a, b NodeMeta) bool { return a.NodeID < b.NodeID }

// state is everything Apply changes. Every field is a copy-on-write tree (or
// a scalar), so clone is O(1) and a clone is an immutable view that Persist
// and Hash can read without the FSM lock while Apply mutates the original.
type state struct {
	jobs      *btree.BTreeG[jobEntry]
	ready     *btree.BTreeG[readyKey]
	readyAge  *btree.BTreeG[ageKey]
	scheduled *btree.BTreeG[timeKey] // (run_at, id) of SCHEDULED jobs
	leases    *btree.BTreeG[timeKey] // (lease deadline, id) of LEASED jobs
	terminal  *btree.BTreeG[timeKey] // (finished_at, id) of terminal jobs
	byState   *btree.BTreeG[stateKey]
	idem      *btree.BTreeG[idemEntry]
	idemExp   *btree.BTreeG[idemExpKey]
	queues    *btree.BTreeG[queueRec]
	nodes     *btree.BTreeG[NodeMeta]
	seq       uint64
}

func newState() *state {
	return &state{
		jobs:      btree.NewG(btreeDegree, lessJob),
		ready:     btree.NewG(btreeDegree, lessReady),
		readyAge:  btree.NewG(btreeDegree, lessAge),
		scheduled: btree.NewG(btreeDegree, lessTime),
		leases:    btree.NewG(btreeDegree, lessTime),
		terminal:  btree.NewG(btreeDegree, lessTime),
		byState:   btree.NewG(btreeDegree, lessState),
		idem:      btree.NewG(btreeDegree, lessIdem),
		idemExp:   btree.NewG(btreeDegree, lessIdemExp),
		queues:    btree.NewG(btreeDegree, lessQueue),
		nodes:     btree.NewG(btreeDegree, lessNode),
	}
}

// clone returns a lazily copied view of s. Must be called with the FSM lock
// held; afterwards s and the clone may be used from different goroutines.
func (s *state) clone() *state {
	return &state{
		jobs:      s.jobs.Clone(),
		ready:     s.ready.Clone(),
		readyAge:  s.readyAge.Clone(),
		scheduled: s.scheduled.Clone(),
		leases:    s.leases.Clone(),
		terminal:  s.terminal.Clone(),
		byState:   s.byState.Clone(),
		idem:      s.idem.Clone(),
		idemExp:   s.idemExp.Clone(),
		queues:    s.queues.Clone(),
		nodes:     s.nodes.Clone(),
		seq:       s.seq,
	}
}

func (s *state) job(id string) *Job {
	e, ok := s.jobs.Get(jobEntry{id: id})
	if !ok {
		return nil
	}
	return e.job
}

func (s *state) queue(name string) (queueRec, bool) {
	return s.queues.Get(queueRec{name: name})
}

// ensureQueue creates the queue record if it does not exist yet.
func (s *state) ensureQueue(name string) queueRec {
	q, ok := s.queues.Get(queueRec{name: name})
	if !ok {
		q = queueRec{name: name}
		s.queues.ReplaceOrInsert(q)
	}
	return q
}

func (s *state) paused(queue string) bool {
	q, _ := s.queues.Get(queueRec{name: queue})
	return q.paused
}

func (s *state) nextSeq() uint64 {
	s.seq++
	return s.seq
}

// Index membership by state. A job is in exactly the indexes its state
// calls for; put and remove keep that true.

func readyOf(j *Job) (readyKey, bool) {
	return readyKey{queue: j.Queue, prio: j.Priority, seq: j.Seq, id: j.ID}, j.State == StateReady
}

func ageOf(j *Job) (ageKey, bool) {
	return ageKey{queue: j.Queue, created: j.CreatedAt, id: j.ID}, j.State == StateReady
}

func scheduledOf(j *Job) (timeKey, bool) {
	return timeKey{t: j.RunAt, id: j.ID}, j.State == StateScheduled
}

func leaseOf(j *Job) (timeKey, bool) {
	return timeKey{t: j.LeaseDeadline, id: j.ID}, j.State == StateLeased
}

func terminalOf(j *Job) (timeKey, bool) {
	return timeKey{t: j.FinishedAt, id: j.ID}, j.State.Terminal()
}

func stateOf(j *Job) stateKey {
	return stateKey{queue: j.Queue, state: j.State, id: j.ID}
}

// reindex moves one index entry from old to nu, touching the tree only when
// the key or the membership changed.
func reindex[K comparable](t *btree.BTreeG[K], of func(*Job) (K, bool), old, nu *Job) {
	var ok, nk K
	var oin, nin bool
	if old != nil {
		ok, oin = of(old)
	}
	if nu != nil {
		nk, nin = of(nu)
	}
	if oin && nin && ok == nk {
		return
	}
	if oin {
		t.Delete(ok)
	}
	if nin {
		t.ReplaceOrInsert(nk)
	}
}

// put stores nu (a fresh copy, never modified afterwards) in place of old
// (nil for a new job) and brings every index and count up to date.
func (s *state) put(old, nu *Job) {
	s.jobs.ReplaceOrInsert(jobEntry{id: nu.ID, job: nu})
	s.index(old, nu)
}

// remove deletes j from the jobs tree and every index.
func (s *state) remove(j *Job) {
	s.jobs.Delete(jobEntry{id: j.ID})
	s.index(j, nil)
}

func (s *state) index(old, nu *Job) {
	reindex(s.ready, readyOf, old, nu)
	reindex(s.readyAge, ageOf, old, nu)
	reindex(s.scheduled, scheduledOf, old, nu)
	reindex(s.leases, leaseOf, old, nu)
	reindex(s.terminal, terminalOf, old, nu)
	if old == nil || nu == nil || old.State != nu.State || old.Queue != nu.Queue {
		if old != nil {
			s.byState.Delete(stateOf(old))
			s.count(old.Queue, old.State, -1)
		}
		if nu != nil {
			s.byState.ReplaceOrInsert(stateOf(nu))
			s.count(nu.Queue, nu.State, +1)
		}
	}
}

func (s *state) count(queue string, st State, d int64) {
	q, ok := s.queues.Get(queueRec{name: queue})
	if !ok {
		q = queueRec{name: queue}
	}
	if st >= 0 && int(st) < len(q.counts) {
		q.counts[st] += d
	}
	s.queues.ReplaceOrInsert(q)
}

// setIdem records (queue, key) → id until expires, replacing an older entry.
func (s *state) setIdem(e idemEntry) {
	if old, ok := s.idem.ReplaceOrInsert(e); ok {
		s.idemExp.Delete(idemExpKey{expires: old.expires, queue: old.queue, key: old.key})
	}
	s.idemExp.ReplaceOrInsert(idemExpKey{expires: e.expires, queue: e.queue, key: e.key})
}
