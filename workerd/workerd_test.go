package workerd_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/worker"
	"github.com/raftq/raftq/workerd"
)

// runDaemon starts an in-process workerd and returns a stop function that
// shuts it down gracefully.
func runDaemon(t testing.TB, cfg workerd.Config) (*workerd.Daemon, func()) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testutil.Logger(t)
	}
	d, err := workerd.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("workerd Run: %v", err)
				}
			case <-time.After(2 * time.Minute):
				t.Error("workerd did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return d, stop
}

// memRecorder keeps outcomes in memory, standing in for the results
// service.
type memRecorder struct {
	mu  sync.Mutex
	out map[string][]worker.Outcome
}

func (m *memRecorder) Record(_ context.Context, o worker.Outcome) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.out == nil {
		m.out = map[string][]worker.Outcome{}
	}
	m.out[o.JobID] = append(m.out[o.JobID], o)
	return false, nil
}

func (m *memRecorder) get(id string) []worker.Outcome {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]worker.Outcome(nil), m.out[id]...)
}

func TestParseQueues(t *testing.T) {
	qs, err := workerd.ParseQueues(" q1:8, q2 ,q3:2")
	if err != nil {
		t.Fatal(err)
	}
	want := []worker.QueueConfig{{Name: "q1", Concurrency: 8}, {Name: "q2", Concurrency: 1}, {Name: "q3", Concurrency: 2}}
	if !reflect.DeepEqual(qs, want) {
		t.Fatalf("got %v, want %v", qs, want)
	}
	// A weighted pool: one entry, its queues joined by "|".
	qs, err = workerd.ParseQueues("critical=3|low=1:4,other")
	if err != nil {
		t.Fatal(err)
	}
	want = []worker.QueueConfig{{Name: "critical=3|low=1", Concurrency: 4, Weights: map[string]int{"critical": 3, "low": 1}},
		{Name: "other", Concurrency: 1}}
	if !reflect.DeepEqual(qs, want) {
		t.Fatalf("got %+v, want %+v", qs, want)
	}
	for _, bad := range []string{"", "q:0", "q:x", ":3", "q,q", "a=0|b=1", "a=3|b", "a=1|a=2", "=1|b=2", "a=1001"} {
		if _, err := workerd.ParseQueues(bad); err == nil {
			t.Errorf("ParseQueues(%q) accepted", bad)
		}
	}
}

func TestFlakyFailures(t *testing.T) {
	for in, want := range map[string]int32{`{"fail": 3}`: 3, "2": 2, "": 0, " 0 ": 0} {
		if got, err := workerd.FlakyFailures([]byte(in)); err != nil || got != want {
			t.Errorf("FlakyFailures(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{`{"fail": -1}`, "x", `{"nope": 1}`, "-2"} {
		if _, err := workerd.FlakyFailures([]byte(bad)); err == nil {
			t.Errorf("FlakyFailures(%q) accepted", bad)
		}
	}
}

// The built-in job types through an in-process daemon: outputs go to the
// Recorder before the ack, fail dead-letters after one attempt, and a
// flaky job succeeds on attempt N+1 with its back-off respected between
// attempts. The metrics endpoint serves the worker's counters.
func TestBuiltins(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	cl := c.Client()
	ctx := testutil.Context(t, 2*time.Minute)
	const initial = 200 * time.Millisecond
	enq := func(typ, payload string, opts ...client.JobOption) string {
		id, _, err := cl.EnqueueOne(ctx, "builtins", typ, []byte(payload), opts...)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	echo := enq("echo", "hello")
	sum := enq("sha256", "abc")
	sleep := enq("sleep", "50ms")
	fail := enq("fail", "no way", client.WithMaxAttempts(5))
	flaky := enq("flaky", `{"fail": 3}`, client.WithRetry(initial, 10*time.Second), client.WithMaxAttempts(10))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := ln.Addr().String()
	ln.Close()
	rec := &memRecorder{}
	_, stop := runDaemon(t, workerd.Config{
		Brokers:     c.Addrs(),
		Queues:      []worker.QueueConfig{{Name: "builtins", Concurrency: 4}},
		WorkerID:    "wd-builtins",
		Recorder:    rec,
		MetricsAddr: metricsAddr,
	})
	testcluster.WaitJobState(t, cl, echo, raftqv1.JobState_JOB_STATE_SUCCEEDED)
	testcluster.WaitJobState(t, cl, sum, raftqv1.JobState_JOB_STATE_SUCCEEDED)
	testcluster.WaitJobState(t, cl, sleep, raftqv1.JobState_JOB_STATE_SUCCEEDED)
	fj := testcluster.WaitJobState(t, cl, fail, raftqv1.JobState_JOB_STATE_DEAD)
	flj := testcluster.WaitJobState(t, cl, flaky, raftqv1.JobState_JOB_STATE_SUCCEEDED)

	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `raftq_worker_jobs_finished_total{outcome="succeeded",queue="builtins",type="echo"} 1`) {
		t.Errorf("metrics lack the echo success:\n%s", body)
	}
	stop()

	if o := rec.get(echo); len(o) != 1 || string(o[0].Output) != "hello" || o[0].Status != worker.StatusSucceeded {
		t.Fatalf("echo outcome %+v", o)
	}
	digest := sha256.Sum256([]byte("abc"))
	if o := rec.get(sum); len(o) != 1 || string(o[0].Output) != hex.EncodeToString(digest[:]) {
		t.Fatalf("sha256 outcome %+v", o)
	}
	if o := rec.get(fail); fj.Attempts != 1 || len(o) != 1 || o[0].Status != worker.StatusDead || o[0].Error != "no way" {
		t.Fatalf("fail: attempts %d, outcomes %+v", fj.Attempts, o)
	}
	// Flaky: attempts 1..3 failed, 4 succeeded. Attempt k's back-off is
	// initial*2^(k-1) jittered into [half, full], so the next attempt
	// cannot start before half of it has passed.
	o := rec.get(flaky)
	if flj.Attempts != 4 || len(o) != 4 {
		t.Fatalf("flaky: attempts %d, outcomes %+v", flj.Attempts, o)
	}
	for k := 1; k <= 4; k++ {
		got := o[k-1]
		want := worker.StatusFailed
		if k == 4 {
			want = worker.StatusSucceeded
		}
		if got.Attempt != int32(k) || got.Status != want {
			t.Fatalf("flaky outcome %d: %+v", k, got)
		}
		if k > 1 {
			prev := o[k-2]
			minGap := (initial << (k - 2)) / 2
			gap := got.StartedAt.Sub(prev.FinishedAt)
			t.Logf("flaky attempt %d started %s after attempt %d failed (back-off floor %s)", k, gap, k-1, minGap)
			if gap < minGap {
				t.Fatalf("attempt %d started %s after attempt %d failed; back-off floor is %s", k, gap, k-1, minGap)
			}
		}
	}
}
