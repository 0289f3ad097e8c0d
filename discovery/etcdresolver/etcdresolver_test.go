package etcdresolver_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/raftq/raftq/discovery"
	"github.com/raftq/raftq/discovery/etcdresolver"
	"github.com/raftq/raftq/internal/etcdtest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// whoami starts a gRPC server that answers any method with its own name
// (as a NotFound status message), registered in etcd as id.
func whoami(t *testing.T, c *clientv3.Client, prefix, service, id string) (addr string, reg *discovery.Registration) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
		return status.Error(codes.NotFound, id)
	}))
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	reg, err = discovery.Register(c, prefix, service, discovery.Instance{ID: id, Addr: lis.Addr().String()},
		discovery.RegisterOptions{TTL: 2 * time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close(context.Background()) })
	return lis.Addr().String(), reg
}

func who(ctx context.Context, cc *grpc.ClientConn) string {
	err := cc.Invoke(ctx, "/test.Who/Am", &emptypb.Empty{}, &emptypb.Empty{}, grpc.WaitForReady(true))
	if s, ok := status.FromError(err); ok && s.Code() == codes.NotFound {
		return s.Message()
	}
	return "error: " + err.Error()
}

// waitWho calls until the answer is want.
func waitWho(t *testing.T, cc *grpc.ClientConn, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	got := ""
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		got = who(ctx, cc)
		cancel()
		if got == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("calls went to %q, want %q", got, want)
}

// With the brokers target and pick_first, calls go to the leader named by
// the hint, move when the hint moves, and reach a newly registered broker
// once it leads.
func TestBrokersFollowLeaderHint(t *testing.T) {
	s := etcdtest.New(t)
	c := s.Client()
	p := s.Prefix("res")
	addrs := map[string]string{}
	for _, id := range []string{"n1", "n2", "n3"} {
		addrs[id], _ = whoami(t, c, p, discovery.ServiceBrokers, id)
	}
	setLeader := func(id string, term uint64) {
		t.Helper()
		ok, err := discovery.PutLeader(context.Background(), c, p, discovery.ServiceBrokers,
			discovery.Leader{NodeID: id, GRPCAddr: addrs[id], Term: term}, 0)
		if !ok || err != nil {
			t.Fatalf("put leader %s: %v %v", id, ok, err)
		}
	}
	setLeader("n2", 1)
	cc, err := grpc.NewClient(etcdresolver.BrokersTarget(p),
		append(etcdresolver.BrokerDialOptions(c), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	waitWho(t, cc, "n2")
	setLeader("n3", 2)
	waitWho(t, cc, "n3")
	setLeader("n1", 3)
	waitWho(t, cc, "n1")

	// A broker that registers later and then leads.
	addrs["n4"], _ = whoami(t, c, p, discovery.ServiceBrokers, "n4")
	setLeader("n4", 4)
	waitWho(t, cc, "n4")

	// No hint: any registered broker answers.
	if err := discovery.DeleteLeader(context.Background(), c, p, discovery.ServiceBrokers, "n4"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got := who(ctx, cc); got[:1] != "n" {
		t.Fatalf("without a hint: %s", got)
	}
}

// With the svcd target and round_robin, calls spread over every
// registered instance, and a deregistered one gets no more.
func TestSvcdRoundRobin(t *testing.T) {
	s := etcdtest.New(t)
	c := s.Client()
	p := s.Prefix("svcd")
	var regs []*discovery.Registration
	for _, id := range []string{"s1", "s2", "s3"} {
		_, r := whoami(t, c, p, discovery.ServiceSvcd, id)
		regs = append(regs, r)
		s.WaitKey(c, r.Key(), true, 10*time.Second)
	}
	cc, err := grpc.NewClient(etcdresolver.SvcdTarget(p),
		append(etcdresolver.SvcdDialOptions(c), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seen := map[string]int{}
	for i := 0; i < 300 && len(seen) < 3; i++ {
		seen[who(ctx, cc)]++
	}
	if len(seen) != 3 {
		t.Fatalf("calls reached %v, want all three instances", seen)
	}
	if err := regs[0].Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Once the resolver has seen the removal, s1 gets nothing.
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := map[string]int{}
		for i := 0; i < 30; i++ {
			got[who(ctx, cc)]++
		}
		if got["s1"] == 0 && got["s2"] > 0 && got["s3"] > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after s1 left, calls reached %v", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
