package brokerd_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/internal/auth"
	"github.com/raftq/raftq/internal/placement"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	"github.com/raftq/raftq/internal/xdsserver/xdstest"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// dialXDS opens a channel to xds:///raftq through grpc-go's own xDS
// client, bootstrapped to the control plane at cp (a broker's gRPC port).
func dialXDS(t *testing.T, cp string) *grpc.ClientConn {
	t.Helper()
	return xdstest.Dial(t, cp, "brokerd-test")
}

// xdsStatus calls Cluster.Status through cc with the group header set to
// group (none when group < 0): the answer is the answering node's own view
// of that group (Status is never forwarded), so State "Leader" means the
// call reached the group's leader. It returns the answer and the address
// the call was sent to.
func xdsStatus(ctx context.Context, cc *grpc.ClientConn, group int) (*raftqv1.StatusResponse, string, error) {
	if group >= 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, placement.Header, strconv.Itoa(group))
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var p peer.Peer
	res, err := raftqv1.NewClusterClient(cc).Status(ctx, &raftqv1.StatusRequest{}, grpc.Peer(&p))
	if err != nil {
		return nil, "", err
	}
	return res, p.Addr.String(), nil
}

// groupLeader is the node whose group g leads (ready), or nil.
func groupLeader(c *testcluster.Cluster, g int) *brokerd.Node {
	for _, n := range c.Up() {
		if n.Groups()[g].IsLeaderReady() {
			return n
		}
	}
	return nil
}

// waitXDSRoute polls until a call through cc with group's header (none
// when group < 0) reaches want (nil: whichever node leads the group now;
// group 0 without the header) answering as that group's leader, and names
// the last answer if it never does (WaitFor's message is fixed before it
// polls). The bound is a hang guard, not a speed assertion.
func waitXDSRoute(t *testing.T, ctx context.Context, c *testcluster.Cluster, cc *grpc.ClientConn, group int, want *brokerd.Node) {
	t.Helper()
	const wait = 30 * time.Second
	g := max(group, 0)
	deadline := time.Now().Add(wait)
	for {
		res, addr, err := xdsStatus(ctx, cc, group)
		w := want
		if w == nil {
			w = groupLeader(c, g)
		}
		if err == nil && w != nil && res.State == raft.Leader.String() && res.NodeId == w.ID() && addr == w.GRPCAddr() {
			return
		}
		if time.Now().After(deadline) {
			last := fmt.Sprint(err)
			if err == nil {
				last = fmt.Sprintf("%s at %s, state %s", res.NodeId, addr, res.State)
			}
			t.Fatalf("calls with %s=%d not routed to the group's leader after %s: last reached %s", placement.Header, group, wait, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestXDSRoutesEachGroupToItsLeader is --xds end to end with grpc-go's
// xDS client against a 3-node cluster of 3 groups: every node serves ADS;
// the client, whose control plane is one node, sends each group's calls
// straight to that group's leader (and calls without the header to group
// 0's); a job enqueued through the route lands in its group; and when
// group 1's leadership moves, its calls follow it.
func TestXDSRoutesEachGroupToItsLeader(t *testing.T) {
	const groups = 3
	c := testcluster.New(t, 3, func(cfg *brokerd.Config) { cfg.Groups = groups; cfg.XDS = true })
	c.WaitGroupsSettled(30 * time.Second)
	ctx := testutil.Context(t, 2*time.Minute)

	// The balancer (host.go) spreads the leaderships one per node; wait
	// for that, so the move below is the only one (see there).
	testutil.WaitFor(t, 30*time.Second, "each node leads one group", func() bool {
		seen := map[string]bool{}
		for g := range groups {
			if l := groupLeader(c, g); l != nil {
				seen[l.ID()] = true
			}
		}
		return len(seen) == groups
	})

	// Control plane: a follower of group 1, so that the node serving ADS
	// is not the one whose leadership moves.
	var cp *brokerd.Node
	for _, n := range c.Up() {
		if !n.Groups()[1].IsLeaderReady() {
			cp = n
			break
		}
	}
	cc := dialXDS(t, cp.GRPCAddr())
	for g := range groups {
		waitXDSRoute(t, ctx, c, cc, g, nil)
	}
	waitXDSRoute(t, ctx, c, cc, -1, nil) // no header: group 0's leader

	// A real broker call through the route: each group's queue, enqueued
	// with its group's header, is stored in that group.
	for g, q := range queuesPerGroup(groups) {
		hctx := metadata.AppendToOutgoingContext(ctx, placement.Header, strconv.Itoa(g))
		res, err := raftqv1.NewBrokerClient(cc).Enqueue(hctx, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{{Queue: q, Type: "t"}}})
		if err != nil {
			t.Fatalf("enqueue %s (group %d) over xds: %v", q, g, err)
		}
		if got, err := placement.Job(res.Results[0].JobId, groups); err != nil || got != uint32(g) {
			t.Fatalf("job %q: group %d (%v), want %d", res.Results[0].JobId, got, err, g)
		}
	}

	// Move group 1's leadership. It goes to group 2's leader, on purpose:
	// that node then leads two groups and the balancer hands one back,
	// the last of its groups (2), so group 1 stays where the test moved
	// it. (LeadershipTransfer's own pick could be group 0's leader, from
	// which the balancer would move group 1 right back.)
	old, to := groupLeader(c, 1), groupLeader(c, 2)
	if old == nil || to == nil || old == to {
		t.Fatalf("leaders moved under the test: group 1 %v, group 2 %v", old, to)
	}
	if err := old.Groups()[1].Raft().LeadershipTransferToServer(raft.ServerID(to.ID()), raft.ServerAddress(to.RaftAddr())).Error(); err != nil {
		t.Fatalf("transfer group 1 from %s to %s: %v", old.ID(), to.ID(), err)
	}
	waitXDSRoute(t, ctx, c, cc, 1, to)
	// The other groups are still routed to their leaders, whatever the
	// balancer did with group 2 meanwhile.
	waitXDSRoute(t, ctx, c, cc, 0, nil)
	waitXDSRoute(t, ctx, c, cc, 2, nil)
}

// TestXDSOneGroup: a node running one group (no groups configured) serves
// xDS too, with group 0's leader, for calls with and without the header;
// the single node of a one-node cluster leads it.
func TestXDSOneGroup(t *testing.T) {
	c := testcluster.New(t, 1, func(cfg *brokerd.Config) { cfg.XDS = true })
	n := c.Up()[0]
	testutil.WaitFor(t, 30*time.Second, "the node leads", n.IsLeaderReady)
	ctx := testutil.Context(t, time.Minute)
	cc := dialXDS(t, n.GRPCAddr())
	waitXDSRoute(t, ctx, c, cc, 0, n)
	waitXDSRoute(t, ctx, c, cc, -1, n)
}

// TestXDSNeedsAuthentication: with auth on, ADS is no hole in it: a
// stream without credentials is refused Unauthenticated before it is
// served, while any authenticated principal (here a worker, whose token
// allows no broker-wide call) reads the routes, which name the leader.
// The client is a raw ADS stream, over TLS with a bearer token.
func TestXDSNeedsAuthentication(t *testing.T) {
	s := newSecureClusterWith(t, 1, auth.AuditLimits{}, func(cfg *brokerd.Config) { cfg.XDS = true })
	n := s.c.Up()[0]
	testutil.WaitFor(t, 30*time.Second, "the node leads", n.IsLeaderReady)
	ctx := testutil.Context(t, time.Minute)
	cc, err := grpc.NewClient(n.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: s.ca, MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(cc)
	// ask opens a stream with md, asks for the leaders' load assignment,
	// and returns the first answer.
	ask := func(md ...string) (*discoveryv3.DiscoveryResponse, error) {
		sctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, md...), 10*time.Second)
		defer cancel()
		stream, err := ads.StreamAggregatedResources(sctx)
		if err != nil {
			return nil, err
		}
		if err := stream.Send(&discoveryv3.DiscoveryRequest{
			Node:          &corev3.Node{Id: "auth-test"},
			TypeUrl:       resourcev3.EndpointType,
			ResourceNames: []string{"raftq-group-0", "raftq-unknown-group"},
		}); err != nil {
			// A refused stream ends at once: Send sees io.EOF, Recv the
			// status.
			_, rerr := stream.Recv()
			return nil, rerr
		}
		return stream.Recv()
	}
	_, err = ask()
	wantCode(t, "ADS without a token", err, codes.Unauthenticated)

	var res *discoveryv3.DiscoveryResponse
	testutil.WaitFor(t, 30*time.Second, "ADS names the leader", func() bool {
		res, err = ask(auth.AuthorizationKey, "Bearer "+workerTok)
		if err != nil {
			t.Fatalf("ADS with a worker's token: %v", err)
		}
		return len(res.GetResources()) > 0 && containsAddr(res, n.GRPCAddr())
	})
}

// containsAddr reports whether a load-assignment answer has addr as an
// endpoint.
func containsAddr(res *discoveryv3.DiscoveryResponse, addr string) bool {
	for _, a := range res.GetResources() {
		var cla endpointv3.ClusterLoadAssignment
		if err := a.UnmarshalTo(&cla); err != nil {
			return false
		}
		for _, l := range cla.GetEndpoints() {
			for _, e := range l.GetLbEndpoints() {
				sa := e.GetEndpoint().GetAddress().GetSocketAddress()
				if net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10)) == addr {
					return true
				}
			}
		}
	}
	return false
}

// TestXDSCloseEndsStreams: a node that closes ends its ADS streams itself,
// cleanly (the client reads the end of the stream, io.EOF), so that its
// gRPC server's GracefulStop is not left waiting for streams that last as
// long as their clients and then cutting them (UNAVAILABLE).
func TestXDSCloseEndsStreams(t *testing.T) {
	c := testcluster.New(t, 1, func(cfg *brokerd.Config) { cfg.XDS = true })
	n := c.Up()[0]
	testutil.WaitFor(t, 30*time.Second, "the node leads", n.IsLeaderReady)
	ctx := testutil.Context(t, time.Minute)
	cc, err := grpc.NewClient(n.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "close-test"}, TypeUrl: resourcev3.ListenerType, ResourceNames: []string{"raftq"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- n.Close() }()
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("stream after Close: %v (code %s), want the server to end it (io.EOF)", err, status.Code(err))
	}
	if err := <-closed; err != nil {
		t.Fatalf("close: %v", err)
	}
}
