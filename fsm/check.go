package fsm

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"
)

// Consistency checks (etcd's corruption check, in our own terms): the
// leader proposes a CheckHash entry from time to time; every node, right
// after committing that entry, opens a read transaction (a view of its
// state as of exactly that index), hashes it in the background and keeps
// the result; Status reports it, and the leader compares the nodes' hashes
// at equal indexes. bbolt checksums no data pages and nothing else
// compares replicas while they run, so this is how a node whose store
// silently went wrong (a flipped bit on disk, a bug, a file edited by
// hand) is found.
//
// Apply only ends its transaction at the entry and records the index: the
// hashing happens outside Apply, so a check of a large store holds up
// nothing, and the entry changes no state.

// checkResult is the last check a node finished.
type checkResult struct {
	mu      sync.Mutex
	index   uint64
	hash    string
	running bool
}

// startCheck hashes the store as of index (the state just committed) in
// the background. A check still running when the next one comes is left
// to finish and the new one skipped: checks are minutes apart, and a node
// that cannot hash in that time reports an older index, which the leader
// does not compare.
func (f *FSM) startCheck(index uint64) {
	f.check.mu.Lock()
	if f.check.running {
		f.check.mu.Unlock()
		return
	}
	f.check.running = true
	f.check.mu.Unlock()
	// The read transaction is begun here, before Apply goes on: it sees
	// exactly the state as of index.
	tx, err := f.db.Begin(false)
	if err != nil {
		f.check.mu.Lock()
		f.check.running = false
		f.check.mu.Unlock()
		return
	}
	go func() {
		sum := sha256.New()
		var hash string
		if st, err := newState(tx); err == nil {
			hashState(sum, st)
			dropResident(tx, tx.Size())
			hash = hex.EncodeToString(sum.Sum(nil))
		}
		_ = tx.Rollback()
		f.check.mu.Lock()
		defer f.check.mu.Unlock()
		f.check.running = false
		if hash != "" {
			f.check.index, f.check.hash = index, hash
		}
	}()
}

// LastCheck returns the log index and state hash of the last consistency
// check this node finished (0 and "" before the first). Nodes that applied
// the same log report the same hash for the same index.
func (f *FSM) LastCheck() (index uint64, hash string) {
	f.check.mu.Lock()
	defer f.check.mu.Unlock()
	return f.check.index, f.check.hash
}
