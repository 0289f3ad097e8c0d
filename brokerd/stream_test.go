package brokerd_test

import (
	"context"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/auth"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/raftqerr"
)

// rawBroker is a Broker client on one address with a bearer token.
func (s *secure) rawBroker(t *testing.T, addr, token string) raftqv1.BrokerClient {
	t.Helper()
	return raftqv1.NewBrokerClient(s.dialAs(t, addr, token, ""))
}

// TestEnqueueStreamFrames: on the leader, with auth on, a stream's jobs
// are each answered on their own, matched by seq — a good job commits, a
// job without a spec, with a bad queue name or for a queue the producer
// may not use is refused in its own answer and the stream goes on; a
// frame without seq ends the stream with InvalidArgument after the jobs
// read before it are answered; refused frames change nothing. A follower
// refuses the stream with NOT_LEADER naming the leader, and a worker
// (no producer role) is refused when the stream opens.
func TestEnqueueStreamFrames(t *testing.T) {
	s := newSecureCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	leader := s.c.Leader()
	before := s.c.WaitConverged(20 * time.Second)

	// Refused frames only: answered one by one, nothing changes.
	st, err := s.rawBroker(t, leader.GRPCAddr(), producerTok).EnqueueStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	frames := []*raftqv1.EnqueueStreamRequest{
		{Seq: 1},                              // no job
		{Seq: 2, Job: spec("no spaces here")}, // bad queue name
		{Seq: 3, Job: spec("billing")},        // not the producer's queue
	}
	for _, f := range frames {
		if err := st.Send(f); err != nil {
			t.Fatal(err)
		}
	}
	want := map[uint64]codes.Code{1: codes.InvalidArgument, 2: codes.InvalidArgument, 3: codes.PermissionDenied}
	for range frames {
		r, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if got := client.ItemErr(r.Error); r.Result != nil || status.Code(got) != want[r.Seq] {
			t.Fatalf("frame %d answered %v %v, want %s", r.Seq, r.Result, got, want[r.Seq])
		}
		delete(want, r.Seq)
	}
	if after := s.c.WaitConverged(20 * time.Second); after != before {
		t.Fatal("refused frames changed the state")
	}
	if lines := findAudit(s, map[string]any{"method": raftqv1.Broker_EnqueueStream_FullMethodName, "outcome": "refused",
		"principal": "token:ingest", "queue": "billing"}); len(lines) != 1 {
		t.Fatalf("%d audit lines for the refused job, want 1:\n%s", len(lines), s.audit.String())
	}

	// A good job, then a frame without seq: the job is answered, then the
	// stream ends with InvalidArgument.
	if err := st.Send(&raftqv1.EnqueueStreamRequest{Seq: 7, Job: spec("orders.eu")}); err != nil {
		t.Fatal(err)
	}
	r, err := st.Recv()
	if err != nil || r.Seq != 7 || r.Error != nil || r.Result.GetJobId() == "" {
		t.Fatalf("good job: %v %v", r, err)
	}
	if err := st.Send(&raftqv1.EnqueueStreamRequest{Job: spec("orders.eu")}); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	_, err = st.Recv()
	wantCode(t, "frame without seq", err, codes.InvalidArgument)
	if j, err := s.client(t, producerTok).GetJob(ctx, r.Result.JobId, 0); err != nil || j.Queue != "orders.eu" {
		t.Fatalf("streamed job: %v %v", j, err)
	}

	// A follower sends the producer to the leader.
	fst, err := s.rawBroker(t, s.follower().GRPCAddr(), producerTok).EnqueueStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = fst.Recv()
	wantCode(t, "stream to a follower", err, codes.Unavailable)
	if d := raftqerr.Detail(err); d.GetReason() != raftqv1.ErrorDetail_NOT_LEADER || d.GetLeaderAddr() != leader.GRPCAddr() {
		t.Fatalf("follower's refusal names %v, want NOT_LEADER at %s", d, leader.GRPCAddr())
	}

	// A worker may not produce.
	wst, err := s.rawBroker(t, leader.GRPCAddr(), workerTok).EnqueueStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = wst.Recv()
	wantCode(t, "worker opening an enqueue stream", err, codes.PermissionDenied)
}

// Each job on a stream takes one request from the producer's rate limit,
// as each EnqueueOne call did: over it, that job is refused
// RESOURCE_EXHAUSTED on its own and the stream goes on.
func TestEnqueueStreamRateLimitPerJob(t *testing.T) {
	s := newSecureClusterWith(t, 3, auth.AuditLimits{}, func(cfg *brokerd.Config) {
		cfg.Auth.RateLimit, cfg.Auth.RateBurst = 0.001, 3 // no refill during the test
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := s.rawBroker(t, s.c.Leader().GRPCAddr(), producerTok).EnqueueStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The opening takes one request: two jobs pass, the rest are refused.
	for seq := uint64(1); seq <= 5; seq++ {
		if err := st.Send(&raftqv1.EnqueueStreamRequest{Seq: seq, Job: spec("orders.eu")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	ok, limited := 0, 0
	for {
		r, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch got := client.ItemErr(r.Error); status.Code(got) {
		case codes.OK:
			ok++
		case codes.ResourceExhausted:
			limited++
		default:
			t.Fatalf("frame %d: %v", r.Seq, got)
		}
	}
	if ok != 2 || limited != 3 {
		t.Fatalf("%d jobs accepted and %d rate limited; want 2 and 3", ok, limited)
	}
}
