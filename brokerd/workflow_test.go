package brokerd_test

import (
	"github.com/raftq/raftq/internal/testutil"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/testcluster"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// fetchOne leases at most one job of queue, waiting up to wait.
func fetchOne(t *testing.T, cl *client.Client, queue string, wait time.Duration) *raftqv1.Job {
	t.Helper()
	jobs, err := cl.Fetch(testutil.Context(t, wait+30*time.Second), &raftqv1.FetchRequest{Queues: []string{queue}, MaxJobs: 1,
		MaxWait: durationpb.New(wait), WorkerId: "wf"})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) == 0 {
		return nil
	}
	return jobs[0]
}

func getJob(t *testing.T, cl *client.Client, id string) *raftqv1.Job {
	t.Helper()
	j, err := cl.GetJob(testutil.Context(t, 30*time.Second), id, raftqv1.Consistency_CONSISTENCY_LINEARIZABLE)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// TestWorkflowDiamondAcrossLeaderKill submits a→{b,c}→d atomically on a
// real 3-node cluster and runs it with the leader killed in the middle:
// each job is leased only after its parents succeeded, d last.
func TestWorkflowDiamondAcrossLeaderKill(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	cl := c.Client()
	ctx := testutil.Context(t, 2*time.Minute)
	res, err := cl.Enqueue(ctx,
		client.NewJob("wf", "d", nil, client.WithName("d"), client.DependsOnNames("b", "c")),
		client.NewJob("wf", "b", nil, client.WithName("b"), client.DependsOnNames("a")),
		client.NewJob("wf", "c", nil, client.WithName("c"), client.DependsOnNames("a")),
		client.NewJob("wf", "a", nil, client.WithName("a")),
	)
	if err != nil {
		t.Fatal(err)
	}
	id := map[string]string{"d": res[0].JobId, "b": res[1].JobId, "c": res[2].JobId, "a": res[3].JobId}
	d := getJob(t, cl, id["d"])
	if d.State != raftqv1.JobState_JOB_STATE_WAITING || !slices.Equal(d.Parents, []string{id["b"], id["c"]}) ||
		!slices.Equal(d.WaitingOn, []string{id["b"], id["c"]}) {
		t.Fatalf("d after submit: %v", d)
	}
	a := getJob(t, cl, id["a"])
	want := []string{id["b"], id["c"]}
	slices.Sort(want)
	if !slices.Equal(a.Dependants, want) {
		t.Fatalf("a's dependants %v, want %v", a.Dependants, want)
	}
	ps, err := cl.Parents(ctx, id["d"])
	if err != nil || len(ps) != 2 || ps[0].Id != id["b"] || ps[1].Id != id["c"] || ps[0].State != raftqv1.JobState_JOB_STATE_WAITING {
		t.Fatalf("Parents(d) = %v, %v", ps, err)
	}
	if st, err := cl.QueueStats(ctx, "wf"); err != nil || st[0].Waiting != 3 || st[0].Ready != 1 {
		t.Fatalf("stats %v %v", st, err)
	}

	succeeded := map[string]bool{}
	byID := map[string]string{}
	for k, v := range id {
		byID[v] = k
	}
	run := func(wantOneOf ...string) string {
		t.Helper()
		j := fetchOne(t, cl, "wf", 10*time.Second)
		if j == nil {
			t.Fatalf("nothing ready; want one of %v", wantOneOf)
		}
		name := byID[j.Id]
		if !slices.Contains(wantOneOf, name) {
			t.Fatalf("leased %s, want one of %v (succeeded so far %v)", name, wantOneOf, succeeded)
		}
		for _, p := range j.Parents {
			if !succeeded[byID[p]] {
				t.Fatalf("%s leased before its parent %s succeeded", name, byID[p])
			}
		}
		if err := cl.Ack(ctx, j.Id, j.LeaseToken); err != nil {
			t.Fatal(err)
		}
		succeeded[name] = true
		return name
	}
	// Only a is ready: nothing else is leased meanwhile.
	run("a")
	if j := getJob(t, cl, id["d"]); j.State != raftqv1.JobState_JOB_STATE_WAITING {
		t.Fatalf("d is %v after a", j.State)
	}
	leader := c.WaitLeader(30 * time.Second)
	c.Kill(leader.ID())
	c.WaitLeader(30 * time.Second)
	first := run("b", "c")
	if j := getJob(t, cl, id["d"]); j.State != raftqv1.JobState_JOB_STATE_WAITING || len(j.WaitingOn) != 1 {
		t.Fatalf("d after %s: %v", first, j)
	}
	if first == "b" {
		run("c")
	} else {
		run("b")
	}
	run("d")
	if j := fetchOne(t, cl, "wf", 200*time.Millisecond); j != nil {
		t.Fatalf("leased %s after the workflow finished", j.Id)
	}
	c.Restart(leader.ID())
	c.WaitConverged(30 * time.Second)
}

// TestWorkflowCancelCascade: a parent that ends dead cancels its
// dependants in cascade; a run-anyway dependant runs; a batch's
// on-complete callback runs and its on-success callback is cancelled.
func TestWorkflowCancelCascade(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	cl := c.Client()
	ctx := testutil.Context(t, time.Minute)
	once := client.WithMaxAttempts(1)
	chain := client.Chain(
		client.NewJob("cas", "a", nil, once),
		client.NewJob("cas", "b", nil),
		client.NewJob("cas", "c", nil),
	)
	anyway := client.NewJob("cas", "anyway", nil, client.DependsOnNames("chain-1"), client.RunAnyway())
	batch := (&client.Batch{Name: "batch", Jobs: []*raftqv1.JobSpec{client.NewJob("cas", "part", nil, client.DependsOnNames("chain-0"))},
		OnSuccess:  []*raftqv1.JobSpec{client.NewJob("cas", "on-success", nil)},
		OnComplete: []*raftqv1.JobSpec{client.NewJob("cas", "on-complete", nil)},
	}).Specs()
	res, err := cl.Enqueue(ctx, append(append(chain, anyway), batch...)...)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"a", "b", "c", "anyway", "part", "on-success", "on-complete"}
	id := map[string]string{}
	for i, n := range names {
		id[n] = res[i].JobId
	}
	j := fetchOne(t, cl, "cas", 10*time.Second)
	if j == nil || j.Id != id["a"] {
		t.Fatalf("first lease %v, want a", j)
	}
	if _, err := cl.Nack(ctx, &raftqv1.NackRequest{JobId: j.Id, LeaseToken: j.LeaseToken, Error: "broken"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"b", "c", "part", "on-success"} {
		j := getJob(t, cl, id[n])
		if j.State != raftqv1.JobState_JOB_STATE_CANCELLED || !j.ParentFailed || !strings.Contains(j.LastError, "parent") {
			t.Fatalf("%s after a died: %v", n, j)
		}
	}
	for _, n := range []string{"anyway", "on-complete"} {
		if j := getJob(t, cl, id[n]); j.State != raftqv1.JobState_JOB_STATE_READY || !j.ParentFailed {
			t.Fatalf("%s after a died: %v", n, j)
		}
	}
	// The worker sees that a parent failed.
	got := map[string]bool{}
	for range 2 {
		j := fetchOne(t, cl, "cas", 10*time.Second)
		if j == nil || !j.ParentFailed {
			t.Fatalf("lease %v", j)
		}
		got[j.Type] = true
	}
	if !got["anyway"] || !got["on-complete"] {
		t.Fatalf("leased %v", got)
	}
}

// TestWorkflowRefusals: every malformed workflow is refused with
// InvalidArgument naming the job, and changes nothing (the state hash).
func TestWorkflowRefusals(t *testing.T) {
	c := testcluster.New(t, 1, nil)
	cl := c.Client()
	ctx := testutil.Context(t, time.Minute)
	res, err := cl.Enqueue(ctx, client.NewJob("ref", "x", nil))
	if err != nil {
		t.Fatal(err)
	}
	existing := res[0].JobId
	many := make([]string, 65)
	for i := range many {
		many[i] = existing + strings.Repeat("x", i+1)
	}
	j := func(opts ...client.JobOption) *raftqv1.JobSpec { return client.NewJob("ref", "t", nil, opts...) }
	for _, tc := range []struct {
		name, want string
		jobs       []*raftqv1.JobSpec
	}{
		{"cycle", `is part of a dependency cycle`, []*raftqv1.JobSpec{
			j(client.WithName("a"), client.DependsOnNames("b")), j(client.WithName("b"), client.DependsOnNames("a"))}},
		{"self by name", `job 0 ("a") depends on itself`, []*raftqv1.JobSpec{j(client.WithName("a"), client.DependsOnNames("a"))}},
		{"unknown name", `job 1: depends_on_names "zz" names no job of the request`, []*raftqv1.JobSpec{
			j(client.WithName("a")), j(client.DependsOnNames("zz"))}},
		{"unknown parent id", `job 1 ("b")): unknown parent "no-such-job"`, []*raftqv1.JobSpec{
			j(client.WithName("a")), j(client.WithName("b"), client.DependsOn("no-such-job"))}},
		{"too many parents", `job 0 has 65 parents (at most 64)`, []*raftqv1.JobSpec{j(client.DependsOn(many...))}},
		{"duplicate parent", `lists parent`, []*raftqv1.JobSpec{j(client.DependsOn(existing, existing))}},
		{"duplicate name", `name "a" is used twice`, []*raftqv1.JobSpec{j(client.WithName("a")), j(client.WithName("a"))}},
		{"bad policy", `unknown dependency_policy 9`, []*raftqv1.JobSpec{j(client.DependsOn(existing), func(s *raftqv1.JobSpec) { s.DependencyPolicy = 9 })}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := c.WaitConverged(10 * time.Second)
			_, err := cl.Enqueue(ctx, tc.jobs...)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want InvalidArgument containing %q", err, tc.want)
			}
			if after := c.WaitConverged(10 * time.Second); after != before {
				t.Fatal("a refused workflow changed state")
			}
		})
	}
}
