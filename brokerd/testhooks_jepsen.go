//go:build jepsen

package brokerd

// Test-only hooks for the jepsen/ harness, compiled only with the jepsen
// build tag (make jepsen builds brokerd with it; production builds never do).
// They let the harness change a running node from outside:
//
//   - RAFTQ_JEPSEN_CONTROL names a control file, re-read every 50 ms, with
//     lines "clock_offset=<Go duration>" (added to the node's clock: lease
//     deadlines, stamps and timers move, Raft's own timers do not) and
//     "failpoints=<name>,<name>" (crash points armed now);
//   - RAFTQ_JEPSEN_SNAPSHOT_THRESHOLD, RAFTQ_JEPSEN_SNAPSHOT_INTERVAL and
//     RAFTQ_JEPSEN_TRAILING_LOGS make snapshots (and so snapshot installs on
//     lagging nodes) frequent enough to be hit during a run.
//
// A failpoint that fires kills its own process with SIGKILL: no deferred
// code, no graceful shutdown, like a power cut of that process. These are
// plain build-tagged functions rather than go.etcd.io/gofail comments: gofail
// needs its code generator run over the tree, and gofail is not served by
// the module proxy this project uses.

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftq/raftq/fsm"
)

var (
	hooksOnce   sync.Once
	clockOffset atomic.Int64
	armed       atomic.Pointer[map[string]bool]
)

func applyTestHooks(cfg *Config) {
	if v, err := strconv.ParseUint(os.Getenv("RAFTQ_JEPSEN_SNAPSHOT_THRESHOLD"), 10, 64); err == nil && v > 0 {
		cfg.SnapshotThreshold = v
	}
	if v, err := time.ParseDuration(os.Getenv("RAFTQ_JEPSEN_SNAPSHOT_INTERVAL")); err == nil && v > 0 {
		cfg.SnapshotInterval = v
	}
	if v, err := strconv.ParseUint(os.Getenv("RAFTQ_JEPSEN_TRAILING_LOGS"), 10, 64); err == nil && v > 0 {
		cfg.TrailingLogs = v
	}
	path := os.Getenv("RAFTQ_JEPSEN_CONTROL")
	if path == "" {
		return
	}
	hooksOnce.Do(func() {
		readControl(path)
		go func() {
			for range time.Tick(50 * time.Millisecond) {
				readControl(path)
			}
		}()
	})
	base := cfg.Clock
	if base == nil {
		base = time.Now
	}
	cfg.Clock = func() time.Time { return base().Add(time.Duration(clockOffset.Load())) }
}

// readControl applies the control file; a missing or garbled file leaves
// the last settings in place (the harness replaces it atomically).
func readControl(path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	fps := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		switch k {
		case "clock_offset":
			if d, err := time.ParseDuration(v); err == nil {
				clockOffset.Store(int64(d))
			}
		case "failpoints":
			for _, name := range strings.Split(v, ",") {
				if name = strings.TrimSpace(name); name != "" {
					fps[name] = true
				}
			}
		}
	}
	armed.Store(&fps)
}

// failpoint crashes the process when the harness has armed name.
func failpoint(name string) {
	m := armed.Load()
	if m == nil || !(*m)[name] {
		return
	}
	fmt.Fprintf(os.Stderr, "jepsen: failpoint %s fired; killing this process\n", name)
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // SIGKILL is not handled; never return into the code path
}

// raftFSM wraps the FSM with the apply and snapshot-persist crash points.
func (n *Node) raftFSM() raft.FSM { return hookFSM{n.fsm} }

type hookFSM struct{ *fsm.FSM }

// Apply crashes before or after applying when armed.
func (h hookFSM) Apply(l *raft.Log) interface{} {
	failpoint("before-apply")
	r := h.FSM.Apply(l)
	failpoint("after-apply")
	return r
}

// ApplyBatch crashes before or after applying when armed.
func (h hookFSM) ApplyBatch(logs []*raft.Log) []interface{} {
	failpoint("before-apply")
	r := h.FSM.ApplyBatch(logs)
	failpoint("after-apply")
	return r
}

// Snapshot wraps the snapshot so that Persist can crash half way.
func (h hookFSM) Snapshot() (raft.FSMSnapshot, error) {
	s, err := h.FSM.Snapshot()
	if err != nil {
		return nil, err
	}
	return hookSnapshot{s}, nil
}

type hookSnapshot struct{ raft.FSMSnapshot }

// Persist streams through hookSink.
func (s hookSnapshot) Persist(sink raft.SnapshotSink) error {
	return s.FSMSnapshot.Persist(&hookSink{SnapshotSink: sink})
}

// hookSink fires snapshot-persist after the first write: the snapshot file
// is half written when the process dies.
type hookSink struct {
	raft.SnapshotSink
	wrote bool
}

// Write fires snapshot-persist after the first write.
func (s *hookSink) Write(p []byte) (int, error) {
	n, err := s.SnapshotSink.Write(p)
	if !s.wrote {
		s.wrote = true
		failpoint("snapshot-persist")
	}
	return n, err
}
