package fsm

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
)

// Hash returns the hex SHA-256 of a canonical encoding of the whole state:
// every field of every job, queues (with their counts), idempotency
// entries, nodes and the seq counter, each in key order. LastIndex is left
// out. Replicas that applied the same log have equal hashes; the property
// tests and operators compare them to detect divergence.
//
// The state is cloned under the lock and hashed outside it, so Hash does
// not hold up Apply.
func (f *FSM) Hash() string {
	f.mu.Lock()
	st := f.st.clone()
	f.mu.Unlock()
	return st.hash()
}

type hasher struct{ b []byte }

func (h *hasher) u64(v uint64) { h.b = binary.BigEndian.AppendUint64(h.b, v) }
func (h *hasher) i64(v int64)  { h.u64(uint64(v)) }
func (h *hasher) bool(v bool) {
	if v {
		h.b = append(h.b, 1)
	} else {
		h.b = append(h.b, 0)
	}
}
func (h *hasher) str(s string) {
	h.b = binary.AppendUvarint(h.b, uint64(len(s)))
	h.b = append(h.b, s...)
}
func (h *hasher) bytes(p []byte) {
	h.b = binary.AppendUvarint(h.b, uint64(len(p)))
	h.b = append(h.b, p...)
}

func (st *state) hash() string {
	sum := sha256.New()
	h := &hasher{b: make([]byte, 0, 1024)}
	// flush hands the buffer to the hash once it is big enough (or at the
	// end), keeping memory flat whatever the state's size.
	flush := func(final bool) {
		if final || len(h.b) >= 32<<10 {
			sum.Write(h.b)
			h.b = h.b[:0]
		}
	}
	h.str("raftq-fsm-v1")
	h.u64(st.seq)
	h.str("jobs")
	h.u64(uint64(st.jobs.Len()))
	st.jobs.Ascend(func(e jobEntry) bool {
		j := e.job
		h.str(j.ID)
		h.str(j.Queue)
		h.str(j.Type)
		h.bytes(j.Payload)
		h.i64(int64(j.Priority))
		h.i64(int64(j.State))
		h.i64(int64(j.Attempts))
		h.i64(int64(j.MaxAttempts))
		h.i64(j.LeaseDuration)
		h.i64(j.InitialBackoff)
		h.i64(j.MaxBackoff)
		h.str(j.IdempotencyKey)
		h.i64(j.DedupWindow)
		h.str(j.LastError)
		h.i64(j.RunAt)
		h.i64(j.CreatedAt)
		h.i64(j.UpdatedAt)
		h.i64(j.FinishedAt)
		h.u64(j.LeaseToken)
		h.i64(j.LeaseDeadline)
		h.str(j.LeasedBy)
		h.bool(j.CancelRequested)
		h.u64(j.Seq)
		flush(false)
		return true
	})
	h.str("queues")
	h.u64(uint64(st.queues.Len()))
	st.queues.Ascend(func(q queueRec) bool {
		h.str(q.name)
		h.bool(q.paused)
		for _, c := range q.counts {
			h.i64(c)
		}
		flush(false)
		return true
	})
	h.str("idempotency")
	h.u64(uint64(st.idem.Len()))
	st.idem.Ascend(func(e idemEntry) bool {
		h.str(e.queue)
		h.str(e.key)
		h.str(e.jobID)
		h.i64(e.expires)
		flush(false)
		return true
	})
	h.str("nodes")
	h.u64(uint64(st.nodes.Len()))
	st.nodes.Ascend(func(n NodeMeta) bool {
		h.str(n.NodeID)
		h.str(n.GRPCAddr)
		h.str(n.RaftAddr)
		flush(false)
		return true
	})
	flush(true)
	return hex.EncodeToString(sum.Sum(nil))
}
