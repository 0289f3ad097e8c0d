package fsm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/raftq/raftq/fsm/fsmpb"
	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
)

// Bucket names. Each bucket replaces one of the former in-memory trees; the
// composite keys are encoded so that bbolt's byte order is the trees' order
// (see keys below and DESIGN.md).
var (
	bJobs      = []byte("jobs")       // id → fsmpb.JobRecord
	bReady     = []byte("ready")      // (queue, −priority, seq, id) of READY jobs without a key
	bReadyKey  = []byte("ready_key")  // (queue, −priority, key, seq, id) of READY jobs with a key
	bLeasedKey = []byte("leased_key") // (queue, key, id) of LEASED jobs with a key
	bAge       = []byte("ready_age")  // (queue, created_at, id)
	bSched     = []byte("scheduled")  // (run_at, id) of SCHEDULED jobs
	bLeases    = []byte("leases")     // (lease deadline, id) of LEASED jobs
	bTerminal  = []byte("terminal")   // (finished_at, id) of terminal jobs
	bByState   = []byte("by_state")   // (queue, state, id)
	bIdem      = []byte("idem")       // (queue, key) → (expires_at, job id)
	bIdemExp   = []byte("idem_exp")   // (expires_at, queue, key)
	bQueues    = []byte("queues")     // name → paused, counts per state
	bNodes     = []byte("nodes")      // node id → fsmpb.NodeMeta
	bSchedules = []byte("schedules")  // name → fsmpb.ScheduleRecord
	bMeta      = []byte("meta")       // metaKey → applied index, seq, checksum
	// Timeouts and uniqueness (prefixed tmo_/uq_ so other features'
	// buckets cannot clash).
	bToStart = []byte("tmo_start") // (start deadline, id) of never-leased SCHEDULED/READY jobs with one
	bToClose = []byte("tmo_close") // (attempt deadline, id) of LEASED jobs with a start_to_close
	bUnique  = []byte("uq_active") // (queue, unique key) → id of the non-terminal job holding it
	// Workflows: (parent, child) for every parent of every job, and for
	// every parent a WAITING job still waits on.
	bDepChildren = []byte("dep_children")
	bDepWaiting  = []byte("dep_waiting")
)

// stateBuckets are the buckets Hash covers, in hash order. meta is left out:
// it holds the applied index, which replicas may reach at different
// entries; seq is hashed on its own.
var stateBuckets = [][]byte{bJobs, bReady, bAge, bSched, bLeases, bTerminal, bByState, bIdem, bIdemExp, bQueues, bNodes}

// metaKey holds applied index (8 bytes), seq (8) and the CRC-32C of those
// 16 bytes (4): bbolt checksums its own meta pages but not our values, and
// this record decides which log entries are replayed.
var metaKey = []byte("state")

// Order-preserving key encoding. A string inside a composite key has every
// 0x00 escaped as 0x00 0xFF and ends with 0x00 0x01, so ("a", x) sorts
// before ("a\x00", y) and before ("ab", z) as Go's string comparison does.
// The last component (always a job id or an idempotency key) is raw.
// Signed integers have their sign bit flipped, so they sort as numbers.

func appendStr(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			b = append(b, 0, 0xFF)
		} else {
			b = append(b, s[i])
		}
	}
	return append(b, 0, 1)
}

// cutStr decodes a string written by appendStr and returns the rest.
func cutStr(b []byte) (string, []byte, bool) {
	var out []byte
	for i := 0; i < len(b); i++ {
		if b[i] != 0 {
			out = append(out, b[i])
			continue
		}
		if i+1 >= len(b) {
			return "", nil, false
		}
		switch b[i+1] {
		case 0xFF:
			out = append(out, 0)
			i++
		case 1:
			return string(out), b[i+2:], true
		default:
			return "", nil, false
		}
	}
	return "", nil, false
}

func appendI64(b []byte, v int64) []byte { return binary.BigEndian.AppendUint64(b, uint64(v)^(1<<63)) }
func appendI32(b []byte, v int32) []byte { return binary.BigEndian.AppendUint32(b, uint32(v)^(1<<31)) }
func readI64(b []byte) int64             { return int64(binary.BigEndian.Uint64(b) ^ (1 << 63)) }

func readyKeyOf(j *Job) []byte {
	b := appendStr(make([]byte, 0, len(j.Queue)+len(j.ID)+16), j.Queue)
	// Priority descending: the complement of the ascending encoding.
	b = binary.BigEndian.AppendUint32(b, ^(uint32(j.Priority) ^ (1 << 31)))
	b = binary.BigEndian.AppendUint64(b, j.Seq)
	return append(b, j.ID...)
}

// readyPrefix is the start of every ready (and ready_key) key of queue at
// priority prio.
func readyPrefix(queue string, prio int32) []byte {
	b := appendStr(make([]byte, 0, len(queue)+8), queue)
	return binary.BigEndian.AppendUint32(b, ^(uint32(prio) ^ (1 << 31)))
}

// readyKeyKeyOf is j's key in ready_key: FIFO within (queue, priority,
// concurrency key), each key's jobs contiguous so the dispatcher finds the
// head of every key with one seek.
func readyKeyKeyOf(j *Job) []byte {
	b := appendStr(readyPrefix(j.Queue, j.Priority), j.ConcurrencyKey)
	b = binary.BigEndian.AppendUint64(b, j.Seq)
	return append(b, j.ID...)
}

// leasedKeyPrefix is the start of every leased_key key of (queue, key).
func leasedKeyPrefix(queue, key string) []byte {
	return appendStr(appendStr(make([]byte, 0, len(queue)+len(key)+4), queue), key)
}

func ageKeyOf(j *Job) []byte {
	b := appendStr(make([]byte, 0, len(j.Queue)+len(j.ID)+12), j.Queue)
	b = appendI64(b, j.CreatedAt)
	return append(b, j.ID...)
}

func timeKey(t int64, id string) []byte {
	return append(appendI64(make([]byte, 0, 8+len(id)), t), id...)
}

func stateKey(queue string, st State, id string) []byte {
	b := appendI32(appendStr(make([]byte, 0, len(queue)+len(id)+6), queue), int32(st))
	return append(b, id...)
}

func idemKey(queue, key string) []byte {
	return append(appendStr(make([]byte, 0, len(queue)+len(key)+2), queue), key...)
}

func idemExpKeyOf(expires int64, queue, key string) []byte {
	b := appendStr(appendI64(make([]byte, 0, len(queue)+len(key)+10), expires), queue)
	return append(b, key...)
}

// idemEntry maps (queue, key) to the job enqueued with that key.
type idemEntry struct {
	queue   string
	key     string
	jobID   string
	expires int64
}

// queueRec is a queue's record: paused, then the count of its jobs per
// state.
type queueRec struct {
	name   string
	paused bool
	counts [NumStates]int64
}

// oldQueueCounts is how many counts a queue record held before the
// waiting state: a record whose waiting count is zero is written in that
// length, so stores without workflows hold (and hash) the bytes they
// held before.
const oldQueueCounts = 7

func encodeQueue(q queueRec) []byte {
	n := len(q.counts)
	if q.counts[StateWaiting] == 0 {
		n = oldQueueCounts
	}
	b := make([]byte, 1, 1+8*n)
	if q.paused {
		b[0] = 1
	}
	for _, c := range q.counts[:n] {
		b = appendI64(b, c)
	}
	return b
}

func decodeQueue(name string, v []byte) queueRec {
	q := queueRec{name: name}
	n := (len(v) - 1) / 8
	if (n != len(q.counts) && n != oldQueueCounts) || len(v) != 1+8*n || v[0] > 1 {
		panic(corrupt("queue %q record of %d bytes", name, len(v)))
	}
	q.paused = v[0] == 1
	for i := 0; i < n; i++ {
		q.counts[i] = readI64(v[1+8*i:])
	}
	return q
}

// storeCorrupt is the panic value of a state read that finds bytes this
// package never writes: the store file is damaged, and serving or applying
// anything from it would disagree with the log.
type storeCorrupt struct{ msg string }

func (e storeCorrupt) Error() string { return "fsm: store corrupt: " + e.msg }

func corrupt(format string, args ...any) storeCorrupt {
	return storeCorrupt{msg: fmt.Sprintf(format, args...)}
}

// state is the FSM's state seen through one bbolt transaction: read-only
// for the read API, Persist and Hash; read-write for Apply and Restore.
// Its methods mirror the former trees' operations, so the applier's logic
// (commands.go) did not change with the move to disk.
type state struct {
	tx                                                                    *bbolt.Tx
	jobs, ready, age, sched, leases, term, byState, idem, idemExp, queues *bbolt.Bucket
	nodes, meta, schedules, readyKey, leasedKey                           *bbolt.Bucket
	toStart, toClose, unique                                              *bbolt.Bucket
	depChildren, depWaiting                                               *bbolt.Bucket
	place                                                                 *bbolt.Bucket
	applied, seq                                                          uint64
	metaDirty                                                             bool
	// placeChanged: a placement, seal or group membership record was
	// written (placement.go).
	placeChanged bool
	// checkAt is the index of an entry applied in this transaction that
	// asked for a consistency check (0: none); the transaction ends there.
	checkAt uint64
}

// createBuckets makes every bucket of an empty store (a no-op otherwise).
func createBuckets(tx *bbolt.Tx) error {
	for _, name := range append([][]byte{bMeta, bSchedules, bReadyKey, bLeasedKey, bToStart, bToClose, bUnique, bDepChildren, bDepWaiting, bPlace}, stateBuckets...) {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	return nil
}

// fillPercent is how full bbolt fills a page before it splits it.
const fillPercent = 0.9

func newState(tx *bbolt.Tx) (*state, error) {
	s := &state{tx: tx}
	for _, p := range []struct {
		b    **bbolt.Bucket
		name []byte
	}{{&s.jobs, bJobs}, {&s.ready, bReady}, {&s.age, bAge}, {&s.sched, bSched}, {&s.leases, bLeases},
		{&s.term, bTerminal}, {&s.byState, bByState}, {&s.idem, bIdem}, {&s.idemExp, bIdemExp},
		{&s.queues, bQueues}, {&s.nodes, bNodes}, {&s.meta, bMeta}, {&s.schedules, bSchedules},
		{&s.readyKey, bReadyKey}, {&s.leasedKey, bLeasedKey},
		{&s.toStart, bToStart}, {&s.toClose, bToClose}, {&s.unique, bUnique},
		{&s.depChildren, bDepChildren}, {&s.depWaiting, bDepWaiting}, {&s.place, bPlace}} {
		if *p.b = tx.Bucket(p.name); *p.b == nil {
			return nil, fmt.Errorf("bucket %q missing", p.name)
		}
		// Keys mostly arrive in order (time-ordered job ids, seq, times):
		// splitting pages at bbolt's default half would leave them half
		// empty and the file twice as large.
		(*p.b).FillPercent = fillPercent
	}
	if v := s.meta.Get(metaKey); v != nil {
		if len(v) != 20 || binary.BigEndian.Uint32(v[16:]) != crc32.Checksum(v[:16], castagnoli) {
			return nil, fmt.Errorf("applied-index record fails its checksum")
		}
		s.applied, s.seq = binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:])
	}
	return s, nil
}

// setApplied records the log index this transaction brings the store to.
func (s *state) setApplied(i uint64) {
	s.applied = i
	s.metaDirty = true
}

// flush writes the meta record if this transaction changed it.
func (s *state) flush() {
	if !s.metaDirty {
		return
	}
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 20), s.applied)
	v = binary.BigEndian.AppendUint64(v, s.seq)
	v = binary.BigEndian.AppendUint32(v, crc32.Checksum(v, castagnoli))
	s.must(s.meta.Put(metaKey, v))
	s.metaDirty = false
}

// storeWriteError is the panic value of a failed store write: the entry is
// committed, so it cannot be skipped. bbolt rolls the transaction back as
// the panic unwinds; ApplyBatch retries a full disk and stops the node on
// anything else.
type storeWriteError struct{ err error }

func (e storeWriteError) Error() string { return "fsm: store write failed: " + e.err.Error() }
func (e storeWriteError) Unwrap() error { return e.err }

// must turns a store write error into a storeWriteError panic.
func (s *state) must(err error) {
	if err != nil {
		panic(storeWriteError{err})
	}
}

func decodeJob(v []byte) *Job {
	jr := &fsmpb.JobRecord{}
	if err := proto.Unmarshal(v, jr); err != nil {
		panic(corrupt("job record: %v", err))
	}
	return recordToJob(jr)
}

func encodeJob(j *Job) []byte {
	jr := &fsmpb.JobRecord{}
	jobToRecord(jr, j)
	b, err := marshalOpts.Marshal(jr)
	if err != nil {
		panic(fmt.Errorf("fsm: marshal job %q: %w", j.ID, err))
	}
	return b
}

// job returns a fresh copy of the job with this id, or nil.
func (s *state) job(id string) *Job {
	v := s.jobs.Get([]byte(id))
	if v == nil {
		return nil
	}
	return decodeJob(v)
}

func (s *state) queue(name string) (queueRec, bool) {
	v := s.queues.Get([]byte(name))
	if v == nil {
		return queueRec{name: name}, false
	}
	return decodeQueue(name, v), true
}

func (s *state) setQueue(q queueRec) { s.must(s.queues.Put([]byte(q.name), encodeQueue(q))) }

// ensureQueue creates the queue record if it does not exist yet.
func (s *state) ensureQueue(name string) queueRec {
	q, ok := s.queue(name)
	if !ok {
		s.setQueue(q)
	}
	return q
}

func (s *state) paused(queue string) bool {
	q, _ := s.queue(queue)
	return q.paused
}

func (s *state) nextSeq() uint64 {
	s.seq++
	s.metaDirty = true
	return s.seq
}

// Index membership by state. A job is in exactly the indexes its state
// calls for; put and remove keep that true.
//
// An index tells membership apart from the key because building a key
// allocates, and most indexes hold a job in few of its states: put asks
// every index about the old and the new version of a job, so building
// keys only for members saves most of its allocations.
type indexOf struct {
	in  func(*Job) bool
	key func(*Job) []byte
}

// of is j's key in the index and whether j is in it (no key when not).
func (ix indexOf) of(j *Job) ([]byte, bool) {
	if !ix.in(j) {
		return nil, false
	}
	return ix.key(j), true
}

var (
	readyOf = indexOf{
		in:  func(j *Job) bool { return j.State == StateReady && j.ConcurrencyKey == "" },
		key: readyKeyOf,
	}
	readyKeyedOf = indexOf{
		in:  func(j *Job) bool { return j.State == StateReady && j.ConcurrencyKey != "" },
		key: readyKeyKeyOf,
	}
	leasedKeyedOf = indexOf{
		in:  func(j *Job) bool { return j.State == StateLeased && j.ConcurrencyKey != "" },
		key: func(j *Job) []byte { return append(leasedKeyPrefix(j.Queue, j.ConcurrencyKey), j.ID...) },
	}
	ageOf = indexOf{
		in:  func(j *Job) bool { return j.State == StateReady },
		key: ageKeyOf,
	}
	scheduledOf = indexOf{
		in:  func(j *Job) bool { return j.State == StateScheduled },
		key: func(j *Job) []byte { return timeKey(j.RunAt, j.ID) },
	}
	leaseOf = indexOf{
		in:  func(j *Job) bool { return j.State == StateLeased },
		key: func(j *Job) []byte { return timeKey(j.LeaseDeadline, j.ID) },
	}
	terminalOf = indexOf{
		in:  func(j *Job) bool { return j.State.Terminal() },
		key: func(j *Job) []byte { return timeKey(j.FinishedAt, j.ID) },
	}
	// toStartOf: a job waits for its schedule-to-start deadline while it
	// was never leased (a released lease undoes its attempt, so it counts
	// as never leased) and is scheduled or ready.
	toStartOf = indexOf{
		in: func(j *Job) bool {
			return j.StartDeadline > 0 && j.Attempts == 0 && (j.State == StateScheduled || j.State == StateReady)
		},
		key: func(j *Job) []byte { return timeKey(j.StartDeadline, j.ID) },
	}
	// toCloseOf: a leased job waits for its attempt's start-to-close
	// deadline.
	toCloseOf = indexOf{
		in:  func(j *Job) bool { return j.State == StateLeased && j.AttemptDeadline > 0 },
		key: func(j *Job) []byte { return timeKey(j.AttemptDeadline, j.ID) },
	}
)

// uniqueOf is j's key in uq_active and whether j holds it: a job with a
// unique key holds it until it is terminal.
func uniqueOf(j *Job) ([]byte, bool) {
	if j.UniqueKey == "" || j.State.Terminal() {
		return nil, false
	}
	return idemKey(j.Queue, j.UniqueKey), true
}

// uniqueHolder is the id of the job holding (queue, key), if any.
func (s *state) uniqueHolder(queue, key string) (string, bool) {
	v := s.unique.Get(idemKey(queue, key))
	if v == nil {
		return "", false
	}
	return string(v), true
}

// reindexUnique keeps uq_active (whose values are job ids) up to date.
func (s *state) reindexUnique(old, nu *Job) {
	var ok, nk []byte
	var oin, nin bool
	if old != nil {
		ok, oin = uniqueOf(old)
	}
	if nu != nil {
		nk, nin = uniqueOf(nu)
	}
	if oin && nin && bytes.Equal(ok, nk) {
		return
	}
	if oin {
		s.must(s.unique.Delete(ok))
	}
	if nin {
		s.must(s.unique.Put(nk, []byte(nu.ID)))
	}
}

// reindex moves one index entry from old to nu, touching the bucket only
// when the key or the membership changed.
func (s *state) reindex(b *bbolt.Bucket, of indexOf, old, nu *Job) {
	var ok, nk []byte
	var oin, nin bool
	if old != nil {
		ok, oin = of.of(old)
	}
	if nu != nil {
		nk, nin = of.of(nu)
	}
	if oin && nin && bytes.Equal(ok, nk) {
		return
	}
	if oin {
		s.must(b.Delete(ok))
	}
	if nin {
		s.must(b.Put(nk, nil))
	}
}

// put stores nu in place of old (nil for a new job) and brings every index
// and count up to date.
func (s *state) put(old, nu *Job) {
	s.must(s.jobs.Put([]byte(nu.ID), encodeJob(nu)))
	s.index(old, nu)
}

// remove deletes j and its index entries.
func (s *state) remove(j *Job) {
	s.must(s.jobs.Delete([]byte(j.ID)))
	s.index(j, nil)
}

func (s *state) index(old, nu *Job) {
	s.reindexEdges(s.depChildren, childEdges, old, nu)
	s.reindexEdges(s.depWaiting, waitingEdges, old, nu)
	s.reindex(s.ready, readyOf, old, nu)
	s.reindex(s.readyKey, readyKeyedOf, old, nu)
	s.reindex(s.leasedKey, leasedKeyedOf, old, nu)
	s.reindex(s.age, ageOf, old, nu)
	s.reindex(s.sched, scheduledOf, old, nu)
	s.reindex(s.leases, leaseOf, old, nu)
	s.reindex(s.term, terminalOf, old, nu)
	s.reindex(s.toStart, toStartOf, old, nu)
	s.reindex(s.toClose, toCloseOf, old, nu)
	s.reindexUnique(old, nu)
	if old == nil || nu == nil || old.State != nu.State || old.Queue != nu.Queue {
		if old != nil {
			s.must(s.byState.Delete(stateKey(old.Queue, old.State, old.ID)))
		}
		if nu != nil {
			s.must(s.byState.Put(stateKey(nu.Queue, nu.State, nu.ID), nil))
		}
		switch {
		case old != nil && nu != nil && old.Queue == nu.Queue:
			// A state change within a queue: one read and one write of
			// its record, not two of each.
			s.count(nu.Queue, old.State, -1, nu.State, +1)
		default:
			if old != nil {
				s.count(old.Queue, old.State, -1, old.State, 0)
			}
			if nu != nil {
				s.count(nu.Queue, nu.State, +1, nu.State, 0)
			}
		}
	}
}

// count adds d1 to queue's count of jobs in state s1 and d2 to its count
// in s2, in one read and one write of the queue's record.
func (s *state) count(queue string, s1 State, d1 int64, s2 State, d2 int64) {
	q, _ := s.queue(queue)
	if s1 >= 0 && int(s1) < len(q.counts) {
		q.counts[s1] += d1
	}
	if s2 >= 0 && int(s2) < len(q.counts) {
		q.counts[s2] += d2
	}
	s.setQueue(q)
}

func (s *state) idemGet(queue, key string) (idemEntry, bool) {
	v := s.idem.Get(idemKey(queue, key))
	if v == nil {
		return idemEntry{}, false
	}
	if len(v) < 8 {
		panic(corrupt("idempotency record %q/%q of %d bytes", queue, key, len(v)))
	}
	return idemEntry{queue: queue, key: key, expires: readI64(v), jobID: string(v[8:])}, true
}

// setIdem records (queue, key) → id until expires, replacing an older entry.
func (s *state) setIdem(e idemEntry) {
	if old, ok := s.idemGet(e.queue, e.key); ok {
		s.must(s.idemExp.Delete(idemExpKeyOf(old.expires, old.queue, old.key)))
	}
	s.must(s.idem.Put(idemKey(e.queue, e.key), append(appendI64(nil, e.expires), e.jobID...)))
	s.must(s.idemExp.Put(idemExpKeyOf(e.expires, e.queue, e.key), nil))
}

// deleteIdem removes an idempotency entry and its expiry index entry.
func (s *state) deleteIdem(expires int64, queue, key string) {
	s.must(s.idemExp.Delete(idemExpKeyOf(expires, queue, key)))
	s.must(s.idem.Delete(idemKey(queue, key)))
}

// timeIDs lists, in key order, the ids of a (time, id) index whose time
// passes keep, at most limit (all when limit <= 0).
func timeIDs(b *bbolt.Bucket, keep func(t int64) bool, limit int) []string {
	var ids []string
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) < 8 {
			panic(corrupt("time index key of %d bytes", len(k)))
		}
		if !keep(readI64(k)) {
			break
		}
		ids = append(ids, string(k[8:]))
		if limit > 0 && len(ids) >= limit {
			break
		}
	}
	return ids
}

// minTime is the smallest time of a (time, id) index.
func minTime(b *bbolt.Bucket) (int64, bool) {
	k, _ := b.Cursor().First()
	if len(k) < 8 {
		return 0, false
	}
	return readI64(k), true
}

// expiredIdem lists up to limit idempotency entries (all when limit <= 0)
// whose expiry is at or before now, in expiry order.
func (s *state) expiredIdem(now int64, limit int) []idemEntry {
	var out []idemEntry
	c := s.idemExp.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) < 8 {
			panic(corrupt("idempotency expiry key of %d bytes", len(k)))
		}
		exp := readI64(k)
		if exp > now {
			break
		}
		q, rest, ok := cutStr(k[8:])
		if !ok {
			panic(corrupt("idempotency expiry key %x", k))
		}
		out = append(out, idemEntry{queue: q, key: string(rest), expires: exp})
		if limit > 0 && len(out) >= limit {
			break
		}
	}
	return out
}

// stateIDs lists queue's job ids in state, in id order, with ids greater
// than after, at most limit (all when limit <= 0).
func (s *state) stateIDs(queue string, st State, after string, limit int) []string {
	prefix := stateKey(queue, st, "")
	var ids []string
	c := s.byState.Cursor()
	for k, _ := c.Seek(append(prefix[:len(prefix):len(prefix)], after...)); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		id := string(k[len(prefix):])
		if id == after {
			continue
		}
		ids = append(ids, id)
		if limit > 0 && len(ids) >= limit {
			break
		}
	}
	return ids
}

func (s *state) node(id string) (NodeMeta, bool) {
	v := s.nodes.Get([]byte(id))
	if v == nil {
		return NodeMeta{}, false
	}
	m := &fsmpb.NodeMeta{}
	if err := proto.Unmarshal(v, m); err != nil {
		panic(corrupt("node record %q: %v", id, err))
	}
	return NodeMeta{NodeID: m.GetNodeId(), GRPCAddr: m.GetGrpcAddr(), RaftAddr: m.GetRaftAddr()}, true
}

func (s *state) setNode(n NodeMeta) {
	v, err := marshalOpts.Marshal(&fsmpb.NodeMeta{NodeId: n.NodeID, GrpcAddr: n.GRPCAddr, RaftAddr: n.RaftAddr})
	s.must(err)
	s.must(s.nodes.Put([]byte(n.NodeID), v))
}

// depKey is the key of edge parent → child in dep_children and
// dep_waiting: every child of one parent is one prefix scan.
func depKey(parent, child string) []byte {
	return append(appendStr(make([]byte, 0, len(parent)+len(child)+2), parent), child...)
}

// edgesOf lists the parents a job has an edge from in one dependency index.
type edgesOf func(*Job) []string

// childEdges: every parent of every job (dep_children).
func childEdges(j *Job) []string { return j.Parents }

// waitingEdges: the parents a WAITING job still waits on (dep_waiting).
func waitingEdges(j *Job) []string {
	if j.State != StateWaiting {
		return nil
	}
	return j.WaitingOn
}

// reindexEdges brings one dependency index from old's edges to nu's.
func (s *state) reindexEdges(b *bbolt.Bucket, of edgesOf, old, nu *Job) {
	var op, np []string
	if old != nil {
		op = of(old)
	}
	if nu != nil {
		np = of(nu)
	}
	if len(op) == 0 && len(np) == 0 {
		return
	}
	for _, p := range op {
		if nu == nil || !containsStr(np, p) {
			s.must(b.Delete(depKey(p, old.ID)))
		}
	}
	for _, p := range np {
		if old == nil || !containsStr(op, p) {
			s.must(b.Put(depKey(p, nu.ID), nil))
		}
	}
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// children lists, in id order, the jobs with an edge from parent in one
// dependency index, at most limit (all when limit <= 0).
func children(b *bbolt.Bucket, parent string, limit int) []string {
	prefix := appendStr(nil, parent)
	var ids []string
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		ids = append(ids, string(k[len(prefix):]))
		if limit > 0 && len(ids) >= limit {
			break
		}
	}
	return ids
}
