package brokerd_test

import (
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/internal/promcheck"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// metricValue sums the samples of family name whose labels include want.
func metricValue(t *testing.T, n *brokerd.Node, name string, want map[string]string) (float64, bool) {
	t.Helper()
	fams, err := n.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum, seen := 0.0, false
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metric:
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue metric
				}
			}
			seen = true
			sum += sampleValue(f.GetType(), m)
		}
	}
	return sum, seen
}

func sampleValue(t dto.MetricType, m *dto.Metric) float64 {
	switch t {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	case dto.MetricType_HISTOGRAM:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return m.GetUntyped().GetValue()
}

// TestMetrics drives jobs through every counted event (enqueue, lease,
// ack, nack with retry, permanent nack, lease expiry, redrive) and checks
// the leader's counters, queue depths and Raft gauges, then runs
// `promtool check metrics` on every node's /metrics.
func TestMetrics(t *testing.T) {
	c := testcluster.New(t, 3, nil, testcluster.Admin)
	cl := c.Client()
	ctx := testutil.Context(t, 60*time.Second)
	const q = "metrics-q"
	spec := func() *raftqv1.JobSpec {
		return &raftqv1.JobSpec{Queue: q, Type: "t", MaxAttempts: 2, Retry: &raftqv1.RetryPolicy{InitialBackoff: durationpb.New(0)}}
	}
	if _, err := cl.Enqueue(ctx, spec(), spec(), spec(), spec()); err != nil {
		t.Fatal(err)
	}
	fetch := func(lease time.Duration) *raftqv1.Job {
		t.Helper()
		req := &raftqv1.FetchRequest{Queues: []string{q}, MaxWait: durationpb.New(5 * time.Second), WorkerId: "w"}
		if lease > 0 {
			req.LeaseDuration = durationpb.New(lease)
		}
		jobs, err := cl.Fetch(ctx, req)
		if err != nil || len(jobs) != 1 {
			t.Fatalf("fetch: %v %v", jobs, err)
		}
		return jobs[0]
	}
	// Job 1 succeeds.
	j := fetch(0)
	if err := cl.Ack(ctx, j.Id, j.LeaseToken); err != nil {
		t.Fatal(err)
	}
	// Job 2 fails once (retry), then permanently (dead).
	j = fetch(0)
	if _, err := cl.Nack(ctx, &raftqv1.NackRequest{JobId: j.Id, LeaseToken: j.LeaseToken, Error: "boom", RetryAfter: durationpb.New(0)}); err != nil {
		t.Fatal(err)
	}
	j2 := fetch(0)
	if _, err := cl.Nack(ctx, &raftqv1.NackRequest{JobId: j2.Id, LeaseToken: j2.LeaseToken, Error: "fatal", Permanent: true}); err != nil {
		t.Fatal(err)
	}
	// Job 3's lease expires; it is ready again.
	j3 := fetch(100 * time.Millisecond)
	for {
		got, err := cl.GetJob(ctx, j3.Id, raftqv1.Consistency_CONSISTENCY_LINEARIZABLE)
		if err != nil {
			t.Fatal(err)
		}
		if got.State == raftqv1.JobState_JOB_STATE_READY {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("lease never expired")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := cl.Redrive(ctx, q, []string{j2.Id}, 0); err != nil {
		t.Fatal(err)
	}
	// A job in another queue misses its schedule-to-start timeout.
	const tq = "metrics-timeout"
	late, err := cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: tq, Type: "t", ScheduleToStart: durationpb.New(100 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	for {
		got, err := cl.GetJob(ctx, late[0].JobId, raftqv1.Consistency_CONSISTENCY_LINEARIZABLE)
		if err != nil {
			t.Fatal(err)
		}
		if got.State == raftqv1.JobState_JOB_STATE_DEAD {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("schedule-to-start timeout never fired")
		}
		time.Sleep(20 * time.Millisecond)
	}

	l := c.WaitLeader(10 * time.Second)
	want := []struct {
		name   string
		labels map[string]string
		value  float64
	}{
		{"raftq_jobs_enqueued_total", map[string]string{"queue": q}, 4},
		{"raftq_jobs_succeeded_total", map[string]string{"queue": q}, 1},
		{"raftq_jobs_leased_total", map[string]string{"queue": q}, 4},
		{"raftq_job_retries_total", map[string]string{"queue": q, "reason": "nack"}, 1},
		{"raftq_job_retries_total", map[string]string{"queue": q, "reason": "lease_expired"}, 1},
		{"raftq_lease_expiries_total", map[string]string{"queue": q}, 1},
		{"raftq_jobs_dead_lettered_total", map[string]string{"queue": q, "reason": "permanent"}, 1},
		{"raftq_jobs_redriven_total", map[string]string{"queue": q}, 1},
		{"raftq_job_timeouts_total", map[string]string{"queue": tq, "kind": "schedule_to_start"}, 1},
		{"raftq_jobs_dead_lettered_total", map[string]string{"queue": tq, "reason": "schedule_to_start"}, 1},
		{"raftq_queue_jobs", map[string]string{"queue": q, "state": "ready"}, 3},
		{"raftq_queue_jobs", map[string]string{"queue": q, "state": "succeeded"}, 1},
		{"raftq_raft_state", map[string]string{"state": "leader"}, 1},
		{"raftq_leader_ready", nil, 1},
	}
	for _, w := range want {
		// Job event counters are counted by whichever node led when the
		// command committed: the cluster's count is the sum over nodes,
		// whatever elections happened meanwhile. Gauges are the leader's.
		got, ok := metricValue(t, l, w.name, w.labels)
		if strings.HasSuffix(w.name, "_total") {
			got, ok = 0, false
			for _, n := range c.Up() {
				v, seen := metricValue(t, n, w.name, w.labels)
				got, ok = got+v, ok || seen
			}
		}
		if !ok || got != w.value {
			t.Errorf("%s%v = %v (present %v), want %v", w.name, w.labels, got, ok, w.value)
		}
	}
	// Histograms and Raft gauges that must have moved.
	for _, name := range []string{"raftq_raft_commit_seconds", "raftq_raft_log_store_seconds", "raftq_grpc_server_handling_seconds", "raftq_raft_commit_index", "raftq_raft_term"} {
		if got, ok := metricValue(t, l, name, nil); !ok || got == 0 {
			t.Errorf("%s = %v (present %v), want > 0", name, got, ok)
		}
	}
	// The Ack RPC was counted where it was served (and again on the leader
	// if a follower forwarded it).
	acks := 0.0
	for _, n := range c.Up() {
		v, _ := metricValue(t, n, "raftq_grpc_server_handled_total", map[string]string{"grpc_service": "raftq.v1.Broker", "grpc_method": "Ack", "grpc_code": "OK"})
		acks += v
	}
	if acks < 1 || acks > 2 {
		t.Errorf("Ack RPCs counted %v times, want 1 (2 if forwarded)", acks)
	}
	// Leader changes: every node saw at least the first leader.
	for _, n := range c.Up() {
		if got, _ := metricValue(t, n, "raftq_raft_leader_changes_total", nil); got < 1 {
			t.Errorf("%s: raftq_raft_leader_changes_total = %v", n.ID(), got)
		}
	}
	for _, n := range c.Up() {
		promcheck.CheckURL(t, "http://"+c.AdminAddr(n)+"/metrics")
	}
}
