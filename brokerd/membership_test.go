package brokerd_test

import (
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/internal/testutil"
)

// silentListener accepts TCP connections and never says a word: a gRPC
// call to it waits for the server's HTTP/2 settings until its deadline,
// like a member behind a black hole.
func silentListener(t *testing.T) (addr string, accepted *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = new(atomic.Int32)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return l.Addr().String(), accepted
}

// TestCloseWithUnreachableJoin: a fresh node whose join addresses never
// answer is closed while its join loop waits on them. Close cancels the
// node's context, which every loop's calls derive from, so it returns at
// once instead of after each join attempt's own 5 s deadline. (The bound
// is generous; before the node had one context, Close took 5 s here.)
func TestCloseWithUnreachableJoin(t *testing.T) {
	a1, acc1 := silentListener(t)
	a2, _ := silentListener(t)
	cfg := brokerd.DefaultConfig()
	cfg.NodeID, cfg.DataDir = "lonely", filepath.Join(t.TempDir(), "data")
	cfg.RaftAddr, cfg.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Join = []string{a1, a2}
	cfg.Logger = testutil.Logger(t)
	n, err := brokerd.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The join loop is in its first attempt, blocked on a1.
	testutil.WaitFor(t, 30*time.Second, "the join loop to dial the silent member", func() bool { return acc1.Load() > 0 })
	time.Sleep(200 * time.Millisecond)
	if n.HasState() {
		t.Fatal("a node that joined nothing has a Raft configuration")
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- n.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close still waiting after 10s")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Close took %s with unreachable join addresses; want it cut short (< 2s)", took)
	}
	if err := n.Ready(); err == nil {
		t.Fatal("a closed node reports ready")
	}
	// Close is idempotent: a second call returns the first one's answer.
	if err := n.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}
