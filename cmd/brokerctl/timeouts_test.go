package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/raftq/raftq/internal/adminapi"
	"github.com/raftq/raftq/internal/testcluster"
)

// brokerctl enqueue sets timeouts and a unique key, jobs get shows them,
// a held key with --unique-mode reject is refused naming the holder, and
// fetch --weights asks for weighted selection.
func TestCtlTimeoutsUniqueAndWeights(t *testing.T) {
	c := testcluster.New(t, 1, nil)
	b := strings.Join(c.Addrs(), ",")
	ctl := func(args ...string) (string, error) {
		return ctlIn(t, "", append([]string{"--brokers", b, "-o", "json"}, args...)...)
	}
	out, err := ctl("enqueue", "--queue", "tq", "--type", "t", "--lease", "30s", "--schedule-to-start", "1h",
		"--start-to-close", "2m", "--unique-key", "u-1", "--unique-mode", "reject", "--delay", "1h")
	if err != nil {
		t.Fatal(err, out)
	}
	var enq struct {
		Jobs []struct {
			ID string `json:"id"`
		} `json:"jobs"`
	}
	if err := json.Unmarshal([]byte(out), &enq); err != nil || len(enq.Jobs) != 1 {
		t.Fatal(err, out)
	}
	id := enq.Jobs[0].ID
	out, err = ctl("jobs", "get", id)
	var j adminapi.Job
	if err != nil || json.Unmarshal([]byte(out), &j) != nil {
		t.Fatal(err, out)
	}
	if j.UniqueKey != "u-1" || j.StartToCloseSeconds != 120 || j.StartDeadline == nil {
		t.Fatalf("jobs get: %+v", j)
	}
	_, err = ctl("enqueue", "--queue", "tq", "--type", "t", "--unique-key", "u-1", "--unique-mode", "reject")
	if err == nil || !strings.Contains(err.Error(), "held by job "+id) {
		t.Fatalf("held key: %v", err)
	}
	for _, bad := range [][]string{{"--unique-mode", "maybe", "--unique-key", "k"}, {"--unique-mode", "reject"}, {"--start-to-close", "-1s"}} {
		if _, err := ctl(append([]string{"enqueue", "--queue", "tq", "--type", "t"}, bad...)...); err == nil {
			t.Errorf("enqueue %v accepted", bad)
		}
	}
	if out, err := ctl("enqueue", "--queue", "wa", "--type", "t", "--count", "3"); err != nil {
		t.Fatal(err, out)
	}
	out, err = ctl("fetch", "--weights", "wa=3,wb=1", "--max", "2")
	var f Fetched
	if err != nil || json.Unmarshal([]byte(out), &f) != nil || len(f.Jobs) != 2 || f.Jobs[0].Queue != "wa" {
		t.Fatalf("fetch --weights: %v %s", err, out)
	}
}
