package brokerd_test

import (
	"os"
	"strings"
	"testing"

	"github.com/raftq/raftq/brokerd"
)

// Recover refuses what cannot be a recovery, with a clear error and
// nothing written: a data dir without Raft state (an operator pointing at
// the wrong directory), and a member set without the node itself.
func TestRecoverRefusesNonsense(t *testing.T) {
	dir := t.TempDir()
	self := []brokerd.Peer{{ID: "n1", RaftAddr: "127.0.0.1:7201"}}
	if _, err := brokerd.Recover(dir, "n1", self); err == nil || !strings.Contains(err.Error(), "no Raft state in "+dir) {
		t.Fatalf("recover of an empty data dir: %v", err)
	}
	if _, err := brokerd.Recover(dir, "n1", []brokerd.Peer{{ID: "n2", RaftAddr: "127.0.0.1:7202"}}); err == nil || !strings.Contains(err.Error(), "must include this node") {
		t.Fatalf("recover without the node itself: %v", err)
	}
	if _, err := brokerd.Recover(dir, "n1", nil); err == nil {
		t.Fatal("recover with no members")
	}
	if left, err := os.ReadDir(dir); err != nil || len(left) != 0 {
		t.Fatalf("refused recoveries wrote %v (%v)", left, err)
	}
}
