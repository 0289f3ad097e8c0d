// Package fsm is raftq's replicated state machine: the job queue that every
// broker node rebuilds by applying the same Raft log.
//
// Apply is deterministic: it reads no clock, randomness, map order or I/O
// outside its own store (a bbolt file, written one transaction per entry
// batch with the applied index). Time, job ids and lease tokens come in the
// commands (stamped by the leader) or from the log index. See DESIGN.md.
package fsm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
	"go.etcd.io/bbolt"
)

// FSM is the job queue state machine. It implements raft.BatchingFSM; its
// read methods are safe to call concurrently with Apply and serve the
// leader's dispatcher and the read APIs.
//
// The state lives in a bbolt store (store.go): Apply writes one
// transaction per entry or batch, together with the applied index, and
// reads run in their own read transactions, so they never wait for Apply.
type FSM struct {
	// wmu serializes the writers: Apply, ApplyBatch and Restore.
	wmu sync.Mutex
	// mu guards db, which Restore swaps; readers and Apply hold it shared.
	mu   sync.RWMutex
	db   *bbolt.DB
	path string // the store file; "" for an anonymous store (New)
	opts Options
	ref  *dbRef // closes an anonymous store once the FSM is garbage

	// lastIndex mirrors the store's applied index; written after each
	// commit, read without locks.
	lastIndex atomic.Uint64
	// writeErr is the error of a store write being retried (disk full).
	writeErr atomic.Pointer[error]
	// giveUp is closed by StopWaitingForSpace; gaveUp is set once an
	// Apply gave up, and from then on nothing is written (no gaps).
	giveUpOnce sync.Once
	giveUp     chan struct{}
	gaveUp     atomic.Bool
	// gen counts committed changes (Apply, Restore); the cached hash is
	// that of generation hashGen.
	gen     atomic.Uint64
	hashMu  sync.Mutex
	hashGen uint64
	hashSum string
	// allocAtTrim is the store's cumulative page allocation at the last
	// trimResident (wmu).
	allocAtTrim int64
	// check is the last consistency check (check.go).
	check checkResult
	// placeState caches group 0's placement table (placement.go).
	placeState

	// sigMu guards the two signal channels. They are created lazily, so an
	// Apply with nobody waiting allocates nothing for them.
	sigMu   sync.Mutex
	changed chan struct{} // closed when state changes
	applied chan struct{} // closed when lastIndex advances
}

var _ raft.BatchingFSM = (*FSM)(nil)

// Apply applies one committed log entry. For a LogCommand it returns
// []Result, one per command of the entry, in order; for other log types,
// and for an entry at or below LastIndex (already applied: logs may be
// replayed after a restart), it returns nil.
//
// Apply panics on an entry it cannot decode, and on a store write that
// fails: skipping a committed entry would make this node diverge from the
// others, so it stops instead.
func (f *FSM) Apply(l *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies consecutive committed entries in one store
// transaction, which also records the last applied index, and returns one
// Apply result per entry. It makes the FSM a raft.BatchingFSM, so Raft
// hands over everything one fsync committed.
//
// A transaction that fails because the disk is full (ENOSPC, EDQUOT) is
// rolled back and retried, with WriteError reporting it meanwhile, until
// space returns: the node stops applying but keeps running, and resumes by
// itself. Any other store failure panics (the node stops). After
// StopWaitingForSpace, a wait gives up instead (see there).
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	f.mu.RLock()
	defer f.mu.RUnlock()
	var done []interface{}
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		if f.gaveUp.Load() {
			return append(done, make([]interface{}, len(logs))...)
		}
		out, changed, last, checkAt, err := f.applyTx(logs)
		if err == nil {
			f.writeErr.Store(nil)
			f.gen.Add(1)
			if f.placeDirty {
				f.placeDirty = false
				f.placeGen.Add(1)
			}
			f.lastIndex.Store(last)
			f.signal(changed)
			f.trimResident()
			done = append(done, out...)
			if checkAt != 0 {
				// The transaction ended at a check entry: hash that state,
				// then apply the rest of the batch.
				f.startCheck(checkAt)
			}
			if len(out) == len(logs) {
				return done
			}
			logs = logs[len(out):]
			wait = 10 * time.Millisecond
			continue
		}
		if !errors.Is(err, syscall.ENOSPC) && !errors.Is(err, syscall.EDQUOT) {
			panic(fmt.Sprintf("fsm: cannot apply raft log entries to the store %s: %v; stopping", f.describe(), err))
		}
		werr := fmt.Errorf("fsm store %s: %w", f.describe(), err)
		f.writeErr.Store(&werr)
		giveUp := f.giveUpCh()
		select {
		case <-giveUp:
			f.gaveUp.Store(true)
			return append(done, make([]interface{}, len(logs))...)
		default:
		}
		sleep(wait, giveUp)
	}
}

// residentChurn is how many bytes of pages the store's writes allocate
// between two trimResident drops.
var residentChurn int64 = 64 << 20 // a variable for tests

// trimResident drops the store's pages from this process's resident set
// (dropResident) once the writes since the last drop have allocated
// residentChurn bytes of pages (wmu held).
//
// Why: a write transaction reads every page it changes through bbolt's
// shared memory map, and a page once read stays counted in the node's RSS
// although it is in the page cache anyway. Filling a queue touches every
// leaf of the job and index buckets in turn, so without this the map's
// resident share grew with the store: ~315 MB of fsm.db per node at
// 500,000 queued jobs, ~650 MB at 1M, beside a heap of ~270 MB. After a
// drop, what writers and the dispatcher keep touching (the index heads,
// the newest pages) faults back in from the page cache: minor faults, no
// I/O. Counting allocated pages, not time, keeps an idle node from
// working and a busy one bounded.
func (f *FSM) trimResident() {
	stats := f.db.Stats()
	alloc := stats.TxStats.GetPageAlloc()
	if alloc-f.allocAtTrim < residentChurn {
		return
	}
	f.allocAtTrim = alloc
	dropAllResident(f.db)
}

// StopWaitingForSpace is for shutting a node down while its disk is full:
// an Apply waiting for space returns at once without applying (nil
// results, which callers take as an unknown outcome), and so does every
// later Apply, so the store stays exactly the state after the last entry
// it applied and the next start replays the rest from the Raft log.
// Snapshot refuses from then on: a snapshot labelled with Raft's index
// would hold the older state. Without a full disk it changes nothing.
// Raft's shutdown waits for its FSM goroutine, so without this a node on
// a full disk could not stop.
func (f *FSM) StopWaitingForSpace() {
	ch := f.giveUpCh()
	f.giveUpOnce.Do(func() { close(ch) })
}

func (f *FSM) giveUpCh() chan struct{} {
	f.sigMu.Lock()
	defer f.sigMu.Unlock()
	if f.giveUp == nil {
		f.giveUp = make(chan struct{})
	}
	return f.giveUp
}

// errGaveUp refuses a snapshot of a store that gave up applying.
var errGaveUp = errors.New("fsm: the store gave up applying for lack of disk space (node stopping); no snapshot")

// sleep waits d or until stop closes; replaced in tests.
var sleep = pause

func pause(d time.Duration, stop <-chan struct{}) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-stop:
	}
}

// applyTx applies logs in one write transaction, ending it after an entry
// that asks for a consistency check (checkAt: its index; out then holds
// the results of the entries applied). A storeWriteError panic (a failed
// Put) comes back as the error; the transaction is rolled back.
func (f *FSM) applyTx(logs []*raft.Log) (out []interface{}, changed bool, last, checkAt uint64, err error) {
	out = make([]interface{}, 0, len(logs))
	last = f.lastIndex.Load()
	defer func() {
		if r := recover(); r != nil {
			we, ok := r.(storeWriteError)
			if !ok {
				panic(r)
			}
			err = we
		}
	}()
	err = f.db.Update(func(tx *bbolt.Tx) error {
		st, err := newState(tx)
		if err != nil {
			return err
		}
		out = out[:0]
		checkAt = 0
		for _, l := range logs {
			out = append(out, applyOne(st, l, &changed))
			if st.checkAt != 0 {
				checkAt = st.checkAt
				break
			}
		}
		if st.placeChanged {
			f.placeDirty = true
		}
		if st.applied == last {
			// Nothing new (a replay): leave the store untouched.
			return nil
		}
		st.flush()
		last = st.applied
		return beforeCommit()
	})
	return out, changed, last, checkAt, err
}

// beforeCommit runs before each Apply transaction commits; tests inject
// store failures through it.
var beforeCommit = func() error { return nil }

// WriteError is the store write error that keeps Apply waiting (a full
// disk), or nil when the store is writable. brokerd reports it.
func (f *FSM) WriteError() error {
	if p := f.writeErr.Load(); p != nil {
		return *p
	}
	return nil
}

func applyOne(st *state, l *raft.Log, changed *bool) interface{} {
	if l == nil || l.Index <= st.applied {
		return nil
	}
	if l.Type != raft.LogCommand {
		// Configuration entries change no state, but count as applied so
		// that WaitApplied on their index returns.
		st.setApplied(l.Index)
		return nil
	}
	e, err := Decode(l.Data)
	if err != nil {
		panic(fmt.Sprintf("fsm: cannot apply raft log entry %d (term %d, %d bytes): %v; "+
			"an undecodable committed entry means this node cannot follow the log, stopping",
			l.Index, l.Term, len(l.Data), err))
	}
	a := applier{st: st, index: l.Index}
	res := make([]Result, len(e.Commands))
	for i, c := range e.Commands {
		res[i] = a.command(c)
	}
	st.setApplied(l.Index)
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

// view runs fn on a read-only view of the state. A read that finds bytes
// this package never wrote (a damaged store) panics with storeCorrupt.
// After Close, fn is not called: reads of a closed FSM find nothing.
func (f *FSM) view(fn func(st *state)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return
	}
	err := f.db.View(func(tx *bbolt.Tx) error {
		st, err := newState(tx)
		if err != nil {
			return err
		}
		fn(st)
		return nil
	})
	if err != nil {
		panic(corrupt("%s: %v", f.describe(), err))
	}
}

// viewBuckets runs fn on the named buckets of a read-only view, in the
// order named. The hot reads need one bucket or a few, and opening all of
// them (newState opens twenty) costs more than the read itself: consume
// streams look up every job they leased several times a second, and the
// dispatcher asks for its next wake-up on every loop.
func (f *FSM) viewBuckets(fn func(bs []*bbolt.Bucket), names ...[]byte) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return
	}
	err := f.db.View(func(tx *bbolt.Tx) error {
		bs := make([]*bbolt.Bucket, len(names))
		for i, name := range names {
			if bs[i] = tx.Bucket(name); bs[i] == nil {
				return fmt.Errorf("bucket %q missing", name)
			}
		}
		fn(bs)
		return nil
	})
	if err != nil {
		panic(corrupt("%s: %v", f.describe(), err))
	}
}

// viewJobs runs fn on the jobs bucket of a read-only view.
func (f *FSM) viewJobs(fn func(jobs *bbolt.Bucket)) {
	f.viewBuckets(func(bs []*bbolt.Bucket) { fn(bs[0]) }, bJobs)
}

// Get returns a copy of the job with this id, payload read from the store.
func (f *FSM) Get(id string) (Job, bool) {
	var j *Job
	f.viewJobs(func(jobs *bbolt.Bucket) {
		if v := jobs.Get([]byte(id)); v != nil {
			j = decodeJob(v)
		}
	})
	if j == nil {
		return Job{}, false
	}
	return *j, true
}

// GetMany returns the jobs with these ids, read in one view (one
// consistent state), in the order of ids: nil where no job has that id.
func (f *FSM) GetMany(ids []string) []*Job {
	out := make([]*Job, len(ids))
	f.viewJobs(func(jobs *bbolt.Bucket) {
		for i, id := range ids {
			if v := jobs.Get([]byte(id)); v != nil {
				out[i] = decodeJob(v)
			}
		}
	})
	return out
}

// Len is the number of jobs held, in any state.
func (f *FSM) Len() int {
	// The sum of the queues' counts: O(queues), where counting the jobs
	// bucket would read every page of it.
	var n int64
	f.view(func(st *state) {
		_ = st.queues.ForEach(func(k, v []byte) error {
			for _, c := range decodeQueue(string(k), v).counts {
				n += c
			}
			return nil
		})
	})
	return int(n)
}

// ReadyJobs lists up to max (all when max <= 0) ready job ids of queue in
// dispatch order (PickReady's, without key caps): priority descending,
// then round-robin across concurrency keys, FIFO within a key. Ids for
// which skip (may be nil) returns true are passed over, so the dispatcher
// can leave out jobs it has already proposed to lease. It returns nil for
// a paused queue. skip runs inside a store read transaction: it must not
// call back into the FSM.
func (f *FSM) ReadyJobs(queue string, max int, skip func(id string) bool) []string {
	var out []string
	for _, r := range f.PickReady(queue, ReadyPick{Max: max, Skip: skip}) {
		out = append(out, r.ID)
	}
	return out
}

// ReadyPick is what PickReady is asked for.
type ReadyPick struct {
	// Max jobs at most (all when <= 0).
	Max int
	// After is the concurrency key served last in this queue: at each
	// priority the rotation resumes with the next key after it (jobs
	// without a key form the group "", which sorts first).
	After string
	// Skip (may be nil) passes over ids, as for ReadyJobs.
	Skip func(id string) bool
	// KeyCap caps the leased jobs of each key (0: no cap): a key with
	// KeyCap jobs leased, plus InFlight(key) being leased, gets none.
	// Jobs without a key are not capped.
	KeyCap int
	// InFlight (may be nil) is how many of key's jobs are being leased
	// but not yet committed.
	InFlight func(key string) int
	// KeyRoom (may be nil) bounds further how many of key's jobs may be
	// picked now (a rate per key); < 0: no bound. It is asked once per
	// key that has ready jobs, and never for the jobs without a key.
	KeyRoom func(key string) int
}

// ReadyJob is one job PickReady chose.
type ReadyJob struct {
	ID  string
	Key string // its concurrency key, "" for none
}

// PickReady chooses up to p.Max ready jobs of queue for dispatch, fairly:
// strictly by priority (higher first); within a priority, round-robin
// across concurrency keys (one job per key per round, starting after
// p.After, the jobs without a key counting as one key ""); FIFO within
// (queue, priority, key). A key at p.KeyCap is passed over. The head of
// each key is one seek in the ready_key index, so one key's 10,000 ready
// jobs cost nothing to the others. It returns nil for a paused queue.
func (f *FSM) PickReady(queue string, p ReadyPick) []ReadyJob {
	var out []ReadyJob
	f.view(func(st *state) {
		if st.paused(queue) {
			return
		}
		qp := appendStr(nil, queue)
		var prev []byte // the last priority level served (4 bytes)
		for p.Max <= 0 || len(out) < p.Max {
			lvl, ok := nextLevel(st, qp, prev)
			if !ok {
				return
			}
			out = pickLevel(st, queue, append(qp[:len(qp):len(qp)], lvl...), p, out)
			prev = lvl
		}
	})
	return out
}

// nextLevel finds the next priority level of queue (key prefix qp) after
// prev (nil: the highest) that holds ready jobs, keyed or not.
func nextLevel(st *state, qp, prev []byte) ([]byte, bool) {
	seek := qp
	if prev != nil {
		n := binary.BigEndian.Uint32(prev)
		if n == math.MaxUint32 {
			return nil, false
		}
		seek = binary.BigEndian.AppendUint32(qp[:len(qp):len(qp)], n+1)
	}
	var best []byte
	for _, b := range []*bbolt.Bucket{st.ready, st.readyKey} {
		k, _ := b.Cursor().Seek(seek)
		if k == nil || !bytes.HasPrefix(k, qp) || len(k) < len(qp)+4 {
			continue
		}
		if l := k[len(qp) : len(qp)+4]; best == nil || bytes.Compare(l, best) < 0 {
			best = append([]byte(nil), l...)
		}
	}
	return best, best != nil
}

// keyGroup is one key's jobs at one priority level during a pick.
type keyGroup struct {
	key    string
	b      *bbolt.Bucket
	prefix []byte // every entry of the group starts with it; seq and id follow
	pos    []byte // where the next candidate is sought
	room   int    // jobs it may still take; < 0: unlimited
}

// take returns the group's next job not skipped, or false when it has
// none (or no room) left.
func (g *keyGroup) take(skip func(string) bool) (string, bool) {
	if g.room == 0 {
		return "", false
	}
	c := g.b.Cursor()
	for k, _ := c.Seek(g.pos); k != nil && bytes.HasPrefix(k, g.prefix); k, _ = c.Next() {
		if len(k) < len(g.prefix)+8 {
			panic(corrupt("ready key %x", k))
		}
		id := string(k[len(g.prefix)+8:])
		if skip != nil && skip(id) {
			continue
		}
		g.pos = append(append(g.pos[:0], k...), 0)
		if g.room > 0 {
			g.room--
		}
		return id, true
	}
	g.room = 0
	return "", false
}

// pickLevel appends to out the jobs chosen at one priority level (key
// prefix lp), round-robin across its keys.
func pickLevel(st *state, queue string, lp []byte, p ReadyPick, out []ReadyJob) []ReadyJob {
	full := func() bool { return p.Max > 0 && len(out) >= p.Max }
	newGroup := func(key string) *keyGroup {
		g := &keyGroup{key: key, b: st.ready, prefix: lp, room: -1}
		if key != "" {
			g.b, g.prefix = st.readyKey, appendStr(lp[:len(lp):len(lp)], key)
			if p.KeyCap > 0 {
				g.room = p.KeyCap - st.leasedOfKey(queue, key, p.KeyCap)
				if p.InFlight != nil {
					g.room -= p.InFlight(key)
				}
				if g.room < 0 {
					g.room = 0
				}
			}
			if p.KeyRoom != nil && g.room != 0 {
				if r := p.KeyRoom(key); r >= 0 && (g.room < 0 || r < g.room) {
					g.room = r
				}
			}
		}
		g.pos = append([]byte(nil), g.prefix...)
		return g
	}
	// Round one walks the keys in rotation order, from the one after
	// p.After: keyed groups above it, the unkeyed group, then keyed groups
	// up to it. Later rounds walk the groups that still have jobs.
	var live []*keyGroup
	visit := func(g *keyGroup) {
		if id, ok := g.take(p.Skip); ok {
			out = append(out, ReadyJob{ID: id, Key: g.key})
			live = append(live, g)
		}
	}
	keyed := func(from []byte, upTo *string) {
		c := st.readyKey.Cursor()
		for k, _ := c.Seek(from); k != nil && bytes.HasPrefix(k, lp) && !full(); k, _ = c.Seek(from) {
			key, _, ok := cutStr(k[len(lp):])
			if !ok {
				panic(corrupt("ready_key key %x", k))
			}
			if upTo != nil && key > *upTo {
				return
			}
			visit(newGroup(key))
			from = pastKey(lp, key)
		}
	}
	if p.After != "" {
		keyed(pastKey(lp, p.After), nil)
	} else {
		keyed(lp, nil)
	}
	if !full() {
		visit(newGroup(""))
	}
	if p.After != "" && !full() {
		keyed(lp, &p.After)
	}
	for len(live) > 0 && !full() {
		kept := live[:0]
		for _, g := range live {
			if full() {
				break
			}
			if id, ok := g.take(p.Skip); ok {
				out = append(out, ReadyJob{ID: id, Key: g.key})
				kept = append(kept, g)
			}
		}
		live = kept
	}
	return out
}

// pastKey is the smallest ready_key key after every entry of key at level
// lp (appendStr ends a string with 0x00 0x01; 0x00 0x02 sorts after all
// of them and before any longer key).
func pastKey(lp []byte, key string) []byte {
	b := appendStr(lp[:len(lp):len(lp)], key)
	b[len(b)-1] = 2
	return b
}

// LeasedOfKey is how many of queue's jobs with concurrency key are leased
// (the dispatcher's per-key cap counts them).
func (f *FSM) LeasedOfKey(queue, key string) int {
	var n int
	f.view(func(st *state) { n = st.leasedOfKey(queue, key, 0) })
	return n
}

// leasedOfKey counts the leased jobs of (queue, key), stopping at limit
// (all when limit <= 0): a cap only needs to know it is reached.
func (s *state) leasedOfKey(queue, key string, limit int) int {
	prefix := leasedKeyPrefix(queue, key)
	n := 0
	c := s.leasedKey.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		n++
		if limit > 0 && n >= limit {
			break
		}
	}
	return n
}

// NextWakeup is the earliest time at which a command would change state by
// itself: the run_at of a scheduled job (Promote), the deadline of a
// lease (ExpireLeases) or a timeout (ExpireTimeouts). ok is false when no
// job waits for time. The leader sleeps until then.
func (f *FSM) NextWakeup() (at int64, ok bool) {
	f.viewBuckets(func(bs []*bbolt.Bucket) {
		for _, b := range bs {
			if t, has := minTime(b); has && (!ok || t < at) {
				at, ok = t, true
			}
		}
	}, bSched, bLeases, bToStart, bToClose)
	return at, ok
}

// NextTimeout is the earliest schedule-to-start or start-to-close
// deadline; ok is false when no job has one pending. The leader proposes
// ExpireTimeouts once it has passed.
func (f *FSM) NextTimeout() (at int64, ok bool) {
	f.viewBuckets(func(bs []*bbolt.Bucket) {
		for _, b := range bs {
			if t, has := minTime(b); has && (!ok || t < at) {
				at, ok = t, true
			}
		}
	}, bToStart, bToClose)
	return at, ok
}

// Stats returns the named queues' counts (every known queue when queues is
// empty), sorted by name, without duplicates. A named queue the FSM has
// never seen is reported with zero counts. Counts are kept incrementally,
// so Stats costs O(log n) per queue.
func (f *FSM) Stats(queues []string) []QueueStats {
	var out []QueueStats
	f.view(func(st *state) {
		add := func(q queueRec) {
			qs := QueueStats{Queue: q.name, Paused: q.paused, Counts: q.counts}
			// The first ready job of the queue in creation order is the oldest.
			prefix := appendStr(nil, q.name)
			if k, _ := st.age.Cursor().Seek(prefix); bytes.HasPrefix(k, prefix) && len(k) >= len(prefix)+8 {
				qs.OldestReadyCreatedAt = readI64(k[len(prefix):])
			}
			out = append(out, qs)
		}
		if len(queues) == 0 {
			_ = st.queues.ForEach(func(k, v []byte) error {
				add(decodeQueue(string(k), v))
				return nil
			})
			return
		}
		names := slices.Clone(queues)
		slices.Sort(names)
		for _, n := range slices.Compact(names) {
			q, _ := st.queue(n)
			add(q)
		}
	})
	return out
}

// List returns copies of queue's jobs in state, ordered by id, with ids
// greater than after (pagination), at most limit (all when limit <= 0).
func (f *FSM) List(queue string, inState State, after string, limit int) []Job {
	var out []Job
	f.view(func(st *state) {
		for _, id := range st.stateIDs(queue, inState, after, limit) {
			if j := st.job(id); j != nil {
				out = append(out, *j)
			}
		}
	})
	return out
}

// Nodes returns every node's addresses sorted by node id, so any node can
// tell a client where the leader serves.
func (f *FSM) Nodes() []NodeMeta {
	out := []NodeMeta{}
	f.view(func(st *state) {
		_ = st.nodes.ForEach(func(k, _ []byte) error {
			n, _ := st.node(string(k))
			out = append(out, n)
			return nil
		})
	})
	return out
}
