package brokerd_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/internal/auth"
	"github.com/raftq/raftq/internal/bearer"
	"github.com/raftq/raftq/internal/limits"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// dialAs is a raw gRPC connection to addr over TLS (no client
// certificate) carrying token ("" for none); local, when set, is the
// source IP.
func (s *secure) dialAs(t *testing.T, addr, token, local string) *grpc.ClientConn {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: s.ca}))}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer.Credentials{Token: token}))
	}
	if local != "" {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		opts = append(opts, grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", a)
		}))
	}
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// TestAuditEveryAdminActionOnce: at log level warn, each admin action —
// Join, Remove, TransferLeadership, PauseQueue and Snapshot, over gRPC
// (through a follower, which forwards to the leader) and over the admin
// HTTP API (which relays to its node's gRPC API) — writes exactly one
// audit line, naming the admin, whatever node it went through.
func TestAuditEveryAdminActionOnce(t *testing.T) {
	s := newSecureCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	leader := s.c.WaitLeader(30 * time.Second)
	s.c.WaitConverged(20 * time.Second)
	f := s.follower()

	// once runs action and checks it added exactly one line naming the
	// admin and holding want (gRPC answers after the line is written;
	// HTTP may answer first, so its line is waited for).
	once := func(what string, want map[string]any, action func() error) {
		t.Helper()
		want["principal"] = "token:ops"
		before := len(findAudit(s, map[string]any{}))
		if err := action(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		testutil.WaitFor(t, 30*time.Second, what+"'s audit line", func() bool { return len(findAudit(s, want)) > 0 })
		if got := len(findAudit(s, map[string]any{})) - before; got != 1 || len(findAudit(s, want)) != 1 {
			t.Fatalf("%s: %d new audit lines, want exactly one holding %v:\n%s", what, got, want, s.audit.String())
		}
	}

	viaFollower := s.dialAs(t, f.GRPCAddr(), adminTok, "")
	cluster, admin := raftqv1.NewClusterClient(viaFollower), raftqv1.NewAdminClient(viaFollower)
	grpcCall := func(m string) map[string]any { return map[string]any{"method": m, "node": f.ID()} }

	once("gRPC Join", grpcCall("/raftq.v1.Cluster/Join"), func() error {
		_, err := cluster.Join(ctx, &raftqv1.JoinRequest{NodeId: f.ID(), RaftAddr: f.RaftAddr(), GrpcAddr: f.GRPCAddr()})
		return err
	})
	ghostRPC := grpcCall("/raftq.v1.Cluster/Remove")
	ghostRPC["outcome"], ghostRPC["code"], ghostRPC["node_id"] = "failed", "NotFound", "ghost"
	once("gRPC Remove", ghostRPC, func() error {
		_, err := cluster.Remove(ctx, &raftqv1.RemoveRequest{NodeId: "ghost"})
		if status.Code(err) == codes.NotFound { // audited all the same
			return nil
		}
		return fmt.Errorf("remove of a non-member: %v", err)
	})
	once("gRPC PauseQueue", grpcCall("/raftq.v1.Admin/PauseQueue"), func() error {
		_, err := admin.PauseQueue(ctx, &raftqv1.PauseQueueRequest{Queue: "billing"})
		return err
	})
	once("gRPC Snapshot", grpcCall("/raftq.v1.Cluster/Snapshot"), func() error {
		st, err := cluster.Snapshot(ctx, &raftqv1.SnapshotRequest{})
		if err != nil {
			return err
		}
		for {
			if _, err := st.Recv(); err == io.EOF {
				return nil
			} else if err != nil {
				return err
			}
		}
	})
	// Transfer to the follower the calls went through, via the old
	// leader (no forwarding: the line is the leader's own).
	viaLeader := raftqv1.NewClusterClient(s.dialAs(t, leader.GRPCAddr(), adminTok, ""))
	once("gRPC TransferLeadership", map[string]any{"method": "/raftq.v1.Cluster/TransferLeadership", "node": leader.ID(), "node_id": f.ID()}, func() error {
		_, err := viaLeader.TransferLeadership(ctx, &raftqv1.TransferLeadershipRequest{NodeId: f.ID()})
		return err
	})
	testutil.WaitFor(t, 30*time.Second, "the follower to lead", f.IsLeaderReady)
	s.c.WaitConverged(20 * time.Second)

	// The same over HTTP, through a node that now follows (the old leader).
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.ca}}}
	do := func(method, path, body string) error {
		req, _ := http.NewRequest(method, "https://"+s.c.AdminAddr(leader)+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+adminTok)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 300 && !(method == "DELETE" && resp.StatusCode == 404) {
			return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		return nil
	}
	httpCall := func(route string) map[string]any {
		return map[string]any{"http": route, "node": leader.ID(), "outcome": "ok"}
	}
	once("HTTP join", httpCall("POST /v1/cluster/members"), func() error {
		return do("POST", "/v1/cluster/members", fmt.Sprintf(`{"node_id":%q,"raft_addr":%q,"grpc_addr":%q}`, leader.ID(), leader.RaftAddr(), leader.GRPCAddr()))
	})
	ghost := httpCall("DELETE /v1/cluster/members/{node}")
	ghost["outcome"], ghost["status"] = "failed", "404"
	once("HTTP remove", ghost, func() error { return do("DELETE", "/v1/cluster/members/ghost", "") })
	once("HTTP pause", httpCall("POST /v1/queues/{queue}/pause"), func() error { return do("POST", "/v1/queues/billing/pause", "") })
	once("HTTP snapshot", httpCall("GET /v1/cluster/snapshot"), func() error { return do("GET", "/v1/cluster/snapshot", "") })
	once("HTTP transfer", httpCall("POST /v1/cluster/transfer-leadership"), func() error {
		return do("POST", "/v1/cluster/transfer-leadership", fmt.Sprintf(`{"node_id":%q}`, leader.ID()))
	})
	for _, m := range findAudit(s, map[string]any{"http": "POST /v1/queues/{queue}/pause"}) {
		if id, _ := m["request_id"].(string); id == "" {
			t.Fatalf("an HTTP audit line without the request id the API gave the request: %v", m)
		}
	}
	if strings.Contains(s.logs.String(), "msg=audit") {
		t.Fatal("audit lines went to the log instead of the audit sink")
	}
}

// TestAuditRefusalFloodCapped: a flood of calls with a bad token writes
// at most the refusal burst of audit lines, and a summary line counts
// the rest; an admin action right after is still written.
func TestAuditRefusalFloodCapped(t *testing.T) {
	const burst, flood = 5, 300
	s := newSecureClusterWith(t, 1, auth.AuditLimits{RefusalsPerSec: 1e-9, RefusalBurst: burst}, nil)
	n := s.c.WaitLeader(30 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	hash := n.FSM().Hash()
	bad := raftqv1.NewBrokerClient(s.dialAs(t, n.GRPCAddr(), "stolen-or-guessed", ""))
	for i := 0; i < flood; i++ {
		_, err := bad.Enqueue(ctx, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{spec("orders.eu")}})
		wantCode(t, "bad token", err, codes.Unauthenticated)
	}
	refusals := map[string]any{"principal": "(unauthenticated)", "outcome": "refused"}
	suppressed := func() int {
		t := 0
		for _, m := range findAudit(s, map[string]any{}) {
			if v, ok := m["suppressed"].(float64); ok {
				t += int(v)
			}
		}
		return t
	}
	testutil.WaitFor(t, 30*time.Second, "the summary line", func() bool { return suppressed() == flood-burst })
	if got := len(findAudit(s, refusals)); got != burst {
		t.Fatalf("%d refusal lines written, want the burst (%d):\n%s", got, burst, s.audit.String())
	}
	if _, err := raftqv1.NewAdminClient(s.dialAs(t, n.GRPCAddr(), adminTok, "")).PauseQueue(ctx, &raftqv1.PauseQueueRequest{Queue: "x"}); err != nil {
		t.Fatal(err)
	}
	wantAudit(t, s, map[string]any{"principal": "token:ops", "method": "/raftq.v1.Admin/PauseQueue", "outcome": "ok"})
	if h := n.FSM().Hash(); h == hash {
		t.Fatal("the pause did not change the state (the hash check is blind)")
	}
}

// TestResourceCaps: with auth on, a principal over its parked-Fetch cap
// is refused (RESOURCE_EXHAUSTED naming the key) while another principal
// still fetches, then the node's own cap refuses everyone; unauthenticated
// health Watch streams share one budget; connections from one IP over
// their cap are closed while another IP still connects. Refusals change
// no state.
func TestResourceCaps(t *testing.T) {
	s := newSecureClusterWith(t, 1, auth.AuditLimits{}, func(cfg *brokerd.Config) {
		cfg.Limits.MaxWaitersPerPrincipal = 2
		cfg.Limits.MaxWaiters = 3
		cfg.Limits.MaxStreamsPerPrincipal = 2
		cfg.Limits.MaxConnsPerIP = 2
	})
	n := s.c.WaitLeader(30 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	wantCap := func(what string, err error, key string) {
		t.Helper()
		wantCode(t, what, err, codes.ResourceExhausted)
		if !strings.Contains(status.Convert(err).Message(), key) {
			t.Fatalf("%s: %q does not name %s", what, status.Convert(err).Message(), key)
		}
	}

	// From 127.0.0.2 (connections per IP: 2): the worker's and the admin's.
	worker := raftqv1.NewBrokerClient(s.dialAs(t, n.GRPCAddr(), workerTok, "127.0.0.2"))
	admin := raftqv1.NewBrokerClient(s.dialAs(t, n.GRPCAddr(), adminTok, "127.0.0.2"))
	if _, err := admin.Enqueue(ctx, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{spec("billing")}}); err != nil {
		t.Fatal(err)
	}
	park := &raftqv1.FetchRequest{Queues: []string{"orders.idle"}, MaxJobs: 1, MaxWait: durationpb.New(time.Minute), WorkerId: "w"}
	parked, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 3)
	for i := 0; i < 2; i++ {
		go func() { _, err := worker.Fetch(parked, park); done <- err }()
	}
	testutil.WaitFor(t, 30*time.Second, "two parked fetches", func() bool { return brokerd.WaitersInFlight(n) == 2 })
	hash := n.FSM().Hash()
	_, err := worker.Fetch(ctx, park)
	wantCap("the worker's third parked fetch", err, "limits.max_waiters_per_principal")
	if h := n.FSM().Hash(); h != hash {
		t.Fatal("a refused fetch changed the state")
	}
	jobs, err := admin.Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{"billing"}, MaxJobs: 1, WorkerId: "a"})
	if err != nil || len(jobs.GetJobs()) != 1 {
		t.Fatalf("another principal's fetch: %v %v", jobs, err)
	}
	hash = n.FSM().Hash() // the admin's lease changed it
	go func() {
		_, err := admin.Fetch(parked, &raftqv1.FetchRequest{Queues: []string{"idle"}, MaxJobs: 1, MaxWait: durationpb.New(time.Minute)})
		done <- err
	}()
	testutil.WaitFor(t, 30*time.Second, "three parked fetches", func() bool { return brokerd.WaitersInFlight(n) == 3 })
	_, err = admin.Fetch(ctx, park)
	wantCap("a fourth parked fetch on the node", err, "limits.max_waiters")

	// Health Watch: unauthenticated, two at most in all.
	health := healthpb.NewHealthClient(s.dialAs(t, n.GRPCAddr(), "", ""))
	for i := 0; i < 2; i++ {
		w, err := health.Watch(parked, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Recv(); err != nil {
			t.Fatalf("watch %d: %v", i, err)
		}
	}
	w, err := health.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = w.Recv()
	}
	wantCap("a third unauthenticated health Watch", err, "limits.max_streams_per_principal")
	if _, err := health.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("a health Check (not a stream): %v", err)
	}

	// A third connection from 127.0.0.2 is closed; 127.0.0.1 connects.
	_, err = raftqv1.NewClusterClient(s.dialAs(t, n.GRPCAddr(), adminTok, "127.0.0.2")).Status(ctx, &raftqv1.StatusRequest{})
	wantCode(t, "a third connection from one IP", err, codes.Unavailable)
	// The listener logs the refusal as it closes the connection, which the
	// client may see first: wait for the line rather than read it at once.
	testutil.WaitFor(t, 30*time.Second, "the refused connection logged with its cap", func() bool {
		return strings.Contains(s.logs.String(), "limits.max_conns_per_ip")
	})
	if h := n.FSM().Hash(); h != hash {
		t.Fatal("a refusal changed the state")
	}
	stop()
	for i := 0; i < 3; i++ {
		<-done
	}
	testutil.WaitFor(t, 30*time.Second, "the slots to come back", func() bool { return brokerd.WaitersInFlight(n) == 0 })
	if _, err := worker.Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{"orders.idle"}, MaxJobs: 1}); err != nil {
		t.Fatalf("after the polls ended: %v", err)
	}
}

// TestSecureProfileRateLimit: with auth on and no rate configured, a
// principal gets the default rate (limits.DefaultRatePerPrincipal with
// its burst): a client calling as fast as it can is refused with
// RESOURCE_EXHAUSTED before it has made more calls than the bucket can
// have allowed, and another principal is not affected.
func TestSecureProfileRateLimit(t *testing.T) {
	s := newSecureClusterWith(t, 1, auth.AuditLimits{}, nil)
	n := s.c.WaitLeader(30 * time.Second)
	def := brokerd.DefaultConfig().Auth
	if def.RateLimit != limits.DefaultRatePerPrincipal || def.RateBurst != limits.DefaultRateBurst || def.RateLimit <= 0 {
		t.Fatalf("default rate %v/s burst %d, want limits' defaults", def.RateLimit, def.RateBurst)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	producer := raftqv1.NewBrokerClient(s.dialAs(t, n.GRPCAddr(), producerTok, ""))
	get := &raftqv1.GetJobRequest{JobId: "01a243a8-36ae-7b71-9f58-8ab4654c8224", Consistency: raftqv1.Consistency_CONSISTENCY_STALE}
	start := time.Now()
	var sent atomic.Int64
	var limited atomic.Value
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The bucket allows at most burst + rate × elapsed calls: a
			// client past that bound without a refusal was not limited.
			for limited.Load() == nil && ctx.Err() == nil &&
				float64(sent.Load()) <= float64(def.RateBurst)+def.RateLimit*time.Since(start).Seconds()+100 {
				sent.Add(1)
				if _, err := producer.GetJob(ctx, get); status.Code(err) == codes.ResourceExhausted {
					limited.Store(err)
				}
			}
		}()
	}
	wg.Wait()
	err, _ := limited.Load().(error)
	if err == nil {
		t.Fatalf("%d calls in %s and none refused: no default rate limit", sent.Load(), time.Since(start))
	}
	if !strings.Contains(err.Error(), "token:ingest") {
		t.Fatalf("the refusal does not name the principal: %v", err)
	}
	if _, err := raftqv1.NewBrokerClient(s.dialAs(t, n.GRPCAddr(), workerTok, "")).GetJob(ctx, get); status.Code(err) != codes.NotFound {
		t.Fatalf("another principal: %v, want NotFound", err)
	}
}
