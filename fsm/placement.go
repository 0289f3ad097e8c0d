package fsm

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync/atomic"

	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/raftq/raftq/fsm/fsmpb"
	"github.com/raftq/raftq/internal/placement"
)

// Queue placement (scale-out, docs/scale-out.md "Moving a queue").
//
// Two kinds of record share the placement bucket, both keyed by queue:
//
//   - 'p' + queue → fsmpb.QueuePlacement: group 0's table of queues an
//     operator placed, and how far each move has got. brokerd routes by it
//     (a queue without a record lives where its name hashes).
//   - 's' + queue → fsmpb.SealQueue: this group no longer takes new jobs
//     of the queue (it moved away). The seal is what makes a move safe: it
//     is an entry in the old group's own log, so every enqueue of the
//     queue there is ordered before it (and created the job) or after it
//     (and is refused as moved, writing nothing). No job is ever accepted
//     in a group after its workers stop looking there.
//
// Both are plain state: Apply reads no placement from another group. The
// commands carry the group numbers; Apply only checks structure and the
// compare-and-set of a move's phase.
//
// A third kind, keyed by group, is group 0's membership table (groups on
// a subset of nodes):
//
//   - 'm' + group (4 bytes, big-endian) → fsmpb.GroupMembers: the nodes
//     that run group (1 and up; group 0 runs on every voter and has no
//     record), and the record's version. Group 0's leader writes it; every
//     node reads it to open or close its replicas. Each change is a
//     compare-and-set on the version, so two leaders re-placing a group
//     at once cannot both win.

// ErrQueueMoved is the refusal of a new job for a queue sealed in this
// group; the error is a *MovedError naming the group it moved to.
var ErrQueueMoved = fmt.Errorf("queue moved to another group")

// MovedError is an enqueue refused because its queue is sealed here;
// errors.Is(err, ErrQueueMoved) holds.
type MovedError struct {
	Queue string
	To    uint32
}

func (e *MovedError) Error() string {
	return fmt.Sprintf("%v: queue %q now takes new jobs in group %d", ErrQueueMoved, e.Queue, e.To)
}

// Unwrap makes errors.Is(err, ErrQueueMoved) hold.
func (e *MovedError) Unwrap() error { return ErrQueueMoved }

var bPlace = []byte("placement") // 'p'+queue → QueuePlacement; 's'+queue → SealQueue; 'm'+group → GroupMembers

func placeKey(kind byte, queue string) []byte { return append([]byte{kind}, queue...) }

// membersKey is group's key in the membership table: 'm' and the group,
// 4 bytes big-endian (so the records sort by group).
func membersKey(group uint32) []byte { return binary.BigEndian.AppendUint32([]byte{'m'}, group) }

// maxGroupMembers bounds a group's member list. A group runs on a few
// nodes (its replication factor); the bound keeps one record, and every
// node's reaction to it, small.
const maxGroupMembers = 16

// placement is queue's record in group 0's table.
func (s *state) placement(queue string) (*fsmpb.QueuePlacement, bool) {
	v := s.place.Get(placeKey('p', queue))
	if v == nil {
		return nil, false
	}
	p := &fsmpb.QueuePlacement{}
	if err := proto.Unmarshal(v, p); err != nil {
		panic(corrupt("placement of %q: %v", queue, err))
	}
	return p, true
}

// sealedTo is the group queue moved to, when it is sealed here.
func (s *state) sealedTo(queue string) (uint32, bool) {
	v := s.place.Get(placeKey('s', queue))
	if v == nil {
		return 0, false
	}
	r := &fsmpb.SealQueue{}
	if err := proto.Unmarshal(v, r); err != nil {
		panic(corrupt("seal of %q: %v", queue, err))
	}
	return r.GetToGroup(), r.GetSealed()
}

// groupMembers is group's record in group 0's membership table.
func (s *state) groupMembers(group uint32) (*fsmpb.GroupMembers, bool) {
	v := s.place.Get(membersKey(group))
	if v == nil {
		return nil, false
	}
	return mustMembers(group, v), true
}

// mustMembers decodes a stored membership record.
func mustMembers(group uint32, v []byte) *fsmpb.GroupMembers {
	r := &fsmpb.GroupMembers{}
	if err := proto.Unmarshal(v, r); err != nil {
		panic(corrupt("members of group %d: %v", group, err))
	}
	return r
}

func (s *state) putRecord(kind byte, queue string, m proto.Message) {
	s.putPlaceKey(placeKey(kind, queue), m)
}

// putPlaceKey stores m under key in the placement bucket, marshalled
// deterministically (replicas store, and hash, the same bytes), and marks
// the placement tables changed.
func (s *state) putPlaceKey(key []byte, m proto.Message) {
	v, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("fsm: marshal %T: %v", m, err))
	}
	s.must(s.place.Put(key, v))
	s.placeChanged = true
}

// moved is the refusal of a new job of queue when it is sealed here.
func (s *state) moved(queue string) error {
	if to, ok := s.sealedTo(queue); ok {
		return &MovedError{Queue: queue, To: to}
	}
	return nil
}

// placeQueue applies a QueuePlacement: a compare-and-set on the queue's
// record, so a move advances one phase at a time and a stale or repeated
// command (a new leader re-driving a move) changes nothing.
func (a *applier) placeQueue(c *fsmpb.QueuePlacement) Result {
	q := c.GetQueue()
	if q == "" {
		return Result{Err: fmt.Errorf("%w: placement without a queue", ErrInvalid)}
	}
	if err := checkKeySizes(q); err != nil {
		return Result{Err: err}
	}
	cur, ok := a.st.placement(q)
	if ps := c.GetPartitions(); len(ps) > 0 {
		return a.partitionQueue(c, cur, ok)
	}
	if ok && len(cur.GetPartitions()) > 0 {
		return Result{Err: fmt.Errorf("%w: %q is partitioned over groups %v: it does not move", ErrWrongState, q, cur.GetPartitions())}
	}
	phase := fsmpb.PlacementPhase_PLACEMENT_PHASE_NONE
	if ok {
		phase = cur.GetPhase()
	}
	if phase != c.GetExpectPhase() {
		return Result{Err: fmt.Errorf("%w: placement of %q is %v, not %v", ErrWrongState, q, phase, c.GetExpectPhase())}
	}
	if phase != fsmpb.PlacementPhase_PLACEMENT_PHASE_NONE &&
		(cur.GetGroup() != c.GetGroup() || cur.GetFromGroup() != c.GetFromGroup()) {
		return Result{Err: fmt.Errorf("%w: %q is moving from group %d to %d, not from %d to %d",
			ErrWrongState, q, cur.GetFromGroup(), cur.GetGroup(), c.GetFromGroup(), c.GetGroup())}
	}
	rec := &fsmpb.QueuePlacement{Queue: q, Group: c.GetGroup(), Phase: c.GetPhase()}
	switch {
	case c.GetPhase() == fsmpb.PlacementPhase_PLACEMENT_PHASE_NONE:
		// Done: the queue lives in group. Only a move ends so; a queue is
		// never simply declared elsewhere (its old group is not sealed).
		if phase != fsmpb.PlacementPhase_PLACEMENT_PHASE_DRAINING {
			return Result{Err: fmt.Errorf("%w: placement of %q ends only a move that is draining", ErrInvalid, q)}
		}
	case phase == fsmpb.PlacementPhase_PLACEMENT_PHASE_NONE:
		if c.GetPhase() != fsmpb.PlacementPhase_PLACEMENT_PHASE_SEALING || c.GetFromGroup() == c.GetGroup() {
			return Result{Err: fmt.Errorf("%w: a move of %q starts sealing another group", ErrInvalid, q)}
		}
		rec.FromGroup, rec.Since = c.GetFromGroup(), a.index
	default:
		rec.FromGroup, rec.Since = cur.GetFromGroup(), cur.GetSince()
	}
	a.st.putRecord('p', q, rec)
	a.dirty = true
	return Result{}
}

// partitionQueue applies a QueuePlacement with partitions: once, on a
// queue without a record.
func (a *applier) partitionQueue(c *fsmpb.QueuePlacement, cur *fsmpb.QueuePlacement, placed bool) Result {
	q, ps := c.GetQueue(), c.GetPartitions()
	if placed {
		return Result{Err: fmt.Errorf("%w: %q is already placed (group %d, partitions %v)", ErrWrongState, q, cur.GetGroup(), cur.GetPartitions())}
	}
	if c.GetExpectPhase() != fsmpb.PlacementPhase_PLACEMENT_PHASE_NONE || c.GetPhase() != fsmpb.PlacementPhase_PLACEMENT_PHASE_NONE {
		return Result{Err: fmt.Errorf("%w: a partitioned queue has no move phase", ErrInvalid)}
	}
	if len(ps) < 2 || ps[0] != c.GetGroup() {
		return Result{Err: fmt.Errorf("%w: partitions of %q: at least two groups, its group first", ErrInvalid, q)}
	}
	for i, g := range ps {
		for _, o := range ps[:i] {
			if o == g {
				return Result{Err: fmt.Errorf("%w: partitions of %q name group %d twice", ErrInvalid, q, g)}
			}
		}
	}
	a.st.putRecord('p', q, &fsmpb.QueuePlacement{Queue: q, Group: c.GetGroup(), Partitions: append([]uint32(nil), ps...), Since: a.index})
	a.dirty = true
	return Result{}
}

// sealQueue applies a SealQueue in this group.
func (a *applier) sealQueue(c *fsmpb.SealQueue) Result {
	q := c.GetQueue()
	if q == "" {
		return Result{Err: fmt.Errorf("%w: seal without a queue", ErrInvalid)}
	}
	if err := checkKeySizes(q); err != nil {
		return Result{Err: err}
	}
	to, sealed := a.st.sealedTo(q)
	if sealed == c.GetSealed() && (!sealed || to == c.GetToGroup()) {
		return Result{}
	}
	if !c.GetSealed() {
		a.st.must(a.st.place.Delete(placeKey('s', q)))
		a.st.placeChanged = true
	} else {
		a.st.putRecord('s', q, &fsmpb.SealQueue{Queue: q, Sealed: true, ToGroup: c.GetToGroup()})
	}
	a.dirty = true
	return Result{}
}

// checkGroupMembers refuses a membership record Apply or Restore must not
// store: a group other than 1 to placement.MaxGroups-1, or members that
// are not at least one and at most maxGroupMembers non-empty node ids in
// strictly ascending order. The order is checked, not made: the command is
// what is stored, and a list with a duplicate is a bug in its proposer.
func checkGroupMembers(group uint32, members []string) error {
	if group < 1 || group >= placement.MaxGroups {
		return fmt.Errorf("%w: members of group %d: want a group from 1 to %d", ErrInvalid, group, placement.MaxGroups-1)
	}
	if len(members) == 0 || len(members) > maxGroupMembers {
		return fmt.Errorf("%w: group %d with %d members: want 1 to %d", ErrInvalid, group, len(members), maxGroupMembers)
	}
	for i, m := range members {
		if m == "" {
			return fmt.Errorf("%w: group %d: member %d has no node id", ErrInvalid, group, i)
		}
		if i > 0 && m <= members[i-1] {
			return fmt.Errorf("%w: group %d: members not sorted or named twice (%q after %q)", ErrInvalid, group, m, members[i-1])
		}
	}
	return checkKeySizes(members...)
}

// setGroupMembers applies a GroupMembers: a compare-and-set on the
// group's record version (0 when it has none). The stored record is the
// command's group and members with version expect_version+1.
func (a *applier) setGroupMembers(c *fsmpb.GroupMembers) Result {
	g := c.GetGroup()
	if err := checkGroupMembers(g, c.GetMembers()); err != nil {
		return Result{Err: err}
	}
	if c.GetExpectVersion() == math.MaxUint64 {
		return Result{Err: fmt.Errorf("%w: members of group %d: expect_version %d has no successor", ErrInvalid, g, c.GetExpectVersion())}
	}
	var version uint64
	if cur, ok := a.st.groupMembers(g); ok {
		version = cur.GetVersion()
	}
	if version != c.GetExpectVersion() {
		return Result{Err: fmt.Errorf("%w: members of group %d are at version %d, not %d", ErrWrongState, g, version, c.GetExpectVersion())}
	}
	a.st.putPlaceKey(membersKey(g), &fsmpb.GroupMembers{
		Group: g, Members: append([]string(nil), c.GetMembers()...), Version: version + 1})
	a.dirty = true
	return Result{}
}

// importKeys applies an ImportKeys: idempotency keys of a queue that moved
// here, pointing at jobs of the group it left.
func (a *applier) importKeys(now int64, c *fsmpb.ImportKeys) Result {
	q := c.GetQueue()
	if q == "" {
		return Result{Err: fmt.Errorf("%w: import without a queue", ErrInvalid)}
	}
	for i, k := range c.GetKeys() {
		if k.GetKey() == "" || k.GetJobId() == "" || (k.GetQueue() != "" && k.GetQueue() != q) {
			return Result{Err: fmt.Errorf("%w: imported key %d: key and job id are required, in queue %q", ErrInvalid, i, q)}
		}
		if err := checkKeySizes(q, k.GetKey(), k.GetJobId()); err != nil {
			return Result{Err: err}
		}
	}
	for _, k := range c.GetKeys() {
		if k.GetExpiresAt() <= now {
			continue
		}
		if _, held := a.st.idemGet(q, k.GetKey()); held {
			continue
		}
		a.st.setIdem(idemEntry{queue: q, key: k.GetKey(), jobID: k.GetJobId(), expires: k.GetExpiresAt()})
		a.dirty = true
	}
	return Result{}
}

// Placements is group 0's placement table: the queues an operator placed,
// by name. Routing reads it on every call, so it is cached and read from
// the store again only after a placement command or a Restore.
func (f *FSM) Placements() map[string]*fsmpb.QueuePlacement {
	g := f.placeGen.Load()
	if c := f.placeCache.Load(); c != nil && c.gen == g {
		return c.table
	}
	table := map[string]*fsmpb.QueuePlacement{}
	f.view(func(st *state) {
		c := st.place.Cursor()
		for k, _ := c.Seek([]byte{'p'}); k != nil && k[0] == 'p'; k, _ = c.Next() {
			if p, ok := st.placement(string(k[1:])); ok {
				table[p.GetQueue()] = p
			}
		}
	})
	f.placeCache.Store(&placeCache{gen: g, table: table})
	return table
}

// placeCache is a Placements answer and the placement generation it is of.
type placeCache struct {
	gen   uint64
	table map[string]*fsmpb.QueuePlacement
}

// membersCache is a GroupMembers answer and the placement generation it
// is of.
type membersCache struct {
	gen   uint64
	table map[uint32]*fsmpb.GroupMembers
}

// placeState is the FSM's placement cache: placeGen counts changes to the
// placement bucket (placements, seals, group members; bumped after they
// commit), placeCache and membersCache hold the last tables.
type placeState struct {
	placeDirty   bool // an Apply transaction wrote placement (wmu)
	placeGen     atomic.Uint64
	placeCache   atomic.Pointer[placeCache]
	membersCache atomic.Pointer[membersCache]
}

// GroupMembers is group 0's membership table: the record of every group
// (1 and up) that has one, by group. Every node reads it to know which
// groups to run, so it is cached like Placements and read from the store
// again only after a command wrote the placement bucket or a Restore.
//
// The map and its records are shared with other callers and the cache:
// callers must not modify them (copy with proto.Clone to change one).
func (f *FSM) GroupMembers() map[uint32]*fsmpb.GroupMembers {
	g := f.placeGen.Load()
	if c := f.membersCache.Load(); c != nil && c.gen == g {
		return c.table
	}
	table := map[uint32]*fsmpb.GroupMembers{}
	f.viewBuckets(func(bs []*bbolt.Bucket) {
		c := bs[0].Cursor()
		for k, v := c.Seek([]byte{'m'}); k != nil && k[0] == 'm'; k, v = c.Next() {
			if len(k) != 5 {
				panic(corrupt("membership key %q", k))
			}
			group := binary.BigEndian.Uint32(k[1:])
			table[group] = mustMembers(group, v)
		}
	}, bPlace)
	f.membersCache.Store(&membersCache{gen: g, table: table})
	return table
}

// Sealed reports whether queue is sealed in this group, and to which group
// it moved.
func (f *FSM) Sealed(queue string) (to uint32, sealed bool) {
	// One bucket, not newState's twenty: the scheduler asks for each of
	// its schedules on every state change, and ownsQueue on enqueues.
	f.viewBuckets(func(bs []*bbolt.Bucket) {
		to, sealed = (&state{place: bs[0]}).sealedTo(queue)
	}, bPlace)
	return to, sealed
}

// IdempotencyKeys lists queue's idempotency entries that expire after now,
// at most limit (all when limit <= 0), in key order: what a queue that
// moved away hands to its new group.
func (f *FSM) IdempotencyKeys(queue string, now int64, limit int) []*fsmpb.IdempotencyRecord {
	var out []*fsmpb.IdempotencyRecord
	f.view(func(st *state) {
		prefix := appendStr(nil, queue)
		c := st.idem.Cursor()
		for k, _ := c.Seek(prefix); k != nil && len(k) >= len(prefix) && string(k[:len(prefix)]) == string(prefix); k, _ = c.Next() {
			e, ok := st.idemGet(queue, string(k[len(prefix):]))
			if !ok || e.expires <= now {
				continue
			}
			out = append(out, &fsmpb.IdempotencyRecord{Queue: queue, Key: e.key, JobId: e.jobID, ExpiresAt: e.expires})
			if limit > 0 && len(out) >= limit {
				return
			}
		}
	})
	return out
}

// writePlacement writes one snapshot record per group membership,
// placement and seal, in key order.
func writePlacement(st *state, rw *recordWriter) error {
	return st.place.ForEach(func(k, v []byte) error {
		rec := &fsmpb.SnapshotRecord{}
		switch k[0] {
		case 'm':
			r := &fsmpb.GroupMembers{}
			if err := proto.Unmarshal(v, r); err != nil {
				return corrupt("members %q: %v", k, err)
			}
			if len(k) != 5 || binary.BigEndian.Uint32(k[1:]) != r.GetGroup() {
				return corrupt("members key %q of group %d", k, r.GetGroup())
			}
			rec.Record = &fsmpb.SnapshotRecord_GroupMembers{GroupMembers: r}
		case 'p':
			p := &fsmpb.QueuePlacement{}
			if err := proto.Unmarshal(v, p); err != nil {
				return corrupt("placement %q: %v", k, err)
			}
			rec.Record = &fsmpb.SnapshotRecord_Placement{Placement: p}
		case 's':
			r := &fsmpb.SealQueue{}
			if err := proto.Unmarshal(v, r); err != nil {
				return corrupt("seal %q: %v", k, err)
			}
			rec.Record = &fsmpb.SnapshotRecord_Seal{Seal: r}
		default:
			return corrupt("placement key %q", k)
		}
		return rw.write(rec)
	})
}

// restorePlacement stores a snapshot's placement, seal or group
// membership record.
func restorePlacement(st *state, rec *fsmpb.SnapshotRecord) error {
	switch r := rec.GetRecord().(type) {
	case *fsmpb.SnapshotRecord_GroupMembers:
		m := r.GroupMembers
		if err := checkGroupMembers(m.GetGroup(), m.GetMembers()); err != nil {
			return err
		}
		if m.GetVersion() == 0 || m.GetExpectVersion() != 0 {
			return fmt.Errorf("members of group %d: version %d, expect_version %d (a record has a version and no expect_version)",
				m.GetGroup(), m.GetVersion(), m.GetExpectVersion())
		}
		if _, ok := st.groupMembers(m.GetGroup()); ok {
			return fmt.Errorf("members of group %d twice", m.GetGroup())
		}
		st.putPlaceKey(membersKey(m.GetGroup()), m)
	case *fsmpb.SnapshotRecord_Placement:
		q := r.Placement.GetQueue()
		if q == "" {
			return fmt.Errorf("placement without a queue")
		}
		if _, ok := st.placement(q); ok {
			return fmt.Errorf("placement of %q twice", q)
		}
		st.putRecord('p', q, r.Placement)
	case *fsmpb.SnapshotRecord_Seal:
		q := r.Seal.GetQueue()
		if q == "" || !r.Seal.GetSealed() {
			return fmt.Errorf("seal record without a queue or not sealed")
		}
		if _, ok := st.sealedTo(q); ok {
			return fmt.Errorf("seal of %q twice", q)
		}
		st.putRecord('s', q, r.Seal)
	}
	return nil
}
