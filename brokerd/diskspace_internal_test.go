package brokerd

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/fsm/fsmpb"
	"github.com/raftq/raftq/internal/apierr"
	"github.com/raftq/raftq/internal/proposer"
	"github.com/raftq/raftq/raftqerr"
)

func testMonitor(t *testing.T, min int64) *diskMonitor {
	dir := t.TempDir()
	n := &Node{cfg: Config{NodeID: "n9", DataDir: dir}, log: slog.New(slog.NewTextHandler(io.Discard, nil)), fsm: fsm.New()}
	d := &diskMonitor{n: n, dir: dir, min: min, interval: 50 * time.Millisecond, kick: make(chan struct{}, 1)}
	d.free.Store(-1)
	return d
}

// The free-space check compares statfs with the reserve, and a refusal
// maps to RESOURCE_EXHAUSTED (definite, with an ErrorDetail) naming the
// node and the data dir.
func TestDiskCheckAndRefusal(t *testing.T) {
	d := testMonitor(t, 0)
	free, err := statfsFree(d.dir)
	if err != nil || free <= 0 {
		t.Fatalf("statfs of %s: %d, %v", d.dir, free, err)
	}
	d.check()
	if d.full() || d.gate(nil) != nil || d.free.Load() <= 0 {
		t.Fatalf("no reserve, space free: full=%v free=%d", d.full(), d.free.Load())
	}

	d.min = free + 1<<40 // a reserve no disk here has
	d.check()
	err = d.gate(nil)
	if !errors.Is(err, apierr.ErrDiskFull) {
		t.Fatalf("below the reserve: gate = %v", err)
	}
	st := apierr.FromError(err)
	msg := status.Convert(st).Message()
	if status.Code(st) != codes.ResourceExhausted || raftqerr.Detail(st) == nil || raftqerr.IsIndeterminate(st) ||
		!strings.Contains(msg, "node n9") || !strings.Contains(msg, d.dir) || !strings.Contains(msg, "disk.min_free_bytes") {
		t.Fatalf("refusal = %v", st)
	}
	m := map[string]string{}
	d.stats(m)
	if m["disk_full"] != "true" || m["disk_free_bytes"] == "-1" || !strings.Contains(m["disk_full_reason"], d.dir) {
		t.Fatalf("stats while full: %v", m)
	}

	d.min = 0
	d.check()
	if d.gate(nil) != nil {
		t.Fatal("still refusing after space returned")
	}
}

// An ENOSPC from the Raft store refuses writes until a probe write
// succeeds; other store errors are left to Raft.
func TestDiskStoreErrors(t *testing.T) {
	d := testMonitor(t, 0)
	other := errors.New("bolt: something else")
	if err := d.storeFailed("raft.db", other); err != other || d.storeErr.Load() != nil {
		t.Fatalf("a non-space error: %v, recorded %v", err, d.storeErr.Load())
	}
	enospc := &os.PathError{Op: "write", Path: "/x/raft.db", Err: syscall.ENOSPC}
	err := d.storeFailed("/x/raft.db", enospc)
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "raft store /x/raft.db") {
		t.Fatalf("storeFailed = %v", err)
	}
	select {
	case <-d.kick:
	default:
		t.Fatal("a failed store write did not ask for a check")
	}
	// The check after the failure: the data dir has space and the probe
	// writes, so the store error is taken as over.
	d.check()
	if d.full() || d.storeErr.Load() != nil {
		t.Fatalf("store error not cleared by a good probe: %v", d.gate(nil))
	}
	d.storeFailed("/x/raft.db", &os.PathError{Op: "write", Path: "/x/raft.db", Err: syscall.EDQUOT})
	d.storeWrote()
	if d.storeErr.Load() != nil {
		t.Fatal("a successful store write did not clear the error")
	}
}

type recordingProposer struct{ got []fsmpb.CommandType }

func (r *recordingProposer) Submit(cmd *fsmpb.Command, done func(proposer.Response)) {
	r.got = append(r.got, cmd.GetType())
	done(proposer.Response{})
}

// While full, the dispatcher's ticks are refused one interval late (no
// spin); leases go on to the proposer, whose Gate refuses them at once.
func TestDiskGatedDispatcherTicks(t *testing.T) {
	d := testMonitor(t, 0)
	e := error(apierr.ErrDiskFull)
	d.refusal.Store(&e)
	rec := &recordingProposer{}
	g := diskGatedProposer{d: d, p: rec}
	answered := make(chan error, 1)
	start := time.Now()
	g.Submit(&fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_PROMOTE}, func(r proposer.Response) { answered <- r.Err })
	select {
	case err := <-answered:
		t.Fatalf("tick answered at once: %v", err)
	default:
	}
	if err := <-answered; !errors.Is(err, apierr.ErrDiskFull) || time.Since(start) < d.interval {
		t.Fatalf("tick refusal: %v after %s", err, time.Since(start))
	}
	g.Submit(&fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_LEASE}, func(proposer.Response) {})
	if len(rec.got) != 1 || rec.got[0] != fsmpb.CommandType_COMMAND_TYPE_LEASE {
		t.Fatalf("proposer saw %v", rec.got)
	}
}
