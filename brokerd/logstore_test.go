package brokerd_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
)

// A data dir keeps the kind of Raft log it was made with: an empty one
// gets a WAL, a bolt or WAL one keeps its own under the default, and an
// explicit kind that does not match what the dir holds is refused with
// the setting to change, never opened as an empty log beside the real one.
func TestLogStoreKindPerDataDir(t *testing.T) {
	mk := func(t *testing.T, bolt, wal bool) string {
		dir := t.TempDir()
		if bolt {
			if err := os.WriteFile(filepath.Join(dir, "raft.db"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if wal {
			if err := os.Mkdir(filepath.Join(dir, "raft-wal"), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	for _, tc := range []struct {
		name      string
		bolt, wal bool
		want      string
		got       string // "" = error
		errHas    string
	}{
		{name: "new dir, default", want: "", got: "wal"},
		{name: "new dir, bolt", want: "bolt", got: "bolt"},
		{name: "new dir, wal", want: "wal", got: "wal"},
		{name: "bolt dir, default", bolt: true, want: "", got: "bolt"},
		{name: "wal dir, default", wal: true, want: "", got: "wal"},
		{name: "bolt dir, wal asked", bolt: true, want: "wal", errHas: "holds a bolt Raft log"},
		{name: "wal dir, bolt asked", wal: true, want: "bolt", errHas: "holds a WAL Raft log"},
		{name: "both", bolt: true, wal: true, want: "", errHas: "two Raft logs"},
		{name: "unknown kind", want: "rocks", errHas: `"rocks"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := mk(t, tc.bolt, tc.wal)
			got, err := brokerd.ChooseLogStore(dir, tc.want)
			if tc.got != "" {
				if err != nil || got != tc.got {
					t.Fatalf("got %q, %v; want %q", got, err, tc.got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("got %q, %v; want an error with %q", got, err, tc.errHas)
			}
		})
	}
}

// A cluster made with bolt logs (every data dir before raft-wal was the
// default) restarts under the default setting on its bolt logs, with its
// state, and a node told to switch to a WAL refuses to start.
func TestBoltDataDirRestartsOnBolt(t *testing.T) {
	c := testcluster.New(t, 3, func(cfg *brokerd.Config) { cfg.LogStore = brokerd.LogStoreBolt })
	cl := c.Client()
	ctx := testutil.Context(t, 60*time.Second)
	enqueueBatches(t, ctx, cl, "a", 300)
	want := c.WaitConverged(30 * time.Second)
	f := follower(t, c)
	c.Kill(f.ID)

	cfg := brokerd.DefaultConfig()
	cfg.NodeID, cfg.DataDir, cfg.RaftAddr, cfg.GRPCAddr = f.ID, f.Dir, f.RaftAddr, f.GRPCAddr
	cfg.Logger = testutil.Logger(t)
	cfg.LogStore = brokerd.LogStoreWAL
	if n, err := brokerd.Open(cfg); err == nil {
		_ = n.Kill()
		t.Fatal("node opened a WAL beside its bolt log")
	} else if !strings.Contains(err.Error(), "raft.log_store") {
		t.Fatalf("error does not name the setting: %v", err)
	}
	if _, err := os.Stat(filepath.Join(f.Dir, "raft-wal")); !os.IsNotExist(err) {
		t.Fatalf("refused start left a WAL dir: %v", err)
	}

	c.Tune = nil // the default: keep what the data dir holds
	n := c.Restart(f.ID)
	if got := c.WaitConverged(30 * time.Second); got != want || n.FSM().Len() != 300 {
		t.Fatalf("restarted node holds %d jobs, hash equal %v", n.FSM().Len(), got == want)
	}
	if _, err := os.Stat(filepath.Join(f.Dir, "raft-wal")); !os.IsNotExist(err) {
		t.Fatalf("default setting made a WAL in a bolt data dir: %v", err)
	}
}
