package fsm

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"
	"github.com/raftq/raftq/fsm/fsmpb"
	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// SnapshotVersion is the version written in, and required of, a snapshot
// stream's header.
const SnapshotVersion = 1

// maxSnapshotRecord bounds one record of a snapshot stream, so a corrupt
// length prefix fails fast instead of asking for gigabytes.
const maxSnapshotRecord = 1 << 30

// errSnapshot is wrapped by every Restore error about the stream itself.
var errSnapshot = errors.New("fsm: bad snapshot")

// Snapshot captures the state for Raft: it first makes the store durable
// (fdatasync; commits are not synced one by one), because Raft compacts its
// log up to the snapshot's index once the snapshot is persisted, and then
// opens a read transaction, a consistent view that Persist streams while
// Apply goes on. Raft calls Snapshot between Apply calls, so the view is
// exactly the state at the snapshot's index.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	if f.gaveUp.Load() {
		return nil, errGaveUp
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if err := f.db.Sync(); err != nil {
		return nil, fmt.Errorf("fsm: sync store %s before snapshot: %w", f.describe(), err)
	}
	tx, err := f.db.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("fsm: snapshot read transaction: %w", err)
	}
	st, err := newState(tx)
	if err != nil {
		_ = tx.Rollback()
		return nil, fmt.Errorf("fsm: snapshot: %w", err)
	}
	return &snapshot{st: st}, nil
}

type snapshot struct {
	st *state
}

// Persist streams the view to sink: a uvarint-length-prefixed
// fsmpb.SnapshotHeader, then one length-prefixed fsmpb.SnapshotRecord per
// job, queue, idempotency entry, node and schedule, each kind in key order.
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.writeTo(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("fsm: persist snapshot: %w", err)
	}
	return sink.Close()
}

// Release ends the read transaction, letting bbolt reuse the pages it kept.
// The pages Persist read leave the node's RSS first (dropResident).
func (s *snapshot) Release() {
	dropResident(s.st.tx, s.st.tx.Size())
	_ = s.st.tx.Rollback()
}

type recordWriter struct {
	w   *bufio.Writer
	buf []byte
	lb  [binary.MaxVarintLen64]byte // here, not on the stack: Write makes it escape
	// written counts bytes since the last drop; tx is the view read.
	written int64
	tx      *bbolt.Tx
}

// dropEvery is how many snapshot bytes Persist streams between drops of
// the store's resident pages, so a snapshot of a large store does not
// raise the node's RSS by the store's size while it runs.
const dropEvery = 64 << 20

// snapshotJobField is the number of SnapshotRecord's job field.
const snapshotJobField protowire.Number = 1

func (r *recordWriter) write(m proto.Message) error {
	b, err := marshalOpts.MarshalAppend(r.buf[:0], m)
	if err != nil {
		return err
	}
	r.buf = b
	return r.writeRaw(b)
}

// writeRaw writes one length-prefixed record of already marshalled bytes.
func (r *recordWriter) writeRaw(b []byte) error {
	if r.written += int64(len(b)); r.written >= dropEvery && r.tx != nil {
		r.written = 0
		dropResident(r.tx, r.tx.Size())
	}
	n := binary.PutUvarint(r.lb[:], uint64(len(b)))
	if _, err := r.w.Write(r.lb[:n]); err != nil {
		return err
	}
	_, err := r.w.Write(b)
	return err
}

func (s *snapshot) writeTo(w io.Writer) error {
	st := s.st
	rw := &recordWriter{w: bufio.NewWriterSize(w, 256<<10), tx: st.tx}
	if err := rw.write(&fsmpb.SnapshotHeader{Version: SnapshotVersion, LastIndex: st.applied, Seq: st.seq}); err != nil {
		return err
	}
	rec := &fsmpb.SnapshotRecord{}
	// A job's stored bytes are its deterministically marshalled JobRecord,
	// so its SnapshotRecord is those bytes behind the tag of field 1 (job):
	// byte for byte what marshalling the record would give, without
	// decoding and re-encoding a million jobs.
	if err := st.jobs.ForEach(func(_, v []byte) error {
		b := protowire.AppendTag(rw.buf[:0], snapshotJobField, protowire.BytesType)
		rw.buf = protowire.AppendBytes(b, v)
		return rw.writeRaw(rw.buf)
	}); err != nil {
		return err
	}
	if err := st.queues.ForEach(func(k, v []byte) error {
		q := decodeQueue(string(k), v)
		rec.Record = &fsmpb.SnapshotRecord_Queue{Queue: &fsmpb.QueueRecord{Name: q.name, Paused: q.paused}}
		return rw.write(rec)
	}); err != nil {
		return err
	}
	if err := st.idem.ForEach(func(k, _ []byte) error {
		q, key, ok := cutStr(k)
		if !ok {
			return corrupt("idempotency key %x", k)
		}
		e, _ := st.idemGet(q, string(key))
		rec.Record = &fsmpb.SnapshotRecord_Idempotency{Idempotency: &fsmpb.IdempotencyRecord{
			Queue: e.queue, Key: e.key, JobId: e.jobID, ExpiresAt: e.expires}}
		return rw.write(rec)
	}); err != nil {
		return err
	}
	if err := st.nodes.ForEach(func(k, _ []byte) error {
		n, _ := st.node(string(k))
		rec.Record = &fsmpb.SnapshotRecord_Node{Node: &fsmpb.NodeMeta{
			NodeId: n.NodeID, GrpcAddr: n.GRPCAddr, RaftAddr: n.RaftAddr}}
		return rw.write(rec)
	}); err != nil {
		return err
	}
	if err := writeSchedules(st, rw); err != nil {
		return err
	}
	if err := writePlacement(st, rw); err != nil {
		return err
	}
	return rw.w.Flush()
}

func jobToRecord(r *fsmpb.JobRecord, j *Job) {
	*r = fsmpb.JobRecord{
		Id:               j.ID,
		Queue:            j.Queue,
		Type:             j.Type,
		Payload:          j.Payload,
		Priority:         j.Priority,
		State:            int32(j.State),
		Attempts:         j.Attempts,
		MaxAttempts:      j.MaxAttempts,
		LeaseDuration:    j.LeaseDuration,
		InitialBackoff:   j.InitialBackoff,
		MaxBackoff:       j.MaxBackoff,
		IdempotencyKey:   j.IdempotencyKey,
		DedupWindow:      j.DedupWindow,
		LastError:        j.LastError,
		RunAt:            j.RunAt,
		CreatedAt:        j.CreatedAt,
		UpdatedAt:        j.UpdatedAt,
		FinishedAt:       j.FinishedAt,
		LeaseToken:       j.LeaseToken,
		LeaseDeadline:    j.LeaseDeadline,
		LeasedBy:         j.LeasedBy,
		CancelRequested:  j.CancelRequested,
		Seq:              j.Seq,
		Schedule:         j.ScheduleName,
		ScheduleTick:     j.ScheduleTick,
		ConcurrencyKey:   j.ConcurrencyKey,
		TraceParent:      j.TraceParent,
		TraceState:       j.TraceState,
		HasProgress:      j.HasProgress,
		Progress:         j.Progress,
		ProgressMessage:  j.ProgressMessage,
		StartDeadline:    j.StartDeadline,
		StartToClose:     j.StartToClose,
		AttemptDeadline:  j.AttemptDeadline,
		UniqueKey:        j.UniqueKey,
		Parents:          j.Parents,
		DependencyPolicy: j.DependencyPolicy,
		WaitingOn:        j.WaitingOn,
		ParentFailed:     j.ParentFailed,
	}
}

func recordToJob(r *fsmpb.JobRecord) *Job {
	return &Job{
		ID:               r.GetId(),
		Queue:            r.GetQueue(),
		Type:             r.GetType(),
		Payload:          r.GetPayload(),
		Priority:         r.GetPriority(),
		State:            State(r.GetState()),
		Attempts:         r.GetAttempts(),
		MaxAttempts:      r.GetMaxAttempts(),
		LeaseDuration:    r.GetLeaseDuration(),
		InitialBackoff:   r.GetInitialBackoff(),
		MaxBackoff:       r.GetMaxBackoff(),
		IdempotencyKey:   r.GetIdempotencyKey(),
		ConcurrencyKey:   r.GetConcurrencyKey(),
		TraceParent:      r.GetTraceParent(),
		TraceState:       r.GetTraceState(),
		HasProgress:      r.GetHasProgress(),
		Progress:         r.GetProgress(),
		ProgressMessage:  r.GetProgressMessage(),
		DedupWindow:      r.GetDedupWindow(),
		LastError:        r.GetLastError(),
		RunAt:            r.GetRunAt(),
		CreatedAt:        r.GetCreatedAt(),
		UpdatedAt:        r.GetUpdatedAt(),
		FinishedAt:       r.GetFinishedAt(),
		LeaseToken:       r.GetLeaseToken(),
		LeaseDeadline:    r.GetLeaseDeadline(),
		LeasedBy:         r.GetLeasedBy(),
		CancelRequested:  r.GetCancelRequested(),
		Seq:              r.GetSeq(),
		ScheduleName:     r.GetSchedule(),
		ScheduleTick:     r.GetScheduleTick(),
		StartDeadline:    r.GetStartDeadline(),
		StartToClose:     r.GetStartToClose(),
		AttemptDeadline:  r.GetAttemptDeadline(),
		UniqueKey:        r.GetUniqueKey(),
		Parents:          r.GetParents(),
		DependencyPolicy: r.GetDependencyPolicy(),
		WaitingOn:        r.GetWaitingOn(),
		ParentFailed:     r.GetParentFailed(),
	}
}

// restoreSuffix names the temporary store a Restore fills before it
// renames it over the store.
const restoreSuffix = ".restore"

// restoreBatch is how many snapshot records go into one store transaction:
// bbolt keeps a transaction's dirty pages in memory until it commits.
const restoreBatch = 4096

// Restore replaces the state with the snapshot read from rc, and closes rc.
// It fills a brand new store file (rebuilding every index and count), and
// only when the whole stream was valid makes it durable and renames it over
// the store: on error the FSM is untouched.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	f.wmu.Lock()
	defer f.wmu.Unlock()
	var db *bbolt.DB
	var err error
	tmp := f.path + restoreSuffix
	if f.path == "" {
		db, err = openAnon()
	} else {
		_ = os.Remove(tmp)
		db, err = openDB(tmp, f.opts.InitialMmapSize)
	}
	if err != nil {
		return fmt.Errorf("fsm: restore: new store: %w", err)
	}
	last, err := readSnapshot(rc, db)
	if err == nil && f.path != "" {
		err = db.Sync()
		if err == nil {
			err = os.Rename(tmp, f.path)
		}
		if err == nil {
			err = syncDir(filepath.Dir(f.path))
		}
	}
	if err != nil {
		_ = db.Close()
		if f.path != "" {
			_ = os.Remove(tmp)
		}
		return fmt.Errorf("fsm: restore: %w", err)
	}
	f.mu.Lock()
	old := f.db
	f.db = db
	if f.ref != nil {
		f.ref.db = db
	}
	f.lastIndex.Store(last)
	f.gen.Add(1)
	f.placeGen.Add(1)
	f.allocAtTrim = 0 // the new store counts its own allocations
	f.mu.Unlock()
	// Closing waits for the old store's snapshots to be released, which may
	// be persisting on another goroutine: do not make Raft wait for them.
	go old.Close()
	f.signal(true)
	return nil
}

type recordReader struct {
	r   *bufio.Reader
	buf bytes.Buffer
}

// next returns the next record's bytes (valid until the next call), or
// io.EOF at a clean end of stream.
func (r *recordReader) next() ([]byte, error) {
	n, err := binary.ReadUvarint(r.r)
	if err == io.EOF {
		return nil, io.EOF
	}
	if err != nil {
		return nil, fmt.Errorf("%w: record length: %v", errSnapshot, err)
	}
	if n > maxSnapshotRecord {
		return nil, fmt.Errorf("%w: record of %d bytes", errSnapshot, n)
	}
	r.buf.Reset()
	// CopyN grows the buffer as bytes arrive, so a lying length prefix on a
	// short stream costs no more memory than the stream itself.
	if m, err := io.CopyN(&r.buf, r.r, int64(n)); err != nil {
		return nil, fmt.Errorf("%w: record truncated at %d of %d bytes: %v", errSnapshot, m, n, err)
	}
	return r.buf.Bytes(), nil
}

// readSnapshot fills the empty store db from the stream, validating as it
// goes, and returns the snapshot's index.
func readSnapshot(r io.Reader, db *bbolt.DB) (uint64, error) {
	rr := &recordReader{r: bufio.NewReaderSize(r, 256<<10)}
	b, err := rr.next()
	if err == io.EOF {
		return 0, fmt.Errorf("%w: empty stream, no header", errSnapshot)
	}
	if err != nil {
		return 0, err
	}
	hdr := &fsmpb.SnapshotHeader{}
	if err := proto.Unmarshal(b, hdr); err != nil {
		return 0, fmt.Errorf("%w: header: %v", errSnapshot, err)
	}
	if hdr.GetVersion() != SnapshotVersion {
		return 0, fmt.Errorf("%w: version %d, want %d", errSnapshot, hdr.GetVersion(), SnapshotVersion)
	}
	seenQueue := map[string]bool{}
	rec := &fsmpb.SnapshotRecord{}
	done := false
	for i := 1; !done; {
		err := db.Update(func(tx *bbolt.Tx) error {
			st, err := newState(tx)
			if err != nil {
				return err
			}
			for n := 0; n < restoreBatch; n, i = n+1, i+1 {
				b, err := rr.next()
				if err == io.EOF {
					done = true
					st.seq = hdr.GetSeq()
					st.setApplied(hdr.GetLastIndex())
					st.flush()
					return nil
				}
				if err != nil {
					return err
				}
				proto.Reset(rec)
				if err := proto.Unmarshal(b, rec); err != nil {
					return fmt.Errorf("%w: record %d: %v", errSnapshot, i, err)
				}
				if err := restoreRecord(st, rec, seenQueue); err != nil {
					return fmt.Errorf("%w: record %d: %v", errSnapshot, i, err)
				}
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	return hdr.GetLastIndex(), nil
}

func restoreRecord(st *state, rec *fsmpb.SnapshotRecord, seenQueue map[string]bool) error {
	switch r := rec.GetRecord().(type) {
	case *fsmpb.SnapshotRecord_Job:
		j := recordToJob(r.Job)
		if j.ID == "" || j.Queue == "" {
			return errors.New("job without id or queue")
		}
		if err := checkKeySizes(j.ID, j.Queue, j.IdempotencyKey, j.ConcurrencyKey, j.UniqueKey); err != nil {
			return err
		}
		if j.StartToClose < 0 {
			return fmt.Errorf("job %q with a negative start_to_close", j.ID)
		}
		if err := checkParents(j.ID, j.Parents); err != nil {
			return err
		}
		if j.State < StateScheduled || j.State >= NumStates {
			return fmt.Errorf("job %q in unknown state %d", j.ID, j.State)
		}
		if st.jobs.Get([]byte(j.ID)) != nil {
			return fmt.Errorf("job %q twice", j.ID)
		}
		if _, ok := uniqueOf(j); ok {
			if holder, held := st.uniqueHolder(j.Queue, j.UniqueKey); held {
				return fmt.Errorf("jobs %q and %q both hold unique key %q of queue %q", holder, j.ID, j.UniqueKey, j.Queue)
			}
		}
		st.put(nil, j)
	case *fsmpb.SnapshotRecord_Queue:
		name := r.Queue.GetName()
		if name == "" || seenQueue[name] {
			return fmt.Errorf("queue %q empty or twice", name)
		}
		if err := checkKeySizes(name); err != nil {
			return err
		}
		seenQueue[name] = true
		q := st.ensureQueue(name)
		q.paused = r.Queue.GetPaused()
		st.setQueue(q)
	case *fsmpb.SnapshotRecord_Idempotency:
		e := idemEntry{queue: r.Idempotency.GetQueue(), key: r.Idempotency.GetKey(),
			jobID: r.Idempotency.GetJobId(), expires: r.Idempotency.GetExpiresAt()}
		if e.queue == "" || e.key == "" {
			return errors.New("idempotency entry without queue or key")
		}
		if err := checkKeySizes(e.queue, e.key); err != nil {
			return err
		}
		if _, ok := st.idemGet(e.queue, e.key); ok {
			return fmt.Errorf("idempotency key %q/%q twice", e.queue, e.key)
		}
		st.setIdem(e)
	case *fsmpb.SnapshotRecord_Node:
		n := NodeMeta{NodeID: r.Node.GetNodeId(), GRPCAddr: r.Node.GetGrpcAddr(), RaftAddr: r.Node.GetRaftAddr()}
		if n.NodeID == "" {
			return fmt.Errorf("node %q empty or twice", n.NodeID)
		}
		if err := checkKeySizes(n.NodeID); err != nil {
			return err
		}
		if _, ok := st.node(n.NodeID); ok {
			return fmt.Errorf("node %q empty or twice", n.NodeID)
		}
		st.setNode(n)
	case *fsmpb.SnapshotRecord_Schedule:
		return restoreSchedule(st, r.Schedule)
	case *fsmpb.SnapshotRecord_Placement, *fsmpb.SnapshotRecord_Seal, *fsmpb.SnapshotRecord_GroupMembers:
		return restorePlacement(st, rec)
	default:
		return errors.New("record of unknown kind")
	}
	return nil
}
