package brokerd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftq/raftq/discovery"
	"github.com/raftq/raftq/internal/dispatch"
	"github.com/raftq/raftq/internal/liveconfig"
	"github.com/raftq/raftq/internal/nodeid"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// This file is brokerd's use of etcd (see DESIGN.md, "etcd"): registration
// and the leader hint (discovery), cluster bootstrap and join through etcd,
// and live configuration. None of it is on the data path: a node whose etcd
// is unreachable serves jobs all the same.

// EtcdConfig says how a node uses etcd. With no Endpoints (and no Client)
// the node does not use etcd at all.
type EtcdConfig struct {
	// Endpoints of the etcd cluster ("http://127.0.0.1:2379" or host:port).
	Endpoints []string
	// Prefix is the cluster prefix: every key this cluster uses lives
	// under it (default discovery.DefaultPrefix, "raftq").
	Prefix string
	// Username and Password, when set, authenticate to etcd.
	Username string
	Password string
	// DialTimeout bounds each connection attempt (default 5s).
	DialTimeout time.Duration
	// LeaseTTL is the registration lease's TTL (default 10s): a crashed
	// node's registration and leader hint disappear this long after it.
	LeaseTTL time.Duration
	// Client, when set, is used instead of dialing Endpoints (tests share
	// one); the node does not close it.
	Client *clientv3.Client
	// TLS, when set, is used for the connections to etcd (https
	// endpoints): the etcd servers are verified against its RootCAs and
	// its client certificate is presented (tlsutil.Source.ClientTLSConfig
	// re-reads it when it rotates).
	TLS *tls.Config
}

func (e EtcdConfig) enabled() bool { return len(e.Endpoints) > 0 || e.Client != nil }

func (e EtcdConfig) prefix() string {
	if e.Prefix == "" {
		return discovery.DefaultPrefix
	}
	return e.Prefix
}

// validate reports what is wrong with the etcd settings.
func (e EtcdConfig) validate() error {
	if !e.enabled() {
		return nil
	}
	if err := discovery.ValidatePrefix(e.prefix()); err != nil {
		return fmt.Errorf("etcd prefix: %w", err)
	}
	if e.LeaseTTL < 0 || (e.LeaseTTL > 0 && e.LeaseTTL < 2*time.Second) {
		return errors.New("etcd lease ttl: must be at least 2s")
	}
	return nil
}

// ClusterRecord is what the bootstrap winner writes, once, under
// "<prefix>/bootstrap/cluster": the identity and initial voters of the
// cluster. Every listed voter bootstraps Raft with exactly these servers
// (identical bootstraps form one cluster); everyone else joins.
//
// With TLS on, the record names the cluster's CA (CA, the SHA-256 of its
// certificates): a node refuses a record written for another CA, so a
// record copied from another cluster (or written by anyone but a node of
// this one) cannot make it bootstrap. It also refuses a record that
// fails ClusterRecord.Validate.
type ClusterRecord struct {
	ClusterID string `json:"cluster_id"`
	Voters    []Peer `json:"voters"`
	// By is the node that won the bootstrap election.
	By        string    `json:"by"`
	CreatedAt time.Time `json:"created_at"`
	// CA is caFingerprint of the winner's CA file ("" without TLS).
	CA string `json:"ca_sha256,omitempty"`
}

// maxRecordVoters bounds a record's voters: a Raft cluster of more
// initial voters is no deployment raftq supports.
const maxRecordVoters = 15

// Validate reports what makes rec unusable: no cluster id, no voters or
// too many, a voter without a valid id or host:port, a voter id or
// address listed twice, or a winner (By) that is not a voter.
func (rec ClusterRecord) Validate() error {
	if rec.ClusterID == "" || len(rec.ClusterID) > 64 {
		return errors.New("cluster_id: missing or longer than 64 bytes")
	}
	if len(rec.Voters) == 0 || len(rec.Voters) > maxRecordVoters {
		return fmt.Errorf("voters: %d listed, want 1 to %d", len(rec.Voters), maxRecordVoters)
	}
	ids, addrs := map[string]bool{}, map[string]bool{}
	for _, v := range rec.Voters {
		if !nodeid.ValidID(v.ID) || len(v.ID) > 128 {
			return fmt.Errorf("voter id %q is not a valid node id", v.ID)
		}
		if host, port, err := net.SplitHostPort(v.RaftAddr); err != nil || host == "" || port == "" {
			return fmt.Errorf("voter %s: raft address %q is not host:port", v.ID, v.RaftAddr)
		}
		if ids[v.ID] || addrs[v.RaftAddr] {
			return fmt.Errorf("voter %s (%s) listed twice", v.ID, v.RaftAddr)
		}
		ids[v.ID], addrs[v.RaftAddr] = true, true
	}
	if !ids[rec.By] {
		return fmt.Errorf("by: %q is not one of the voters", rec.By)
	}
	return nil
}

// checkRecord refuses a record this node must not act on: invalid, for
// another CA, naming this node at another Raft address, or (bootstrapping
// with bootstrap.expect) with another number of voters.
func (n *Node) checkRecord(rec ClusterRecord) error {
	if err := rec.Validate(); err != nil {
		return err
	}
	voter := false
	for _, v := range rec.Voters {
		if v.ID == n.cfg.NodeID {
			voter = true
			if v.RaftAddr != n.raftAddr() {
				return fmt.Errorf("names this node (%s) at raft address %s, but it listens at %s", v.ID, v.RaftAddr, n.raftAddr())
			}
		}
	}
	own := n.caFingerprint()
	switch {
	case rec.CA != "" && rec.CA != own:
		return fmt.Errorf("written for another cluster: its CA is %.16s…, this node's %.16s…", rec.CA, own)
	case voter && rec.CA != own:
		// Bootstrapping on a record without the CA would let whoever can
		// write etcd choose this node's first configuration.
		return errors.New("has no ca_sha256 but this node runs TLS: refusing to bootstrap from it")
	case voter && n.cfg.BootstrapExpect > 0 && len(rec.Voters) != n.cfg.BootstrapExpect:
		return fmt.Errorf("lists %d voters, bootstrap.expect is %d", len(rec.Voters), n.cfg.BootstrapExpect)
	}
	return nil
}

// caFingerprint is the hex SHA-256 of the DER certificates in the CA file
// (sorted, so a reordered bundle is the same CA), or "" without TLS or
// when the file cannot be read (TLS would not have started then).
func (n *Node) caFingerprint() string {
	if n.tls == nil {
		return ""
	}
	raw, err := os.ReadFile(n.tls.Files().CA)
	if err != nil {
		return ""
	}
	var ders [][]byte
	for {
		var b *pem.Block
		if b, raw = pem.Decode(raw); b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			ders = append(ders, b.Bytes)
		}
	}
	slices.SortFunc(ders, bytes.Compare)
	h := sha256.New()
	for _, d := range ders {
		h.Write(d)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ClusterKey is where the ClusterRecord of prefix lives.
func ClusterKey(prefix string) string { return prefix + "/bootstrap/cluster" }

func electionKey(prefix string) string     { return prefix + "/bootstrap/election" }
func doneKey(prefix, nodeID string) string { return prefix + "/bootstrap/done/" + nodeID }

// etcdState is a node's etcd machinery. Created by openEtcd (client, live
// config) before Raft starts, completed by startEtcd (registration,
// leader hint, bootstrap or join) once the node's addresses are known.
type etcdState struct {
	cli     *clientv3.Client
	ownCli  bool
	prefix  string
	live    *liveconfig.Watcher
	reg     *discovery.Registration
	base    slog.Level // the node's own log level, restored when live config drops its own
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	stopped bool
}

// openEtcd connects to etcd and starts following live config. It never
// waits for etcd: a client dials in the background.
func (n *Node) openEtcd() error {
	ec := n.cfg.Etcd
	if !ec.enabled() {
		return nil
	}
	e := &etcdState{cli: ec.Client, prefix: ec.prefix()}
	if e.cli == nil {
		dt := ec.DialTimeout
		if dt <= 0 {
			dt = 5 * time.Second
		}
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:            ec.Endpoints,
			DialTimeout:          dt,
			DialKeepAliveTime:    5 * time.Second,
			DialKeepAliveTimeout: 5 * time.Second,
			Username:             ec.Username,
			Password:             ec.Password,
			TLS:                  ec.TLS,
			Logger:               zap.NewNop(),
		})
		if err != nil {
			return fmt.Errorf("etcd client: %w", err)
		}
		e.cli, e.ownCli = cli, true
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	if n.cfg.LogLevel != nil {
		e.base = n.cfg.LogLevel.Level()
	}
	e.live = liveconfig.Start(e.cli, e.prefix, liveconfig.Options{
		Check:  n.checkLive,
		Logger: n.log,
		OnLogLevel: func(l slog.Level, set bool) {
			if n.cfg.LogLevel == nil {
				return
			}
			if !set {
				l = e.base
			}
			n.cfg.LogLevel.Set(l)
			n.log.Info("log level changed by live config", "level", l.String())
		},
	})
	n.etcd = e
	return nil
}

// startEtcd registers the node, starts the leader hint, and, on a fresh
// data dir without static peers or join addresses, bootstraps or joins
// through etcd.
func (n *Node) startEtcd() error {
	e := n.etcd
	if e == nil {
		return nil
	}
	reg, err := discovery.Register(e.cli, e.prefix, discovery.ServiceBrokers, discovery.Instance{
		ID:   n.cfg.NodeID,
		Addr: n.cfg.GRPCAdvertise,
		Meta: map[string]string{discovery.MetaRaftAddr: n.raftAddr()},
	}, discovery.RegisterOptions{TTL: n.cfg.Etcd.LeaseTTL, Logger: n.log})
	if err != nil {
		return err
	}
	e.reg = reg
	e.wg.Add(1)
	go n.leaderHintLoop()
	if !n.hadState() && len(n.cfg.Peers) == 0 && len(n.cfg.Join) == 0 {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			if n.cfg.BootstrapExpect > 0 {
				n.etcdBootstrap()
			} else {
				n.etcdJoin()
			}
		}()
	}
	return nil
}

// stopEtcd stops the etcd machinery. graceful revokes the registration
// (the key and the leader hint go away at once); otherwise they are left
// to expire, as after a crash.
func (n *Node) stopEtcd(graceful bool) {
	e := n.etcd
	if e == nil || e.stopped {
		return
	}
	e.stopped = true
	e.cancel()
	if e.reg != nil {
		if graceful {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = e.reg.Close(ctx)
			cancel()
		} else {
			e.reg.Abandon()
		}
	}
	e.wg.Wait()
	e.live.Close()
	if e.ownCli {
		_ = e.cli.Close()
	}
}

// checkLive refuses live queue settings this node's API would refuse
// (so a bad value cannot make every enqueue fail).
func (n *Node) checkLive(c liveconfig.QueueConfig) error {
	lim := n.cfg.Limits
	if d := time.Duration(c.LeaseDuration); d != 0 && (d < lim.MinLeaseDuration || d > lim.MaxLeaseDuration) {
		return fmt.Errorf("lease_duration: must be between %s and %s", lim.MinLeaseDuration, lim.MaxLeaseDuration)
	}
	if c.MaxAttempts > lim.MaxAttempts {
		return fmt.Errorf("max_attempts: must be at most %d", lim.MaxAttempts)
	}
	return nil
}

// queueDefaults are the job defaults of queue q: live config's fields
// (the queue's own, then the cluster-wide defaults) over the node's
// configured Defaults.
func (n *Node) queueDefaults(q string) Defaults {
	d := n.cfg.Defaults
	if n.etcd == nil {
		return d
	}
	c := n.etcd.live.Queue(q)
	if c.LeaseDuration > 0 {
		d.LeaseDuration = time.Duration(c.LeaseDuration)
	}
	if c.MaxAttempts > 0 {
		d.MaxAttempts = c.MaxAttempts
	}
	if c.InitialBackoff > 0 {
		d.InitialBackoff = time.Duration(c.InitialBackoff)
	}
	if c.MaxBackoff > 0 {
		d.MaxBackoff = time.Duration(c.MaxBackoff)
	}
	if d.MaxBackoff < d.InitialBackoff {
		d.MaxBackoff = d.InitialBackoff
	}
	return d
}

// dispatchLimits is what the leader's dispatcher enforces per queue; nil
// without etcd.
func (n *Node) dispatchLimits() dispatch.Limits {
	if n.etcd == nil {
		return nil
	}
	return liveLimits{n.etcd.live}
}

type liveLimits struct{ w *liveconfig.Watcher }

func (l liveLimits) QueueLimit(q string) dispatch.QueueLimit {
	c := l.w.Queue(q)
	return dispatch.QueueLimit{MaxInFlight: c.MaxInFlight, RatePerSec: c.RatePerSec, Burst: c.Burst,
		MaxInFlightPerKey: c.MaxInFlightPerKey, RatePerKey: c.RatePerKey}
}

func (l liveLimits) Changed() <-chan struct{} { return l.w.Changed() }

// LiveConfig returns the live settings this node currently applies (nil
// without etcd). Tests and the admin API read it.
func (n *Node) LiveConfig() *liveconfig.Snapshot {
	if n.etcd == nil {
		return nil
	}
	return n.etcd.live.Snapshot()
}

// EtcdRegistered reports whether the node's registration is currently
// written in etcd (under a live lease).
func (n *Node) EtcdRegistered() bool {
	if n.etcd == nil || n.etcd.reg == nil {
		return false
	}
	l, _ := n.etcd.reg.Lease()
	return l != 0
}

// leaderHintLoop keeps "<prefix>/leader/brokers" naming this node while it
// is the ready leader, written with the registration's lease so that it
// vanishes with the node; a leader that steps down removes it. It re-checks
// every 2s, so a hint lost while etcd was away comes back.
func (n *Node) leaderHintLoop() {
	e := n.etcd
	defer e.wg.Done()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var wasLeader bool
	var lastLease clientv3.LeaseID
	var lastCheck time.Time
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
		}
		ready := n.leaderReady.Load()
		lease, _ := e.reg.Lease()
		switch {
		case ready && lease != 0 && (!wasLeader || lease != lastLease || time.Since(lastCheck) > 2*time.Second):
			var term uint64
			term, _ = strconv.ParseUint(n.raft.Stats()["term"], 10, 64)
			ctx, cancel := context.WithTimeout(e.ctx, 2*time.Second)
			ok, err := discovery.PutLeader(ctx, e.cli, e.prefix, discovery.ServiceBrokers, discovery.Leader{
				NodeID: n.cfg.NodeID, GRPCAddr: n.cfg.GRPCAdvertise, RaftAddr: n.raftAddr(), Term: term,
			}, lease)
			cancel()
			if err != nil {
				n.log.Debug("leader hint not written", "err", err)
				continue
			}
			if !ok {
				n.log.Debug("leader hint names a newer term; not overwriting")
			}
			wasLeader, lastLease, lastCheck = true, lease, time.Now()
		case !ready && wasLeader:
			ctx, cancel := context.WithTimeout(e.ctx, 2*time.Second)
			err := discovery.DeleteLeader(ctx, e.cli, e.prefix, discovery.ServiceBrokers, n.cfg.NodeID)
			cancel()
			if err == nil {
				wasLeader = false
			}
		}
	}
}

// etcdBootstrap forms the cluster with the other fresh nodes (see
// DESIGN.md): one node wins an etcd election, waits for BootstrapExpect
// registered brokers, and writes the ClusterRecord in a transaction that
// fails if one exists (or if it no longer leads the election). Every voter
// named in the record then bootstraps Raft with exactly those servers;
// nodes not named join through the registered brokers.
func (n *Node) etcdBootstrap() {
	e := n.etcd
	refused := ""
	for e.ctx.Err() == nil {
		rec, ok, err := n.readCluster()
		if err != nil {
			n.sleep(200 * time.Millisecond)
			continue
		}
		if ok {
			if err := n.checkRecord(rec); err != nil {
				// Logged once per record seen; the node waits for a record
				// it can trust (an operator deletes or fixes this one).
				if refused != rec.ClusterID+"|"+err.Error() {
					refused = rec.ClusterID + "|" + err.Error()
					n.log.Error("refusing the cluster record in etcd", "key", ClusterKey(e.prefix), "cluster", rec.ClusterID, "err", err)
				}
				n.sleep(time.Second)
				continue
			}
			n.adoptCluster(rec)
			return
		}
		err = n.campaignAndDecide()
		if errors.Is(err, errExistingCluster) {
			n.log.Warn("registered brokers already form a cluster but etcd has no cluster record; joining it")
			n.etcdJoin()
			return
		}
		if err != nil && e.ctx.Err() == nil {
			n.log.Debug("bootstrap election", "err", err)
			n.sleep(200 * time.Millisecond)
		}
	}
}

func (n *Node) sleep(d time.Duration) {
	select {
	case <-n.etcd.ctx.Done():
	case <-time.After(d):
	}
}

func (n *Node) readCluster() (ClusterRecord, bool, error) {
	e := n.etcd
	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
	defer cancel()
	g, err := e.cli.Get(ctx, ClusterKey(e.prefix))
	if err != nil || len(g.Kvs) == 0 {
		return ClusterRecord{}, false, err
	}
	var rec ClusterRecord
	if err := json.Unmarshal(g.Kvs[0].Value, &rec); err != nil {
		return rec, false, fmt.Errorf("cluster record %s: %w", ClusterKey(e.prefix), err)
	}
	return rec, true, nil
}

// adoptCluster acts on the cluster record: bootstrap if this node is one
// of its voters and never bootstrapped before, join otherwise.
func (n *Node) adoptCluster(rec ClusterRecord) {
	e := n.etcd
	voter := false
	for _, p := range rec.Voters {
		if p.ID == n.cfg.NodeID {
			voter = true
		}
	}
	if !voter {
		n.log.Info("cluster exists in etcd; joining", "cluster", rec.ClusterID)
		n.etcdJoin()
		return
	}
	// A voter that bootstrapped once and comes back without its Raft state
	// (a wiped disk) must not bootstrap again: the cluster has moved on.
	// It joins, and the leader brings it up to date.
	for e.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
		g, err := e.cli.Get(ctx, doneKey(e.prefix, n.cfg.NodeID), clientv3.WithCountOnly())
		cancel()
		if err != nil {
			n.sleep(200 * time.Millisecond)
			continue
		}
		if g.Count > 0 {
			n.log.Warn("this node bootstrapped before but has no Raft state; joining instead", "cluster", rec.ClusterID)
			n.etcdJoin()
			return
		}
		break
	}
	if e.ctx.Err() != nil {
		return
	}
	var servers []raft.Server
	for _, p := range rec.Voters {
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.RaftAddr)})
	}
	err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
	switch {
	case err == nil:
		n.log.Info("bootstrapped new cluster", "peers", len(servers), "cluster", rec.ClusterID, "via", "etcd")
	case errors.Is(err, raft.ErrCantBootstrap):
		// State appeared meanwhile (a leader already replicated to us).
	default:
		n.log.Error("bootstrap through etcd failed", "err", err)
		return
	}
	for e.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
		_, err := e.cli.Put(ctx, doneKey(e.prefix, n.cfg.NodeID), rec.ClusterID)
		cancel()
		if err == nil {
			return
		}
		n.sleep(200 * time.Millisecond)
	}
}

// campaignAndDecide campaigns for the right to bootstrap. The winner waits
// for enough registered brokers and writes the cluster record; anyone
// (winner or not) returns as soon as a record exists.
func (n *Node) campaignAndDecide() error {
	e := n.etcd
	ttl := int((n.cfg.Etcd.LeaseTTL + time.Second - 1) / time.Second)
	if ttl <= 0 {
		ttl = 10
	}
	sess, err := concurrency.NewSession(e.cli, concurrency.WithTTL(ttl), concurrency.WithContext(e.ctx))
	if err != nil {
		return err
	}
	defer sess.Close()
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	// Stop campaigning once someone wrote the record.
	go func() {
		w := e.cli.Watch(ctx, ClusterKey(e.prefix), clientv3.WithCreatedNotify())
		for wr := range w {
			if len(wr.Events) > 0 {
				cancel()
				return
			}
			if wr.Created {
				if _, ok, _ := n.readCluster(); ok {
					cancel()
					return
				}
			}
		}
	}()
	el := concurrency.NewElection(sess, electionKey(e.prefix))
	if err := el.Campaign(ctx, n.cfg.NodeID); err != nil {
		return err
	}
	defer func() {
		rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = el.Resign(rctx)
		rcancel()
	}()
	n.log.Info("won the bootstrap election; waiting for brokers", "expect", n.cfg.BootstrapExpect)
	for ctx.Err() == nil {
		voters, err := n.bootstrapVoters(ctx)
		if errors.Is(err, errExistingCluster) {
			return err
		}
		if err != nil || len(voters) < n.cfg.BootstrapExpect {
			n.sleep(100 * time.Millisecond)
			continue
		}
		rec := ClusterRecord{ClusterID: newClusterID(), Voters: voters, By: n.cfg.NodeID, CreatedAt: time.Now().UTC(), CA: n.caFingerprint()}
		b, _ := json.Marshal(rec)
		key := ClusterKey(e.prefix)
		tctx, tcancel := context.WithTimeout(ctx, 5*time.Second)
		t, err := e.cli.Txn(tctx).If(
			clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(el.Key()), "=", el.Rev()),
		).Then(clientv3.OpPut(key, string(b))).Commit()
		tcancel()
		if err != nil {
			return err
		}
		if t.Succeeded {
			ids := make([]string, len(voters))
			for i, v := range voters {
				ids[i] = v.ID
			}
			n.log.Info("wrote cluster record", "cluster", rec.ClusterID, "voters", ids)
		}
		return nil
	}
	return ctx.Err()
}

// errExistingCluster: a registered broker is already a member of a
// cluster, so there is nothing to bootstrap (the record was lost).
var errExistingCluster = errors.New("registered brokers already form a cluster")

// bootstrapVoters picks the initial voters among the registered brokers
// that answer and are still fresh (no Raft configuration): this node, then
// the others by id, BootstrapExpect in all. A registered broker that is
// already a member means a cluster exists without a record (etcd data
// lost, or the record deleted): errExistingCluster, never a second one.
func (n *Node) bootstrapVoters(ctx context.Context) ([]Peer, error) {
	e := n.etcd
	insts, err := discovery.Instances(ctx, e.cli, e.prefix, discovery.ServiceBrokers)
	if err != nil {
		return nil, err
	}
	voters := []Peer{{ID: n.cfg.NodeID, RaftAddr: n.raftAddr()}}
	for _, in := range insts {
		ra := in.Meta[discovery.MetaRaftAddr]
		if in.ID == n.cfg.NodeID || ra == "" {
			continue
		}
		c, err := n.fwd.conn(in.Addr)
		if err != nil {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := raftqv1.NewClusterClient(c).Status(sctx, &raftqv1.StatusRequest{})
		cancel()
		if err != nil {
			continue // not answering (yet): not a candidate this round
		}
		if len(st.Members) > 0 {
			return nil, errExistingCluster
		}
		if len(voters) < n.cfg.BootstrapExpect {
			voters = append(voters, Peer{ID: in.ID, RaftAddr: ra})
		}
	}
	sort.Slice(voters, func(i, j int) bool { return voters[i].ID < voters[j].ID })
	return voters, nil
}

func newClusterID() string {
	return strconv.FormatInt(time.Now().UnixNano(), 36)
}

// etcdJoin asks the registered brokers (leader first) to add this node
// until one does, or until the node has Raft state some other way.
func (n *Node) etcdJoin() {
	e := n.etcd
	req := &raftqv1.JoinRequest{NodeId: n.cfg.NodeID, RaftAddr: n.raftAddr(), GrpcAddr: n.cfg.GRPCAdvertise}
	backoff := 100 * time.Millisecond
	for e.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
		addrs, err := discovery.Brokers(ctx, e.cli, e.prefix)
		cancel()
		if err == nil {
			for _, addr := range addrs {
				if addr == n.cfg.GRPCAdvertise {
					continue
				}
				ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
				err := n.fwd.joinVia(ctx, addr, req)
				cancel()
				if err == nil {
					n.log.Info("joined cluster through etcd", "via", addr)
					return
				}
				n.log.Debug("join failed", "via", addr, "err", err)
			}
		}
		n.sleep(backoff)
		if backoff < 2*time.Second {
			backoff *= 2
		}
	}
}

// Leave removes this node from the cluster's voters, gracefully: a leader
// hands leadership to a peer first, then the leader removes this node. It
// returns once the removal is committed; the node should then be closed
// (it no longer announces itself, even if Leave fails). The cluster
// refuses to remove its last voter.
func (n *Node) Leave(ctx context.Context) error {
	// No announce may add this node back after its removal: stop them, and
	// wait for one in flight (announce holds announceMu while joining).
	n.announceMu.Lock()
	n.leaving = true
	n.announceMu.Unlock()
	if n.raft.State() == raft.Leader {
		if err := n.raft.LeadershipTransfer().Error(); err != nil {
			n.log.Warn("leadership transfer before leave failed", "err", err)
		}
	}
	cs := &clusterService{n: n}
	var last error
	for ctx.Err() == nil {
		_, err := cs.Remove(ctx, &raftqv1.RemoveRequest{NodeId: n.cfg.NodeID})
		if status.Code(err) == codes.NotFound {
			n.log.Info("leave: not a member (an earlier try was committed)", "err", err)
			err = nil // an earlier try was committed but its answer lost
		}
		if err != nil {
			n.log.Debug("leave: remove failed; retrying", "err", err)
		}
		if err == nil {
			n.log.Info("left the cluster")
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("leave: %w (last error: %v)", ctx.Err(), last)
}
