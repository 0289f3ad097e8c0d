package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/internal/placement"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// A backup of a cluster of several Raft groups is one file per group, each
// from its group's leader; restoring it brings back every group's jobs and
// drops what was written since; a backup missing a group's file is refused
// before anything changes.
func TestSnapshotOfEveryGroup(t *testing.T) {
	const groups = 3
	c := testcluster.New(t, 3, func(cfg *brokerd.Config) { cfg.Groups = groups })
	c.WaitGroupLeaders(30 * time.Second)
	b := strings.Join(c.Addrs(), ",")
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	qs := placement.QueuesPerGroup("q", groups)
	// Group g's queue holds g+1 jobs.
	for g, q := range qs {
		for i := 0; i <= g; i++ {
			if _, err := cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: q, Type: "t"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	file := filepath.Join(t.TempDir(), "backup.snap")
	var saved []struct {
		Group        uint32
		File         string
		AppliedIndex uint64 `json:"applied_index"`
	}
	ctlJSON(t, b, &saved, "snapshot", "save", file)
	if len(saved) != groups {
		t.Fatalf("saved %+v", saved)
	}
	for _, s := range saved {
		if _, err := os.Stat(s.File); err != nil || s.File != groupFile(file, s.Group) {
			t.Fatalf("group %d: %s %v", s.Group, s.File, err)
		}
	}
	// Written after the backup: lost by the restore.
	for _, q := range qs {
		if _, err := cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: q, Type: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	// A backup with a group's file missing changes nothing.
	missing := filepath.Join(t.TempDir(), "partial.snap")
	for g := 0; g < groups-1; g++ {
		data, _ := os.ReadFile(groupFile(file, uint32(g)))
		if err := os.WriteFile(groupFile(missing, uint32(g)), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := ctl(t, b, "snapshot", "restore", missing, "--yes"); err == nil || !strings.Contains(out+err.Error(), "nothing was restored") {
		t.Fatalf("restore of a partial backup: %v\n%s", err, out)
	}
	count := func() map[string]int64 {
		st, err := cl.QueueStats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int64{}
		for _, s := range st {
			out[s.Queue] = s.Ready
		}
		return out
	}
	for g, q := range qs {
		if n := count()[q]; n != int64(g+2) {
			t.Fatalf("after the refused restore, %s has %d ready jobs, want %d", q, n, g+2)
		}
	}
	var restored []struct {
		Group uint32
		Jobs  int64
	}
	ctlJSON(t, b, &restored, "snapshot", "restore", file, "--yes")
	if len(restored) != groups {
		t.Fatalf("restored %+v", restored)
	}
	testutil.WaitFor(t, 20*time.Second, "every group is back to the backup", func() bool {
		got := count()
		for g, q := range qs {
			if got[q] != int64(g+1) {
				return false
			}
		}
		return true
	})
}
