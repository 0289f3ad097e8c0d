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
	c, err := newLogCache(raft.NewInmemStore())
	if err != nil {
		t.Fatal(err)
	}
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
	if err := c.StoreLog(&raft.Log{Index: 2, Term: 1, Data: []byte("two")}); err != nil {
		t.Fatal(err)
	}
	if last, err := c.LastIndex(); err != nil || last != 2 {
		t.Fatalf("last index %d, %v", last, err)
	}
}
