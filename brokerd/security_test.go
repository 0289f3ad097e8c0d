package brokerd_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/auth"
	"github.com/raftq/raftq/internal/certgen"
	"github.com/raftq/raftq/internal/raftlayer"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	"github.com/raftq/raftq/internal/tlsutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

const (
	producerTok = "producer-token-orders"
	workerTok   = "worker-token-orders"
	adminTok    = "admin-token"
)

// secure is a 3-node cluster with TLS everywhere and auth on, and what
// its tests need to talk to it.
type secure struct {
	c     *testcluster.Cluster
	pki   *certgen.Dev
	logs  *testutil.Buffer
	audit *testutil.Buffer // every node's audit lines (JSON)
	ca    *x509.CertPool
}

func newSecureCluster(t *testing.T) *secure {
	t.Helper()
	return newSecureClusterWith(t, 3, auth.AuditLimits{}, nil)
}

// newSecureClusterWith is newSecureCluster with n nodes, the audit
// sink's limits, and tune applied to each node's configuration last.
func newSecureClusterWith(t *testing.T, n int, audit auth.AuditLimits, tune func(*brokerd.Config)) *secure {
	t.Helper()
	dir := t.TempDir()
	var names []string
	for i := 1; i <= max(n, 3); i++ {
		names = append(names, fmt.Sprint("n", i))
	}
	pki, err := certgen.NewDev(filepath.Join(dir, "pki"), "cluster CA", names)
	if err != nil {
		t.Fatal(err)
	}
	tokens := fmt.Sprintf(`tokens:
  - {name: ingest, sha256: %s, roles: [producer], queues: ["orders.*"]}
  - {name: runner, sha256: %s, roles: [worker], queues: ["orders.*"]}
  - {name: ops, sha256: %s, roles: [admin]}
`, auth.HashToken(producerTok), auth.HashToken(workerTok), auth.HashToken(adminTok))
	tokensFile := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tokensFile, []byte(tokens), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &secure{pki: pki, logs: &testutil.Buffer{}, audit: &testutil.Buffer{}}
	// The log level is warn, as in make run: audit lines do not depend on it.
	logger := slog.New(slog.NewTextHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sink := auth.NewAuditLog(s.audit, audit)
	s.c = testcluster.New(t, n, func(cfg *brokerd.Config) {
		name := "node." + cfg.NodeID
		cfg.TLS = brokerd.TLSConfig{Files: tlsutil.Files{CA: pki.CAFile(), Cert: pki.CertFile(name), Key: pki.KeyFile(name)}}
		// The defaults (the secure profile's rate limit) stay.
		cfg.Auth.TokensFile, cfg.Auth.NodeNames, cfg.Auth.Audit = tokensFile, []string{"node.*"}, sink
		cfg.Logger = logger
		if tune != nil {
			tune(cfg)
		}
	}, testcluster.Admin)
	s.ca = x509.NewCertPool()
	s.ca.AppendCertsFromPEM(pki.CA.CertPEM)
	return s
}

func (s *secure) client(t *testing.T, token string, addrs ...string) *client.Client {
	t.Helper()
	if len(addrs) == 0 {
		addrs = s.c.Addrs()
	}
	tlsCfg, err := client.LoadTLS(s.pki.CAFile(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(addrs, client.Options{TLS: tlsCfg, Token: token, CallTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func (s *secure) follower() *brokerd.Node {
	for _, n := range s.c.Up() {
		if !n.IsLeaderReady() {
			return n
		}
	}
	return nil
}

func spec(queue string) *raftqv1.JobSpec {
	return &raftqv1.JobSpec{Queue: queue, Type: "t", LeaseDuration: durationpb.New(time.Hour)}
}

func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("%s: %v (code %s), want %s", what, err, got, want)
	}
}

// TestSecureClusterAuth: with TLS and auth on, a call without a token is
// Unauthenticated, a token of the wrong role or queue is PermissionDenied
// and nothing changes, the allowed calls work through followers
// (forwarded as the caller), admin actions are audited, the admin HTTP
// API wants an admin over HTTPS, plaintext fails, and certificates
// rotated on disk are served without a restart.
func TestSecureClusterAuth(t *testing.T) {
	s := newSecureCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	f := s.follower()
	viaFollower := func(tok string) *client.Client { return s.client(t, tok, f.GRPCAddr()) }

	// Allowed calls, through a follower: forwarding carries the token.
	producer, worker, admin := viaFollower(producerTok), viaFollower(workerTok), viaFollower(adminTok)
	res, err := producer.Enqueue(ctx, spec("orders.eu"))
	if err != nil {
		t.Fatalf("producer enqueue through a follower: %v", err)
	}
	orderJob := res[0].JobId
	res, err = admin.Enqueue(ctx, spec("billing"))
	if err != nil {
		t.Fatalf("admin enqueue: %v", err)
	}
	billingJob := res[0].JobId
	hash := s.c.WaitConverged(20 * time.Second)

	// Refusals: nothing may change.
	_, err = viaFollower("").Enqueue(ctx, spec("orders.eu"))
	wantCode(t, "no token", err, codes.Unauthenticated)
	_, err = viaFollower("not-a-token").Enqueue(ctx, spec("orders.eu"))
	wantCode(t, "unknown token", err, codes.Unauthenticated)
	_, err = producer.Enqueue(ctx, spec("orders.eu"), spec("billing"))
	wantCode(t, "producer enqueue to a queue not its own", err, codes.PermissionDenied)
	_, err = producer.Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{"orders.eu"}, MaxJobs: 1})
	wantCode(t, "producer fetching (worker role needed)", err, codes.PermissionDenied)
	_, err = worker.Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{"billing"}, MaxJobs: 1})
	wantCode(t, "worker fetching from a queue not its own", err, codes.PermissionDenied)
	_, err = worker.CancelJob(ctx, orderJob)
	wantCode(t, "worker cancelling (producer role needed)", err, codes.PermissionDenied)
	_, err = producer.CancelJob(ctx, billingJob)
	wantCode(t, "producer cancelling a job of another queue", err, codes.PermissionDenied)
	_, err = producer.GetJob(ctx, billingJob, raftqv1.Consistency_CONSISTENCY_LINEARIZABLE)
	wantCode(t, "producer reading a job of another queue", err, codes.PermissionDenied)
	_, err = producer.QueueStats(ctx)
	wantCode(t, "producer listing every queue", err, codes.PermissionDenied)
	err = worker.PauseQueue(ctx, "orders.eu")
	wantCode(t, "worker pausing a queue (admin needed)", err, codes.PermissionDenied)
	for _, n := range s.c.Up() {
		if h := n.FSM().Hash(); h != hash {
			t.Fatalf("a refused call changed %s's state", n.ID())
		}
	}

	// The worker leases its job and acks it; acking the billing job (not
	// its queue) is refused even with a lease token.
	jobs, err := worker.Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{"orders.eu"}, MaxJobs: 1, WorkerId: "w"})
	if err != nil || len(jobs) != 1 || jobs[0].Id != orderJob {
		t.Fatalf("worker fetch: %v %v", jobs, err)
	}
	wantCode(t, "worker acking a job of another queue", worker.Ack(ctx, billingJob, jobs[0].LeaseToken), codes.PermissionDenied)
	if err := worker.Ack(ctx, orderJob, jobs[0].LeaseToken); err != nil {
		t.Fatalf("worker ack: %v", err)
	}
	if j, err := producer.GetJob(ctx, orderJob, raftqv1.Consistency_CONSISTENCY_LINEARIZABLE); err != nil || j.State != raftqv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("producer reads its job: %v %v", j, err)
	}
	if j, _ := admin.GetJob(ctx, billingJob, raftqv1.Consistency_CONSISTENCY_LINEARIZABLE); j.GetState() != raftqv1.JobState_JOB_STATE_READY {
		t.Fatalf("the refused ack changed the billing job: %v", j)
	}

	// Admin action through a follower: done, and audited on the leader
	// with the admin as the principal and the follower as forwarder.
	if err := admin.PauseQueue(ctx, "billing"); err != nil {
		t.Fatalf("admin pause: %v", err)
	}
	wantAudit(t, s, map[string]any{"principal": "token:ops", "method": "/raftq.v1.Admin/PauseQueue", "code": "OK", "queue": "billing", "outcome": "ok"})
	wantAudit(t, s, map[string]any{"principal": "token:runner", "method": "/raftq.v1.Admin/PauseQueue", "code": "PermissionDenied", "outcome": "refused"})
	wantAudit(t, s, map[string]any{"principal": "node:node." + f.ID(), "method": "/raftq.v1.Cluster/Join", "code": "OK"})
	// Refusals of ordinary calls are audit lines too.
	wantAudit(t, s, map[string]any{"principal": "(unauthenticated)", "method": "/raftq.v1.Broker/Enqueue", "code": "Unauthenticated"})

	t.Run("admin HTTP", func(t *testing.T) { testAdminHTTP(t, s, f) })
	t.Run("plaintext to TLS ports", func(t *testing.T) { testPlaintext(t, s, f) })
	t.Run("rotation without restart", func(t *testing.T) { testRotation(t, s, f) })
}

func testAdminHTTP(t *testing.T, s *secure, f *brokerd.Node) {
	hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.ca}}}
	base := "https://" + s.c.AdminAddr(f)
	do := func(method, path, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := do("GET", "/healthz", ""); code != 200 {
		t.Fatalf("healthz without a token: %d", code)
	}
	if code, body := do("GET", "/v1/queues", ""); code != 401 || !strings.Contains(body, "UNAUTHENTICATED") {
		t.Fatalf("no token: %d %s", code, body)
	}
	if code, body := do("GET", "/metrics", producerTok); code != 403 || !strings.Contains(body, "FORBIDDEN") {
		t.Fatalf("producer token on the admin API: %d %s", code, body)
	}
	if code, body := do("POST", "/v1/queues/orders.eu/pause", workerTok); code != 403 {
		t.Fatalf("worker pausing over HTTP: %d %s", code, body)
	}
	if code, body := do("GET", "/v1/queues", adminTok); code != 200 || !strings.Contains(body, "billing") {
		t.Fatalf("admin token: %d %s", code, body)
	}
	// A write through the follower's admin API reaches the leader as the
	// admin (the gRPC API checks the token again).
	if code, body := do("POST", "/v1/queues/billing/resume", adminTok); code != 200 {
		t.Fatalf("admin resume over HTTP: %d %s", code, body)
	}
	req, _ := http.NewRequest("GET", base+"/v1/queues", nil)
	req.SetBasicAuth("me", adminTok)
	if resp, err := hc.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("Basic auth with the token as password: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// Audited once, by the admin API that took the request: not again by
	// the gRPC API it relayed the call to, nor by the leader.
	wantAudit(t, s, map[string]any{"node": f.ID(), "principal": "token:ops", "http": "POST /v1/queues/{queue}/resume", "status": "200", "outcome": "ok"})
	if n := len(findAudit(s, map[string]any{"method": "/raftq.v1.Admin/ResumeQueue"})); n != 0 {
		t.Fatalf("the relayed ResumeQueue was audited again (%d lines):\n%s", n, s.audit.String())
	}
}

// findAudit returns the audit lines holding every field of want.
func findAudit(s *secure, want map[string]any) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(s.audit.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil || m["msg"] != auth.AuditMessage {
			continue
		}
		ok := true
		for k, v := range want {
			ok = ok && m[k] == v
		}
		if ok {
			out = append(out, m)
		}
	}
	return out
}

// wantAudit fails unless an audit line holds every field of want.
func wantAudit(t *testing.T, s *secure, want map[string]any) {
	t.Helper()
	if len(findAudit(s, want)) == 0 {
		t.Fatalf("no audit line holds %v:\n%s", want, s.audit.String())
	}
}

func testPlaintext(t *testing.T, s *secure, f *brokerd.Node) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	plain, err := client.New([]string{f.GRPCAddr()}, client.Options{CallTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := plain.Status(ctx, f.GRPCAddr()); err == nil {
		t.Fatal("plaintext gRPC to a TLS port answered")
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + s.c.AdminAddr(f) + "/healthz")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plaintext HTTP to the TLS admin port answered 200")
		}
	}
	// Raft: plain TCP transport to the Raft port.
	tr, err := raft.NewTCPTransport("127.0.0.1:0", nil, 1, 2*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	before := brokerd.RaftRefused(f)
	var out raft.RequestVoteResponse
	if err := tr.RequestVote("x", raft.ServerAddress(f.RaftAddr()), &raft.RequestVoteRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("x"), Addr: []byte("x")}, Term: 1 << 40,
	}, &out); err == nil {
		t.Fatal("a plaintext RequestVote was answered")
	}
	testutil.WaitFor(t, 30*time.Second, "the Raft listener to count the refusal", func() bool { return brokerd.RaftRefused(f) > before })
}

func serial(t *testing.T, addr string, cfg *tls.Config) string {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("TLS to %s: %v", addr, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func testRotation(t *testing.T, s *secure, f *brokerd.Node) {
	name := "node." + f.ID()
	src, err := tlsutil.Load(tlsutil.Files{CA: s.pki.CAFile(), Cert: s.pki.CertFile("node.n1"), Key: s.pki.KeyFile("node.n1")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	grpcCfg := &tls.Config{RootCAs: s.ca, ServerName: "127.0.0.1", NextProtos: []string{"h2"}}
	adminCfg := &tls.Config{RootCAs: s.ca, ServerName: "127.0.0.1"}
	raftCfg := src.ClientConfig("127.0.0.1", raftlayer.ALPN)
	before := [3]string{serial(t, f.GRPCAddr(), grpcCfg), serial(t, s.c.AdminAddr(f), adminCfg), serial(t, f.RaftAddr(), raftCfg)}
	if err := s.pki.Write(name, certgen.NodeOptions(strings.TrimPrefix(name, "node."))); err != nil {
		t.Fatal(err)
	}
	after := [3]string{serial(t, f.GRPCAddr(), grpcCfg), serial(t, s.c.AdminAddr(f), adminCfg), serial(t, f.RaftAddr(), raftCfg)}
	for i, port := range []string{"gRPC", "admin HTTP", "Raft"} {
		if before[i] != before[0] || after[i] != after[0] || after[i] == before[i] {
			t.Fatalf("%s port: serial %s before, %s after the rotation (want one certificate before, a new one after)", port, before[i], after[i])
		}
	}
	// The rotated node still works as a member: a write through it
	// commits (Raft and forwarding run on the new certificate).
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.client(t, producerTok, f.GRPCAddr()).Enqueue(ctx, spec("orders.rotated")); err != nil {
		t.Fatalf("enqueue through the rotated node: %v", err)
	}
	s.c.WaitConverged(20 * time.Second)
}

// TestForeignCertificateCannotJoin: a brokerd whose certificate comes
// from another CA can neither join (Cluster.Join over TLS fails) nor,
// added as a voter anyway, receive Raft traffic or send any.
func TestForeignCertificateCannotJoin(t *testing.T) {
	s := newSecureCluster(t)
	leader := s.c.WaitLeader(30 * time.Second)
	dir := t.TempDir()
	other, err := certgen.NewDev(filepath.Join(dir, "pki"), "rogue CA", []string{"rogue"})
	if err != nil {
		t.Fatal(err)
	}
	logs := &testutil.Buffer{}
	cfg := brokerd.DefaultConfig()
	cfg.NodeID = "rogue"
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.RaftAddr, cfg.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Join = s.c.Addrs()
	cfg.TLS = brokerd.TLSConfig{Files: tlsutil.Files{CA: other.CAFile(), Cert: other.CertFile("node.rogue"), Key: other.KeyFile("node.rogue")}}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	rogue, err := brokerd.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer rogue.Kill()
	// Its join attempts fail on the TLS handshake, to every member.
	testutil.WaitFor(t, 30*time.Second, "the rogue's join attempts to fail", func() bool { return strings.Count(logs.String(), "join failed") >= 3 })
	if !strings.Contains(logs.String(), "certificate") {
		t.Fatalf("join failures do not name the certificate:\n%s", logs.String())
	}
	members := func() int {
		cf := leader.Raft().GetConfiguration()
		if cf.Error() != nil {
			t.Fatal(cf.Error())
		}
		return len(cf.Configuration().Servers)
	}
	if n := members(); n != 3 {
		t.Fatalf("the cluster has %d members after the rogue's attempts", n)
	}

	// It cannot send Raft traffic: a vote request with a huge term is
	// refused before Raft sees it (the leader keeps leading).
	var vote raft.RequestVoteResponse
	if err := brokerd.RaftTransport(rogue).RequestVote("rogue", raft.ServerAddress(leader.RaftAddr()), &raft.RequestVoteRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("rogue"), Addr: []byte(rogue.RaftAddr())}, Term: 1 << 40,
	}, &vote); err == nil {
		t.Fatal("a member answered the rogue's RequestVote")
	}

	// Even added as a voter (as a stolen admin token could), it receives
	// nothing: the leader's handshakes to it fail, the cluster goes on.
	refused := brokerd.RaftRefused(leader)
	if err := leader.Raft().AddVoter("rogue", raft.ServerAddress(rogue.RaftAddr()), 0, 10*time.Second).Error(); err != nil {
		t.Fatalf("AddVoter: %v", err)
	}
	testutil.WaitFor(t, 30*time.Second, "the leader to refuse the rogue's certificate", func() bool { return brokerd.RaftRefused(leader) > refused })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.client(t, producerTok).Enqueue(ctx, spec("orders.eu")); err != nil {
		t.Fatalf("the cluster stopped committing: %v", err)
	}
	if idx := rogue.Raft().LastIndex(); idx != 0 || rogue.FSM().Len() != 0 {
		t.Fatalf("the rogue received Raft entries: last index %d, %d jobs", idx, rogue.FSM().Len())
	}
	if err := leader.Raft().RemoveServer("rogue", 0, 10*time.Second).Error(); err != nil {
		t.Fatalf("RemoveServer: %v", err)
	}
}

// TestWaitersPerConnection: one client connection may park at most
// Limits.MaxWaitersPerConn Fetches; the next is refused at once with
// ResourceExhausted (nothing leased), another connection is not
// affected, and a slot comes back when its poll ends.
func TestWaitersPerConnection(t *testing.T) {
	c := testcluster.New(t, 1, func(cfg *brokerd.Config) { cfg.Limits.MaxWaitersPerConn = 1 })
	n := c.WaitLeader(30 * time.Second)
	dial := func() raftqv1.BrokerClient {
		cc, err := grpc.NewClient(n.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return raftqv1.NewBrokerClient(cc)
	}
	one, other := dial(), dial()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	poll := &raftqv1.FetchRequest{Queues: []string{"idle"}, MaxJobs: 1, MaxWait: durationpb.New(time.Minute)}
	parked, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { _, err := one.Fetch(parked, poll); done <- err }()
	testutil.WaitFor(t, 30*time.Second, "the first poll to park", func() bool { return brokerd.WaitersInFlight(n) == 1 })
	_, err := one.Fetch(ctx, poll)
	wantCode(t, "a second poll on the same connection", err, codes.ResourceExhausted)
	quick := &raftqv1.FetchRequest{Queues: []string{"idle"}, MaxJobs: 1}
	if _, err := other.Fetch(ctx, quick); err != nil {
		t.Fatalf("another connection: %v", err)
	}
	stop()
	<-done
	testutil.WaitFor(t, 30*time.Second, "the slot to come back", func() bool { return brokerd.WaitersInFlight(n) == 0 })
	if _, err := one.Fetch(ctx, quick); err != nil {
		t.Fatalf("after the first poll ended: %v", err)
	}
}

// rawLayer is a raft.StreamLayer that dials with whatever TLS
// configuration it is given and checks nothing: what someone holding a
// certificate of the cluster's CA runs to speak Raft to a broker.
type rawLayer struct {
	net.Listener
	cfg *tls.Config
}

func (r rawLayer) Dial(a raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: r.cfg}
	return d.Dial("tcp", string(a))
}

// rawRaft is a Raft transport over rawLayer presenting the PKI's
// certificate name.
func rawRaft(t *testing.T, s *secure, name string) *raft.NetworkTransport {
	t.Helper()
	src, err := tlsutil.Load(tlsutil.Files{CA: s.pki.CAFile(), Cert: s.pki.CertFile(name), Key: s.pki.KeyFile(name)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: rawLayer{Listener: ln, cfg: src.ClientConfig("127.0.0.1", raftlayer.ALPN)}, MaxPool: 1, Timeout: 5 * time.Second,
		Logger: hclog.New(&hclog.LoggerOptions{Output: testutil.LogWriter(t)}),
	})
	t.Cleanup(func() { tr.Close() })
	return tr
}

// TestOnlyNodesSpeakRaft: the SDK's client certificate, svcd's and a node
// certificate for a node that is not a member are all signed by the
// cluster's CA, yet none of them can send TimeoutNow, RequestVote or
// AppendEntries to a broker; and a node certificate for another id at
// the address of a member being added is refused by the leader. The
// leader, its term and the data stay as they were, and the cluster keeps
// committing.
func TestOnlyNodesSpeakRaft(t *testing.T) {
	s := newSecureCluster(t)
	leader := s.c.WaitLeader(30 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := s.client(t, producerTok)
	if _, err := cl.Enqueue(ctx, spec("orders.eu")); err != nil {
		t.Fatal(err)
	}
	s.c.WaitConverged(20 * time.Second)
	f := s.follower()
	term, hash := leader.Raft().CurrentTerm(), dumpState(leader)
	if err := s.pki.Write("node.n9", certgen.NodeOptions("n9")); err != nil {
		t.Fatal(err)
	}
	hdr := func(id string) raft.RPCHeader {
		return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(id), Addr: []byte(leader.RaftAddr())}
	}
	for _, name := range []string{"client", "svcd", "node.n9"} {
		tr := rawRaft(t, s, name)
		// TimeoutNow to a follower makes it start an election at once: the
		// leadership transfer a client certificate must not trigger.
		var tn raft.TimeoutNowResponse
		if err := tr.TimeoutNow(raft.ServerID(f.ID()), raft.ServerAddress(f.RaftAddr()), &raft.TimeoutNowRequest{RPCHeader: hdr(string(leader.ID()))}, &tn); err == nil {
			t.Fatalf("%s: follower %s answered TimeoutNow", name, f.ID())
		}
		var vote raft.RequestVoteResponse
		if err := tr.RequestVote(raft.ServerID(leader.ID()), raft.ServerAddress(leader.RaftAddr()), &raft.RequestVoteRequest{
			RPCHeader: hdr("n1"), Term: term + 100, LastLogIndex: 1 << 40, LastLogTerm: term + 100,
		}, &vote); err == nil {
			t.Fatalf("%s: the leader answered RequestVote", name)
		}
		var ae raft.AppendEntriesResponse
		if err := tr.AppendEntries(raft.ServerID(f.ID()), raft.ServerAddress(f.RaftAddr()), &raft.AppendEntriesRequest{
			RPCHeader: hdr(string(leader.ID())), Term: term, PrevLogEntry: 0,
			Entries: []*raft.Log{{Index: 1 << 30, Term: term, Type: raft.LogCommand, Data: []byte("forged")}},
		}, &ae); err == nil {
			t.Fatalf("%s: follower %s answered AppendEntries", name, f.ID())
		}
	}
	if l := s.c.WaitLeader(30 * time.Second); l.ID() != leader.ID() || leader.Raft().CurrentTerm() != term {
		t.Fatalf("leadership moved: leader %s term %d, was %s term %d", l.ID(), leader.Raft().CurrentTerm(), leader.ID(), term)
	}
	for _, n := range s.c.Up() {
		if got := dumpState(n); !reflect.DeepEqual(got, hash) {
			t.Fatalf("node %s: state changed by the refused RPCs", n.ID())
		}
	}

	// A member is added at an address where a listener holds node n9's
	// certificate: the leader expects node n4 there and refuses it.
	rogue, err := raftlayer.Listen("127.0.0.1:0", "", raftlayer.Config{TLS: func() *tlsutil.Source {
		src, err := tlsutil.Load(tlsutil.Files{CA: s.pki.CAFile(), Cert: s.pki.CertFile("node.n9"), Key: s.pki.KeyFile("node.n9")}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return src
	}(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	rogueTr := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: rogue, MaxPool: 1, Timeout: 5 * time.Second,
		Logger: hclog.New(&hclog.LoggerOptions{Output: testutil.LogWriter(t)})})
	defer rogueTr.Close()
	received := make(chan raft.RPC, 16)
	go func() {
		for rpc := range rogueTr.Consumer() {
			received <- rpc
			rpc.Respond(nil, fmt.Errorf("rogue"))
		}
	}()
	refused := brokerd.RaftRefused(leader)
	if err := leader.Raft().AddVoter("n4", raft.ServerAddress(rogue.Addr().String()), 0, 10*time.Second).Error(); err != nil {
		t.Fatalf("AddVoter: %v", err)
	}
	testutil.WaitFor(t, 30*time.Second, "the leader to refuse n9's certificate at n4's address", func() bool { return brokerd.RaftRefused(leader) > refused })
	if _, err := cl.Enqueue(ctx, spec("orders.eu")); err != nil {
		t.Fatalf("the cluster stopped committing: %v", err)
	}
	if err := leader.Raft().RemoveServer("n4", 0, 10*time.Second).Error(); err != nil {
		t.Fatalf("RemoveServer: %v", err)
	}
	select {
	case rpc := <-received:
		t.Fatalf("the leader sent %T to a listener holding another node's certificate", rpc.Command)
	default:
	}
	if l := s.c.WaitLeader(30 * time.Second); l.ID() != leader.ID() || leader.Raft().CurrentTerm() != term {
		t.Fatalf("leadership moved: leader %s term %d, was %s term %d", l.ID(), leader.Raft().CurrentTerm(), leader.ID(), term)
	}
}
