package report

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/raftq/raftq/jepsen/checker"
	"github.com/raftq/raftq/jepsen/history"
)

func TestReportFiles(t *testing.T) {
	ops := []history.Op{
		{Index: 0, Kind: history.Enqueue, Status: history.OK, Start: 1e8, End: 2e8, Value: "p0-0", JobID: "a"},
		{Index: 1, Kind: history.Nemesis, Status: history.OK, Start: 5e8, End: 25e8, Family: "partition", Value: "partition/bridge: n1 | n3 bridged by n2"},
		{Index: 2, Kind: history.Enqueue, Status: history.OK, Start: 10e8, End: 12e8, Value: "p0-1", JobID: "b"},
		{Index: 3, Kind: history.Enqueue, Status: history.Info, Start: 13e8, End: 18e8, Value: "p0-2"},
		{Index: 4, Kind: history.Fetch, Status: history.OK, Start: 30e8, End: 31e8, Value: "p0-0", JobID: "a", Token: 4},
		{Index: 5, Kind: history.Ack, Status: history.OK, Start: 32e8, End: 33e8, JobID: "a", Token: 4},
	}
	r := &Run{Name: "t", Config: map[string]any{"nodes": 3}}
	r.Checkers = []checker.Result{checker.Queue(ops), checker.AckDurability(ops)}
	r.Valid = r.Checkers[0].Valid && r.Checkers[1].Valid
	r.Stats = Compute(ops, 40e8)
	r.Nemesis = Intervals(ops)
	if r.Valid {
		t.Fatal("a history with a lost value is valid")
	}
	if r.Stats.Ops["enqueue"]["ok"] != 2 || r.Stats.Faults["partition"] != 1 {
		t.Errorf("stats: %+v", r.Stats)
	}
	if r.Stats.EnqueueRate.DuringFault == 0 || r.Stats.EnqueueRate.FaultFree == 0 {
		t.Errorf("rates: %+v", r.Stats.EnqueueRate)
	}
	dir := t.TempDir()
	if err := WriteJSON(dir, r); err != nil {
		t.Fatal(err)
	}
	if err := WriteHTML(dir, r, ops); err != nil {
		t.Fatal(err)
	}
	var back Run
	b, _ := os.ReadFile(filepath.Join(dir, "results.json"))
	if err := json.Unmarshal(b, &back); err != nil || back.Checkers[0].Counts["lost"] != 1 {
		t.Fatalf("results.json: %v %+v", err, back.Checkers)
	}
	h, _ := os.ReadFile(filepath.Join(dir, "index.html"))
	for _, want := range []string{"INVALID", "<svg", "partition/bridge", "lost: p0-1", "<tr class=\"hit\">"} {
		if !strings.Contains(string(h), want) {
			t.Errorf("index.html lacks %q", want)
		}
	}
	s := Summary(r)
	if !strings.Contains(s, "queue         INVALID") || !strings.Contains(s, "result: INVALID") {
		t.Errorf("summary:\n%s", s)
	}
}
