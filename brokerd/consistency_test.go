package brokerd_test

import (
	"slices"
	"testing"
	"time"

	"github.com/raftq/raftq/brokerd"
)

func checkEvery(d time.Duration) func(*brokerd.Config) {
	return func(cfg *brokerd.Config) { cfg.ConsistencyCheckInterval = d }
}

// waitReport waits for a consistency check report from the leader that
// satisfies ok.
func waitReport(t *testing.T, c interface{ Leader() *brokerd.Node }, ok func(brokerd.ConsistencyReport) bool) brokerd.ConsistencyReport {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last brokerd.ConsistencyReport
	for time.Now().Before(deadline) {
		if l := c.Leader(); l != nil {
			last = l.LastConsistencyCheck()
			if ok(last) {
				return last
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no such consistency check in 30s; last: %+v", last)
	return last
}

// Healthy nodes agree at every check; a node whose store went wrong while
// it was down (an index entry lost: nothing fails to decode) is named
// divergent by the leader's next check, while the others still agree.
func TestConsistencyCheckFindsDivergedNode(t *testing.T) {
	c, cl, ctx, _, f := loadedCluster(t, checkEvery(200*time.Millisecond), 200)
	rep := waitReport(t, c, func(r brokerd.ConsistencyReport) bool { return r.Index > 0 && len(r.Hashes) == 3 })
	if len(rep.Divergent) != 0 || len(rep.Missing) != 0 {
		t.Fatalf("healthy cluster judged divergent: %+v", rep)
	}

	c.Kill(f.ID)
	loseIndexEntry(t, f.Dir)
	c.Restart(f.ID)
	enqueueBatches(t, ctx, cl, "b", 10)

	rep = waitReport(t, c, func(r brokerd.ConsistencyReport) bool { return len(r.Divergent) > 0 })
	if !slices.Equal(rep.Divergent, []string{f.ID}) || len(rep.Hashes) != 3 {
		t.Fatalf("want %s alone divergent: %+v", f.ID, rep)
	}
	var agree []string
	for id, h := range rep.Hashes {
		if id != f.ID {
			agree = append(agree, h)
		}
	}
	if agree[0] != agree[1] || agree[0] == rep.Hashes[f.ID] {
		t.Fatalf("hashes: %v", rep.Hashes)
	}
}
