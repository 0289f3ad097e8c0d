package brokerd_test

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/raftqerr"
)

// consumeFirst opens a Consume stream, sends frames, and returns the
// stream and its first answer (opened, or the error that ended it).
func consumeFirst(t *testing.T, ctx context.Context, bc raftqv1.BrokerClient, frames ...*raftqv1.ConsumeRequest) (raftqv1.Broker_ConsumeClient, error) {
	t.Helper()
	st, err := bc.Consume(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range frames {
		if err := st.Send(f); err != nil && err != io.EOF {
			t.Fatal(err)
		}
	}
	r, err := st.Recv()
	if err == nil && r.GetOpened() == nil {
		t.Fatalf("first frame %v, want opened", r)
	}
	return st, err
}

func openFrame(o *raftqv1.ConsumeOpen) *raftqv1.ConsumeRequest {
	return &raftqv1.ConsumeRequest{Frame: &raftqv1.ConsumeRequest_Open{Open: o}}
}

func creditFrame(n int32) *raftqv1.ConsumeRequest {
	return &raftqv1.ConsumeRequest{Frame: &raftqv1.ConsumeRequest_Credit{Credit: n}}
}

// TestConsumeFrames: with auth on, bad Consume frames end the stream
// with a clear error and change nothing — no open frame first, a stream
// closed before its open, a bad queue name, too many queues, an
// oversized worker id, a negative credit, a zero credit, credit over the
// limit, a second open. A worker may consume only its queues (audited),
// a producer not at all, and a follower names the leader.
func TestConsumeFrames(t *testing.T) {
	s := newSecureCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	leader := s.c.Leader()
	before := s.c.WaitConverged(20 * time.Second)
	bc := s.rawBroker(t, leader.GRPCAddr(), workerTok)

	good := &raftqv1.ConsumeOpen{Queues: []string{"orders.eu"}, WorkerId: "w1"}
	many := make([]string, 65)
	for i := range many {
		many[i] = "orders.q" + strings.Repeat("x", i)
	}
	refused := []struct {
		what   string
		frames []*raftqv1.ConsumeRequest
		code   codes.Code
		msg    string
	}{
		{"credit before open", []*raftqv1.ConsumeRequest{creditFrame(1)}, codes.InvalidArgument, "first frame must be open"},
		{"empty frame", []*raftqv1.ConsumeRequest{{}}, codes.InvalidArgument, "first frame must be open"},
		{"bad queue name", []*raftqv1.ConsumeRequest{openFrame(&raftqv1.ConsumeOpen{Queues: []string{"no spaces here"}})}, codes.InvalidArgument, "queue"},
		{"no queue", []*raftqv1.ConsumeRequest{openFrame(&raftqv1.ConsumeOpen{})}, codes.InvalidArgument, "queues"},
		{"too many queues", []*raftqv1.ConsumeRequest{openFrame(&raftqv1.ConsumeOpen{Queues: many})}, codes.InvalidArgument, "queues"},
		{"oversized worker id", []*raftqv1.ConsumeRequest{openFrame(&raftqv1.ConsumeOpen{Queues: []string{"orders.eu"}, WorkerId: strings.Repeat("w", 10000)})}, codes.InvalidArgument, "worker_id"},
		{"negative open credit", []*raftqv1.ConsumeRequest{openFrame(&raftqv1.ConsumeOpen{Queues: []string{"orders.eu"}, Credit: -1})}, codes.InvalidArgument, "credit"},
		{"short lease", []*raftqv1.ConsumeRequest{openFrame(&raftqv1.ConsumeOpen{Queues: []string{"orders.eu"}, LeaseDuration: durationpb.New(time.Millisecond)})}, codes.InvalidArgument, "lease_duration"},
		{"queue not the worker's", []*raftqv1.ConsumeRequest{openFrame(&raftqv1.ConsumeOpen{Queues: []string{"orders.eu", "billing"}})}, codes.PermissionDenied, ""},
	}
	for _, r := range refused {
		_, err := consumeFirst(t, ctx, bc, r.frames...)
		wantCode(t, r.what, err, r.code)
		if !strings.Contains(err.Error(), r.msg) {
			t.Fatalf("%s: %v does not say %q", r.what, err, r.msg)
		}
	}
	if lines := findAudit(s, map[string]any{"method": raftqv1.Broker_Consume_FullMethodName, "outcome": "refused",
		"principal": "token:runner"}); len(lines) != 1 {
		t.Fatalf("%d audit lines for the refused queue, want 1:\n%s", len(lines), s.audit.String())
	}

	// Closed before the open frame.
	st, err := bc.Consume(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	_, err = st.Recv()
	wantCode(t, "closed before open", err, codes.InvalidArgument)

	// Bad frames after a good open.
	after := []struct {
		what  string
		frame *raftqv1.ConsumeRequest
	}{
		{"zero credit", creditFrame(0)},
		{"negative credit", creditFrame(-5)},
		{"credit over the limit", creditFrame(1001)},
		{"second open", openFrame(good)},
		{"empty frame", &raftqv1.ConsumeRequest{}},
	}
	for _, a := range after {
		st, err := consumeFirst(t, ctx, bc, openFrame(good))
		if err != nil {
			t.Fatalf("good open: %v", err)
		}
		if err := st.Send(a.frame); err != nil {
			t.Fatal(err)
		}
		_, err = st.Recv()
		wantCode(t, a.what, err, codes.InvalidArgument)
	}

	// A producer may not consume; a follower names the leader.
	_, err = consumeFirst(t, ctx, s.rawBroker(t, leader.GRPCAddr(), producerTok), openFrame(good))
	wantCode(t, "producer consuming", err, codes.PermissionDenied)
	_, err = consumeFirst(t, ctx, s.rawBroker(t, s.follower().GRPCAddr(), workerTok), openFrame(good))
	wantCode(t, "consume on a follower", err, codes.Unavailable)
	if d := raftqerr.Detail(err); d.GetReason() != raftqv1.ErrorDetail_NOT_LEADER || d.GetLeaderAddr() != leader.GRPCAddr() {
		t.Fatalf("follower's refusal names %v, want NOT_LEADER at %s", d, leader.GRPCAddr())
	}
	if after := s.c.WaitConverged(20 * time.Second); after != before {
		t.Fatal("refused consume frames changed the state")
	}
}

// plainBroker is a Broker client on one address of a cluster without TLS.
func plainBroker(t *testing.T, addr string) raftqv1.BrokerClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return raftqv1.NewBrokerClient(cc)
}

// recvFrame receives one frame, failing the test on an error or after
// a hang guard.
func recvFrame(t *testing.T, st raftqv1.Broker_ConsumeClient) *raftqv1.ConsumeResponse {
	t.Helper()
	type got struct {
		r   *raftqv1.ConsumeResponse
		err error
	}
	ch := make(chan got, 1)
	go func() { r, err := st.Recv(); ch <- got{r, err} }()
	select {
	case g := <-ch:
		if g.err != nil {
			t.Fatalf("recv: %v", g.err)
		}
		return g.r
	case <-time.After(30 * time.Second):
		t.Fatal("no frame within 30s")
		return nil
	}
}

func leasedCount(t *testing.T, ctx context.Context, cl *client.Client, queue string) (leased, ready int64) {
	t.Helper()
	st, err := cl.QueueStats(ctx, queue)
	if err != nil || len(st) != 1 {
		t.Fatalf("QueueStats %s: %v %v", queue, st, err)
	}
	return st[0].Leased, st[0].Ready
}

func consumeEnqueue(t *testing.T, ctx context.Context, cl *client.Client, queue string, n int, opts ...client.JobOption) []string {
	t.Helper()
	specs := make([]*raftqv1.JobSpec, n)
	for i := range specs {
		specs[i] = client.NewJob(queue, "t", make([]byte, 1024), opts...)
	}
	res, err := cl.Enqueue(ctx, specs...)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, n)
	for i, r := range res {
		ids[i] = r.JobId
	}
	return ids
}

// TestConsumeCreditAndNotices: a stream gets no job without credit and
// never more than its credit (the rest stay ready, not leased); a cancel
// of a pushed job is pushed as a notice, an ack is not; a lease that
// expires is pushed as lost, the job comes again with a newer token on
// the stream, and an ack with the old token is still refused. A consumer
// that stops reading holds no more leases than its credit. When the
// leader steps down the stream ends with NOT_LEADER.
func TestConsumeCreditAndNotices(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	consumeEnqueue(t, ctx, cl, "q", 10, client.WithLeaseDuration(time.Hour))
	bc := plainBroker(t, c.Leader().GRPCAddr())

	st, err := consumeFirst(t, ctx, bc, openFrame(&raftqv1.ConsumeOpen{Queues: []string{"q"}, WorkerId: "w"}))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if l, _ := leasedCount(t, ctx, cl, "q"); l != 0 {
		t.Fatalf("%d jobs leased without credit", l)
	}
	if err := st.Send(creditFrame(3)); err != nil {
		t.Fatal(err)
	}
	var jobs []*raftqv1.Job
	for len(jobs) < 3 {
		r := recvFrame(t, st)
		if r.GetJob() == nil {
			t.Fatalf("frame %v, want a job", r)
		}
		if r.GetJob().GetLeasedBy() != "w" || r.GetJob().GetLeaseToken() == 0 {
			t.Fatalf("pushed job %v not leased to w", r.GetJob())
		}
		jobs = append(jobs, r.GetJob())
	}
	time.Sleep(300 * time.Millisecond)
	if l, r := leasedCount(t, ctx, cl, "q"); l != 3 || r != 7 {
		t.Fatalf("%d leased, %d ready after a credit of 3; want 3 and 7", l, r)
	}

	// A cancel is pushed; the ack of another job and the nack finishing
	// the cancelled one are not.
	if _, err := cl.CancelJob(ctx, jobs[0].Id); err != nil {
		t.Fatal(err)
	}
	n := recvFrame(t, st).GetNotice()
	if n.GetJobId() != jobs[0].Id || n.GetLeaseToken() != jobs[0].LeaseToken || n.GetKind() != raftqv1.ConsumeNotice_KIND_CANCEL_REQUESTED {
		t.Fatalf("notice %v, want a cancel of %s", n, jobs[0].Id)
	}
	if err := cl.Ack(ctx, jobs[1].Id, jobs[1].LeaseToken); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Nack(ctx, &raftqv1.NackRequest{JobId: jobs[0].Id, LeaseToken: jobs[0].LeaseToken, Error: "cancelled"}); err != nil {
		t.Fatal(err)
	}
	// The next frame is the job the next credit brings, not a notice.
	if err := st.Send(creditFrame(1)); err != nil {
		t.Fatal(err)
	}
	if r := recvFrame(t, st); r.GetJob() == nil {
		t.Fatalf("frame %v after settling, want the credited job", r)
	}

	// An expired lease is pushed as lost; the job comes back with a newer
	// token and the old one stays refused.
	consumeEnqueue(t, ctx, cl, "short", 1)
	st2, err := consumeFirst(t, ctx, bc, openFrame(&raftqv1.ConsumeOpen{Queues: []string{"short"}, WorkerId: "w2",
		LeaseDuration: durationpb.New(500 * time.Millisecond), Credit: 1}))
	if err != nil {
		t.Fatal(err)
	}
	first := recvFrame(t, st2).GetJob()
	if first == nil {
		t.Fatal("no job for the open frame's credit")
	}
	n = recvFrame(t, st2).GetNotice()
	if n.GetJobId() != first.Id || n.GetLeaseToken() != first.LeaseToken || n.GetKind() != raftqv1.ConsumeNotice_KIND_LEASE_LOST {
		t.Fatalf("notice %v, want lease lost of %s", n, first.Id)
	}
	if err := st2.Send(creditFrame(1)); err != nil {
		t.Fatal(err)
	}
	again := recvFrame(t, st2).GetJob()
	if again.GetId() != first.Id || again.GetLeaseToken() <= first.LeaseToken {
		t.Fatalf("redelivered %v, want %s with a token over %d", again, first.Id, first.LeaseToken)
	}
	err = cl.Ack(ctx, first.Id, first.LeaseToken)
	if raftqerr.Reason(err) != raftqv1.ErrorDetail_STALE_TOKEN {
		t.Fatalf("ack with the expired lease's token: %v, want STALE_TOKEN", err)
	}
	if err := cl.Ack(ctx, again.Id, again.LeaseToken); err != nil {
		t.Fatalf("ack with the current token: %v", err)
	}

	// A consumer that stops reading: leases stop at its credit.
	consumeEnqueue(t, ctx, cl, "bp", 200, client.WithLeaseDuration(time.Hour))
	st3, err := consumeFirst(t, ctx, bc, openFrame(&raftqv1.ConsumeOpen{Queues: []string{"bp"}, WorkerId: "w3", Credit: 50}))
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "50 jobs leased for the stream", func() bool { l, _ := leasedCount(t, ctx, cl, "bp"); return l == 50 })
	time.Sleep(500 * time.Millisecond)
	if l, r := leasedCount(t, ctx, cl, "bp"); l != 50 || r != 150 {
		t.Fatalf("%d leased, %d ready for a stream with credit 50 that does not read; want 50 and 150", l, r)
	}

	// The leader steps down: the streams end with NOT_LEADER (after
	// what was pushed before).
	old := c.Leader()
	if _, err := raftqv1.NewClusterClient(dialPlain(t, old.GRPCAddr())).TransferLeadership(ctx, &raftqv1.TransferLeadershipRequest{}); err != nil {
		t.Fatal(err)
	}
	got := 0
	for {
		r, err := st3.Recv()
		if err != nil {
			if raftqerr.Reason(err) != raftqv1.ErrorDetail_NOT_LEADER {
				t.Fatalf("stream end after a leader change: %v, want NOT_LEADER", err)
			}
			break
		}
		if r.GetJob() != nil {
			got++
		}
	}
	if got != 50 {
		t.Fatalf("the stream that did not read got %d jobs, want its credit of 50", got)
	}
	_, err = st.Recv()
	if raftqerr.Reason(err) != raftqv1.ErrorDetail_NOT_LEADER {
		t.Fatalf("idle stream end after a leader change: %v, want NOT_LEADER", err)
	}
}

func dialPlain(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}
