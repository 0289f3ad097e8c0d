package envoy_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/internal/testcluster"
)

// healthOf asks every member (up or down) for the status of service, the
// way Envoy's gRPC health checker does: one Check per host. A member that
// does not answer is reported as "down".
func healthOf(t *testing.T, c *testcluster.Cluster, conns map[string]*grpc.ClientConn, service string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, m := range c.Members() {
		cc := conns[m.ID]
		if cc == nil {
			var err error
			cc, err = grpc.NewClient(m.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			conns[m.ID] = cc
			t.Cleanup(func() { cc.Close() })
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		res, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		cancel()
		if err != nil {
			out[m.ID] = "down"
		} else {
			out[m.ID] = res.GetStatus().String()
		}
	}
	return out
}

func show(m map[string]string) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// waitUntil polls cond until it holds; the deadline is only a bound on a
// hung test, never a performance claim.
func waitUntil(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		var ok bool
		if ok, last = cond(); ok {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: never happened; last seen: %s", what, last)
}

// onlyLeaderServing holds when exactly one member reports the leader
// health service SERVING, that member is the cluster's ready leader, every
// other running member reports NOT_SERVING, and down members are the ones
// expected down.
func onlyLeaderServing(t *testing.T, c *testcluster.Cluster, conns map[string]*grpc.ClientConn, down string) (bool, string) {
	st := healthOf(t, c, conns, brokerd.LeaderHealthService)
	l := c.Leader()
	if l == nil {
		return false, "no ready leader; " + show(st)
	}
	for id, s := range st {
		want := healthpb.HealthCheckResponse_NOT_SERVING.String()
		switch {
		case id == down:
			want = "down"
		case id == l.ID():
			want = healthpb.HealthCheckResponse_SERVING.String()
		}
		if s != want {
			return false, fmt.Sprintf("leader %s; %s", l.ID(), show(st))
		}
	}
	return true, ""
}

// TestLeaderHealthFollowsLeadership checks what Envoy relies on to send
// broker traffic to the leader: brokerd.LeaderHealthService is SERVING on
// exactly the ready leader, moves to the new leader when the old one dies,
// and a restarted old leader comes back as NOT_SERVING, while the node-level
// services stay SERVING on every running node.
func TestLeaderHealthFollowsLeadership(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := testcluster.New(t, 3, nil)
	conns := map[string]*grpc.ClientConn{}

	waitUntil(t, "exactly the leader SERVING", func() (bool, string) { return onlyLeaderServing(t, c, conns, "") })
	for _, svc := range []string{"", brokerd.BrokerHealthService} {
		for id, s := range healthOf(t, c, conns, svc) {
			if s != healthpb.HealthCheckResponse_SERVING.String() {
				t.Errorf("%s: health %q is %s, want SERVING on every node", id, svc, s)
			}
		}
	}

	old := c.Leader().ID()
	c.Kill(old)
	waitUntil(t, "a new leader SERVING after the old one was killed", func() (bool, string) {
		if l := c.Leader(); l != nil && l.ID() == old {
			return false, "old leader still ready"
		}
		return onlyLeaderServing(t, c, conns, old)
	})
	t.Logf("leader %s killed; %s", old, show(healthOf(t, c, conns, brokerd.LeaderHealthService)))

	c.Restart(old)
	waitUntil(t, "the restarted old leader back and NOT_SERVING", func() (bool, string) {
		return onlyLeaderServing(t, c, conns, "")
	})
	t.Logf("%s restarted; %s", old, show(healthOf(t, c, conns, brokerd.LeaderHealthService)))
}
