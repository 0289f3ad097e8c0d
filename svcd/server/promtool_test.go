package server_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/raftq/raftq/internal/promcheck"
	"github.com/raftq/raftq/results"
	"github.com/raftq/raftq/svcd/svcdtest"
)

// TestMetricsPassPromtool serves svcd in-process on SQLite, makes it count
// a stored, a duplicate and a stale write, and runs `promtool check
// metrics` on its /metrics.
func TestMetricsPassPromtool(t *testing.T) {
	b := svcdtest.SQLite(t)
	s := svcdtest.Start(t, b)
	rc, err := results.Dial(s.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := results.Result{JobID: "j1", Queue: "q", Type: "t", LeaseToken: 5, WorkerID: "w", Attempt: 1, Status: results.StatusFailed}
	for _, tok := range []uint64{5, 5} { // stored, then duplicate
		r.LeaseToken = tok
		if _, err := rc.StoreResult(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	r.LeaseToken = 4
	if _, err := rc.StoreResult(ctx, r); !errors.Is(err, results.ErrStaleToken) {
		t.Fatalf("stale write: %v", err)
	}
	body := promcheck.CheckURL(t, "http://"+s.HTTPAddr()+"/metrics")
	if len(body) == 0 {
		t.Fatal("empty /metrics")
	}
}
