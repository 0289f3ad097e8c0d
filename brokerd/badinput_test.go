package brokerd_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/internal/testcluster"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/raftqerr"
)

// Bad input gets a clear error and changes nothing: the state hash is the
// same before and after every refused call, on the leader and on a
// follower (whose calls are forwarded).
func TestBadInputIsRefusedAndChangesNothing(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.Client()
	res, err := cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: "q", Type: "t", LeaseDuration: durationpb.New(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	id := res[0].JobId
	leased, err := cl.Fetch(ctx, fetchReq("q", 1, time.Second, "w"))
	if err != nil || len(leased) != 1 {
		t.Fatal(leased, err)
	}
	token := leased[0].LeaseToken
	// A job holding a unique key, for the refused duplicate below.
	held, err := cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: "q", Type: "t", UniqueKey: "u1", Delay: durationpb.New(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	before := c.WaitConverged(10 * time.Second)
	enq := func(b raftqv1.BrokerClient, s *raftqv1.JobSpec) error {
		_, err := b.Enqueue(ctx, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{{Queue: "q", Type: "t"}, s}})
		return err
	}
	fetchW := func(b raftqv1.BrokerClient, queues []string, w map[string]int32) error {
		_, err := b.Fetch(ctx, &raftqv1.FetchRequest{Queues: queues, QueueWeights: w})
		return err
	}

	huge := make([]byte, (1<<20)+1)
	cases := []struct {
		name   string
		call   func(b raftqv1.BrokerClient) error
		code   codes.Code
		reason raftqv1.ErrorDetail_Reason
		msg    string
	}{
		{"oversized payload", func(b raftqv1.BrokerClient) error {
			_, err := b.Enqueue(ctx, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{{Queue: "q", Type: "t", Payload: huge}}})
			return err
		}, codes.ResourceExhausted, raftqv1.ErrorDetail_TOO_LARGE, "payload is 1048577 bytes"},
		{"empty queue", func(b raftqv1.BrokerClient) error {
			_, err := b.Enqueue(ctx, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{{Type: "t"}}})
			return err
		}, codes.InvalidArgument, raftqv1.ErrorDetail_INVALID_ARGUMENT, "queue is empty"},
		{"invalid queue name", func(b raftqv1.BrokerClient) error {
			_, err := b.Enqueue(ctx, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{{Queue: "no spaces!", Type: "t"}}})
			return err
		}, codes.InvalidArgument, raftqv1.ErrorDetail_INVALID_ARGUMENT, "must match"},
		{"one bad job spoils the batch", func(b raftqv1.BrokerClient) error {
			_, err := b.Enqueue(ctx, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{{Queue: "q", Type: "t"}, {Queue: "q", Type: ""}}})
			return err
		}, codes.InvalidArgument, raftqv1.ErrorDetail_INVALID_ARGUMENT, "job 1: invalid request: type is empty"},
		{"empty batch", func(b raftqv1.BrokerClient) error {
			_, err := b.Enqueue(ctx, &raftqv1.EnqueueRequest{})
			return err
		}, codes.InvalidArgument, raftqv1.ErrorDetail_INVALID_ARGUMENT, "no jobs"},
		{"delay and run_at", func(b raftqv1.BrokerClient) error {
			_, err := b.Enqueue(ctx, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{{Queue: "q", Type: "t", Delay: durationpb.New(time.Second), RunAt: leased[0].CreatedAt}}})
			return err
		}, codes.InvalidArgument, raftqv1.ErrorDetail_INVALID_ARGUMENT, "mutually exclusive"},
		{"oversized trace context", func(b raftqv1.BrokerClient) error {
			_, err := b.Enqueue(ctx, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{{Queue: "q", Type: "t", TraceParent: strings.Repeat("0", 513)}}})
			return err
		}, codes.InvalidArgument, raftqv1.ErrorDetail_INVALID_ARGUMENT, "trace_parent"},
		{"negative max attempts", func(b raftqv1.BrokerClient) error {
			_, err := b.Enqueue(ctx, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{{Queue: "q", Type: "t", MaxAttempts: -1}}})
			return err
		}, codes.InvalidArgument, raftqv1.ErrorDetail_INVALID_ARGUMENT, "max_attempts"},
		{"unknown job get", func(b raftqv1.BrokerClient) error {
			_, err := b.GetJob(ctx, &raftqv1.GetJobRequest{JobId: "no-such-job"})
			return err
		}, codes.NotFound, raftqv1.ErrorDetail_NOT_FOUND, "no-such-job"},
		{"unknown job ack", func(b raftqv1.BrokerClient) error {
			_, err := b.Ack(ctx, &raftqv1.AckRequest{JobId: "no-such-job", LeaseToken: 5})
			return err
		}, codes.NotFound, raftqv1.ErrorDetail_NOT_FOUND, "not found"},
		{"unknown job cancel", func(b raftqv1.BrokerClient) error {
			_, err := b.CancelJob(ctx, &raftqv1.CancelJobRequest{JobId: "no-such-job"})
			return err
		}, codes.NotFound, raftqv1.ErrorDetail_NOT_FOUND, "not found"},
		{"stale token ack", func(b raftqv1.BrokerClient) error {
			_, err := b.Ack(ctx, &raftqv1.AckRequest{JobId: id, LeaseToken: token - 1})
			return err
		}, codes.FailedPrecondition, raftqv1.ErrorDetail_STALE_TOKEN, "stale"},
		{"stale token nack", func(b raftqv1.BrokerClient) error {
			_, err := b.Nack(ctx, &raftqv1.NackRequest{JobId: id, LeaseToken: token + 1})
			return err
		}, codes.FailedPrecondition, raftqv1.ErrorDetail_STALE_TOKEN, "stale"},
		{"stale token extend", func(b raftqv1.BrokerClient) error {
			_, err := b.ExtendLease(ctx, &raftqv1.ExtendLeaseRequest{JobId: id, LeaseToken: token + 7})
			return err
		}, codes.FailedPrecondition, raftqv1.ErrorDetail_STALE_TOKEN, "stale"},
		{"missing token", func(b raftqv1.BrokerClient) error {
			_, err := b.Ack(ctx, &raftqv1.AckRequest{JobId: id})
			return err
		}, codes.InvalidArgument, raftqv1.ErrorDetail_INVALID_ARGUMENT, "lease_token is required"},
		{"fetch without queues", func(b raftqv1.BrokerClient) error {
			_, err := b.Fetch(ctx, &raftqv1.FetchRequest{})
			return err
		}, codes.InvalidArgument, raftqv1.ErrorDetail_INVALID_ARGUMENT, "queues"},
		{"fetch wait too long", func(b raftqv1.BrokerClient) error {
			_, err := b.Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{"q"}, MaxWait: durationpb.New(time.Hour)})
			return err
		}, codes.InvalidArgument, raftqv1.ErrorDetail_INVALID_ARGUMENT, "max_wait"},
		{"fetch too many", func(b raftqv1.BrokerClient) error {
			_, err := b.Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{"q"}, MaxJobs: 1 << 20})
			return err
		}, codes.InvalidArgument, raftqv1.ErrorDetail_INVALID_ARGUMENT, "max_jobs"},
		{"negative schedule_to_start", func(b raftqv1.BrokerClient) error {
			return enq(b, &raftqv1.JobSpec{Queue: "q", Type: "t", ScheduleToStart: durationpb.New(-time.Second)})
		}, codes.InvalidArgument, raftqv1.ErrorDetail_INVALID_ARGUMENT, "job 1: invalid request: schedule_to_start must be between 0 and"},
		{"negative start_to_close", func(b raftqv1.BrokerClient) error {
			return enq(b, &raftqv1.JobSpec{Queue: "q", Type: "t", StartToClose: durationpb.New(-time.Second)})
		}, codes.InvalidArgument, raftqv1.ErrorDetail_INVALID_ARGUMENT, "start_to_close must be between 0 and"},
		{"start_to_close shorter than the lease", func(b raftqv1.BrokerClient) error {
			return enq(b, &raftqv1.JobSpec{Queue: "q", Type: "t", LeaseDuration: durationpb.New(time.Minute), StartToClose: durationpb.New(30 * time.Second)})
		}, codes.InvalidArgument, raftqv1.ErrorDetail_INVALID_ARGUMENT, "start_to_close 30s is shorter than the job's lease duration 1m0s"},
		{"unique_mode without unique_key", func(b raftqv1.BrokerClient) error {
			return enq(b, &raftqv1.JobSpec{Queue: "q", Type: "t", UniqueMode: raftqv1.UniqueMode_UNIQUE_MODE_REJECT})
		}, codes.InvalidArgument, raftqv1.ErrorDetail_INVALID_ARGUMENT, "unique_mode needs a unique_key"},
		{"unknown unique_mode", func(b raftqv1.BrokerClient) error {
			return enq(b, &raftqv1.JobSpec{Queue: "q", Type: "t", UniqueKey: "k", UniqueMode: 9})
		}, codes.InvalidArgument, raftqv1.ErrorDetail_INVALID_ARGUMENT, "unknown unique_mode 9"},
		{"non-printable unique_key", func(b raftqv1.BrokerClient) error {
			return enq(b, &raftqv1.JobSpec{Queue: "q", Type: "t", UniqueKey: "a\x00b"})
		}, codes.InvalidArgument, raftqv1.ErrorDetail_INVALID_ARGUMENT, "unique_key has a non-printable character"},
		{"unique key held (reject) refuses the whole batch", func(b raftqv1.BrokerClient) error {
			return enq(b, &raftqv1.JobSpec{Queue: "q", Type: "t", UniqueKey: "u1", UniqueMode: raftqv1.UniqueMode_UNIQUE_MODE_REJECT})
		}, codes.AlreadyExists, raftqv1.ErrorDetail_INVALID_ARGUMENT, "is held by job " + held[0].JobId},
		{"queue weight 0", func(b raftqv1.BrokerClient) error {
			return fetchW(b, []string{"a", "b"}, map[string]int32{"a": 0, "b": 1})
		}, codes.InvalidArgument, raftqv1.ErrorDetail_INVALID_ARGUMENT, `queue_weights["a"] is 0, must be between 1 and 1000`},
		{"queue weight over 1000", func(b raftqv1.BrokerClient) error {
			return fetchW(b, nil, map[string]int32{"a": 1001})
		}, codes.InvalidArgument, raftqv1.ErrorDetail_INVALID_ARGUMENT, `queue_weights["a"] is 1001`},
		{"queue without a weight", func(b raftqv1.BrokerClient) error {
			return fetchW(b, []string{"a", "b"}, map[string]int32{"a": 1})
		}, codes.InvalidArgument, raftqv1.ErrorDetail_INVALID_ARGUMENT, `no weight for queue "b"`},
		{"weight for a queue not fetched", func(b raftqv1.BrokerClient) error {
			return fetchW(b, []string{"a"}, map[string]int32{"a": 1, "c": 2})
		}, codes.InvalidArgument, raftqv1.ErrorDetail_INVALID_ARGUMENT, `names "c", which is not among the queues`},
		{"stats of invalid queue", func(b raftqv1.BrokerClient) error {
			_, err := b.QueueStats(ctx, &raftqv1.QueueStatsRequest{Queues: []string{"../etc"}})
			return err
		}, codes.InvalidArgument, raftqv1.ErrorDetail_INVALID_ARGUMENT, "must match"},
	}
	for _, m := range c.Members() {
		role := "follower"
		if m.Node.IsLeaderReady() {
			role = "leader"
		}
		conn, err := grpc.NewClient(m.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		b := raftqv1.NewBrokerClient(conn)
		for _, tc := range cases {
			t.Run(role+"/"+m.ID+"/"+tc.name, func(t *testing.T) {
				err := tc.call(b)
				if status.Code(err) != tc.code || raftqerr.Reason(err) != tc.reason || !strings.Contains(status.Convert(err).Message(), tc.msg) {
					t.Fatalf("got %v (reason %v), want %v %v containing %q", err, raftqerr.Reason(err), tc.code, tc.reason, tc.msg)
				}
			})
		}
	}
	if after := c.WaitConverged(10 * time.Second); after != before {
		t.Fatalf("refused calls changed state: %s -> %s", before, after)
	}
	j, err := cl.GetJob(ctx, id, 0)
	if err != nil || j.State != raftqv1.JobState_JOB_STATE_LEASED || j.LeaseToken != token {
		t.Fatalf("job changed: %v %v", j, err)
	}
}

// Garbage bytes on the gRPC port are dropped; the node keeps serving and
// nothing changes.
func TestGarbageOnGRPCPort(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before := c.WaitConverged(10 * time.Second)
	for _, m := range c.Members() {
		for _, junk := range [][]byte{
			[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
			[]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x04\x08\x00\x00\x00\x00\x00garbage-frame"),
			bytesOf(0xff, 4096),
		} {
			conn, err := net.Dial("tcp", m.GRPCAddr)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = conn.Write(junk)
			_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 1024)
			_, _ = conn.Read(buf) // the server answers with an error or closes
			conn.Close()
		}
	}
	cl := c.Client()
	if _, err := cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: "q", Type: "t"}); err != nil {
		t.Fatalf("cluster unusable after garbage: %v", err)
	}
	if after := c.WaitConverged(10 * time.Second); after == before {
		t.Fatal("enqueue after garbage did not change state")
	}
	if c.Leader().FSM().Len() != 1 {
		t.Fatalf("jobs: %d, want 1", c.Leader().FSM().Len())
	}
}

func bytesOf(b byte, n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}
