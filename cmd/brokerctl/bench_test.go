package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/raftq/raftq/internal/testcluster"
)

// bench e2e takes the jobs on Consume streams by default, and with Fetch
// when told: every job enqueued is acked, none refused, and the line says
// which paths it took.
func TestBenchE2EPaths(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	for _, tc := range []struct {
		extra             []string
		consume, ackBatch bool
	}{
		{nil, true, true},
		{[]string{"--ack-batch=false"}, true, false},
		{[]string{"--consume=false", "--ack-batch=false"}, false, false},
	} {
		var line struct {
			Enqueued  int64 `json:"enqueued"`
			Acked     int64 `json:"acked"`
			AckErrors int64 `json:"ack_errors"`
			Consume   bool  `json:"consume"`
			AckBatch  bool  `json:"ack_batch"`
			Stream    bool  `json:"stream"`
		}
		out := benchLine(t, c, append([]string{"e2e", "--duration", "500ms", "--workers", "2", "--clients", "1", "--fetch-batch", "8"}, tc.extra...), &line)
		if line.Consume != tc.consume || line.AckBatch != tc.ackBatch || !line.Stream ||
			line.Enqueued == 0 || line.Acked != line.Enqueued || line.AckErrors != 0 {
			t.Fatalf("bench e2e %v: %s", tc.extra, out)
		}
		t.Logf("%s", strings.TrimSpace(out))
	}
}

// bench enqueue sends single jobs over the stream by default, batches
// with Enqueue, and refuses --stream with a batch.
func TestBenchEnqueuePaths(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	for _, tc := range []struct {
		extra  []string
		stream bool
	}{
		{nil, true},
		{[]string{"--stream=false"}, false},
		{[]string{"--batch", "10"}, false},
	} {
		var line struct {
			Jobs   int64 `json:"jobs"`
			Errors int64 `json:"errors"`
			Stream bool  `json:"stream"`
		}
		out := benchLine(t, c, append([]string{"enqueue", "--duration", "300ms", "--producers", "4", "--clients", "1"}, tc.extra...), &line)
		if line.Stream != tc.stream || line.Jobs == 0 || line.Errors != 0 {
			t.Fatalf("bench enqueue %v: %s", tc.extra, out)
		}
	}
	if out, err := ctlIn(t, "", "--brokers", strings.Join(c.Addrs(), ","), "bench", "enqueue", "--stream", "--batch", "10", "--duration", "100ms"); err == nil || !strings.Contains(out+err.Error(), "--batch 1") {
		t.Fatalf("--stream with --batch 10: %v %s", err, out)
	}
}

// benchLine runs brokerctl bench with args against c, decodes its JSON
// line into line and returns the line as printed.
func benchLine(t *testing.T, c *testcluster.Cluster, args []string, line any) string {
	t.Helper()
	out, err := ctlIn(t, "", append([]string{"--brokers", strings.Join(c.Addrs(), ","), "-o", "json", "bench"}, args...)...)
	if err != nil {
		t.Fatalf("bench %v: %v\n%s", args, err, out)
	}
	if err := json.Unmarshal([]byte(out), line); err != nil {
		t.Fatalf("bench %v: %v: %s", args, err, out)
	}
	return out
}
