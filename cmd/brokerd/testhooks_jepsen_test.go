//go:build jepsen

package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/brokerd/daemon"
)

// The jepsen build turns the control file into the node's Testing: the
// clock offset moves its clock; crash points not armed do nothing.
func TestJepsenControlFileFillsTesting(t *testing.T) {
	ctl := filepath.Join(t.TempDir(), "control")
	if err := os.WriteFile(ctl, []byte("clock_offset=1h\nfailpoints=snapshot-persist\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RAFTQ_JEPSEN_CONTROL", ctl)
	t.Setenv("RAFTQ_JEPSEN_BUG", "")
	t.Setenv("RAFTQ_JEPSEN_TRAILING_LOGS", "256")
	cfg := daemon.DefaultConfig()
	testHooks(&cfg.Config)
	tt := cfg.Testing
	if tt == nil || tt.Clock == nil || tt.CrashPoint == nil || tt.WrapFSM == nil {
		t.Fatalf("hooks not filled: %+v", tt)
	}
	if d := tt.Clock().Sub(time.Now()); d < 59*time.Minute || d > 61*time.Minute {
		t.Fatalf("clock offset %s, want 1h", d)
	}
	tt.CrashPoint(brokerd.CrashCommitBeforeReply) // not armed: returns
	if cfg.TrailingLogs != 256 {
		t.Fatalf("trailing logs %d, want 256", cfg.TrailingLogs)
	}
}
