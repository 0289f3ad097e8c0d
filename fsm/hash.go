package fsm

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"

	"go.etcd.io/bbolt"
)

// Hash returns the hex SHA-256 of the store's contents: the seq counter,
// then every bucket but meta (jobs with every field, every index, queues
// with their counts, idempotency entries, nodes), each key and value in key
// order. LastIndex is left out. Replicas that applied the same log have
// byte-equal stores and so equal hashes; the property tests and operators
// compare them to detect divergence, including in an index.
//
// It reads one store read transaction, so it does not hold up Apply.
//
// Hashing reads the whole store, so the result is kept until the next
// Apply or Restore, and concurrent callers share one computation: Status
// answers (which carry it, and which clients call to find the leader)
// cost one pass per state, not one per call.
func (f *FSM) Hash() string {
	f.hashMu.Lock()
	defer f.hashMu.Unlock()
	gen := f.gen.Load()
	if f.hashGen == gen && f.hashSum != "" {
		return f.hashSum
	}
	sum := sha256.New()
	f.view(func(st *state) {
		hashState(sum, st)
		dropResident(st.tx, st.tx.Size()) // it read every page (resident_linux.go)
	})
	f.hashGen, f.hashSum = gen, hex.EncodeToString(sum.Sum(nil))
	return f.hashSum
}

func hashState(sum hash.Hash, st *state) {
	// buf collects small writes and hands them to the hash in chunks,
	// keeping memory flat whatever the state's size.
	buf := make([]byte, 0, 64<<10)
	put := func(p []byte) {
		buf = binary.AppendUvarint(buf, uint64(len(p)))
		buf = append(buf, p...)
		if len(buf) >= 32<<10 {
			sum.Write(buf)
			buf = buf[:0]
		}
	}
	put([]byte("raftq-fsm-v2"))
	put(binary.BigEndian.AppendUint64(nil, st.seq))
	for _, name := range stateBuckets {
		put(name)
		b := st.tx.Bucket(name)
		// A 1 before every pair and a 0 after the last keeps the bucket
		// boundaries unambiguous.
		_ = b.ForEach(func(k, v []byte) error {
			buf = append(buf, 1)
			put(k)
			put(v)
			return nil
		})
		buf = append(buf, 0)
	}
	hashSchedules(st, put, func(b byte) { buf = append(buf, b) })
	// The concurrency-key indexes, like schedules, only when they hold
	// something: a store without keyed jobs hashes as before keys existed.
	hashIfAny(bReadyKey, st.readyKey, put, func(c byte) { buf = append(buf, c) })
	hashIfAny(bLeasedKey, st.leasedKey, put, func(c byte) { buf = append(buf, c) })
	// So are the timeout and uniqueness indexes.
	hashIfAny(bToStart, st.toStart, put, func(c byte) { buf = append(buf, c) })
	hashIfAny(bToClose, st.toClose, put, func(c byte) { buf = append(buf, c) })
	hashIfAny(bUnique, st.unique, put, func(c byte) { buf = append(buf, c) })
	// The workflow indexes likewise: without dependencies, as before.
	hashIfAny(bDepChildren, st.depChildren, put, func(c byte) { buf = append(buf, c) })
	hashIfAny(bDepWaiting, st.depWaiting, put, func(c byte) { buf = append(buf, c) })
	// Placement, seal and group membership records likewise: a store that
	// never saw a move or a membership record hashes as before they existed.
	hashIfAny(bPlace, st.place, put, func(c byte) { buf = append(buf, c) })
	sum.Write(buf)
}

// hashIfAny hashes bucket b's name and pairs when it is not empty.
func hashIfAny(name []byte, b *bbolt.Bucket, put func([]byte), mark func(byte)) {
	if k, _ := b.Cursor().First(); k == nil {
		return
	}
	put(name)
	_ = b.ForEach(func(k, v []byte) error {
		mark(1)
		put(k)
		put(v)
		return nil
	})
	mark(0)
}
