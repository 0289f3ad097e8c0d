package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/brokerd/daemon"
	"github.com/raftq/raftq/brokerd/etcdnode"
	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/discovery"
	"github.com/raftq/raftq/discovery/etcdresolver"
	"github.com/raftq/raftq/internal/etcdtest"
	"github.com/raftq/raftq/internal/freeport"
	"github.com/raftq/raftq/internal/liveconfig"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// ecluster is a set of in-process brokers that find each other through a
// real (embedded) etcd server.
type ecluster struct {
	t      *testing.T
	etcd   *etcdtest.Server
	cli    *clientv3.Client
	prefix string
	dir    string

	// groups is every node's Raft group count (0: one).
	groups int

	mu    sync.Mutex
	nodes map[string]*enode
	log   *slog.Logger // through t.Log, made before the cleanup that kills the nodes
}

type enode struct {
	id, dir, raftAddr, grpcAddr string
	level                       *slog.LevelVar
	node                        *daemon.Daemon
}

func newECluster(t *testing.T, s *etcdtest.Server, cli *clientv3.Client) *ecluster {
	c := &ecluster{t: t, etcd: s, cli: cli, prefix: s.Prefix("cluster"), dir: t.TempDir(), nodes: map[string]*enode{}, log: testutil.Logger(t)}
	t.Cleanup(c.killAll)
	return c
}

func (c *ecluster) config(m *enode, expect int) daemon.Config {
	cfg := daemon.DefaultConfig()
	cfg.NodeID = m.id
	cfg.DataDir = m.dir
	cfg.RaftAddr = m.raftAddr
	cfg.GRPCAddr = m.grpcAddr
	cfg.BootstrapExpect = expect
	cfg.Groups = c.groups
	cfg.Etcd = etcdnode.Config{Client: c.cli, Prefix: c.prefix, LeaseTTL: 2 * time.Second}
	cfg.LogLevel = m.level
	cfg.Logger = c.log.With("node", m.id)
	// Quick elections: the bootstrap race runs many times.
	cfg.HeartbeatTimeout = 300 * time.Millisecond
	cfg.ElectionTimeout = 300 * time.Millisecond
	cfg.LeaderLeaseTimeout = 150 * time.Millisecond
	return cfg
}

// start opens node id (fresh, or again from its data dir) with the same
// flags every node gets: etcd and --bootstrap-expect.
func (c *ecluster) start(id string, expect int) *daemon.Daemon {
	c.t.Helper()
	c.mu.Lock()
	m, ok := c.nodes[id]
	if !ok {
		m = &enode{id: id, dir: filepath.Join(c.dir, id), raftAddr: freeport.T(c.t), grpcAddr: freeport.T(c.t), level: new(slog.LevelVar)}
		c.nodes[id] = m
	}
	c.mu.Unlock()
	var n *daemon.Daemon
	var err error
	for i := 0; i < 50; i++ { // a just-closed port may be held a moment
		if n, err = daemon.Open(c.config(m, expect)); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		c.t.Fatalf("open %s: %v", id, err)
	}
	c.mu.Lock()
	m.node = n
	c.mu.Unlock()
	return n
}

// startAll opens the nodes at the same moment, to race them.
// startThree starts nodes n1, n2 and n3, which find each other through a
// fresh etcd and bootstrap one cluster, and waits for it; it returns the
// cluster, the ids and the leader.
func startThree(t *testing.T) (*ecluster, []string, *daemon.Daemon) {
	t.Helper()
	s := etcdtest.New(t)
	c := newECluster(t, s, s.Client())
	ids := []string{"n1", "n2", "n3"}
	c.startAll(ids, 3)
	return c, ids, c.waitOneCluster(ids, 30*time.Second)
}

func (c *ecluster) startAll(ids []string, expect int) {
	var wg sync.WaitGroup
	for _, id := range ids {
		c.mu.Lock()
		c.nodes[id] = &enode{id: id, dir: filepath.Join(c.dir, id), raftAddr: freeport.T(c.t), grpcAddr: freeport.T(c.t), level: new(slog.LevelVar)}
		c.mu.Unlock()
	}
	for _, id := range ids {
		wg.Add(1)
		go func(id string) { defer wg.Done(); c.start(id, expect) }(id)
	}
	wg.Wait()
}

func (c *ecluster) node(id string) *daemon.Daemon {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.nodes[id]; m != nil {
		return m.node
	}
	return nil
}

func (c *ecluster) up() []*daemon.Daemon {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*daemon.Daemon
	for _, m := range c.nodes {
		if m.node != nil {
			out = append(out, m.node)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID() < out[j].ID() })
	return out
}

func (c *ecluster) stop(id string, graceful bool) {
	c.mu.Lock()
	m := c.nodes[id]
	n := m.node
	m.node = nil
	c.mu.Unlock()
	if n == nil {
		return
	}
	if graceful {
		_ = n.Close()
	} else {
		_ = n.Kill()
	}
}

func (c *ecluster) killAll() {
	c.mu.Lock()
	var ids []string
	for id := range c.nodes {
		ids = append(ids, id)
	}
	c.mu.Unlock()
	for _, id := range ids {
		c.stop(id, false)
	}
}

func (c *ecluster) leader() *daemon.Daemon {
	for _, n := range c.up() {
		if n.IsLeaderReady() {
			return n
		}
	}
	return nil
}

func (c *ecluster) addrs() []string {
	var out []string
	for _, n := range c.up() {
		out = append(out, n.GRPCAddr())
	}
	return out
}

func voters(n *daemon.Daemon) []string {
	f := n.Raft().GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	var out []string
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			out = append(out, string(s.ID))
		}
	}
	sort.Strings(out)
	return out
}

// waitOneCluster waits until every running node is in one cluster whose
// voters are exactly want, with one leader every node agrees on, and
// fails the test with what it saw otherwise.
func (c *ecluster) waitOneCluster(want []string, timeout time.Duration) *daemon.Daemon {
	c.t.Helper()
	sort.Strings(want)
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		l := c.leader()
		ok := l != nil
		var seen []string
		for _, n := range c.up() {
			v := voters(n)
			_, lid := n.Raft().LeaderWithID()
			seen = append(seen, fmt.Sprintf("%s: voters %v leader %q state %s", n.ID(), v, lid, n.Raft().State()))
			if l == nil || strings.Join(v, ",") != strings.Join(want, ",") || string(lid) != l.ID() {
				ok = false
			}
			if n != l && n.Raft().State() == raft.Leader {
				ok = false
			}
		}
		if ok {
			return l
		}
		last = strings.Join(seen, "; ")
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("no single cluster of %v within %s: %s", want, timeout, last)
	return nil
}

func (c *ecluster) client() *client.Client {
	cl, err := client.New(c.addrs(), client.Options{})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

func (c *ecluster) clusterRecord() (etcdnode.ClusterRecord, int64) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	g, err := c.cli.Get(ctx, etcdnode.ClusterKey(c.prefix))
	if err != nil {
		c.t.Fatal(err)
	}
	if len(g.Kvs) == 0 {
		return etcdnode.ClusterRecord{}, 0
	}
	var rec etcdnode.ClusterRecord
	if err := json.Unmarshal(g.Kvs[0].Value, &rec); err != nil {
		c.t.Fatal(err)
	}
	return rec, g.Kvs[0].ModRevision
}

// waitConverged waits until every running node has applied what the
// leader has, with equal state hashes.
func (c *ecluster) waitConverged(timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if l := c.leader(); l != nil {
			idx, h := l.FSM().LastIndex(), l.FSM().Hash()
			ok := true
			for _, n := range c.up() {
				if n.FSM().LastIndex() < idx || n.FSM().Hash() != h {
					ok = false
				}
			}
			if ok {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatal("nodes did not converge")
}

func enqueueN(t *testing.T, cl *client.Client, q string, n int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var ids []string
	for i := 0; i < n; i++ {
		res, err := cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: q, Type: "t", Payload: []byte(fmt.Sprint(i))})
		if err != nil {
			t.Fatalf("enqueue: %v", err)
		}
		ids = append(ids, res[0].JobId)
	}
	return ids
}

// Three fresh nodes started at once with --etcd and --bootstrap-expect 3
// form exactly one cluster of three, every time: one cluster record, the
// same three voters on every node, one leader, and writes that replicate.
func TestEtcdBootstrapRace(t *testing.T) {
	rounds := 20
	if testing.Short() {
		rounds = 3
	}
	s := etcdtest.New(t)
	cli := s.Client()
	start := time.Now()
	for r := 0; r < rounds; r++ {
		c := newECluster(t, s, cli)
		ids := []string{"a", "b", "c"}
		c.startAll(ids, 3)
		l := c.waitOneCluster(ids, 30*time.Second)
		rec, _ := c.clusterRecord()
		var rv []string
		for _, v := range rec.Voters {
			rv = append(rv, v.ID)
		}
		if strings.Join(rv, ",") != "a,b,c" {
			t.Fatalf("round %d: cluster record voters %v", r, rv)
		}
		// The cluster works: a write commits and every node applies it.
		cl, err := client.New([]string{l.GRPCAddr()}, client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		enqueueN(t, cl, "q", 1)
		cl.Close()
		c.waitConverged(10 * time.Second)
		for _, id := range ids {
			s.WaitKey(cli, c.prefix+"/bootstrap/done/"+id, true, 10*time.Second)
		}
		c.killAll()
	}
	t.Logf("%d bootstrap races in %s (%.2fs each)", rounds, time.Since(start), time.Since(start).Seconds()/float64(rounds))
}

// A 4th and 5th fresh node join by themselves; a node leaves gracefully
// (the leader too); a voter that lost its disk joins instead of
// bootstrapping; a restarted node never bootstraps again, even with the
// cluster record gone from etcd.
func TestEtcdJoinLeaveRestart(t *testing.T) {
	s := etcdtest.New(t)
	cli := s.Client()
	c := newECluster(t, s, cli)
	c.startAll([]string{"n1", "n2", "n3"}, 3)
	c.waitOneCluster([]string{"n1", "n2", "n3"}, 30*time.Second)
	_, recRev := c.clusterRecord()
	cl := c.client()
	enqueueN(t, cl, "q", 5)

	// n4 has the same flags as the first three (it finds the cluster
	// record and is not a voter in it); n5 has no --bootstrap-expect.
	c.start("n4", 3)
	c.start("n5", 0)
	c.waitOneCluster([]string{"n1", "n2", "n3", "n4", "n5"}, 30*time.Second)
	c.waitConverged(20 * time.Second)

	// Graceful leave of a follower, then of the leader.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var follower *daemon.Daemon
	for _, n := range c.up() {
		if !n.IsLeaderReady() {
			follower = n
			break
		}
	}
	if err := follower.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	c.stop(follower.ID(), true)
	rest := []string{}
	for _, n := range c.up() {
		rest = append(rest, n.ID())
	}
	l := c.waitOneCluster(rest, 30*time.Second)
	s.WaitKey(cli, discovery.InstanceKey(c.prefix, discovery.ServiceBrokers, follower.ID()), false, 10*time.Second)
	if err := l.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	c.stop(l.ID(), true)
	rest = nil
	for _, n := range c.up() {
		rest = append(rest, n.ID())
	}
	c.waitOneCluster(rest, 30*time.Second)
	enqueueN(t, c.client(), "q", 3)
	c.waitConverged(20 * time.Second)

	// A voter loses its disk: it comes back fresh with the same id and
	// flags, finds it bootstrapped before, and joins.
	victim := rest[0]
	c.stop(victim, false)
	if err := os.RemoveAll(filepath.Join(c.dir, victim)); err != nil {
		t.Fatal(err)
	}
	c.start(victim, 3)
	c.waitOneCluster(rest, 30*time.Second)
	c.waitConverged(30 * time.Second)
	if _, rev := c.clusterRecord(); rev != recRev {
		t.Fatalf("cluster record rewritten (revision %d, was %d)", rev, recRev)
	}

	// Every node restarts from disk with the cluster record deleted: none
	// bootstraps (no new record appears) and the cluster and its jobs are
	// back.
	before := c.leader().FSM().Hash()
	for _, id := range rest {
		c.stop(id, false)
	}
	if _, err := cli.Delete(ctx, etcdnode.ClusterKey(c.prefix)); err != nil {
		t.Fatal(err)
	}
	for _, id := range rest {
		c.start(id, 3)
	}
	c.waitOneCluster(rest, 30*time.Second)
	c.waitConverged(30 * time.Second)
	if after := c.leader().FSM().Hash(); after != before {
		t.Fatalf("state changed across the restart: %s vs %s", after, before)
	}
	time.Sleep(500 * time.Millisecond)
	if rec, _ := c.clusterRecord(); rec.ClusterID != "" {
		t.Fatalf("a restarted node bootstrapped again: %+v", rec)
	}
	stats, err := c.client().QueueStats(ctx, "q")
	if err != nil || len(stats) != 1 || stats[0].Ready != 8 {
		t.Fatalf("jobs after restart: %v %v", stats, err)
	}

	// Still no record: a fresh node with --bootstrap-expect 3 sees that the
	// registered brokers already form a cluster, and joins it instead of
	// bootstrapping a second one.
	c.start("n9", 3)
	c.waitOneCluster(append(rest, "n9"), 30*time.Second)
	if rec, _ := c.clusterRecord(); rec.ClusterID != "" {
		t.Fatalf("a fresh node wrote a cluster record beside a running cluster: %+v", rec)
	}
}

// A live config change reaches every node and takes effect: a queue's
// concurrency cap bounds the jobs leased across several workers, job
// defaults change, a bad value is refused while the old one stays, and
// the log level follows.
func TestEtcdLiveConfig(t *testing.T) {
	c, _, _ := startThree(t)
	cli := c.cli
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// put sets a key and waits until every node applies it; it returns
	// how long the slowest node took.
	put := func(key, val string, applied func(*liveconfig.Snapshot) bool) time.Duration {
		t.Helper()
		t0 := time.Now()
		if _, err := cli.Put(ctx, key, val); err != nil {
			t.Fatal(err)
		}
		for _, n := range c.up() {
			for !applied(n.LiveConfig()) {
				if time.Since(t0) > 10*time.Second {
					t.Fatalf("%s did not apply %s=%s", n.ID(), key, val)
				}
				time.Sleep(2 * time.Millisecond)
			}
		}
		return time.Since(t0)
	}
	capKey := liveconfig.QueueKey(c.prefix, "capped")
	took := put(capKey, `{"max_in_flight":2,"lease_duration":"7s","max_attempts":3}`,
		func(s *liveconfig.Snapshot) bool { return s.Queue("capped").MaxInFlight == 2 })
	t.Logf("live config reached all 3 nodes in %s", took)

	cl := c.client()
	enqueueN(t, cl, "capped", 20)
	j, err := func() (*raftqv1.Job, error) {
		res, err := cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: "capped", Type: "t"})
		if err != nil {
			return nil, err
		}
		return cl.GetJob(ctx, res[0].JobId, 0)
	}()
	if err != nil || j.LeaseDuration.AsDuration() != 7*time.Second || j.MaxAttempts != 3 {
		t.Fatalf("live job defaults not applied: %v %v", j, err)
	}

	// Four workers, each asking for 5 jobs at a time and holding them.
	var held atomic.Int64
	var maxSeen atomic.Int64
	wctx, wcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for wctx.Err() == nil {
				jobs, err := cl.Fetch(wctx, fetchReq("capped", 5, 500*time.Millisecond, fmt.Sprint("w", w)))
				if err != nil {
					continue
				}
				held.Add(int64(len(jobs)))
			}
		}(w)
	}
	leased := func() int64 {
		st, err := cl.QueueStats(ctx, "capped")
		if err != nil || len(st) != 1 {
			return -1
		}
		if st[0].Leased > maxSeen.Load() {
			maxSeen.Store(st[0].Leased)
		}
		return st[0].Leased
	}
	waitLeased := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for leased() != want {
			if time.Now().After(deadline) {
				t.Fatalf("leased %d, want %d", leased(), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
		// It stays there while the workers keep asking.
		for i := 0; i < 20; i++ {
			if n := leased(); n != want {
				t.Fatalf("leased moved to %d, cap %d", n, want)
			}
			time.Sleep(25 * time.Millisecond)
		}
	}
	waitLeased(2)
	if maxSeen.Load() > 2 {
		t.Fatalf("saw %d leased, cap 2", maxSeen.Load())
	}
	// A bad value is refused on every node; the cap stays 2.
	put(liveconfig.QueueKey(c.prefix, "marker"), `{"max_in_flight":1}`, func(s *liveconfig.Snapshot) bool { return s.Queue("marker").MaxInFlight == 1 })
	if _, err := cli.Put(ctx, capKey, `{"max_in_flight":-5}`); err != nil {
		t.Fatal(err)
	}
	put(liveconfig.QueueKey(c.prefix, "marker"), `{"max_in_flight":2}`, func(s *liveconfig.Snapshot) bool { return s.Queue("marker").MaxInFlight == 2 })
	for _, n := range c.up() {
		if got := n.LiveConfig().Queue("capped").MaxInFlight; got != 2 {
			t.Fatalf("%s: bad value replaced the cap: %d", n.ID(), got)
		}
	}
	waitLeased(2)
	// Raising the cap takes effect without a restart.
	put(capKey, `{"max_in_flight":5}`, func(s *liveconfig.Snapshot) bool { return s.Queue("capped").MaxInFlight == 5 })
	waitLeased(5)
	wcancel()
	wg.Wait()
	if held.Load() != 5 {
		t.Fatalf("workers hold %d jobs, cap 5", held.Load())
	}

	// Log level: set, then removed (back to each node's own, info).
	put(liveconfig.LogLevelKey(c.prefix), "debug", func(s *liveconfig.Snapshot) bool { return s.LogLevel == "debug" })
	c.mu.Lock()
	for _, m := range c.nodes {
		if m.level.Level() != slog.LevelDebug {
			t.Errorf("%s log level %s", m.id, m.level.Level())
		}
	}
	c.mu.Unlock()
	t0 := time.Now()
	cli.Delete(ctx, liveconfig.LogLevelKey(c.prefix))
	for _, n := range c.up() {
		for n.LiveConfig().LogLevel != "" && time.Since(t0) < 10*time.Second {
			time.Sleep(5 * time.Millisecond)
		}
	}
	c.mu.Lock()
	for _, m := range c.nodes {
		if m.level.Level() != slog.LevelInfo {
			t.Errorf("%s log level %s after delete", m.id, m.level.Level())
		}
	}
	c.mu.Unlock()
}

// etcd stopped for 30s while producers and workers run: jobs keep flowing
// during the outage, none is lost or left behind, and every registration
// and the leader hint come back once etcd does.
func TestEtcdDownUnderLoad(t *testing.T) {
	outage := 30 * time.Second
	if testing.Short() {
		outage = 5 * time.Second
	}
	c, ids, _ := startThree(t)
	s, cli := c.etcd, c.cli
	cl := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), outage+120*time.Second)
	defer cancel()

	var mu sync.Mutex
	enqueued := map[string]bool{}
	acked := map[string]bool{}
	var ackCount atomic.Int64
	pctx, pstop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for p := 0; p < 2; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for i := 0; pctx.Err() == nil; i++ {
				res, err := cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: "load", Type: "t", IdempotencyKey: fmt.Sprintf("p%d-%d", p, i)})
				if err != nil {
					t.Errorf("enqueue: %v", err)
					return
				}
				mu.Lock()
				enqueued[res[0].JobId] = true
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}(p)
	}
	wctx, wstop := context.WithCancel(ctx)
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for wctx.Err() == nil {
				jobs, err := cl.Fetch(wctx, &raftqv1.FetchRequest{Queues: []string{"load"}, MaxJobs: 10,
					MaxWait: durationpb.New(200 * time.Millisecond), WorkerId: fmt.Sprint("w", w)})
				if err != nil {
					continue
				}
				for _, j := range jobs {
					if err := cl.Ack(ctx, j.Id, j.LeaseToken); err != nil {
						t.Errorf("ack: %v", err)
						continue
					}
					mu.Lock()
					acked[j.Id] = true
					mu.Unlock()
					ackCount.Add(1)
				}
			}
		}(w)
	}
	time.Sleep(time.Second)
	s.Stop()
	t.Logf("etcd stopped for %s", outage)
	downAt := ackCount.Load()
	// Progress at every quarter of the outage: nothing stalls.
	for q := 0; q < 4; q++ {
		before := ackCount.Load()
		time.Sleep(outage / 4)
		if ackCount.Load() == before {
			t.Fatalf("no job acked during quarter %d of the etcd outage", q+1)
		}
	}
	during := ackCount.Load() - downAt
	s.Start()
	t.Logf("%d jobs acked while etcd was down", during)
	time.Sleep(time.Second)
	pstop()
	// Drain: every enqueued job gets acked.
	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		missing := 0
		for id := range enqueued {
			if !acked[id] {
				missing++
			}
		}
		total := len(enqueued)
		mu.Unlock()
		if missing == 0 {
			t.Logf("%d jobs enqueued and acked", total)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d jobs never acked", missing, total)
		}
		time.Sleep(50 * time.Millisecond)
	}
	wstop()
	wg.Wait()

	// Registrations (2s TTL, so they expired during the outage) and the
	// leader hint are back.
	for _, id := range ids {
		s.WaitKey(cli, discovery.InstanceKey(c.prefix, discovery.ServiceBrokers, id), true, 30*time.Second)
	}
	l := c.leader()
	deadline = time.Now().Add(30 * time.Second)
	for {
		lh, ok, _ := discovery.GetLeader(ctx, cli, c.prefix, discovery.ServiceBrokers)
		if ok && l != nil && lh.NodeID == l.ID() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("leader hint %+v (ok %v) does not name the leader", lh, ok)
		}
		time.Sleep(50 * time.Millisecond)
		l = c.leader()
	}
	// The key can be back a moment before the node has seen its Put
	// answered and says it is registered.
	for _, n := range c.up() {
		testutil.WaitFor(t, 10*time.Second, n.ID()+" reports its registration", n.EtcdRegistered)
	}
}

// A worker whose client knows only the etcd resolver target keeps working
// across a leader crash, with no help.
func TestEtcdResolverFollowsLeaderChange(t *testing.T) {
	c, ids, l := startThree(t)
	s, cli := c.etcd, c.cli
	s.WaitKey(cli, discovery.LeaderKey(c.prefix, discovery.ServiceBrokers), true, 10*time.Second)

	// The one-line hook: the etcd target instead of static addresses.
	wc, err := client.New([]string{etcdresolver.BrokersTarget(c.prefix)}, client.Options{DialOptions: etcdresolver.BrokerDialOptions(cli)})
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	work := func(n int) {
		t.Helper()
		for got := 0; got < n; {
			jobs, err := wc.Fetch(ctx, fetchReq("q", int32(n-got), 5*time.Second, "resolver-worker"))
			if err != nil {
				t.Fatalf("fetch: %v", err)
			}
			for _, j := range jobs {
				if err := wc.Ack(ctx, j.Id, j.LeaseToken); err != nil {
					t.Fatalf("ack: %v", err)
				}
			}
			got += len(jobs)
		}
	}
	if _, err := wc.Enqueue(ctx, &raftqv1.JobSpec{Queue: "q", Type: "t"}); err != nil {
		t.Fatal(err)
	}
	work(1)
	// The leader crashes (no deregistration, no hand-over).
	c.stop(l.ID(), false)
	t0 := time.Now()
	c.waitOneCluster(ids, 30*time.Second) // the dead voter stays a member
	for i := 0; i < 10; i++ {
		if _, err := wc.Enqueue(ctx, &raftqv1.JobSpec{Queue: "q", Type: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	work(10)
	t.Logf("worker resumed %s after the leader crash", time.Since(t0))
	// The hint moves to the new leader.
	var lh discovery.Leader
	for {
		var ok bool
		lh, ok, err = discovery.GetLeader(ctx, cli, c.prefix, discovery.ServiceBrokers)
		if err == nil && ok && lh.NodeID != l.ID() {
			break
		}
		if time.Since(t0) > 20*time.Second {
			t.Fatalf("leader hint after failover: %+v %v %v", lh, ok, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("leader hint names the new leader %s after the crash", time.Since(t0))
	// A plain gRPC connection on the target lands on the leader itself.
	cc, err := grpc.NewClient(etcdresolver.BrokersTarget(c.prefix),
		append(etcdresolver.BrokerDialOptions(cli), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	st, err := raftqv1.NewClusterClient(cc).Status(ctx, &raftqv1.StatusRequest{}, grpc.WaitForReady(true))
	if err != nil || st.State != "Leader" || st.NodeId != lh.NodeID {
		t.Fatalf("status through the resolver: %v %v (hint %s)", st, err, lh.NodeID)
	}
}

// A node whose etcd is unreachable starts and serves jobs all the same:
// etcd is not on the data path.
func TestEtcdUnreachableAtStart(t *testing.T) {
	dead := "http://" + freeport.T(t) // nothing listens there
	cfg := daemon.DefaultConfig()
	cfg.NodeID = "solo"
	cfg.DataDir = t.TempDir()
	cfg.RaftAddr = freeport.T(t)
	cfg.GRPCAddr = freeport.T(t)
	cfg.BootstrapExpect = 1
	cfg.Peers = []brokerd.Peer{{ID: "solo", RaftAddr: cfg.RaftAddr}}
	cfg.Etcd = etcdnode.Config{Endpoints: []string{dead}, DialTimeout: time.Second}
	cfg.Logger = testutil.Logger(t)
	t0 := time.Now()
	n, err := daemon.Open(cfg)
	if err != nil {
		t.Fatalf("open with etcd down: %v", err)
	}
	defer n.Close()
	cl, err := client.New([]string{n.GRPCAddr()}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	enqueueN(t, cl, "q", 3)
	t.Logf("served 3 enqueues %s after start with etcd unreachable", time.Since(t0))
	if n.EtcdRegistered() {
		t.Fatal("registered with no etcd")
	}
}

func fetchReq(q string, max int32, wait time.Duration, worker string) *raftqv1.FetchRequest {
	return &raftqv1.FetchRequest{Queues: []string{q}, MaxJobs: max, MaxWait: durationpb.New(wait), WorkerId: worker}
}
