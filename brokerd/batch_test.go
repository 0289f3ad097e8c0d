package brokerd_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/client"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// wantItem checks one batch item's answer: its status code and, for a
// refusal with one, its ErrorDetail reason.
func wantItem(t *testing.T, what string, e *raftqv1.ItemError, code codes.Code, reason raftqv1.ErrorDetail_Reason) {
	t.Helper()
	err := client.ItemErr(e)
	if status.Code(err) != code || client.Reason(err) != reason {
		t.Fatalf("%s: item answered %v (code %s, reason %s), want %s %s", what, err, status.Code(err), client.Reason(err), code, reason)
	}
}

// TestSettleBatchesAnswerEachItem: with auth on, through a follower (the
// call is forwarded), AckBatch, ExtendLeaseBatch and NackBatch answer
// each item on its own — valid items succeed and are committed; a stale
// token, an unknown job, a job of a queue the caller may not use and a
// malformed item are each refused with the single call's code and reason
// and change nothing; a repeated ack with the same token is success. A
// batch of only refused items leaves every node's state hash as it was,
// and a batch over the item limit is refused whole, changing nothing.
func TestSettleBatchesAnswerEachItem(t *testing.T) {
	s := newSecureCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	admin, worker := s.client(t, adminTok), s.client(t, workerTok)
	for _, q := range []string{"orders.eu", "orders.eu", "orders.eu", "orders.eu", "billing"} {
		if _, err := admin.Enqueue(ctx, spec(q)); err != nil {
			t.Fatal(err)
		}
	}
	orders, err := worker.Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{"orders.eu"}, MaxJobs: 4, WorkerId: "w"})
	if err != nil || len(orders) != 4 {
		t.Fatalf("worker fetch: %v %v", orders, err)
	}
	billing, err := admin.Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{"billing"}, MaxJobs: 1, WorkerId: "w2"})
	if err != nil || len(billing) != 1 {
		t.Fatalf("admin fetch: %v %v", billing, err)
	}
	a, b, c, d, bill := orders[0], orders[1], orders[2], orders[3], billing[0]

	// The worker's raw connection to a follower, to see the forwarding.
	f := s.follower()
	viaFollower := raftqv1.NewBrokerClient(s.dialAs(t, f.GRPCAddr(), workerTok, ""))

	refused := []*raftqv1.AckRequest{
		{JobId: b.Id, LeaseToken: b.LeaseToken + 1},   // stale token
		{JobId: "no-such-job", LeaseToken: 1},         // unknown id
		{JobId: bill.Id, LeaseToken: bill.LeaseToken}, // not the worker's queue
		{JobId: c.Id}, // no token: malformed
		{JobId: bill.Id, LeaseToken: bill.LeaseToken + 5}, // both: auth first
	}
	wantRefused := func(t *testing.T, res []*raftqv1.AckBatchResult, from int) {
		t.Helper()
		wantItem(t, "stale token", res[from].GetError(), codes.FailedPrecondition, raftqv1.ErrorDetail_STALE_TOKEN)
		wantItem(t, "unknown job", res[from+1].GetError(), codes.NotFound, raftqv1.ErrorDetail_NOT_FOUND)
		wantItem(t, "job of another queue", res[from+2].GetError(), codes.PermissionDenied, raftqv1.ErrorDetail_REASON_UNSPECIFIED)
		wantItem(t, "no lease token", res[from+3].GetError(), codes.InvalidArgument, raftqv1.ErrorDetail_INVALID_ARGUMENT)
		wantItem(t, "other queue, stale token", res[from+4].GetError(), codes.PermissionDenied, raftqv1.ErrorDetail_REASON_UNSPECIFIED)
	}

	// Only refusals: answered one by one, nothing changes anywhere.
	before := s.c.WaitConverged(20 * time.Second)
	resp, err := viaFollower.AckBatch(ctx, &raftqv1.AckBatchRequest{Items: refused})
	if err != nil || len(resp.Results) != len(refused) {
		t.Fatalf("AckBatch of refusals: %v %v", resp, err)
	}
	wantRefused(t, resp.Results, 0)
	if after := s.c.WaitConverged(20 * time.Second); after != before {
		t.Fatal("a batch of refused items changed the state")
	}
	// The refused item is audited, by the leader (the follower checked
	// the role only).
	if lines := findAudit(s, map[string]any{"method": raftqv1.Broker_AckBatch_FullMethodName, "outcome": "refused",
		"principal": "token:runner", "job_id": bill.Id, "code": "PermissionDenied"}); len(lines) != 2 {
		t.Fatalf("%d audit lines for the two refused items of another queue, want 2:\n%s", len(lines), s.audit.String())
	}

	// Over the limit: refused whole, even its valid items stay leased.
	over := make([]*raftqv1.AckRequest, brokerd.DefaultConfig().Limits.MaxSettleItems+1)
	for i := range over {
		over[i] = &raftqv1.AckRequest{JobId: a.Id, LeaseToken: a.LeaseToken}
	}
	_, err = viaFollower.AckBatch(ctx, &raftqv1.AckBatchRequest{Items: over})
	wantCode(t, "batch over the item limit", err, codes.InvalidArgument)
	if after := s.c.WaitConverged(20 * time.Second); after != before {
		t.Fatal("a batch over the limit changed the state")
	}

	// The mix: a is acked (twice in the batch: the repeat is success), the
	// refusals are answered as before, through the follower.
	var hdr metadata.MD
	mix := append([]*raftqv1.AckRequest{{JobId: a.Id, LeaseToken: a.LeaseToken}}, refused...)
	mix = append(mix, &raftqv1.AckRequest{JobId: a.Id, LeaseToken: a.LeaseToken})
	resp, err = viaFollower.AckBatch(ctx, &raftqv1.AckBatchRequest{Items: mix}, grpc.Header(&hdr))
	if err != nil || len(resp.Results) != len(mix) {
		t.Fatalf("AckBatch of a mix: %v %v", resp, err)
	}
	if got := hdr.Get(brokerd.LeaderHeader); len(got) != 1 || got[0] != s.c.Leader().GRPCAddr() {
		t.Fatalf("the follower did not forward the batch (leader header %v)", got)
	}
	wantItem(t, "valid ack", resp.Results[0].GetError(), codes.OK, 0)
	wantRefused(t, resp.Results, 1)
	wantItem(t, "the same ack again", resp.Results[len(mix)-1].GetError(), codes.OK, 0)
	// A retried batch (same token) is success again.
	if errs, err := worker.AckBatch(ctx, []*raftqv1.AckRequest{{JobId: a.Id, LeaseToken: a.LeaseToken}}); err != nil || errs[0] != nil {
		t.Fatalf("retried ack batch: %v %v", errs, err)
	}

	// Extensions and nacks, through the client: each item on its own.
	ext, errs, err := worker.ExtendBatch(ctx, []*raftqv1.ExtendLeaseRequest{
		{JobId: c.Id, LeaseToken: c.LeaseToken, ExtendBy: durationpb.New(2 * time.Hour)},
		{JobId: a.Id, LeaseToken: a.LeaseToken}, // acked: the lease is over
		{JobId: bill.Id, LeaseToken: bill.LeaseToken},
	})
	if err != nil {
		t.Fatal(err)
	}
	if errs[0] != nil || ext[0].GetLeaseDeadline().AsTime().Before(time.Now().Add(90*time.Minute)) {
		t.Fatalf("valid extension: %v %v", ext[0], errs[0])
	}
	if client.Reason(errs[1]) != raftqv1.ErrorDetail_WRONG_STATE || status.Code(errs[2]) != codes.PermissionDenied {
		t.Fatalf("refused extensions: %v", errs)
	}
	nacks, errs, err := worker.NackBatch(ctx, []*raftqv1.NackRequest{
		{JobId: d.Id, LeaseToken: d.LeaseToken, Error: "boom", Permanent: true},
		{JobId: c.Id, LeaseToken: c.LeaseToken + 1},
		{JobId: bill.Id, LeaseToken: bill.LeaseToken},
	})
	if err != nil {
		t.Fatal(err)
	}
	if errs[0] != nil || nacks[0].GetState() != raftqv1.JobState_JOB_STATE_DEAD {
		t.Fatalf("valid nack: %v %v", nacks[0], errs[0])
	}
	if client.Reason(errs[1]) != raftqv1.ErrorDetail_STALE_TOKEN || status.Code(errs[2]) != codes.PermissionDenied {
		t.Fatalf("refused nacks: %v", errs)
	}
	// The retried nack answers the job's state, like Nack.
	if nacks, errs, err := worker.NackBatch(ctx, []*raftqv1.NackRequest{{JobId: d.Id, LeaseToken: d.LeaseToken, Error: "boom", Permanent: true}}); err != nil || errs[0] != nil || nacks[0].GetState() != raftqv1.JobState_JOB_STATE_DEAD {
		t.Fatalf("retried nack batch: %v %v %v", nacks, errs, err)
	}

	// What each job is now: only the valid items took effect.
	want := map[string]raftqv1.JobState{
		a.Id: raftqv1.JobState_JOB_STATE_SUCCEEDED, b.Id: raftqv1.JobState_JOB_STATE_LEASED,
		c.Id: raftqv1.JobState_JOB_STATE_LEASED, d.Id: raftqv1.JobState_JOB_STATE_DEAD,
		bill.Id: raftqv1.JobState_JOB_STATE_LEASED,
	}
	for id, st := range want {
		j, err := admin.GetJob(ctx, id, raftqv1.Consistency_CONSISTENCY_LINEARIZABLE)
		if err != nil || j.State != st {
			t.Fatalf("job %s: %v %v, want %s", id, j, err, st)
		}
		if st == raftqv1.JobState_JOB_STATE_LEASED && j.Attempts != 1 {
			t.Fatalf("job %s was leased again: %v", id, j)
		}
	}
	if j, _ := admin.GetJob(ctx, b.Id, 0); j.LeaseToken != b.LeaseToken {
		t.Fatalf("the stale ack changed b's lease: %v", j)
	}
}
