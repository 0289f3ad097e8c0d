//go:build jepsen

package main

// Test-only hooks for the jepsen/ harness, compiled only with the jepsen
// build tag (make jepsen builds brokerd with it; production builds never
// do). They fill the node's brokerd.Config.Testing from the environment,
// so the harness can change a running node from outside:
//
//   - RAFTQ_JEPSEN_CONTROL names a control file, re-read every 50 ms, with
//     lines "clock_offset=<Go duration>" (added to the node's clock: lease
//     deadlines, stamps and timers move, Raft's own timers do not) and
//     "failpoints=<name>,<name>" (crash points armed now, by the names of
//     the brokerd.Crash* constants);
//   - RAFTQ_JEPSEN_SNAPSHOT_THRESHOLD, RAFTQ_JEPSEN_SNAPSHOT_INTERVAL and
//     RAFTQ_JEPSEN_TRAILING_LOGS make snapshots (and so snapshot installs on
//     lagging nodes) frequent enough to be hit during a run;
//   - RAFTQ_JEPSEN_BUG names seeded bugs (bugs_jepsen.go, build tag
//     jepsenbug as well).
//
// A crash point that fires kills its own process with SIGKILL: no deferred
// code, no graceful shutdown, like a power cut of that process. These are
// plain hooks rather than go.etcd.io/gofail comments: gofail needs its code
// generator run over the tree, and gofail is not served by the module
// proxy this project uses.

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/fsm"
)

// bugSet is the seeded bugs' interceptors (bugs_jepsen.go) and the FSM
// they read, bound by the FSM wrapper when the node opens.
type bugSet struct {
	interceptors []grpc.UnaryServerInterceptor
	// moveLeft is the move-skip-drain bug's brokerd.Testing.MoveLeft
	// (set by the jepsenbug build only, bugs_jepsen.go).
	moveLeft func(queue string, left int64) int64
	fsm      atomic.Pointer[fsm.FSM]
}

// jepsenHooks holds one node's control-file state.
type jepsenHooks struct {
	clockOffset atomic.Int64
	armed       atomic.Pointer[map[brokerd.CrashPoint]bool]
}

// testHooks reads the environment into cfg: snapshot settings directly,
// the rest as cfg.Testing. Without RAFTQ_JEPSEN_CONTROL and seeded bugs
// it leaves Testing nil.
func testHooks(cfg *brokerd.Config) {
	if v, err := strconv.ParseUint(os.Getenv("RAFTQ_JEPSEN_SNAPSHOT_THRESHOLD"), 10, 64); err == nil && v > 0 {
		cfg.SnapshotThreshold = v
	}
	if v, err := time.ParseDuration(os.Getenv("RAFTQ_JEPSEN_SNAPSHOT_INTERVAL")); err == nil && v > 0 {
		cfg.SnapshotInterval = v
	}
	if v, err := strconv.ParseUint(os.Getenv("RAFTQ_JEPSEN_TRAILING_LOGS"), 10, 64); err == nil && v > 0 {
		cfg.TrailingLogs = v
	}
	bugs := seededBugs(os.Getenv("RAFTQ_JEPSEN_BUG"))
	path := os.Getenv("RAFTQ_JEPSEN_CONTROL")
	if path == "" && bugs == nil {
		return
	}
	t := &brokerd.Testing{}
	var h *jepsenHooks
	if path != "" {
		h = &jepsenHooks{}
		h.readControl(path)
		go func() {
			for range time.Tick(50 * time.Millisecond) {
				h.readControl(path)
			}
		}()
		t.Clock = func() time.Time { return time.Now().Add(time.Duration(h.clockOffset.Load())) }
		t.CrashPoint = h.crash
	}
	t.WrapFSM = func(f raft.FSM) raft.FSM {
		if ff, ok := f.(*fsm.FSM); ok && bugs != nil {
			bugs.fsm.Store(ff)
		}
		if h == nil {
			return f
		}
		return hookFSM{f.(*fsm.FSM), h}
	}
	if bugs != nil {
		t.UnaryInterceptors = bugs.interceptors
		t.MoveLeft = bugs.moveLeft
	}
	cfg.Testing = t
}

// readControl applies the control file; a missing or garbled file leaves
// the last settings in place (the harness replaces it atomically).
func (h *jepsenHooks) readControl(path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	fps := map[brokerd.CrashPoint]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		switch k {
		case "clock_offset":
			if d, err := time.ParseDuration(v); err == nil {
				h.clockOffset.Store(int64(d))
			}
		case "failpoints":
			for _, name := range strings.Split(v, ",") {
				if name = strings.TrimSpace(name); name != "" {
					fps[brokerd.CrashPoint(name)] = true
				}
			}
		}
	}
	h.armed.Store(&fps)
}

// crash kills the process when the harness has armed p.
func (h *jepsenHooks) crash(p brokerd.CrashPoint) {
	m := h.armed.Load()
	if m == nil || !(*m)[p] {
		return
	}
	fmt.Fprintf(os.Stderr, "jepsen: failpoint %s fired; killing this process\n", p)
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // SIGKILL is not handled; never return into the code path
}

// hookFSM wraps the FSM with the apply and snapshot-persist crash points.
// It keeps *fsm.FSM's other methods (StopWaitingForSpace among them).
type hookFSM struct {
	*fsm.FSM
	h *jepsenHooks
}

// Apply crashes before or after applying when armed.
func (f hookFSM) Apply(l *raft.Log) interface{} {
	f.h.crash(brokerd.CrashBeforeApply)
	r := f.FSM.Apply(l)
	f.h.crash(brokerd.CrashAfterApply)
	return r
}

// ApplyBatch crashes before or after applying when armed.
func (f hookFSM) ApplyBatch(logs []*raft.Log) []interface{} {
	f.h.crash(brokerd.CrashBeforeApply)
	r := f.FSM.ApplyBatch(logs)
	f.h.crash(brokerd.CrashAfterApply)
	return r
}

// Snapshot wraps the snapshot so that Persist can crash half way.
func (f hookFSM) Snapshot() (raft.FSMSnapshot, error) {
	s, err := f.FSM.Snapshot()
	if err != nil {
		return nil, err
	}
	return hookSnapshot{s, f.h}, nil
}

type hookSnapshot struct {
	raft.FSMSnapshot
	h *jepsenHooks
}

// Persist streams through hookSink.
func (s hookSnapshot) Persist(sink raft.SnapshotSink) error {
	return s.FSMSnapshot.Persist(&hookSink{SnapshotSink: sink, h: s.h})
}

// hookSink fires snapshot-persist after the first write: the snapshot file
// is half written when the process dies.
type hookSink struct {
	raft.SnapshotSink
	h     *jepsenHooks
	wrote bool
}

// Write fires snapshot-persist after the first write.
func (s *hookSink) Write(p []byte) (int, error) {
	n, err := s.SnapshotSink.Write(p)
	if !s.wrote {
		s.wrote = true
		s.h.crash(brokerd.CrashSnapshotPersist)
	}
	return n, err
}
