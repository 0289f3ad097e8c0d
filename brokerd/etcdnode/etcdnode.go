// Package etcdnode is a broker node's use of etcd (see DESIGN.md):
// registration and the leader hint (discovery), live configuration (per-
// queue defaults and dispatch limits, the log level), and forming the
// cluster through etcd (a bootstrap election, or joining through the
// registered brokers). None of it is on the data path: a node whose etcd is
// unreachable serves jobs all the same. brokerd/daemon wires an Agent
// around a *brokerd.Node; the node knows nothing of etcd.
package etcdnode

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/discovery"
	"github.com/raftq/raftq/internal/dispatch"
	"github.com/raftq/raftq/internal/liveconfig"
)

// Config says how a node uses etcd. With no Endpoints (and no Client)
// the node does not use etcd at all.
type Config struct {
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

// Enabled reports whether the node uses etcd at all.
func (e Config) Enabled() bool { return len(e.Endpoints) > 0 || e.Client != nil }

func (e Config) prefix() string {
	if e.Prefix == "" {
		return discovery.DefaultPrefix
	}
	return e.Prefix
}

// Validate reports what is wrong with the etcd settings.
func (e Config) Validate() error {
	if !e.Enabled() {
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

// Agent is a node's etcd machinery. Open creates it (client, live config)
// before the node starts Raft; Start completes it (registration, leader
// hint, bootstrap or join) once the node serves; Stop ends it before the
// node closes.
type Agent struct {
	cfg    Config
	opts   Options
	log    *slog.Logger
	cli    *clientv3.Client
	ownCli bool
	prefix string
	live   *liveconfig.Watcher
	base   slog.Level // the node's own log level, restored when live config drops its own

	// Set by Start.
	n    *brokerd.Node
	boot Bootstrap
	reg  *discovery.Registration

	// ctx is the agent's life: Stop cancels it, and every loop and etcd
	// call derives from it. wg counts the loops.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// removeHint removes the leader-hint duty from the node (Stop);
	// removeMirror the placement mirror's.
	removeHint, removeMirror func()
	stopped                  bool
}

// Options are what an Agent needs from the node's configuration.
type Options struct {
	// Limits are the node's: live queue settings its API would refuse
	// are refused (and logged), so a bad value cannot make every enqueue
	// fail.
	Limits brokerd.Limits
	// LogLevel, when set, is the level the node's logger filters on; the
	// live log_level changes it (and its removal restores it).
	LogLevel *slog.LevelVar
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// Bootstrap is how a fresh node forms or finds its cluster through etcd.
type Bootstrap struct {
	// Expect is bootstrap.expect: with it, a fresh node without Static
	// membership forms a cluster of this many voters through the
	// bootstrap election; 0 joins the registered brokers instead.
	Expect int
	// Static: the node bootstraps from static peers or joins listed
	// addresses by itself; etcd only registers it.
	Static bool
	// CAFile is the node's TLS CA file ("" without TLS): the cluster
	// record names its fingerprint, and a record for another CA is
	// refused.
	CAFile string
}

// Open connects to etcd and starts following live config. It never waits
// for etcd: the client dials in the background.
func Open(cfg Config, opts Options) (*Agent, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	e := &Agent{cfg: cfg, opts: opts, log: opts.Logger, cli: cfg.Client, prefix: cfg.prefix()}
	if e.cli == nil {
		dt := cfg.DialTimeout
		if dt <= 0 {
			dt = 5 * time.Second
		}
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:            cfg.Endpoints,
			DialTimeout:          dt,
			DialKeepAliveTime:    5 * time.Second,
			DialKeepAliveTimeout: 5 * time.Second,
			Username:             cfg.Username,
			Password:             cfg.Password,
			TLS:                  cfg.TLS,
			Logger:               zap.NewNop(),
		})
		if err != nil {
			return nil, fmt.Errorf("etcd client: %w", err)
		}
		e.cli, e.ownCli = cli, true
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	if opts.LogLevel != nil {
		e.base = opts.LogLevel.Level()
	}
	e.live = liveconfig.Start(e.cli, e.prefix, liveconfig.Options{
		Check: func(c liveconfig.QueueConfig) error {
			return opts.Limits.CheckQueueDefaults(time.Duration(c.LeaseDuration), c.MaxAttempts)
		},
		Logger: e.log,
		OnLogLevel: func(l slog.Level, set bool) {
			if opts.LogLevel == nil {
				return
			}
			if !set {
				l = e.base
			}
			opts.LogLevel.Set(l)
			e.log.Info("log level changed by live config", "level", l.String())
		},
	})
	return e, nil
}

// Start registers the node, starts the leader hint, and, on a fresh data
// dir without static membership, bootstraps or joins through etcd. The
// node must be serving (its addresses are registered).
func (e *Agent) Start(n *brokerd.Node, boot Bootstrap) error {
	e.n, e.boot = n, boot
	reg, err := discovery.Register(e.cli, e.prefix, discovery.ServiceBrokers, discovery.Instance{
		ID:   n.ID(),
		Addr: n.GRPCAddr(),
		Meta: map[string]string{discovery.MetaRaftAddr: n.RaftAddr()},
	}, discovery.RegisterOptions{TTL: e.cfg.LeaseTTL, Logger: e.log})
	if err != nil {
		return err
	}
	e.reg = reg
	e.removeHint = n.AddLeaderDuty("etcd leader hint", e.leaderHint)
	e.removeMirror = n.AddLeaderDuty("etcd placement mirror", e.mirrorPlacements)
	if !n.HasState() && !boot.Static {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			if boot.Expect > 0 {
				e.etcdBootstrap()
			} else {
				e.etcdJoin()
			}
		}()
	}
	return nil
}

// Stop stops the agent: its loops end and the client closes. graceful
// revokes the registration (the key and the leader hint go away at once);
// otherwise they are left to expire, as after a crash.
func (e *Agent) Stop(graceful bool) {
	if e.stopped {
		return
	}
	e.stopped = true
	e.cancel()
	if e.removeHint != nil {
		e.removeHint() // the hint duty ends (its etcd calls end with e.ctx)
	}
	if e.removeMirror != nil {
		e.removeMirror()
	}
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

// Queues is live config as the node's per-queue settings
// (brokerd.Config.Queues): job defaults per queue and the dispatcher's
// caps and rates.
func (e *Agent) Queues() brokerd.QueueSettings { return liveQueues{e.live} }

type liveQueues struct{ w *liveconfig.Watcher }

// QueueDefaults are live config's fields (the queue's own, then the
// cluster-wide defaults) over the node's configured ones.
func (l liveQueues) QueueDefaults(q string, d brokerd.Defaults) brokerd.Defaults {
	c := l.w.Queue(q)
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

func (l liveQueues) QueueLimit(q string) dispatch.QueueLimit {
	c := l.w.Queue(q)
	return dispatch.QueueLimit{MaxInFlight: c.MaxInFlight, RatePerSec: c.RatePerSec, Burst: c.Burst,
		MaxInFlightPerKey: c.MaxInFlightPerKey, RatePerKey: c.RatePerKey}
}

func (l liveQueues) Changed() <-chan struct{} { return l.w.Changed() }

// LiveConfig returns the live settings the node currently applies.
func (e *Agent) LiveConfig() *liveconfig.Snapshot { return e.live.Snapshot() }

// Registered reports whether the node's registration is currently
// written in etcd (under a live lease).
func (e *Agent) Registered() bool {
	if e.reg == nil {
		return false
	}
	l, _ := e.reg.Lease()
	return l != 0
}

// leaderHint is a leader duty of the node (brokerd.Node.AddLeaderDuty):
// for as long as this node's term lasts it keeps "<prefix>/leader/brokers"
// naming this node, written with the registration's lease so that it
// vanishes with the node, and re-written every 2s or when the lease
// changes (a hint lost while etcd was away comes back). When the term
// ends it removes the hint (one try, bounded by 2s and by the agent's
// life; a hint left behind names an older term, which readers and the
// next leader's write see, and goes with the lease).
func (e *Agent) leaderHint(termCtx context.Context) {
	ctx, cancel := context.WithCancel(termCtx)
	defer cancel()
	defer context.AfterFunc(e.ctx, cancel)()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var written bool
	var lastLease clientv3.LeaseID
	var lastCheck time.Time
	for {
		lease, _ := e.reg.Lease()
		if lease != 0 && (!written || lease != lastLease || time.Since(lastCheck) > 2*time.Second) {
			term, _ := strconv.ParseUint(e.n.Raft().Stats()["term"], 10, 64)
			pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
			ok, err := discovery.PutLeader(pctx, e.cli, e.prefix, discovery.ServiceBrokers, discovery.Leader{
				NodeID: e.n.ID(), GRPCAddr: e.n.GRPCAddr(), RaftAddr: e.n.RaftAddr(), Term: term,
			}, lease)
			pcancel()
			switch {
			case err != nil:
				e.log.Debug("leader hint not written", "err", err)
			default:
				if !ok {
					e.log.Debug("leader hint names a newer term; not overwriting")
				}
				written, lastLease, lastCheck = true, lease, time.Now()
			}
		}
		select {
		case <-ctx.Done():
			if written {
				dctx, dcancel := context.WithTimeout(e.ctx, 2*time.Second)
				if err := discovery.DeleteLeader(dctx, e.cli, e.prefix, discovery.ServiceBrokers, e.n.ID()); err != nil {
					e.log.Debug("leader hint not removed", "err", err)
				}
				dcancel()
			}
			return
		case <-t.C:
		}
	}
}

// mirrorPlacements copies the placement table (queues moved or
// partitioned, brokerd/movequeue.go) to etcd while this node leads group
// 0, one key per queue (discovery.PlacementKey), for discovery: tools and
// proxies read where a queue lives without a gRPC call. A key is written
// when its queue's record changes; the copy is advisory, and brokers route
// by their own table. A node running one group has nothing to mirror.
func (e *Agent) mirrorPlacements(termCtx context.Context) {
	ctx, cancel := context.WithCancel(termCtx)
	defer cancel()
	defer context.AfterFunc(e.ctx, cancel)()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	written := map[string]string{}
	for {
		for _, p := range e.n.Placements() {
			b, _ := json.Marshal(discovery.Placement{Queue: p.GetQueue(), Group: p.GetGroup(), FromGroup: p.GetFromGroup(),
				Phase: p.GetPhase(), Partitions: p.GetPartitions()})
			if written[p.GetQueue()] == string(b) {
				continue
			}
			pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := e.cli.Put(pctx, discovery.PlacementKey(e.prefix, p.GetQueue()), string(b))
			pcancel()
			if err != nil {
				e.log.Debug("placement not mirrored to etcd", "queue", p.GetQueue(), "err", err)
				continue
			}
			written[p.GetQueue()] = string(b)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
