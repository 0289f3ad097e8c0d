package brokerd_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/raftqerr"
)

// mountTmpfs mounts a tmpfs of size bytes on a fresh directory, unmounted
// when the test ends. Tests that need one skip when they cannot mount
// (not root, no mount(8), a container without CAP_SYS_ADMIN).
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs for the data dir")
	}
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount a tmpfs (%v: %s)", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes a filler file in dir until the filesystem has no byte left;
// the returned func removes it (and is also run at cleanup, before the
// cluster stops: a node waiting for space must get it to shut down).
func fill(t *testing.T, dir string) (free func()) {
	t.Helper()
	name := filepath.Join(dir, "filler")
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	for _, chunk := range []int{1 << 20, 4 << 10, 1} {
		buf := make([]byte, chunk)
		for {
			if _, err = f.Write(buf); err != nil {
				break
			}
		}
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("filling %s: %v", dir, err)
		}
	}
	f.Close()
	done := false
	free = func() {
		if !done {
			done = true
			if err := os.Remove(name); err != nil {
				t.Errorf("remove filler: %v", err)
			}
		}
	}
	t.Cleanup(free)
	return free
}

func diskTune(cfg *brokerd.Config) {
	cfg.DiskMinFreeBytes = 8 << 20
	cfg.DiskCheckInterval = 100 * time.Millisecond
}

func waitDisk(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// gauge reads a metric without labels from a node's registry.
func gauge(t *testing.T, n *brokerd.Node, name string) float64 {
	t.Helper()
	mfs, err := n.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

func diskJob(i int) *raftqv1.JobSpec {
	return &raftqv1.JobSpec{Queue: "disk", Type: "t", Payload: []byte(fmt.Sprintf("job %d", i))}
}

func enqueueDisk(t *testing.T, ctx context.Context, cl *client.Client, from, n int) []string {
	t.Helper()
	var ids []string
	for i := from; i < from+n; i++ {
		res, err := cl.Enqueue(ctx, diskJob(i))
		if err != nil {
			t.Fatalf("enqueue %d: %v", i, err)
		}
		ids = append(ids, res[0].GetJobId())
	}
	return ids
}

// A node alone on a full disk refuses writes at once with
// RESOURCE_EXHAUSTED naming the node and its data dir, changes nothing,
// keeps serving reads, and takes writes again once space returns.
func TestDiskFullRefusesWritesAtOnce(t *testing.T) {
	mnt := mountTmpfs(t, 64<<20)
	dir := filepath.Join(mnt, "data")
	c := testcluster.NewIn(t, 1, func(string) string { return dir }, diskTune)
	n := c.Leader()
	cl := c.Client()
	ctx := testutil.Context(t, time.Minute)
	ids := enqueueDisk(t, ctx, cl, 0, 5)
	if full, why := n.DiskFull(); full || gauge(t, n, "raftq_disk_full") != 0 {
		t.Fatalf("full before the filler: %s", why)
	}
	if free := gauge(t, n, "raftq_disk_free_bytes"); free < 8<<20 || free > 64<<20 {
		t.Fatalf("raftq_disk_free_bytes = %v on a 64 MiB tmpfs", free)
	}
	before := n.FSM().Hash()

	release := fill(t, mnt)
	waitDisk(t, 10*time.Second, "node reports its disk full", func() bool { full, _ := n.DiskFull(); return full })
	if gauge(t, n, "raftq_disk_full") != 1 || gauge(t, n, "raftq_disk_free_bytes") >= 8<<20 {
		t.Fatalf("metrics while full: disk_full %v, free %v", gauge(t, n, "raftq_disk_full"), gauge(t, n, "raftq_disk_free_bytes"))
	}
	if st := n.RaftStats(); st["disk_full"] != "true" || !strings.Contains(st["disk_full_reason"], dir) {
		t.Fatalf("RaftStats while full: disk_full=%q reason=%q", st["disk_full"], st["disk_full_reason"])
	}

	start := time.Now()
	_, err := cl.Enqueue(ctx, diskJob(100))
	took := time.Since(start)
	if status.Code(err) != codes.ResourceExhausted || raftqerr.Detail(err) == nil || raftqerr.IsIndeterminate(err) {
		t.Fatalf("enqueue on a full disk: %v (want RESOURCE_EXHAUSTED with an ErrorDetail)", err)
	}
	msg := status.Convert(err).Message()
	if !strings.Contains(msg, "node "+n.ID()) || !strings.Contains(msg, dir) {
		t.Fatalf("refusal names neither the node nor the data dir: %q", msg)
	}
	if took > 5*time.Second {
		t.Fatalf("refusal took %s: it should not wait for a deadline", took)
	}
	t.Logf("refused in %s: %s", took, msg)
	if err := cl.Ack(ctx, ids[0], 1); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("ack on a full disk: %v", err)
	}
	if h := n.FSM().Hash(); h != before {
		t.Fatal("state changed while writes were refused")
	}
	// Reads go on.
	if j, err := cl.GetJob(ctx, ids[1], raftqv1.Consistency_CONSISTENCY_UNSPECIFIED); err != nil || j.GetId() != ids[1] {
		t.Fatalf("linearizable read on a full disk: %v", err)
	}
	if st, err := cl.QueueStats(ctx, "disk"); err != nil || len(st) != 1 || st[0].GetReady() != 5 {
		t.Fatalf("queue stats on a full disk: %v %v", st, err)
	}

	release()
	waitDisk(t, 10*time.Second, "node takes writes again", func() bool { full, _ := n.DiskFull(); return !full })
	enqueueDisk(t, ctx, cl, 200, 3)
	if st, err := cl.QueueStats(ctx, "disk"); err != nil || st[0].GetReady() != 8 {
		t.Fatalf("after space returned: %v %v", st, err)
	}
}

// mountEach gives every member of a 3-node cluster a tmpfs of its own.
func mountEach(t *testing.T) (dirs map[string]string, mounts map[string]string) {
	dirs, mounts = map[string]string{}, map[string]string{}
	for _, id := range []string{"n1", "n2", "n3"} {
		mounts[id] = mountTmpfs(t, 64<<20)
		dirs[id] = filepath.Join(mounts[id], "data")
	}
	return dirs, mounts
}

// The leader's disk fills: it refuses writes at once or hands over
// (a client never waits out its deadline), leadership moves to a node
// that can write, reads through the full node go on, and once space
// returns it catches up to the same state as the others.
func TestDiskFullLeaderHandsOver(t *testing.T) {
	dirs, mounts := mountEach(t)
	c := testcluster.NewIn(t, 3, func(id string) string { return dirs[id] }, diskTune)
	cl := c.Client()
	ctx := testutil.Context(t, 2*time.Minute)
	ids := enqueueDisk(t, ctx, cl, 0, 20)
	c.WaitConverged(30 * time.Second)

	old := c.Leader()
	release := fill(t, mounts[old.ID()])
	waitDisk(t, 10*time.Second, "leader reports its disk full", func() bool { full, _ := old.DiskFull(); return full })

	// A write sent to the full node: refused at once naming node and
	// path, or (after the hand-over) forwarded to the new leader.
	direct, err := client.New([]string{old.GRPCAddr()}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	start := time.Now()
	_, err = direct.Enqueue(wctx, diskJob(100))
	took := time.Since(start)
	cancel()
	if err != nil {
		msg := status.Convert(err).Message()
		if status.Code(err) != codes.ResourceExhausted || !strings.Contains(msg, "node "+old.ID()) || !strings.Contains(msg, dirs[old.ID()]) {
			t.Fatalf("write to the full leader after %s: %v", took, err)
		}
	}
	if took > 5*time.Second {
		t.Fatalf("write to the full leader took %s (%v)", took, err)
	}
	t.Logf("write sent to the full leader: %v after %s", err, took)

	waitDisk(t, 15*time.Second, "leadership moves off the full node", func() bool {
		l := c.Leader()
		return l != nil && l.ID() != old.ID()
	})
	if full, _ := old.DiskFull(); !full {
		t.Fatal("the old leader stopped reporting a full disk while it still is")
	}
	more := enqueueDisk(t, ctx, cl, 300, 10)
	// Through the full node: writes are forwarded, reads served.
	if _, err := direct.Enqueue(ctx, diskJob(400)); err != nil {
		t.Fatalf("write through the full follower: %v", err)
	}
	for _, id := range []string{ids[0], more[len(more)-1]} {
		if j, err := direct.GetJob(ctx, id, raftqv1.Consistency_CONSISTENCY_UNSPECIFIED); err != nil || j.GetId() != id {
			t.Fatalf("read of %s through the full node: %v", id, err)
		}
	}
	if j, err := direct.GetJob(ctx, ids[3], raftqv1.Consistency_CONSISTENCY_STALE); err != nil || j.GetId() != ids[3] {
		t.Fatalf("stale read on the full node: %v", err)
	}
	if _, err := direct.QueueStats(ctx, "disk"); err != nil {
		t.Fatalf("stats through the full node: %v", err)
	}

	release()
	waitDisk(t, 10*time.Second, "old leader takes writes again", func() bool { full, _ := old.DiskFull(); return !full })
	enqueueDisk(t, ctx, cl, 500, 5)
	c.WaitConverged(60 * time.Second)
	if old.FSM().Len() != 20+10+1+5+boolInt(err == nil) {
		t.Fatalf("old leader holds %d jobs after catching up", old.FSM().Len())
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// A follower's disk fills: the cluster goes on taking writes, and the
// follower catches up once space returns.
func TestDiskFullFollowerCatchesUp(t *testing.T) {
	dirs, mounts := mountEach(t)
	c := testcluster.NewIn(t, 3, func(id string) string { return dirs[id] }, diskTune)
	cl := c.Client()
	ctx := testutil.Context(t, 2*time.Minute)
	enqueueDisk(t, ctx, cl, 0, 10)
	leader := c.Leader()
	var f *brokerd.Node
	for _, n := range c.Up() {
		if n != leader {
			f = n
			break
		}
	}
	release := fill(t, mounts[f.ID()])
	waitDisk(t, 10*time.Second, "follower reports its disk full", func() bool { full, _ := f.DiskFull(); return full })
	if gauge(t, f, "raftq_disk_full") != 1 || gauge(t, leader, "raftq_disk_full") != 0 {
		t.Fatal("raftq_disk_full is not 1 on the full follower and 0 on the leader")
	}
	enqueueDisk(t, ctx, cl, 100, 50)
	if l := c.Leader(); l == nil || l.ID() != leader.ID() {
		t.Fatal("leadership moved although the leader can write")
	}
	if leader.FSM().Len() != 60 {
		t.Fatalf("leader holds %d jobs", leader.FSM().Len())
	}
	release()
	waitDisk(t, 10*time.Second, "follower takes writes again", func() bool { full, _ := f.DiskFull(); return !full })
	c.WaitConverged(60 * time.Second)
	if f.FSM().Len() != 60 {
		t.Fatalf("follower holds %d jobs after catching up", f.FSM().Len())
	}
}
