package brokerd

import "github.com/hashicorp/raft"

// logCacheEntries is how many recent Raft entries stay in memory for
// replication and apply. Followers are normally a few entries behind and
// the FSM applies what was just committed, so a few hundred serve nearly
// every read; an older entry is read from the log store. It counts
// entries, not bytes: one entry of a batched enqueue holds up to the
// proposer's byte limit, so 1,024 of them held ~165 MB per node at 1M
// queued jobs (make bench-backlog, heap profile).
const logCacheEntries = 256

// detachedLogs sits above raft's LogCache and caches copies of the entries
// raft stores. On the leader raft hands StoreLogs pointers into its apply
// futures (&future.log), and LogCache keeps those pointers: each future
// then stays reachable, with the FSM's response in it (the job copies of
// a batch, payloads and request buffers included), until newer entries
// push it out. Measured at ~340 MB of the leader's heap at 1M queued
// jobs, where the 512 MiB soft memory limit then kept the collector
// running half the time and halved the enqueue rate. A copy of the Log
// struct shares the entry's data and lets a future go once answered.
type detachedLogs struct {
	*raft.LogCache
}

// newLogCache wraps store in a LogCache of logCacheEntries entries that
// keeps no apply future alive.
func newLogCache(store raft.LogStore) (detachedLogs, error) {
	c, err := raft.NewLogCache(logCacheEntries, store)
	if err != nil {
		return detachedLogs{}, err
	}
	return detachedLogs{c}, nil
}

// StoreLog stores a copy of l (see detachedLogs).
func (d detachedLogs) StoreLog(l *raft.Log) error {
	return d.StoreLogs([]*raft.Log{l})
}

// StoreLogs stores copies of logs (see detachedLogs).
func (d detachedLogs) StoreLogs(logs []*raft.Log) error {
	cp := make([]raft.Log, len(logs))
	ptrs := make([]*raft.Log, len(logs))
	for i, l := range logs {
		cp[i] = *l
		ptrs[i] = &cp[i]
	}
	return d.LogCache.StoreLogs(ptrs)
}
