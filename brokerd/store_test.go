package brokerd_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// compacting makes Raft keep only 10 entries behind a snapshot, and take
// snapshots only when a test asks; small WAL segments, since a WAL is
// compacted by whole segments.
func compacting(cfg *brokerd.Config) {
	cfg.TrailingLogs = 10
	cfg.SnapshotThreshold = 1 << 40
	brokerd.SmallWALSegments(cfg)
}

// enqueueBatches enqueues n jobs of 256 bytes into queue q, in batches of 100.
func enqueueBatches(t *testing.T, ctx context.Context, cl *client.Client, q string, n int) {
	t.Helper()
	for n > 0 {
		b := min(n, 100)
		specs := make([]*raftqv1.JobSpec, b)
		for i := range specs {
			specs[i] = &raftqv1.JobSpec{Queue: q, Type: "t", Payload: make([]byte, 256), LeaseDuration: durationpb.New(time.Hour)}
		}
		if _, err := cl.Enqueue(ctx, specs...); err != nil {
			t.Fatal(err)
		}
		n -= b
	}
}

// leaseAndAck leases n jobs of q and acks half of them.
func leaseAndAck(t *testing.T, ctx context.Context, cl *client.Client, q string, n int) {
	t.Helper()
	jobs, err := cl.Fetch(ctx, fetchReq(q, int32(n), time.Second, "w"))
	if err != nil || len(jobs) != n {
		t.Fatalf("fetch: %d %v", len(jobs), err)
	}
	for _, j := range jobs[:n/2] {
		if err := cl.Ack(ctx, j.Id, j.LeaseToken); err != nil {
			t.Fatal(err)
		}
	}
}

// follower returns a running member that does not lead.
func follower(t *testing.T, c *testcluster.Cluster) *testcluster.Member {
	t.Helper()
	l := c.WaitLeader(30 * time.Second)
	for _, m := range c.Members() {
		if m.Node != nil && m.Node != l {
			return m
		}
	}
	t.Fatal("no follower")
	return nil
}

// loadedCluster starts 3 nodes, enqueues n jobs into queue "a" and waits
// until every node holds them; it returns the cluster, a client, the test's
// context, the agreed state hash and a follower.
func loadedCluster(t *testing.T, tune func(*brokerd.Config), n int) (*testcluster.Cluster, *client.Client, context.Context, string, *testcluster.Member) {
	t.Helper()
	c := testcluster.New(t, 3, tune)
	cl := c.Client()
	ctx := testutil.Context(t, 120*time.Second)
	enqueueBatches(t, ctx, cl, "a", n)
	hash := c.WaitConverged(30 * time.Second)
	return c, cl, ctx, hash, follower(t, c)
}

func snapshotNode(t *testing.T, n *brokerd.Node) uint64 {
	t.Helper()
	if err := n.Raft().Snapshot().Error(); err != nil {
		t.Fatalf("snapshot on %s: %v", n.ID(), err)
	}
	idx, _ := strconv.ParseUint(n.Raft().Stats()["last_snapshot_index"], 10, 64)
	return idx
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// A restarted node serves its state from its store before it has heard
// from any peer: alone (no quorum, so Raft can neither restore nor apply
// anything), it already has the applied index and state hash it had, also
// the entries after its latest snapshot. Then the cluster converges again.
func TestRestartServesFromStore(t *testing.T) {
	for _, withSnapshot := range []bool{false, true} {
		t.Run(fmt.Sprintf("snapshot=%v", withSnapshot), func(t *testing.T) {
			c := testcluster.New(t, 3, compacting)
			cl := c.Client()
			ctx := testutil.Context(t, 120*time.Second)
			enqueueBatches(t, ctx, cl, "a", 300)
			leaseAndAck(t, ctx, cl, "a", 20)
			if err := cl.PauseQueue(ctx, "b"); err != nil {
				t.Fatal(err)
			}
			if withSnapshot {
				c.WaitConverged(30 * time.Second)
				for _, n := range c.Up() {
					snapshotNode(t, n)
				}
				// Entries after the snapshot, in the store but not in it.
				enqueueBatches(t, ctx, cl, "a", 50)
				leaseAndAck(t, ctx, cl, "a", 10)
			}
			before := c.WaitConverged(30 * time.Second)
			f := follower(t, c)
			idx := f.Node.FSM().LastIndex()
			for _, m := range c.Members() {
				c.Kill(m.ID)
			}
			n := c.Restart(f.ID)
			if got := n.FSM().LastIndex(); got != idx {
				t.Fatalf("restarted alone at applied index %d, want %d (the store's)", got, idx)
			}
			if n.FSM().Hash() != before {
				t.Fatal("restarted node's state differs from before the restart")
			}
			for _, m := range c.Members() {
				if m.ID != f.ID {
					c.Restart(m.ID)
				}
			}
			c.WaitLeader(30 * time.Second)
			if after := c.WaitConverged(30 * time.Second); after != before {
				t.Fatal("state changed across the restart")
			}
		})
	}
}

// A node whose store is behind its latest snapshot (a crash after the
// snapshot but before the store's writes reached the disk, simulated by
// putting an older fsm.db in place; or a data dir from before the store,
// with no fsm.db at all) restores that snapshot before Raft starts and
// replays only the log after it, ending with the cluster's exact hash. If
// it trusted the old store, the entries its compacted log no longer holds
// would be missing and it would diverge.
func TestStoreBehindSnapshotIsRestored(t *testing.T) {
	for _, mode := range []string{"older fsm.db", "no fsm.db"} {
		t.Run(mode, func(t *testing.T) {
			c, cl, ctx, _, f := loadedCluster(t, compacting, 100)
			store := filepath.Join(f.Dir, "fsm.db")
			old := filepath.Join(t.TempDir(), "old.db")
			c.Kill(f.ID)
			copyFile(t, store, old)
			n := c.Restart(f.ID)
			oldIndex := n.FSM().LastIndex()
			// Well over TrailingLogs entries, then a snapshot that
			// compacts the follower's log past the old store's index.
			enqueueBatches(t, ctx, cl, "a", 2000)
			leaseAndAck(t, ctx, cl, "a", 40)
			c.WaitConverged(30 * time.Second)
			snapIdx := snapshotNode(t, n)
			if snapIdx <= oldIndex+10 {
				t.Fatalf("snapshot at %d does not compact past the old store's index %d", snapIdx, oldIndex)
			}
			enqueueBatches(t, ctx, cl, "a", 30) // replayed from the log after the snapshot
			want := c.WaitConverged(30 * time.Second)
			c.Kill(f.ID)
			if mode == "no fsm.db" {
				if err := os.Remove(store); err != nil {
					t.Fatal(err)
				}
			} else {
				copyFile(t, old, store)
			}
			n = c.Restart(f.ID)
			if got := n.FSM().LastIndex(); got < snapIdx {
				t.Fatalf("store at %d after restart, want the snapshot's %d restored", got, snapIdx)
			}
			if got := c.WaitConverged(30 * time.Second); got != want {
				t.Fatal("state after restore and replay differs")
			}
		})
	}
}

// A truncated store file stops the node at start with an error naming the
// file and what to do; once the operator deletes it, the node rebuilds the
// store from its log and rejoins with the cluster's state.
func TestCorruptStoreRefusesToStart(t *testing.T) {
	c, _, _, want, f := loadedCluster(t, nil, 1000)
	c.Kill(f.ID)
	store := filepath.Join(f.Dir, "fsm.db")
	if err := os.Truncate(store, 64<<10); err != nil {
		t.Fatal(err)
	}
	cfg := brokerd.DefaultConfig()
	cfg.NodeID, cfg.DataDir, cfg.RaftAddr, cfg.GRPCAddr = f.ID, f.Dir, f.RaftAddr, f.GRPCAddr
	cfg.Logger = testutil.Logger(t)
	n, err := brokerd.Open(cfg)
	if err == nil {
		_ = n.Kill()
		t.Fatal("node started on a truncated store")
	}
	if !strings.Contains(err.Error(), store) || !strings.Contains(err.Error(), "delete it") {
		t.Fatalf("error does not name the file and the remedy: %v", err)
	}
	if err := os.Remove(store); err != nil {
		t.Fatal(err)
	}
	c.Restart(f.ID)
	if got := c.WaitConverged(30 * time.Second); got != want {
		t.Fatal("rebuilt store differs")
	}
}

// A node that was down while the cluster compacted its log gets the
// leader's snapshot installed over its old, consistent store, whichever
// log store the nodes keep (a WAL compacts whole segments: small ones
// here, so this small log is compacted at all).
func TestSnapshotInstallReplacesOldStore(t *testing.T) {
	for _, kind := range []string{brokerd.LogStoreWAL, brokerd.LogStoreBolt} {
		t.Run(kind, func(t *testing.T) { testSnapshotInstallReplacesOldStore(t, kind) })
	}
}

func testSnapshotInstallReplacesOldStore(t *testing.T, kind string) {
	c, cl, ctx, _, f := loadedCluster(t, func(cfg *brokerd.Config) {
		compacting(cfg)
		cfg.LogStore = kind
	}, 100)
	c.Kill(f.ID)
	enqueueBatches(t, ctx, cl, "a", 1000)
	leaseAndAck(t, ctx, cl, "a", 20)
	for _, n := range c.Up() {
		snapshotNode(t, n)
	}
	enqueueBatches(t, ctx, cl, "b", 10)
	n := c.Restart(f.ID)
	want := c.WaitConverged(30 * time.Second)
	if idx, _ := strconv.ParseUint(n.Raft().Stats()["last_snapshot_index"], 10, 64); idx == 0 {
		t.Fatalf("node caught up without a snapshot install: %v", n.Raft().Stats())
	}
	if n.FSM().Hash() != want || n.FSM().Len() != 1110 {
		t.Fatalf("node holds %d jobs after the install", n.FSM().Len())
	}
}

// A replica whose store diverged without failing to decode (here an index
// entry lost from by_state while the node was down: the job record itself
// is intact) is caught by the state hash: at the same applied index its
// hash differs from the others', in the Status answer operators read with
// `brokerctl cluster status`.
func TestDivergedStoreShowsInHash(t *testing.T) {
	c, cl, ctx, _, f := loadedCluster(t, nil, 200)
	c.Kill(f.ID)
	loseIndexEntry(t, f.Dir)
	n := c.Restart(f.ID)
	enqueueBatches(t, ctx, cl, "b", 10)

	// Read every node at one applied index (the leader's ticks may move
	// it between reads: then read again).
	var hashes map[string]string
	for try := 0; ; try++ {
		l := c.WaitLeader(30 * time.Second)
		idx := l.FSM().LastIndex()
		hashes = map[string]string{}
		same := true
		for _, m := range c.Members() {
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := m.Node.FSM().WaitApplied(wctx, idx)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			same = same && m.Node.FSM().LastIndex() == idx
			hashes[m.ID] = m.Node.FSM().Hash()
		}
		if same {
			break
		}
		if try == 50 {
			t.Fatal("nodes never at one index")
		}
	}
	// Operators see the same hash in Status (brokerctl cluster status).
	if st, err := cl.StatusWithHash(ctx, f.GRPCAddr); err != nil || st.StateHash != n.FSM().Hash() {
		t.Fatalf("status of %s: %v, hash %q vs FSM %q", f.ID, err, st.GetStateHash(), n.FSM().Hash())
	}
	var healthy []string
	for id, h := range hashes {
		if id == f.ID {
			continue
		}
		if h == hashes[f.ID] {
			t.Fatalf("diverged node %s has the same hash as %s: %s", f.ID, id, h)
		}
		healthy = append(healthy, h)
	}
	if len(healthy) != 2 || healthy[0] != healthy[1] {
		t.Fatalf("healthy nodes disagree: %v", hashes)
	}
}

// loseIndexEntry removes the first by_state index entry from the store of
// the stopped node in dir: a divergence that nothing fails to decode (the
// job record itself is intact), only the state hash shows.
func loseIndexEntry(t *testing.T, dir string) {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(dir, "fsm.db"), 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("by_state"))
		if b == nil {
			return fmt.Errorf("no by_state bucket")
		}
		k, _ := b.Cursor().First()
		if k == nil {
			return fmt.Errorf("by_state is empty")
		}
		return b.Delete(append([]byte(nil), k...))
	}); err != nil {
		t.Fatal(err)
	}
}
