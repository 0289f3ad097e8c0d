package brokerd

import (
	"fmt"
	"sync"

	"github.com/hashicorp/raft"
)

// Bounds of the in-memory cache of recent Raft entries (logCache).
// Followers are normally a few entries behind and the FSM applies what was
// just committed, so a few hundred entries serve nearly every read; an
// older entry is read from the log store. The byte bound matters because
// one entry of batched enqueues holds up to the proposer's ~4 MiB: raft's
// own LogCache counts entries only, and its 1,024 held ~165 MB per node
// at 1M queued jobs (make bench-backlog, heap profile).
const (
	logCacheEntries = 256
	logCacheBytes   = 64 << 20
)

// logCache is the Raft log store as raft sees it: the recent entries in
// memory, bounded by count and by bytes, over the store on disk. It takes
// the place of raft's LogCache for two reasons:
//
//   - LogCache keeps the pointers raft hands it, and on the leader those
//     point into raft's apply futures (&future.log). Each future then stays
//     reachable, with the FSM's response in it (the job copies of a batch,
//     payloads and request buffers included), until newer entries push it
//     out: measured at ~340 MB of the leader's heap at 1M queued jobs, where
//     the 512 MiB soft memory limit kept the collector running half the
//     time and halved the enqueue rate. logCache keeps copies of the Log
//     structs (the data is shared, not copied), so a future goes once it
//     is answered.
//   - LogCache bounds entries, not bytes (see logCacheBytes).
//
// The cache holds one contiguous range of indexes, [first, next).
type logCache struct {
	store raft.LogStore

	mu          sync.Mutex
	ring        []raft.Log
	first, next uint64
	bytes       int
}

func newLogCache(store raft.LogStore) *logCache {
	return &logCache{store: store, ring: make([]raft.Log, logCacheEntries)}
}

// GetLog reads entry idx from memory if cached, else from the store.
func (c *logCache) GetLog(idx uint64, out *raft.Log) error {
	c.mu.Lock()
	if idx >= c.first && idx < c.next {
		*out = c.ring[idx%uint64(len(c.ring))]
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	return c.store.GetLog(idx, out)
}

// StoreLog stores l (see StoreLogs).
func (c *logCache) StoreLog(l *raft.Log) error {
	return c.StoreLogs([]*raft.Log{l})
}

// StoreLogs writes logs to the store and, once written, caches copies.
func (c *logCache) StoreLogs(logs []*raft.Log) error {
	// Neither the store nor the cache gets raft's pointers (see logCache).
	cp := make([]raft.Log, len(logs))
	ptrs := make([]*raft.Log, len(logs))
	for i, l := range logs {
		cp[i] = *l
		ptrs[i] = &cp[i]
	}
	if err := c.store.StoreLogs(ptrs); err != nil {
		return fmt.Errorf("raft log store: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := uint64(len(c.ring))
	for i := range cp {
		l := &cp[i]
		if l.Index != c.next || c.first == c.next {
			c.resetLocked(l.Index) // not contiguous with what is cached
		}
		if c.next-c.first == n {
			c.evictLocked() // its slot is the one l takes
		}
		c.ring[l.Index%n] = *l
		c.next = l.Index + 1
		c.bytes += len(l.Data)
		for c.bytes > logCacheBytes && c.next-c.first > 1 {
			c.evictLocked()
		}
	}
	return nil
}

func (c *logCache) evictLocked() {
	i := c.first % uint64(len(c.ring))
	c.bytes -= len(c.ring[i].Data)
	c.ring[i] = raft.Log{}
	c.first++
}

func (c *logCache) resetLocked(at uint64) {
	clear(c.ring)
	c.first, c.next, c.bytes = at, at, 0
}

// DeleteRange deletes [min, max] from the store and empties the cache
// (raft deletes for compaction and for a follower's conflicting tail).
func (c *logCache) DeleteRange(min, max uint64) error {
	c.mu.Lock()
	c.resetLocked(0)
	c.mu.Unlock()
	return c.store.DeleteRange(min, max)
}

// FirstIndex is the store's.
func (c *logCache) FirstIndex() (uint64, error) { return c.store.FirstIndex() }

// LastIndex is the store's.
func (c *logCache) LastIndex() (uint64, error) { return c.store.LastIndex() }

// IsMonotonic reports whether the store only ever deletes a prefix
// (raft.MonotonicLogStore; raft-wal does), which changes how raft installs
// a snapshot.
func (c *logCache) IsMonotonic() bool {
	m, ok := c.store.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

// cached reports the cached range and its bytes (tests).
func (c *logCache) cached() (first, next uint64, bytes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.first, c.next, c.bytes
}
