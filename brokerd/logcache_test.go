package brokerd

import (
	"runtime"
	"testing"
	"weak"

	"github.com/hashicorp/raft"
)

// TestLogCacheKeepsNoFutureAlive: raft stores pointers into its apply
// futures; the cache must not keep such a future (and the FSM response in
// it) reachable, while still serving the entry.
func TestLogCacheKeepsNoFutureAlive(t *testing.T) {
	c := newLogCache(raft.NewInmemStore())
	// future stands in for raft's logFuture: the Log is a field of a
	// larger object that also holds the response.
	type future struct {
		log      raft.Log
		response []byte
	}
	f := &future{log: raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: []byte("entry")}, response: make([]byte, 1<<20)}
	w := weak.Make(f)
	if err := c.StoreLogs([]*raft.Log{&f.log}); err != nil {
		t.Fatal(err)
	}
	f = nil
	runtime.GC()
	runtime.GC()
	if w.Value() != nil {
		t.Fatal("the log cache keeps the apply future (and its response) alive")
	}
	var got raft.Log
	if err := c.GetLog(1, &got); err != nil || string(got.Data) != "entry" || got.Term != 1 {
		t.Fatalf("cached entry: %+v, %v", got, err)
	}
}

// TestLogCacheBounds: the cache holds at most logCacheEntries entries and
// logCacheBytes bytes, one contiguous range; every entry stays readable
// (from the store once evicted); a deleted range is not served from memory.
func TestLogCacheBounds(t *testing.T) {
	store := raft.NewInmemStore()
	c := newLogCache(store)
	put := func(from, to uint64, size int) {
		t.Helper()
		var logs []*raft.Log
		for i := from; i <= to; i++ {
			logs = append(logs, &raft.Log{Index: i, Term: 1, Data: make([]byte, size)})
		}
		if err := c.StoreLogs(logs); err != nil {
			t.Fatal(err)
		}
	}
	// Small entries: bounded by count.
	put(1, 1000, 10)
	if first, next, bytes := c.cached(); next != 1001 || next-first != logCacheEntries || bytes != logCacheEntries*10 {
		t.Fatalf("cached [%d,%d) %d bytes, want the last %d entries", first, next, bytes, logCacheEntries)
	}
	// Large entries: bounded by bytes.
	put(1001, 1100, 4<<20)
	first, next, bytes := c.cached()
	if next != 1101 || bytes > logCacheBytes || int(next-first) != logCacheBytes/(4<<20) {
		t.Fatalf("cached [%d,%d) %d bytes, want at most %d bytes", first, next, bytes, logCacheBytes)
	}
	for _, idx := range []uint64{1, 500, 1000, 1050, 1100} {
		var l raft.Log
		if err := c.GetLog(idx, &l); err != nil || l.Index != idx {
			t.Fatalf("entry %d: %+v %v", idx, l.Index, err)
		}
	}
	// A follower's conflicting tail is deleted, then written again with
	// other contents: the old contents must not be served from memory.
	if err := c.DeleteRange(1090, 1100); err != nil {
		t.Fatal(err)
	}
	if err := c.StoreLogs([]*raft.Log{{Index: 1090, Term: 2, Data: []byte("new")}}); err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	if err := c.GetLog(1090, &l); err != nil || l.Term != 2 || string(l.Data) != "new" {
		t.Fatalf("entry 1090 after the rewrite: term %d %q %v", l.Term, l.Data, err)
	}
	if err := c.GetLog(1095, &l); err == nil {
		t.Fatalf("entry 1095 was deleted but is still served: %+v", l.Index)
	}
	if last, err := c.LastIndex(); err != nil || last != 1090 {
		t.Fatalf("last index %d, %v", last, err)
	}
}
