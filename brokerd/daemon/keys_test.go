package daemon_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/liveconfig"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// The per-key cap (live config, etcd) holds across a leader change: the
// new leader's dispatcher counts each key's leased jobs from FSM state, so
// jobs leased under the old leader still count. Bad keys are refused.
func TestEtcdConcurrencyKeyCapSurvivesLeaderChange(t *testing.T) {
	c, _, _ := startThree(t)
	cli := c.cli
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, liveconfig.QueueKey(c.prefix, "tenants"), `{"max_in_flight_per_key":2}`); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.up() {
		for n.LiveConfig().Queue("tenants").MaxInFlightPerKey != 2 {
			if ctx.Err() != nil {
				t.Fatalf("%s did not apply the cap", n.ID())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	cl := c.client()
	for _, bad := range []string{strings.Repeat("k", 257), "tab\there", "bell\a"} {
		_, err := cl.Enqueue(ctx, client.NewJob("tenants", "t", nil, client.WithConcurrencyKey(bad)))
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "concurrency_key") {
			t.Fatalf("key %q: %v", bad, err)
		}
	}
	for _, key := range []string{"a", "b"} {
		var specs []*raftqv1.JobSpec
		for range 10 {
			specs = append(specs, client.NewJob("tenants", "t", nil, client.WithConcurrencyKey(key)))
		}
		if _, err := cl.Enqueue(ctx, specs...); err != nil {
			t.Fatal(err)
		}
	}
	held, err := cl.Fetch(ctx, fetchReq("tenants", 20, 0, "w1"))
	if err != nil || len(held) != 4 {
		t.Fatalf("first fetch: %d jobs (want 2 per key), %v", len(held), err)
	}
	if j, err := cl.GetJob(ctx, held[0].Id, 0); err != nil || j.ConcurrencyKey == "" {
		t.Fatalf("GetJob: key %q, %v", j.GetConcurrencyKey(), err)
	}

	old := c.leader()
	c.stop(old.ID(), false)
	deadline := time.Now().Add(30 * time.Second)
	for c.leader() == nil {
		if time.Now().After(deadline) {
			t.Fatal("no new leader")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cl2 := c.client()
	if jobs, err := cl2.Fetch(ctx, fetchReq("tenants", 20, 300*time.Millisecond, "w2")); err != nil || len(jobs) != 0 {
		t.Fatalf("fetch under the new leader at the cap: %d jobs, %v", len(jobs), err)
	}
	// One ack of a's frees one slot of a, and only of a.
	var a *raftqv1.Job
	for _, j := range held {
		if j.ConcurrencyKey == "a" {
			a = j
			break
		}
	}
	if err := cl2.Ack(ctx, a.Id, a.LeaseToken); err != nil {
		t.Fatal(err)
	}
	jobs, err := cl2.Fetch(ctx, fetchReq("tenants", 20, 5*time.Second, "w2"))
	if err != nil || len(jobs) != 1 || jobs[0].ConcurrencyKey != "a" {
		t.Fatalf("after one ack of a: %v, %v", jobs, err)
	}
}
