package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/raftq/raftq/internal/testcluster"
)

// bench e2e --consume takes the jobs on Consume streams: every job
// enqueued is acked, none refused, and the line says it consumed.
func TestBenchE2EConsume(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	for _, extra := range [][]string{nil, {"--ack-batch"}} {
		args := append([]string{"--brokers", strings.Join(c.Addrs(), ","), "-o", "json", "bench", "e2e", "--consume",
			"--duration", "500ms", "--workers", "2", "--clients", "1", "--fetch-batch", "8"}, extra...)
		out, err := ctlIn(t, "", args...)
		if err != nil {
			t.Fatalf("bench e2e --consume %v: %v\n%s", extra, err, out)
		}
		var line struct {
			Enqueued  int64 `json:"enqueued"`
			Acked     int64 `json:"acked"`
			AckErrors int64 `json:"ack_errors"`
			Consume   bool  `json:"consume"`
		}
		if err := json.Unmarshal([]byte(out), &line); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if !line.Consume || line.Enqueued == 0 || line.Acked != line.Enqueued || line.AckErrors != 0 {
			t.Fatalf("bench e2e --consume %v: %s", extra, out)
		}
		t.Logf("%s", strings.TrimSpace(out))
	}
}
