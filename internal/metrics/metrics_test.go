package metrics

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	gometrics "github.com/hashicorp/go-metrics/compat"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestGRPCServerCountsCodesAndLatency(t *testing.T) {
	m := NewGRPCServer("t")
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	unary := m.UnaryServerInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: "/raftq.v1.Broker/Enqueue"}
	ok := func(ctx context.Context, req any) (any, error) { return "ok", nil }
	bad := func(ctx context.Context, req any) (any, error) { return nil, status.Error(codes.NotFound, "no") }
	for range 3 {
		if _, err := unary(context.Background(), nil, info, ok); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := unary(context.Background(), nil, info, bad); status.Code(err) != codes.NotFound {
		t.Fatalf("error not passed through: %v", err)
	}
	stream := m.StreamServerInterceptor()
	sinfo := &grpc.StreamServerInfo{FullMethod: "/raftq.v1.Cluster/Snapshot"}
	_ = stream(nil, nil, sinfo, func(any, grpc.ServerStream) error { return errors.New("plain") })

	for _, c := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"raftq.v1.Broker", "Enqueue", "OK"}, 3},
		{[]string{"raftq.v1.Broker", "Enqueue", "NotFound"}, 1},
		{[]string{"raftq.v1.Cluster", "Snapshot", "Unknown"}, 1},
	} {
		if got := value(m.handled.WithLabelValues(c.labels...)); got != c.want {
			t.Errorf("handled%v = %v, want %v", c.labels, got, c.want)
		}
	}
	if n := count(m.duration); n != 2 {
		t.Errorf("%d latency series, want 2 (per service and method, not per code)", n)
	}
	if got := value(m.inflight.WithLabelValues("raftq.v1.Broker", "Enqueue")); got != 0 {
		t.Errorf("in flight %v after every call returned", got)
	}
	if problems, err := lint(reg); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}
}

// TestRaftBridge feeds samples through go-metrics' global API, as
// hashicorp/raft does, and reads them back as Prometheus metrics in base
// units; keys outside the table are dropped.
func TestRaftBridge(t *testing.T) {
	b := Raft("raftq")
	reg := prometheus.NewRegistry()
	reg.MustRegister(b)
	before := value(b.byKey["raft.apply"].count.WithLabelValues())

	gometrics.MeasureSince([]string{"raft", "commitTime"}, time.Now().Add(-250*time.Millisecond))
	gometrics.IncrCounter([]string{"raft", "apply"}, 2)
	gometrics.MeasureSinceWithLabels([]string{"raft", "replication", "appendEntries", "rpc"}, time.Now(), []gometrics.Label{{Name: "peer_id", Value: "n2"}})
	gometrics.IncrCounter([]string{"raft", "notInTheTable"}, 1)

	if got := value(b.byKey["raft.apply"].count.WithLabelValues()) - before; got != 2 {
		t.Errorf("raft_apply_total grew by %v, want 2", got)
	}
	var sum float64
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range fams {
		names[f.GetName()] = true
		if f.GetName() == "raftq_raft_commit_seconds" {
			sum = f.GetMetric()[0].GetHistogram().GetSampleSum()
		}
		if f.GetName() == "raftq_raft_replication_append_entries_seconds" {
			if l := f.GetMetric()[0].GetLabel(); len(l) != 1 || l[0].GetValue() != "n2" {
				t.Errorf("peer label %v", l)
			}
		}
		if strings.Contains(strings.ToLower(f.GetName()), "notinthetable") {
			t.Errorf("unmapped key exported as %s", f.GetName())
		}
	}
	if sum < 0.25 || sum > 60 {
		t.Errorf("commit latency sum %v s, want about 0.25 (milliseconds converted to seconds)", sum)
	}
	if !names["raftq_raft_replication_append_entries_seconds"] {
		t.Error("labelled sample missing")
	}
	if problems, err := lint(reg); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}
}

// value reads a counter's or gauge's current value.
func value(m prometheus.Metric) float64 {
	var pb dto.Metric
	if err := m.Write(&pb); err != nil {
		panic(err)
	}
	if pb.Counter != nil {
		return pb.GetCounter().GetValue()
	}
	return pb.GetGauge().GetValue()
}

// count is the number of series a collector exports.
func count(c prometheus.Collector) int {
	ch := make(chan prometheus.Metric, 100)
	c.Collect(ch)
	close(ch)
	return len(ch)
}

// lint runs promlint (what promtool check metrics runs) on reg.
func lint(reg *prometheus.Registry) ([]promlint.Problem, error) {
	fams, err := reg.Gather()
	if err != nil {
		return nil, err
	}
	return promlint.NewWithMetricFamilies(fams).Lint()
}

// BenchmarkUnaryInterceptor is the per-RPC cost the metrics add to every
// gRPC call a broker serves.
func BenchmarkUnaryInterceptor(b *testing.B) {
	m := NewGRPCServer("bench")
	unary := m.UnaryServerInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: "/raftq.v1.Broker/Enqueue"}
	h := func(ctx context.Context, req any) (any, error) { return nil, nil }
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, _ = unary(ctx, nil, info, h)
	}
}

// BenchmarkRaftSink is the cost of one go-metrics sample on raft's hot
// path (commit time, log store) through the bridge.
func BenchmarkRaftSink(b *testing.B) {
	Raft("raftq")
	key := []string{"raft", "commitTime"}
	b.ReportAllocs()
	for b.Loop() {
		gometrics.AddSample(key, 1.5)
	}
}
