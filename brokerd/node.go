// Package brokerd is one raftq broker node: Raft (hashicorp/raft over TCP,
// raft-boltdb/v2 with fsync, file snapshots) around the job-queue FSM, the
// leader-only dispatcher, and the gRPC API. cmd/brokerd wraps it in a
// process, with the admin HTTP API and etcd around it (brokerd/daemon);
// tests run several in one process over loopback TCP.
package brokerd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/internal/apierr"
	"github.com/raftq/raftq/internal/auth"
	"github.com/raftq/raftq/internal/dispatch"
	"github.com/raftq/raftq/internal/limits"
	"github.com/raftq/raftq/internal/proposer"
	"github.com/raftq/raftq/internal/raftlayer"
	"github.com/raftq/raftq/internal/raftmux"
	"github.com/raftq/raftq/internal/tlsutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// LeaderHealthService is the gRPC health service name that only the Raft
// leader (after its Barrier) reports as SERVING. Load balancers such as
// Envoy health-check it to send broker traffic straight to the leader.
const LeaderHealthService = "raftq.v1.Broker.leader"

// BrokerHealthService is SERVING on every node that is a member of a
// cluster with a known leader (followers forward to it).
const BrokerHealthService = "raftq.v1.Broker"

// Node is one running broker.
type Node struct {
	cfg   Config
	log   *slog.Logger
	clock func() time.Time

	fsm    *fsm.FSM
	raft   *raft.Raft
	trans  *raft.NetworkTransport
	store  logStore
	prop   *proposer.Proposer
	health *health.Server
	grpc   *grpc.Server
	lis    net.Listener
	fwd    *forwarder

	metrics *nodeMetrics     // Prometheus registry and instruments (metrics.go)
	schedm  *scheduleMetrics // periodic schedules' tick counters (schedule.go)
	disk    *diskMonitor     // free space of the data dir; refuses writes when full (diskspace.go)

	tls     *tlsutil.Source  // TLS material, re-read on change; nil without TLS (security.go)
	auth    *auth.Authorizer // tokens, roles, rate limits, audit; nil without auth (security.go)
	layer   *raftlayer.Layer // Raft's mutual-TLS stream layer; nil without TLS
	waiters *limits.PerConn  // parked Fetches per client connection
	caps    *caps            // per-principal and per-node caps (security.go)

	// groups are the Nodes of this host's Raft groups, in group order
	// ([0] is the host itself); nil with one group. mux is the Raft port
	// they share (host.go); nil with one group.
	groups atomic.Pointer[[]*Node]
	mux    *raftmux.Mux
	// groupsMu serializes changes of the groups this host runs (opening
	// and closing replicas: replicas.go).
	groupsMu sync.Mutex
	// stopping is set (under groupsMu) when the host begins to stop: no
	// replica opens after it took its list of groups to stop.
	stopping bool
	// rep is the host's replica placement (replicas.go); nil unless
	// Config.Replicas puts groups on a subset of the nodes.
	rep *replicaSet
	// remote marks a stand-in for a group another node runs: it has no
	// Raft, store or FSM, only what forwarding its calls needs
	// (replicas.go).
	remote bool
	// founding are the servers a replica placed by group 0 bootstraps
	// with when it has no state (replicas.go); nil otherwise.
	founding []raft.Server

	notifyCh chan bool
	// ctx is the node's life: Close and Kill cancel it (Close after a
	// leader's leadership transfer), and every background loop, and every
	// call a loop makes, derives from it, so shutdown never waits on a
	// peer. wg counts those loops.
	ctx      context.Context
	cancel   context.CancelFunc
	shutOnce sync.Once
	shutErr  error
	wg       sync.WaitGroup

	// lead runs the leader duties (dispatcher, scheduler, disk hand-off,
	// leader health, AddLeaderDuty's) for each term (leadership.go).
	lead *leadership
	// checks is the last consistency check run as leader.
	checks consistency
	rfsm   raft.FSM // the FSM as Raft sees it (Testing.WrapFSM)

	mu   sync.Mutex
	disp *dispatch.Dispatcher // the term's dispatcher; nil while not leader ready

	// announceMu serializes announce's Join with Leave: once leaving is
	// set, no announce can (re-)add this node after its removal
	// (membership.go).
	announceMu sync.Mutex
	leaving    bool
}

// Open starts a node: it opens (or creates) the data dir, starts Raft,
// bootstraps or joins when the data dir is fresh, and serves gRPC. A data dir
// that holds Raft state is never bootstrapped again.
func Open(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	clock := time.Now
	if cfg.Testing != nil && cfg.Testing.Clock != nil {
		clock = cfg.Testing.Clock
	}
	n := &Node{
		cfg:      cfg,
		log:      cfg.Logger.With("node", cfg.NodeID),
		clock:    clock,
		notifyCh: make(chan bool, 16),
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if err := checkGroupCount(cfg.DataDir, cfg.Groups); err != nil {
		return nil, err
	}
	// The FSM's store first: everything else reads it.
	if err := n.openFSM(); err != nil {
		return nil, err
	}
	// Metrics first: the Raft metrics bridge must be installed before Raft
	// starts, and serve() instruments the gRPC server.
	n.metrics = newNodeMetrics(n)
	n.schedm = newScheduleMetrics(n.metrics.per)
	// Free space before Raft: its stores report their write errors to it,
	// and a node starting on a full disk refuses writes from the start.
	n.disk = newDiskMonitor(n)
	n.lead = newLeadership(n)
	// TLS material and the authorizer before anything listens: Raft's
	// transport and the gRPC server are built with them (security.go).
	if err := n.openSecurity(); err != nil {
		n.cancel()
		n.closeStores()
		return nil, err
	}
	if cfg.placed() {
		n.rep = newReplicaSet(n)
	}
	if n.multi() {
		if err := n.openMux(); err != nil {
			n.cancel()
			n.closeStores()
			return nil, err
		}
	}
	if err := n.openRaft(); err != nil {
		n.cancel()
		n.closeStores()
		n.closeMux()
		return nil, err
	}
	if err := n.listen(); err != nil {
		n.cancel()
		n.raft.Shutdown()
		n.closeStores()
		n.closeMux()
		return nil, err
	}
	if n.multi() {
		// The other groups before the server starts: it routes to them.
		if err := n.openGroups(); err != nil {
			n.grpc = nil
			_ = n.lis.Close()
			_ = n.Kill()
			return nil, err
		}
	}
	n.serve()
	n.startDisk()
	n.wg.Add(2)
	go n.lead.watch()
	go n.announce()
	if n.multi() {
		n.wg.Add(2)
		go n.balanceLeaders()
		go n.driveMoves()
	}
	if n.rep != nil {
		n.rep.run()
	}
	if len(cfg.Join) > 0 && !n.HasState() {
		n.wg.Add(1)
		go n.joinLoop()
	}
	n.metrics.watchRaft(n)
	return n, nil
}

func (n *Node) openRaft() error {
	cfg := n.cfg
	store, logPath, snaps, hlog, err := openStores(cfg.DataDir, cfg.NodeID, cfg.LogStore, cfg.WALSegmentSize, n.log)
	if err != nil {
		return err
	}
	n.store = store
	var adv net.Addr
	if cfg.RaftAdvertise != "" {
		if adv, err = net.ResolveTCPAddr("tcp", cfg.RaftAdvertise); err != nil {
			return fmt.Errorf("raft advertise %q: %w", cfg.RaftAdvertise, err)
		}
	}
	var trans *raft.NetworkTransport
	// started is Raft once NewRaft returned: the layer's dialer reads the
	// configuration through it (Raft's goroutines may dial before n.raft
	// is set, hence the atomic).
	var started atomic.Pointer[raft.Raft]
	if n.tls != nil {
		// Mutual TLS: only peers with a node certificate from the
		// cluster's CA (auth.node_names, the node URI) can send or receive
		// Raft traffic, and the peer dialled must be the node the Raft
		// configuration places at that address.
		lcfg := raftlayer.Config{
			TLS: n.tls, LocalID: cfg.NodeID, NodeNames: cfg.Auth.NodeNames, Logger: n.log,
			PeerID: func(addr raft.ServerAddress) (raft.ServerID, bool) {
				if r := started.Load(); r != nil {
					return serverAt(r.GetConfiguration().Configuration(), addr)
				}
				return "", false
			},
			Member: func(id raft.ServerID) bool {
				r := started.Load()
				if r == nil {
					return true // Raft is not running yet: it reads nothing
				}
				c := r.GetConfiguration().Configuration()
				return len(c.Servers) == 0 || slices.ContainsFunc(c.Servers, func(s raft.Server) bool { return s.ID == id })
			},
		}
		var layer *raftlayer.Layer
		if n.mux != nil {
			// Several groups: TLS over this group's connections of the
			// shared port (the header that picks the group goes first,
			// in clear; it selects, it does not authenticate).
			ln, lerr := n.mux.Listener(cfg.group)
			if lerr != nil {
				return lerr
			}
			g := cfg.group
			layer, err = raftlayer.New(ln, n.mux.Addr(), func(address string, timeout time.Duration) (net.Conn, error) {
				return raftmux.Dial(address, g, timeout)
			}, lcfg)
		} else {
			layer, err = raftlayer.Listen(cfg.RaftAddr, cfg.RaftAdvertise, lcfg)
		}
		if err != nil {
			return fmt.Errorf("raft transport on %s: %w", cfg.RaftAddr, err)
		}
		n.layer = layer
		trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: layer, MaxPool: 3, Timeout: 10 * time.Second, Logger: hlog,
			MaxRPCsInFlight: raftRPCsInFlight})
	} else if n.mux != nil {
		layer, err := n.mux.StreamLayer(cfg.group)
		if err != nil {
			return err
		}
		trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: layer, MaxPool: 3, Timeout: 10 * time.Second, Logger: hlog,
			MaxRPCsInFlight: raftRPCsInFlight})
	} else {
		trans, err = raft.NewTCPTransportWithConfig(cfg.RaftAddr, adv, &raft.NetworkTransportConfig{MaxPool: 3, Timeout: 10 * time.Second, Logger: hlog,
			MaxRPCsInFlight: raftRPCsInFlight})
		if err != nil {
			return fmt.Errorf("raft transport on %s: %w", cfg.RaftAddr, err)
		}
	}
	n.trans = trans

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hlog
	rc.NotifyCh = n.notifyCh
	rc.BatchApplyCh = true
	// 64, not more: it sizes what a catching-up follower holds at once
	// (brokerd/DESIGN.md, stores and Raft).
	rc.MaxAppendEntries = 64
	// A removed node must not go on as a cluster of one.
	rc.ShutdownOnRemove = true
	rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = raftTimeouts(cfg)
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = cfg.SnapshotInterval
	}
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	// Raft writes its log through watchedStore, so the disk monitor sees
	// each write's error as the store returned it (ENOSPC), under the
	// in-memory cache of recent entries (logcache.go).
	watched := n.disk.watchStore(store, logPath)
	logs := newLogCache(watched)
	// The FSM keeps its state on disk with the index it was applied up to,
	// so Raft must not restore a snapshot into it at start: it replays
	// only the entries after the store's index. A store behind the latest
	// snapshot gets that snapshot first (reconcileFSM).
	rc.NoSnapshotRestoreOnStart = true
	if err := n.reconcileFSM(logs, snaps); err != nil {
		return err
	}
	existing, err := raft.HasExistingState(logs, store, snaps)
	if err != nil {
		return fmt.Errorf("read raft state: %w", err)
	}
	placed := cfg.host != nil && cfg.host.rep != nil // a replica group 0 places
	if !existing && placed && len(n.founding) > 0 {
		// The founding members of a group placed by group 0 each
		// bootstrap with the same servers, as --peers does.
		if err := raft.BootstrapCluster(rc, logs, store, snaps, trans, raft.Configuration{Servers: n.founding}); err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
		n.log.Info("bootstrapped new cluster", "peers", len(n.founding))
	} else if !existing && !placed && cfg.BootstrapExpect > 0 && len(cfg.Peers) > 0 {
		var servers []raft.Server
		for _, p := range cfg.Peers {
			servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.RaftAddr)})
		}
		// Every peer bootstraps with the same configuration; hashicorp/raft
		// treats identical bootstraps as one cluster.
		if err := raft.BootstrapCluster(rc, logs, store, snaps, trans, raft.Configuration{Servers: servers}); err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
		n.log.Info("bootstrapped new cluster", "peers", len(servers))
	} else if existing {
		n.log.Info("restarting from existing raft state", "dir", cfg.DataDir)
	}
	n.rfsm = n.raftFSM()
	r, err := raft.NewRaft(rc, n.rfsm, logs, watched, snaps, trans)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	n.raft = r
	started.Store(r)
	n.prop = proposer.New(r, proposer.Options{Clock: n.clock, Gate: n.disk.gate})
	return nil
}

// raftRPCsInFlight turns hashicorp/raft's pipelined replication off (1:
// one AppendEntries at a time per follower). With pipelining, a follower
// that answers an append with failure (its log store refused the write: a
// full disk) can deadlock the leader's replication to it for good —
// pipelineDecode returns, decodeResponses blocks on doneCh, the send loop
// blocks on inprogressCh (hashicorp/raft#612; Grafana Pyroscope turned it
// off for the same hang) — and the follower never catches up once space
// returns. hashicorp/raft measured pipelining to gain little with batching
// (hashicorp/raft#541); our entries are batched by the proposer.
const raftRPCsInFlight = 1

// serverAt is the id of the server at addr in c.
func serverAt(c raft.Configuration, addr raft.ServerAddress) (raft.ServerID, bool) {
	for _, s := range c.Servers {
		if s.Address == addr {
			return s.ID, true
		}
	}
	return "", false
}

// fsmFile is the FSM's store in the data dir.
const fsmFile = "fsm.db"

// openFSM opens the FSM's store in the data dir. A store that cannot be
// trusted stops the node with an error that names the file and says what
// to do; it is never silently replaced by an empty one.
func (n *Node) openFSM() error {
	if err := privateDataDir(n.cfg.DataDir); err != nil {
		return err
	}
	f, err := fsm.Open(filepath.Join(n.cfg.DataDir, fsmFile), fsm.Options{})
	if err != nil {
		return err
	}
	n.fsm = f
	return nil
}

// reconcileFSM makes the FSM's store agree with the Raft log before Raft
// starts. Raft will replay the entries after the latest snapshot's index,
// and the store skips those it already holds. A store behind that
// snapshot (a crash before the store reached the disk, a deleted fsm.db,
// or a data dir from before the store existed) may need entries the log
// has compacted away, so the snapshot is restored into it first. A store
// ahead of everything this node's log holds belongs to another log and is
// refused.
func (n *Node) reconcileFSM(logs raft.LogStore, snaps raft.SnapshotStore) error {
	applied := n.fsm.LastIndex()
	metas, err := snaps.List()
	if err != nil {
		return fmt.Errorf("snapshot store: %w", err)
	}
	lastLog, err := logs.LastIndex()
	if err != nil {
		return fmt.Errorf("read raft log: %w", err)
	}
	var snapIndex uint64
	if len(metas) > 0 {
		snapIndex = metas[0].Index
	}
	if applied > max(lastLog, snapIndex) {
		return fmt.Errorf("fsm store %s is at log index %d, but this node's Raft log and snapshots end at %d: "+
			"it was not written from this log; delete it and restart (the node then rebuilds it from its snapshot and log)",
			n.fsm.Path(), applied, max(lastLog, snapIndex))
	}
	if snapIndex <= applied {
		if applied > 0 {
			n.log.Info("fsm store reopened", "applied_index", applied, "snapshot_index", snapIndex)
		}
		return nil
	}
	start := time.Now()
	_, rc, err := snaps.Open(metas[0].ID)
	if err != nil {
		return fmt.Errorf("open snapshot %s to rebuild the fsm store (at index %d): %w", metas[0].ID, applied, err)
	}
	if err := n.fsm.Restore(rc); err != nil {
		return fmt.Errorf("restore snapshot %s into the fsm store %s: %w", metas[0].ID, n.fsm.Path(), err)
	}
	n.log.Warn("fsm store was behind the latest snapshot; restored it", "store_index", applied,
		"snapshot", metas[0].ID, "snapshot_index", snapIndex, "took", time.Since(start))
	return nil
}

// listen binds the gRPC port and makes the health service (a host's other
// groups share both).
func (n *Node) listen() error {
	lis, err := net.Listen("tcp", n.cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("grpc listen %s: %w", n.cfg.GRPCAddr, err)
	}
	lis = n.limitListener(lis)
	n.lis = lis
	if n.cfg.GRPCAdvertise == "" {
		n.cfg.GRPCAdvertise = lis.Addr().String()
	}
	n.fwd = newForwarder(n)
	n.health = health.NewServer()
	n.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	n.health.SetServingStatus(BrokerHealthService, healthpb.HealthCheckResponse_SERVING)
	n.health.SetServingStatus(LeaderHealthService, healthpb.HealthCheckResponse_NOT_SERVING)
	for g := 0; n.multi() && g < n.cfg.Groups; g++ {
		n.health.SetServingStatus(GroupLeaderHealthService(uint32(g)), healthpb.HealthCheckResponse_NOT_SERVING)
	}
	return nil
}

// serve starts the gRPC server on the port listen bound.
func (n *Node) serve() {
	lis := n.lis
	// Interceptors run in order: metrics (they count refusals too), auth
	// (security.go; its tap has already authenticated and rate limited
	// the caller before the request was read), then the deadline cap.
	opts := []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.ChainUnaryInterceptor(n.metrics.grpc.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(n.metrics.grpc.StreamServerInterceptor()),
	}
	opts = append(opts, n.grpcLimits()...)
	opts = append(opts, n.grpcSecurity()...)
	opts = append(opts, grpc.ChainUnaryInterceptor(limits.Deadline(n.requestDeadline)))
	opts = append(opts, n.testingInterceptors()...) // none in production
	n.grpc = grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(n.grpc, n.health)
	reflection.Register(n.grpc)
	if n.multi() {
		// Each call goes to the group it is for (router.go).
		r := &router{h: n}
		raftqv1.RegisterBrokerServer(n.grpc, &brokerRouter{brokerService: &brokerService{n: n}, r: r})
		raftqv1.RegisterAdminServer(n.grpc, &adminRouter{adminService: &adminService{n: n}, r: r})
		raftqv1.RegisterClusterServer(n.grpc, &clusterRouter{clusterService: &clusterService{n: n}, r: r})
		raftqv1.RegisterSchedulesServer(n.grpc, &scheduleRouter{scheduleService: &scheduleService{n: n}, r: r})
	} else {
		raftqv1.RegisterBrokerServer(n.grpc, &brokerService{n: n})
		raftqv1.RegisterAdminServer(n.grpc, &adminService{n: n})
		raftqv1.RegisterClusterServer(n.grpc, &clusterService{n: n})
		raftqv1.RegisterSchedulesServer(n.grpc, &scheduleService{n: n})
	}
	n.serveXDS() // nothing unless Config.XDS (xds.go)
	n.metrics.grpc.InitializeMetrics(n.grpc)
	go func() {
		if err := n.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			n.log.Error("grpc serve", "err", err)
		}
	}()
}

// dispatcher returns the current term's dispatcher, waiting up to wait for
// a new leader to finish its Barrier.
func (n *Node) dispatcher(ctx context.Context, wait time.Duration) (*dispatch.Dispatcher, error) {
	deadline := time.Now().Add(wait)
	for {
		n.mu.Lock()
		d := n.disp
		n.mu.Unlock()
		if d != nil {
			return d, nil
		}
		if n.raft.State() != raft.Leader || time.Now().After(deadline) {
			return nil, apierr.ErrNotLeader
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// leader returns the leader's id and gRPC address as this node knows them.
func (n *Node) leader() (id, grpcAddr string) {
	if n.remote {
		return n.cfg.host.rep.remoteLeader(n.cfg.group)
	}
	_, lid := n.raft.LeaderWithID()
	id = string(lid)
	if id == "" {
		return "", ""
	}
	if id == n.cfg.NodeID {
		return id, n.cfg.GRPCAdvertise
	}
	for _, m := range n.fsm.Nodes() {
		if m.NodeID == id {
			return id, m.GRPCAddr
		}
	}
	return id, ""
}

// isLeader is a cheap local check; writes are still fenced by Raft itself.
func (n *Node) isLeader() bool { return n.raft.State() == raft.Leader }

// readBarrier makes a following read of the local FSM linearizable. A
// ready leader's FSM already holds every write that was acknowledged before
// the read began: its own writes are acknowledged only after they are
// applied here, and earlier leaders' writes were applied before its Barrier
// finished. What is left is to make sure this node has not been deposed by
// a leader that acknowledged writes it has not seen: VerifyLeader asks a
// quorum. (Waiting on CommitIndex instead would hang: barrier and no-op
// entries advance it without ever reaching the FSM.)
func (n *Node) readBarrier(ctx context.Context) error {
	if !n.lead.ready.Load() {
		return apierr.ErrNotLeader
	}
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return apierr.ErrNotLeader
	}
	return ctx.Err()
}

// FSM exposes the node's state machine (read-only use: tests, admin).
func (n *Node) FSM() *fsm.FSM { return n.fsm }

// Raft exposes the node's Raft instance (tests, admin).
func (n *Node) Raft() *raft.Raft { return n.raft }

// ID is the node's Raft server id.
func (n *Node) ID() string { return n.cfg.NodeID }

// GRPCAddr is the address clients dial.
func (n *Node) GRPCAddr() string { return n.cfg.GRPCAdvertise }

// RaftAddr is the address peers dial.
func (n *Node) RaftAddr() string { return n.raftAddr() }

// IsLeaderReady reports whether this node leads and has finished its
// leadership set-up (Barrier, then every built-in leader duty).
func (n *Node) IsLeaderReady() bool { return n.lead.ready.Load() }

// Close shuts the node down gracefully: a leader first hands leadership to
// a peer so the cluster does not wait an election timeout, parked fetches
// are answered with not-leader so workers move on, in-flight RPCs finish,
// then Raft and the stores close. The reverse of Open.
func (n *Node) Close() error { return n.shutdown(true) }

// Kill stops the node abruptly, as close to a crash as a process can get
// while staying alive: no leadership transfer, RPCs cut, Raft stopped.
// Everything acknowledged is already fsynced, so this loses nothing that a
// real crash would not. Tests use it; real crashes are tested with real
// processes.
func (n *Node) Kill() error { return n.shutdown(false) }

// shutdown runs once; later calls return the first one's error.
func (n *Node) shutdown(graceful bool) error {
	n.shutOnce.Do(func() { n.shutErr = n.stop(graceful) })
	return n.shutErr
}

func (n *Node) stop(graceful bool) error {
	// A host stops its other groups first (each hands its leadership on
	// while the host's gRPC server still answers for it), and its shared
	// Raft port last.
	var gerr error
	n.groupsMu.Lock()
	n.stopping = true
	gs := n.groupList()
	n.groupsMu.Unlock()
	for i := len(gs) - 1; i > 0; i-- {
		if gs[i] == nil {
			continue
		}
		if err := gs[i].shutdown(graceful); err != nil && gerr == nil {
			gerr = fmt.Errorf("group %d: %w", i, err)
		}
	}
	err := n.stopGroup(graceful)
	if n.rep != nil {
		n.rep.closeStubs()
	}
	n.closeMux()
	if err == nil {
		err = gerr
	}
	return err
}

// closeMux closes a host's shared Raft port.
func (n *Node) closeMux() {
	if n.mux != nil && n.cfg.host == nil {
		_ = n.mux.Close()
	}
}

// stopGroup stops this Node's own group.
func (n *Node) stopGroup(graceful bool) error {
	// A leader hands over first (Raft bounds the transfer), while its
	// streams still run: the NOT_LEADER they end with then names the new
	// leader.
	if graceful && n.raft.State() == raft.Leader && n.otherVoters() > 0 {
		if err := n.raft.LeadershipTransfer().Error(); err != nil {
			n.log.Warn("leadership transfer before shutdown failed", "err", err)
		}
	}
	// Every background loop and stream ends now, and any call a loop has
	// in flight to another node (announce, join) is cancelled: nothing
	// below waits on an unreachable peer. The leader duties are revoked
	// (parked fetches get NOT_LEADER) before gRPC drains.
	n.cancel()
	n.lead.revoke()
	if n.grpc == nil {
		// A group of a host: the host's server is stopped by the host.
	} else if graceful {
		done := make(chan struct{})
		go func() { n.grpc.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			n.grpc.Stop()
		}
	} else {
		n.grpc.Stop()
	}
	// An FSM waiting for disk space would hold the proposer's and Raft's
	// shutdown forever: make it give up (fsm.StopWaitingForSpace; the log
	// replays what it did not apply at the next start).
	n.fsm.StopWaitingForSpace()
	if s, ok := n.rfsm.(interface{ StopWaitingForSpace() }); ok {
		s.StopWaitingForSpace() // a Testing.WrapFSM wrapper
	}
	n.prop.Stop()
	err := n.raft.Shutdown().Error()
	n.wg.Wait()
	n.fwd.close()
	if cerr := n.trans.Close(); cerr != nil && err == nil {
		err = cerr
	}
	n.closeStores()
	return err
}

func (n *Node) closeStores() {
	if n.fsm != nil {
		if err := n.fsm.Close(); err != nil {
			n.log.Error("close fsm store", "path", n.fsm.Path(), "err", err)
		}
	}
	if n.store != nil {
		_ = n.store.Close()
	}
	if n.trans != nil && n.raft == nil {
		_ = n.trans.Close()
	}
}

// otherVoters counts the voters besides this node: a leadership transfer
// needs one to hand over to.
func (n *Node) otherVoters() int {
	cf := n.raft.GetConfiguration()
	if cf.Error() != nil {
		return 0
	}
	c := 0
	for _, s := range cf.Configuration().Servers {
		if s.Suffrage == raft.Voter && s.ID != raft.ServerID(n.cfg.NodeID) {
			c++
		}
	}
	return c
}
