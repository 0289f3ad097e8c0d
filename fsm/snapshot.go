package fsm

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/raft"
	"github.com/raftq/raftq/fsm/fsmpb"
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

// Snapshot captures the state for Raft. It only clones the copy-on-write
// trees under the lock (O(number of trees)); the returned snapshot reads
// its frozen view in Persist while Apply goes on changing the live trees.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &snapshot{st: f.st.clone(), lastIndex: f.lastIndex.Load()}, nil
}

type snapshot struct {
	st        *state
	lastIndex uint64
}

// Persist streams the frozen state to sink: a uvarint-length-prefixed
// fsmpb.SnapshotHeader, then one length-prefixed fsmpb.SnapshotRecord per
// job, queue, idempotency entry and node, each kind in key order.
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.writeTo(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("fsm: persist snapshot: %w", err)
	}
	return sink.Close()
}

// Release is a no-op: the frozen trees are garbage once unreferenced.
func (s *snapshot) Release() {}

type recordWriter struct {
	w   *bufio.Writer
	buf []byte
	lb  [binary.MaxVarintLen64]byte // here, not on the stack: Write makes it escape
}

func (r *recordWriter) write(m proto.Message) error {
	b, err := marshalOpts.MarshalAppend(r.buf[:0], m)
	if err != nil {
		return err
	}
	r.buf = b
	n := binary.PutUvarint(r.lb[:], uint64(len(b)))
	if _, err := r.w.Write(r.lb[:n]); err != nil {
		return err
	}
	_, err = r.w.Write(b)
	return err
}

func (s *snapshot) writeTo(w io.Writer) error {
	rw := &recordWriter{w: bufio.NewWriterSize(w, 256<<10)}
	if err := rw.write(&fsmpb.SnapshotHeader{Version: SnapshotVersion, LastIndex: s.lastIndex, Seq: s.st.seq}); err != nil {
		return err
	}
	var err error
	rec := &fsmpb.SnapshotRecord{}
	jr := &fsmpb.JobRecord{}
	jobBody := &fsmpb.SnapshotRecord_Job{Job: jr}
	s.st.jobs.Ascend(func(e jobEntry) bool {
		jobToRecord(jr, e.job)
		rec.Record = jobBody
		err = rw.write(rec)
		return err == nil
	})
	if err != nil {
		return err
	}
	s.st.queues.Ascend(func(q queueRec) bool {
		rec.Record = &fsmpb.SnapshotRecord_Queue{Queue: &fsmpb.QueueRecord{Name: q.name, Paused: q.paused}}
		err = rw.write(rec)
		return err == nil
	})
	if err != nil {
		return err
	}
	s.st.idem.Ascend(func(e idemEntry) bool {
		rec.Record = &fsmpb.SnapshotRecord_Idempotency{Idempotency: &fsmpb.IdempotencyRecord{
			Queue: e.queue, Key: e.key, JobId: e.jobID, ExpiresAt: e.expires}}
		err = rw.write(rec)
		return err == nil
	})
	if err != nil {
		return err
	}
	s.st.nodes.Ascend(func(n NodeMeta) bool {
		rec.Record = &fsmpb.SnapshotRecord_Node{Node: &fsmpb.NodeMeta{
			NodeId: n.NodeID, GrpcAddr: n.GRPCAddr, RaftAddr: n.RaftAddr}}
		err = rw.write(rec)
		return err == nil
	})
	if err != nil {
		return err
	}
	return rw.w.Flush()
}

func jobToRecord(r *fsmpb.JobRecord, j *Job) {
	*r = fsmpb.JobRecord{
		Id:              j.ID,
		Queue:           j.Queue,
		Type:            j.Type,
		Payload:         j.Payload,
		Priority:        j.Priority,
		State:           int32(j.State),
		Attempts:        j.Attempts,
		MaxAttempts:     j.MaxAttempts,
		LeaseDuration:   j.LeaseDuration,
		InitialBackoff:  j.InitialBackoff,
		MaxBackoff:      j.MaxBackoff,
		IdempotencyKey:  j.IdempotencyKey,
		DedupWindow:     j.DedupWindow,
		LastError:       j.LastError,
		RunAt:           j.RunAt,
		CreatedAt:       j.CreatedAt,
		UpdatedAt:       j.UpdatedAt,
		FinishedAt:      j.FinishedAt,
		LeaseToken:      j.LeaseToken,
		LeaseDeadline:   j.LeaseDeadline,
		LeasedBy:        j.LeasedBy,
		CancelRequested: j.CancelRequested,
		Seq:             j.Seq,
	}
}

func recordToJob(r *fsmpb.JobRecord) *Job {
	return &Job{
		ID:              r.GetId(),
		Queue:           r.GetQueue(),
		Type:            r.GetType(),
		Payload:         r.GetPayload(),
		Priority:        r.GetPriority(),
		State:           State(r.GetState()),
		Attempts:        r.GetAttempts(),
		MaxAttempts:     r.GetMaxAttempts(),
		LeaseDuration:   r.GetLeaseDuration(),
		InitialBackoff:  r.GetInitialBackoff(),
		MaxBackoff:      r.GetMaxBackoff(),
		IdempotencyKey:  r.GetIdempotencyKey(),
		DedupWindow:     r.GetDedupWindow(),
		LastError:       r.GetLastError(),
		RunAt:           r.GetRunAt(),
		CreatedAt:       r.GetCreatedAt(),
		UpdatedAt:       r.GetUpdatedAt(),
		FinishedAt:      r.GetFinishedAt(),
		LeaseToken:      r.GetLeaseToken(),
		LeaseDeadline:   r.GetLeaseDeadline(),
		LeasedBy:        r.GetLeasedBy(),
		CancelRequested: r.GetCancelRequested(),
		Seq:             r.GetSeq(),
	}
}

// Restore replaces the state with the snapshot read from rc, and closes rc.
// It decodes into brand new trees, rebuilding every index and count, and
// swaps them in only when the whole stream was valid: on error the FSM is
// untouched.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, last, err := readSnapshot(rc)
	if err != nil {
		return fmt.Errorf("fsm: restore: %w", err)
	}
	f.mu.Lock()
	f.st = st
	f.lastIndex.Store(last)
	f.mu.Unlock()
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

func readSnapshot(r io.Reader) (*state, uint64, error) {
	rr := &recordReader{r: bufio.NewReaderSize(r, 256<<10)}
	b, err := rr.next()
	if err == io.EOF {
		return nil, 0, fmt.Errorf("%w: empty stream, no header", errSnapshot)
	}
	if err != nil {
		return nil, 0, err
	}
	hdr := &fsmpb.SnapshotHeader{}
	if err := proto.Unmarshal(b, hdr); err != nil {
		return nil, 0, fmt.Errorf("%w: header: %v", errSnapshot, err)
	}
	if hdr.GetVersion() != SnapshotVersion {
		return nil, 0, fmt.Errorf("%w: version %d, want %d", errSnapshot, hdr.GetVersion(), SnapshotVersion)
	}
	st := newState()
	st.seq = hdr.GetSeq()
	seenQueue := map[string]bool{}
	rec := &fsmpb.SnapshotRecord{}
	for i := 1; ; i++ {
		b, err := rr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, 0, err
		}
		proto.Reset(rec)
		if err := proto.Unmarshal(b, rec); err != nil {
			return nil, 0, fmt.Errorf("%w: record %d: %v", errSnapshot, i, err)
		}
		if err := restoreRecord(st, rec, seenQueue); err != nil {
			return nil, 0, fmt.Errorf("%w: record %d: %v", errSnapshot, i, err)
		}
	}
	return st, hdr.GetLastIndex(), nil
}

func restoreRecord(st *state, rec *fsmpb.SnapshotRecord, seenQueue map[string]bool) error {
	switch r := rec.GetRecord().(type) {
	case *fsmpb.SnapshotRecord_Job:
		j := recordToJob(r.Job)
		if j.ID == "" || j.Queue == "" {
			return errors.New("job without id or queue")
		}
		if j.State < StateScheduled || j.State > StateCancelled {
			return fmt.Errorf("job %q in unknown state %d", j.ID, j.State)
		}
		if st.job(j.ID) != nil {
			return fmt.Errorf("job %q twice", j.ID)
		}
		st.put(nil, j)
	case *fsmpb.SnapshotRecord_Queue:
		name := r.Queue.GetName()
		if name == "" || seenQueue[name] {
			return fmt.Errorf("queue %q empty or twice", name)
		}
		seenQueue[name] = true
		q := st.ensureQueue(name)
		q.paused = r.Queue.GetPaused()
		st.queues.ReplaceOrInsert(q)
	case *fsmpb.SnapshotRecord_Idempotency:
		e := idemEntry{queue: r.Idempotency.GetQueue(), key: r.Idempotency.GetKey(),
			jobID: r.Idempotency.GetJobId(), expires: r.Idempotency.GetExpiresAt()}
		if e.queue == "" || e.key == "" {
			return errors.New("idempotency entry without queue or key")
		}
		if st.idem.Has(e) {
			return fmt.Errorf("idempotency key %q/%q twice", e.queue, e.key)
		}
		st.setIdem(e)
	case *fsmpb.SnapshotRecord_Node:
		n := NodeMeta{NodeID: r.Node.GetNodeId(), GRPCAddr: r.Node.GetGrpcAddr(), RaftAddr: r.Node.GetRaftAddr()}
		if n.NodeID == "" || st.nodes.Has(n) {
			return fmt.Errorf("node %q empty or twice", n.NodeID)
		}
		st.nodes.ReplaceOrInsert(n)
	default:
		return errors.New("record of unknown kind")
	}
	return nil
}
