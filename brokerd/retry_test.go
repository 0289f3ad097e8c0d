package brokerd_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/raftqerr"
)

// rawCodec passes message bytes through unparsed, so answerDropper relays
// any call without knowing its types.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// answerDropper is a gRPC proxy in front of one node's API, advertised as
// that node's address, so the other nodes forward to the node through it.
// It relays every unary call; armed for a method, it lets the node run the
// next such call to its end and then answers the forwarding node with a
// bare error of its own instead of the node's answer: what a follower sees
// when its connection to the leader breaks after the leader committed.
type answerDropper struct {
	addr string
	up   *grpc.ClientConn
	mu   sync.Mutex
	arm  map[string]error
}

func newAnswerDropper(t *testing.T, upstream string) *answerDropper {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up, err := grpc.NewClient(upstream, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	p := &answerDropper{addr: l.Addr().String(), up: up, arm: map[string]error{}}
	srv := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}), grpc.UnknownServiceHandler(p.relay))
	go srv.Serve(l)
	t.Cleanup(func() { srv.Stop(); up.Close() })
	return p
}

// dropNext makes the next answer to method err instead.
func (p *answerDropper) dropNext(method string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.arm[method] = err
}

func (p *answerDropper) relay(_ any, ss grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(ss)
	var req, resp []byte
	if err := ss.RecvMsg(&req); err != nil {
		return err
	}
	out := metadata.MD{}
	in, _ := metadata.FromIncomingContext(ss.Context())
	for k, v := range in {
		if !strings.HasPrefix(k, ":") && !strings.HasPrefix(k, "grpc-") && k != "content-type" && k != "user-agent" && k != "te" {
			out[k] = v
		}
	}
	err := p.up.Invoke(metadata.NewOutgoingContext(ss.Context(), out), method, &req, &resp)
	p.mu.Lock()
	lost, armed := p.arm[method]
	delete(p.arm, method)
	p.mu.Unlock()
	if armed {
		return lost
	}
	if err != nil {
		return err
	}
	return ss.SendMsg(&resp)
}

// A forwarded write whose leader answer carries no ErrorDetail — a bare
// UNAVAILABLE, DEADLINE_EXCEEDED, CANCELED or INTERNAL — reaches the caller
// as INDETERMINATE, and indeed the leader committed it. A forwarded read's
// bare answer passes through unchanged.
func TestForwardedWriteWithLostAnswerIsIndeterminate(t *testing.T) {
	proxies := map[string]*answerDropper{}
	var mu sync.Mutex
	c := testcluster.New(t, 3, func(cfg *brokerd.Config) {
		mu.Lock()
		defer mu.Unlock()
		if proxies[cfg.NodeID] == nil {
			proxies[cfg.NodeID] = newAnswerDropper(t, cfg.GRPCAddr)
		}
		cfg.GRPCAdvertise = proxies[cfg.NodeID].addr
	})
	ctx := testutil.Context(t, time.Minute)
	var leader *answerDropper
	var follower string
	for _, m := range c.Members() {
		if m.Node.IsLeaderReady() {
			leader = proxies[m.ID]
		} else {
			follower = m.GRPCAddr
		}
	}
	conn, err := grpc.NewClient(follower, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	b := raftqv1.NewBrokerClient(conn)
	cl := c.Client()

	for _, code := range []codes.Code{codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Internal} {
		spec := client.NewJob("fw", "t", nil, client.WithIdempotencyKey("lost-"+code.String()))
		leader.dropNext(raftqv1.Broker_Enqueue_FullMethodName, status.Error(code, "test: answer lost"))
		_, err := b.Enqueue(ctx, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{spec}})
		if status.Code(err) != codes.Unavailable || !raftqerr.IsIndeterminate(err) {
			t.Fatalf("forwarded enqueue, leader answer %v lost: got %v (reason %v), want UNAVAILABLE INDETERMINATE", code, err, raftqerr.Reason(err))
		}
		// The same idempotency key again finds the job: it was committed.
		res, err := cl.Enqueue(ctx, spec)
		if err != nil || !res[0].Duplicate {
			t.Fatalf("after a lost %v answer the job was not committed: %v %v", code, res, err)
		}
	}

	// A read changes nothing: its bare answer is not turned indeterminate.
	id, _, err := cl.EnqueueOne(ctx, "fw", "t", nil)
	if err != nil {
		t.Fatal(err)
	}
	leader.dropNext(raftqv1.Broker_GetJob_FullMethodName, status.Error(codes.Unavailable, "test: answer lost"))
	_, err = b.GetJob(ctx, &raftqv1.GetJobRequest{JobId: id})
	if status.Code(err) != codes.Unavailable || raftqerr.Detail(err) != nil {
		t.Fatalf("forwarded read with a lost answer: %v (reason %v), want a bare UNAVAILABLE", err, raftqerr.Reason(err))
	}
	// The leader's own answers pass through, definite ones included.
	_, err = b.CancelJob(ctx, &raftqv1.CancelJobRequest{JobId: "no-such-job"})
	if raftqerr.Reason(err) != raftqv1.ErrorDetail_NOT_FOUND {
		t.Fatalf("forwarded cancel of an unknown job: %v", err)
	}
}

// loseFirstAnswer lets the first try of each call (each request message)
// of the given methods reach the broker and replaces its answer with a
// bare UNAVAILABLE, the way a broken connection does: the client retries,
// and the retry finds its first try committed. reached counts the tries
// that got to the broker.
func loseFirstAnswer(reached *atomic.Int32, methods ...string) grpc.DialOption {
	var mu sync.Mutex
	lost := map[any]bool{}
	return grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		for _, m := range methods {
			if m != method {
				continue
			}
			reached.Add(1)
			mu.Lock()
			first := !lost[req]
			lost[req] = true
			mu.Unlock()
			if first && err == nil {
				return status.Error(codes.Unavailable, "test: answer lost")
			}
		}
		return err
	})
}

// CancelJob, Redrive and PurgeDead by id are safe to retry: sent through a
// follower with the first answer lost, the retry finds its own first try
// committed and answers success (as a repeated Ack does), and the job is
// as one call leaves it. Calls the job never saw are still refused.
func TestRetriedCancelRedrivePurgeSucceed(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	ctx := testutil.Context(t, time.Minute)
	cl := c.Client()
	var follower string
	for _, m := range c.Members() {
		if !m.Node.IsLeaderReady() {
			follower = m.GRPCAddr
		}
	}
	enqueue := func(q string, max int32) string {
		res, err := cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: q, Type: "t", MaxAttempts: max})
		if err != nil {
			t.Fatal(err)
		}
		return res[0].JobId
	}
	lease := func(q string) *raftqv1.Job {
		jobs, err := cl.Fetch(ctx, fetchReq(q, 1, time.Second, "w"))
		if err != nil || len(jobs) != 1 {
			t.Fatal(jobs, err)
		}
		return jobs[0]
	}
	dead := func() string {
		enqueue("dl", 1)
		j := lease("dl")
		if _, err := cl.Nack(ctx, &raftqv1.NackRequest{JobId: j.Id, LeaseToken: j.LeaseToken, Error: "boom", Permanent: true}); err != nil {
			t.Fatal(err)
		}
		return j.Id
	}
	ready := enqueue("c1", 0)
	enqueue("c2", 0)
	leased := lease("c2")
	enqueue("c3", 0)
	done := lease("c3")
	if err := cl.Ack(ctx, done.Id, done.LeaseToken); err != nil {
		t.Fatal(err)
	}
	redriven, purged := dead(), dead()
	fresh := enqueue("fresh", 0)

	var reached atomic.Int32
	fc, err := client.New([]string{follower}, client.Options{DialOptions: []grpc.DialOption{loseFirstAnswer(&reached,
		raftqv1.Broker_CancelJob_FullMethodName, raftqv1.Admin_Redrive_FullMethodName, raftqv1.Admin_PurgeDead_FullMethodName)}})
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	get := func(id string) *raftqv1.Job {
		j, err := cl.GetJob(ctx, id, 0)
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	retried := func(what string, want int32) {
		t.Helper()
		if got := reached.Swap(0); got != want {
			t.Fatalf("%s reached the broker %d times, want %d", what, got, want)
		}
	}

	if st, err := fc.CancelJob(ctx, ready); err != nil || st != raftqv1.JobState_JOB_STATE_CANCELLED {
		t.Fatalf("retried cancel of a ready job: %v %v", st, err)
	}
	retried("cancel", 2)
	if j := get(ready); j.State != raftqv1.JobState_JOB_STATE_CANCELLED {
		t.Fatalf("cancelled job is %v", j.State)
	}
	if st, err := fc.CancelJob(ctx, leased.Id); err != nil || st != raftqv1.JobState_JOB_STATE_LEASED {
		t.Fatalf("repeated cancel of a leased job: %v %v", st, err)
	}
	if j := get(leased.Id); j.State != raftqv1.JobState_JOB_STATE_LEASED || !j.CancelRequested || j.LeaseToken != leased.LeaseToken {
		t.Fatalf("leased job after cancel: %v", j)
	}
	retried("cancel of a leased job", 2)

	if ids, err := fc.Redrive(ctx, "dl", []string{redriven}, 0); err != nil || len(ids) != 1 || ids[0] != redriven {
		t.Fatalf("retried redrive: %v %v", ids, err)
	}
	retried("redrive", 2)
	if j := get(redriven); j.State != raftqv1.JobState_JOB_STATE_READY || j.Attempts != 0 || j.LastError != "boom" {
		t.Fatalf("redriven job: %v", j)
	}

	conn, err := grpc.NewClient(follower, grpc.WithTransportCredentials(insecure.NewCredentials()), loseFirstAnswer(&reached, raftqv1.Admin_PurgeDead_FullMethodName))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	admin := raftqv1.NewAdminClient(conn)
	preq := &raftqv1.PurgeDeadRequest{Queue: "dl", JobIds: []string{purged}}
	if _, err := admin.PurgeDead(ctx, preq); status.Code(err) != codes.Unavailable {
		t.Fatalf("first purge should have lost its answer: %v", err)
	}
	if res, err := admin.PurgeDead(ctx, preq); err != nil || len(res.JobIds) != 1 || res.JobIds[0] != purged {
		t.Fatalf("retried purge: %v %v", res, err)
	}
	retried("purge", 2)
	if _, err := cl.GetJob(ctx, purged, 0); client.Reason(err) != raftqv1.ErrorDetail_NOT_FOUND {
		t.Fatalf("purged job still there: %v", err)
	}

	// What the job does not show is still refused, and changes nothing.
	before := c.WaitConverged(10 * time.Second)
	if _, err := cl.CancelJob(ctx, done.Id); client.Reason(err) != raftqv1.ErrorDetail_WRONG_STATE {
		t.Fatalf("cancel of a succeeded job: %v", err)
	}
	if _, err := cl.Redrive(ctx, "fresh", []string{fresh}, 0); client.Reason(err) != raftqv1.ErrorDetail_WRONG_STATE {
		t.Fatalf("redrive of a job that never ran: %v", err)
	}
	if _, err := admin.PurgeDead(ctx, &raftqv1.PurgeDeadRequest{Queue: "fresh", JobIds: []string{fresh}}); raftqerr.Reason(err) != raftqv1.ErrorDetail_WRONG_STATE {
		t.Fatalf("purge of a ready job: %v", err)
	}
	if after := c.WaitConverged(10 * time.Second); after != before {
		t.Fatalf("refused calls changed state: %s -> %s", before, after)
	}
}
