package xdsserver

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/raftq/raftq/internal/testutil"
	"github.com/raftq/raftq/internal/xdsserver/xdstest"
)

// wait bounds every poll: a hang guard, not a speed assertion.
const wait = 30 * time.Second

// startControlPlane serves s's ADS on a loopback gRPC server and returns
// its address.
func startControlPlane(t *testing.T, s *Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	s.Register(g)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return lis.Addr().String()
}

// startBackends starts n gRPC servers on loopback serving the standard
// health service (any service would do: the client learns which backend
// answered from the connection's peer address) and returns their addresses.
func startBackends(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	for range n {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		g := grpc.NewServer()
		healthpb.RegisterHealthServer(g, health.NewServer())
		go g.Serve(lis)
		t.Cleanup(g.Stop)
		addrs = append(addrs, lis.Addr().String())
	}
	return addrs
}

// dialXDS opens a channel to xds:///raftq through grpc-go's own xDS client,
// bootstrapped to the control plane at cp under node id node. Each call
// builds a separate xDS client (its own ADS stream), like a separate
// process would have.
func dialXDS(t *testing.T, cp, node string) *grpc.ClientConn {
	t.Helper()
	return xdstest.Dial(t, cp, node)
}

// call makes one health check through cc with the group header set to
// group (none when group is ""), and returns the backend that answered.
func call(ctx context.Context, cc *grpc.ClientConn, group string) (string, error) {
	if group != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, DefaultHeader, group)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var p peer.Peer
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p)); err != nil {
		return "", err
	}
	return p.Addr.String(), nil
}

// waitRoute polls until calls with group's header reach want, and names
// the last answer if they never do.
func waitRoute(t *testing.T, ctx context.Context, cc *grpc.ClientConn, group, want string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		got, err := call(ctx, cc, group)
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %q not routed to %s after %s: last call reached %q, %v", group, want, wait, got, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitUnavailable polls until calls with group's header fail UNAVAILABLE.
func waitUnavailable(t *testing.T, ctx context.Context, cc *grpc.ClientConn, group string) {
	t.Helper()
	var err error
	testutil.WaitFor(t, wait, fmt.Sprintf("group %q failing UNAVAILABLE", group), func() bool {
		_, err = call(ctx, cc, group)
		return status.Code(err) == codes.Unavailable
	})
	t.Logf("group %q: %v", group, err)
}

// TestLeaderRoutingAndMove is the feature end to end with grpc-go's xDS
// client: the header picks the group's leader, no header picks the default
// group's, and a leader change published by Update reaches two separate
// clients (different node ids, separate ADS streams).
func TestLeaderRoutingAndMove(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	s := New(testutil.Logger(t), Options{DefaultGroup: 2})
	cp := startControlPlane(t, s)
	b := startBackends(t, 3)
	if err := s.Update(Routes{Leaders: map[uint32]string{1: b[0], 2: b[1]}}); err != nil {
		t.Fatal(err)
	}
	a := dialXDS(t, cp, "client-a")
	c := dialXDS(t, cp, "client-b")

	for _, cc := range []*grpc.ClientConn{a, c} {
		waitRoute(t, ctx, cc, "1", b[0])
		waitRoute(t, ctx, cc, "2", b[1])
		// No header: the default group (2), not group 1 or the first one.
		waitRoute(t, ctx, cc, "", b[1])
	}
	// Steady state, not a transient: repeated calls stay on the leader.
	for i := range 10 {
		for _, tc := range []struct{ group, want string }{{"1", b[0]}, {"2", b[1]}, {"", b[1]}} {
			if got, err := call(ctx, a, tc.group); err != nil || got != tc.want {
				t.Fatalf("call %d group %q: got %s, %v; want %s", i, tc.group, got, err, tc.want)
			}
		}
	}

	// Group 1's leader moves to backend 2: both clients follow, group 2
	// stays where it was.
	if err := s.Update(Routes{Leaders: map[uint32]string{1: b[2], 2: b[1]}}); err != nil {
		t.Fatal(err)
	}
	for _, cc := range []*grpc.ClientConn{a, c} {
		waitRoute(t, ctx, cc, "1", b[2])
		if got, err := call(ctx, cc, "2"); err != nil || got != b[1] {
			t.Fatalf("group 2 after group 1 moved: got %s, %v; want %s", got, err, b[1])
		}
	}

	// A client connecting after the change gets the current snapshot.
	late := dialXDS(t, cp, "client-late")
	waitRoute(t, ctx, late, "1", b[2])
	waitRoute(t, ctx, late, "", b[1])
}

// TestNoLeaderUnavailable: a group whose leader is unknown ("") has no
// endpoint, and so does a header naming a group the control plane does not
// know: calls fail UNAVAILABLE (which raftq clients retry) instead of
// reaching another group's leader; the group comes back when a leader is
// published again.
func TestNoLeaderUnavailable(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	s := New(testutil.Logger(t), Options{})
	cp := startControlPlane(t, s)
	b := startBackends(t, 2)
	cc := dialXDS(t, cp, "client")

	// Before any Update (New published "no leader known"): the default
	// group 0 fails at once rather than hanging.
	waitUnavailable(t, ctx, cc, "")

	if err := s.Update(Routes{Leaders: map[uint32]string{0: b[0], 1: b[1]}}); err != nil {
		t.Fatal(err)
	}
	waitRoute(t, ctx, cc, "1", b[1])
	waitRoute(t, ctx, cc, "", b[0])
	// Unknown group and a non-canonical header value: not the default group.
	for _, g := range []string{"7", "01", "x"} {
		if got, err := call(ctx, cc, g); status.Code(err) != codes.Unavailable {
			t.Fatalf("group %q: got %s, %v; want UNAVAILABLE", g, got, err)
		}
	}

	if err := s.Update(Routes{Leaders: map[uint32]string{0: b[0], 1: ""}}); err != nil {
		t.Fatal(err)
	}
	waitUnavailable(t, ctx, cc, "1")
	if got, err := call(ctx, cc, ""); err != nil || got != b[0] {
		t.Fatalf("default group while group 1 has no leader: got %s, %v; want %s", got, err, b[0])
	}

	if err := s.Update(Routes{Leaders: map[uint32]string{0: b[0], 1: b[0]}}); err != nil {
		t.Fatal(err)
	}
	waitRoute(t, ctx, cc, "1", b[0])
}

// TestUpdateRefusesMalformed: a malformed address is refused with an
// error naming the group, and nothing is published: the snapshot version
// stays, and a connected client keeps routing to the previous leader.
func TestUpdateRefusesMalformed(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	s := New(testutil.Logger(t), Options{IPOnly: true})
	cp := startControlPlane(t, s)
	b := startBackends(t, 1)
	cc := dialXDS(t, cp, "client")
	if err := s.Update(Routes{Leaders: map[uint32]string{0: b[0], 3: b[0]}}); err != nil {
		t.Fatal(err)
	}
	waitRoute(t, ctx, cc, "3", b[0])
	before := version(t, s)

	for _, addr := range []string{
		"127.0.0.1",       // no port
		"127.0.0.1:",      // empty port
		":7101",           // no host
		"127.0.0.1:0",     // port 0
		"127.0.0.1:65536", // out of range
		"127.0.0.1:grpc",  // named port
		"brokerd1:7101",   // host name under IPOnly
		"[::1:7101",       // broken brackets
		"a:b:c",           // too many colons
	} {
		err := s.Update(Routes{Leaders: map[uint32]string{0: b[0], 3: addr}})
		if err == nil {
			t.Fatalf("Update accepted %q", addr)
		}
		if !strings.Contains(err.Error(), "group 3") || !strings.Contains(err.Error(), strconv.Quote(addr)) {
			t.Errorf("error for %q does not name group and address: %v", addr, err)
		}
		if v := version(t, s); v != before {
			t.Fatalf("refused Update of %q published version %s (was %s)", addr, v, before)
		}
	}
	// The client still reaches group 3's leader: nothing was pushed.
	for range 5 {
		if got, err := call(ctx, cc, "3"); err != nil || got != b[0] {
			t.Fatalf("after refused updates: got %s, %v; want %s", got, err, b[0])
		}
	}

	// Without IPOnly a host name is fine (gRPC resolves it when it dials),
	// and IPv6 literals pass either way.
	names := New(nil, Options{})
	for _, addr := range []string{"localhost:7101", "brokerd1:7101", "[::1]:7101"} {
		if err := names.Update(Routes{Leaders: map[uint32]string{1: addr}}); err != nil {
			t.Errorf("Update(%q) without IPOnly: %v", addr, err)
		}
	}
	for _, addr := range []string{"bad host:7101", "a/b:7101", "-x:7101", "x.:7101", "[::1%]:7101"} {
		if err := names.Update(Routes{Leaders: map[uint32]string{1: addr}}); err == nil {
			t.Errorf("Update(%q) without IPOnly accepted a malformed host", addr)
		}
	}
	if err := s.Update(Routes{Leaders: map[uint32]string{0: b[0], 3: "[::1]:7101"}}); err != nil {
		t.Errorf("IPOnly refused an IPv6 literal: %v", err)
	}
}

// version is the published snapshot's version.
func version(t *testing.T, s *Server) string {
	t.Helper()
	snap, err := s.cache.GetSnapshot(snapshotKey)
	if err != nil {
		t.Fatal(err)
	}
	return snap.GetVersion(resourcev3.ListenerType)
}

// TestUpdateVersions: equal routes give equal versions, on another
// control plane too and whatever order the map was filled in (a version
// names the routes), a repeated Update is a no-op, and different routes
// give a different version.
func TestUpdateVersions(t *testing.T) {
	s1, s2 := New(nil, Options{}), New(nil, Options{})
	if version(t, s1) != version(t, s2) {
		t.Fatal("two fresh servers publish different versions")
	}
	r := Routes{Leaders: map[uint32]string{1: "10.0.0.1:7101", 2: "10.0.0.2:7101", 3: ""}}
	if err := s1.Update(r); err != nil {
		t.Fatal(err)
	}
	v1 := version(t, s1)
	if err := s1.Update(r); err != nil || version(t, s1) != v1 {
		t.Fatalf("repeated Update changed the version or failed: %v", err)
	}
	// Same content built in another order on another server.
	if err := s2.Update(Routes{Leaders: map[uint32]string{3: "", 2: "10.0.0.2:7101", 1: "10.0.0.1:7101"}}); err != nil {
		t.Fatal(err)
	}
	if version(t, s2) != v1 {
		t.Fatalf("same routes, versions %s and %s", version(t, s2), v1)
	}
	if err := s2.Update(Routes{Leaders: map[uint32]string{1: "10.0.0.3:7101", 2: "10.0.0.2:7101", 3: ""}}); err != nil {
		t.Fatal(err)
	}
	if version(t, s2) == v1 {
		t.Fatal("a leader change kept the version")
	}
}

// TestOptionsValidate: bad options are refused with a reason, good ones
// (including the zero value) pass.
func TestOptionsValidate(t *testing.T) {
	for _, o := range []Options{{}, {Name: "queues.prod", Header: "x-raftq-group", DefaultGroup: 9}} {
		if err := o.Validate(); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
	}
	for _, o := range []Options{{Name: "a/b"}, {Name: "a b"}, {Header: "Raftq-Group"}, {Header: "raftq group"}, {Header: ":authority"}, {Header: "raftq-group-bin"}} {
		if err := o.Validate(); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("New accepted an invalid header")
		}
	}()
	New(nil, Options{Header: "Bad Header"})
}

// TestLinksNoXDSClient: the control plane links go-control-plane's server,
// not grpc-go's xDS client stack (resolver, balancers, Google and SPIFFE
// credentials, oauth2), which only its tests use; brokerd, which will
// serve it, must not grow by that stack.
func TestLinksNoXDSClient(t *testing.T) {
	testutil.LinksNone(t, []string{"github.com/raftq/raftq/internal/xdsserver"}, []string{
		"google.golang.org/grpc/xds/...",
		"google.golang.org/grpc/internal/xds/...",
		"golang.org/x/oauth2/...",
		"github.com/spiffe/go-spiffe/v2/...",
	})
}

// TestReconnectToAnotherControlPlane: a client whose control plane goes
// away and comes back as another process with other routes (another broker
// behind the same address, or a restarted one) gets those routes, although
// both servers published the same number of snapshots and the client
// resumes naming the version it holds.
func TestReconnectToAnotherControlPlane(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	b := startBackends(t, 2)
	s1, s2 := New(testutil.Logger(t), Options{}), New(testutil.Logger(t), Options{})
	if err := s1.Update(Routes{Leaders: map[uint32]string{0: b[0]}}); err != nil {
		t.Fatal(err)
	}
	if err := s2.Update(Routes{Leaders: map[uint32]string{0: b[1]}}); err != nil {
		t.Fatal(err)
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	g1 := grpc.NewServer()
	s1.Register(g1)
	go g1.Serve(lis)
	t.Cleanup(g1.Stop)

	cc := dialXDS(t, addr, "client")
	waitRoute(t, ctx, cc, "", b[0])

	// The first control plane goes; the second takes its address.
	g1.Stop()
	var lis2 net.Listener
	testutil.WaitFor(t, wait, "the control plane's address free again", func() bool {
		lis2, err = net.Listen("tcp", addr)
		return err == nil
	})
	g2 := grpc.NewServer()
	s2.Register(g2)
	go g2.Serve(lis2)
	t.Cleanup(g2.Stop)

	waitRoute(t, ctx, cc, "", b[1])
}

// TestStopEndsStreams: Stop ends an open stream cleanly (the client reads
// io.EOF, not a cut connection), and a stream opened afterwards ends at
// once, so a gRPC server's GracefulStop need not wait for its clients.
func TestStopEndsStreams(t *testing.T) {
	ctx := testutil.Context(t, time.Minute)
	s := New(testutil.Logger(t), Options{})
	cc, err := grpc.NewClient(startControlPlane(t, s), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	open := func() discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient {
		stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "stop"}, TypeUrl: resourcev3.ListenerType, ResourceNames: []string{DefaultName}}); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		return stream
	}
	stream := open()
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("open stream after Stop: %v, want io.EOF", err)
	}
	s.Stop() // twice is fine
	if _, err := open().Recv(); err != io.EOF {
		t.Fatalf("stream opened after Stop: %v, want io.EOF", err)
	}
}
