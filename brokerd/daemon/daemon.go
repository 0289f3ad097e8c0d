// Package daemon assembles a brokerd process around the node library: the
// node (brokerd: Raft, the gRPC API, forwarding, leadership), the admin
// HTTP API and dashboard (brokerd/admin), and etcd (brokerd/etcdnode:
// registration, the leader hint, live configuration, bootstrap through
// etcd). cmd/brokerd runs one; internal/testcluster runs several in one
// process. The parts know nothing of each other: this package is where
// they meet, as rqlite's cmd/rqlited wires HTTP and discovery around its
// store. See DESIGN.md.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/brokerd/admin"
	"github.com/raftq/raftq/brokerd/etcdnode"
	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/internal/dispatch"
	"github.com/raftq/raftq/internal/liveconfig"
)

// Config is a brokerd process's configuration: the node's, and what the
// process serves around it.
type Config struct {
	brokerd.Config

	// AdminAddr is the admin HTTP API and dashboard listen address (key
	// admin.addr, flag --admin-addr); empty serves none. Port 0 picks one.
	AdminAddr string
	// SvcdAddr is the results service's gRPC address; when set, the
	// dashboard and admin API show each job's attempt history from it.
	SvcdAddr string

	// Etcd, when it has endpoints, registers the node in etcd, keeps the
	// leader hint, applies live config, and lets BootstrapExpect without
	// Peers form the cluster through etcd (brokerd/etcdnode). Not on the
	// data path.
	Etcd etcdnode.Config
	// LogLevel, when set, is the level the node's Logger filters on; live
	// config's log_level changes it at run time.
	LogLevel *slog.LevelVar
}

// DefaultConfig returns a configuration with every default filled in (the
// node's, brokerd.DefaultConfig); the caller sets identity, addresses and
// cluster membership.
func DefaultConfig() Config { return Config{Config: brokerd.DefaultConfig()} }

// etcdBootstrap reports whether the cluster is formed through etcd:
// bootstrap.expect without static peers.
func (c *Config) etcdBootstrap() bool {
	return c.Etcd.Enabled() && c.BootstrapExpect > 0 && len(c.Peers) == 0
}

// node is the node's own configuration: with bootstrap through etcd, the
// node itself bootstraps nothing (etcdnode does, once the voters are
// known).
func (c *Config) node() brokerd.Config {
	nc := c.Config
	if c.etcdBootstrap() {
		nc.BootstrapExpect = 0
	}
	return nc
}

// Validate reports everything wrong with c, one error per problem
// (joined), each naming the setting; nil when c can open a daemon.
func (c *Config) Validate() error {
	var errs []error
	if err := c.Etcd.Validate(); err != nil {
		errs = append(errs, err)
	}
	nc := c.node()
	if err := nc.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Daemon is a running brokerd process: the node and what serves around it.
type Daemon struct {
	// Node is the broker node; its accessors (ID, GRPCAddr, Raft, FSM,
	// Leave...) are the daemon's. Close and Kill are the daemon's own:
	// they stop what serves around the node first.
	*brokerd.Node

	cfg   Config
	admin *admin.Server   // nil without AdminAddr
	etcd  *etcdnode.Agent // nil without Etcd
	// queues are the node's live queue settings (nil without them): the
	// admin API's queue pages show their limits.
	queues brokerd.QueueSettings

	stopOnce sync.Once
	stopErr  error
}

// Open starts a daemon. Order: etcd's client and live config first (the
// node may lead as soon as Raft starts, and its dispatcher reads the live
// limits; nothing waits for etcd), then the node (stores, Raft, gRPC),
// then registration, the leader hint and bootstrap or join through etcd
// (they need the node's addresses), then the admin API (it calls the
// node's gRPC API). Close stops them in reverse.
func Open(cfg Config) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	d := &Daemon{cfg: cfg}
	nc := cfg.node()
	if cfg.Etcd.Enabled() {
		a, err := etcdnode.Open(cfg.Etcd, etcdnode.Options{
			Limits:   cfg.Limits,
			LogLevel: cfg.LogLevel,
			Logger:   cfg.Logger.With("node", cfg.NodeID),
		})
		if err != nil {
			return nil, err
		}
		d.etcd = a
		nc.Queues = a.Queues()
	}
	d.queues = nc.Queues
	n, err := brokerd.Open(nc)
	if err != nil {
		if d.etcd != nil {
			d.etcd.Stop(false)
		}
		return nil, err
	}
	d.Node = n
	if err := d.start(); err != nil {
		_ = d.Kill()
		return nil, err
	}
	return d, nil
}

// start begins what needs the running node: etcd registration and
// bootstrap, then the admin API.
func (d *Daemon) start() error {
	cfg, n := d.cfg, d.Node
	if d.etcd != nil {
		boot := etcdnode.Bootstrap{
			Expect: cfg.BootstrapExpect,
			Static: len(cfg.Peers) > 0 || len(cfg.Join) > 0,
		}
		if cfg.TLS.Enabled() {
			boot.CAFile = cfg.TLS.CA
		}
		if err := d.etcd.Start(n, boot); err != nil {
			return fmt.Errorf("etcd: %w", err)
		}
	}
	if cfg.AdminAddr != "" {
		s, err := admin.New(admin.Config{
			Addr:        cfg.AdminAddr,
			Node:        n,
			Metrics:     n.Metrics(),
			FSMs:        groupFSMs(n),
			SvcdAddr:    cfg.SvcdAddr,
			Logger:      cfg.Logger.With("node", cfg.NodeID),
			TLS:         n.ServerTLS("http/1.1"),
			Credentials: n.PeerCredentials(),
			Auth:        n.Authorizer(),
			Limits:      d.limits(),
		})
		if err != nil {
			return err
		}
		d.admin = s
	}
	return nil
}

// limits returns the live queue limits for the admin API, as an untyped
// nil without live settings (a typed nil would look configured).
func (d *Daemon) limits() dispatch.Limits {
	if d.queues == nil {
		return nil
	}
	return d.queues
}

// Close shuts the daemon down gracefully: the admin API first (in-flight
// requests finish, up to 5 s; it calls the node), then the etcd
// registration is revoked (resolvers stop sending clients here at once),
// then the node closes (brokerd.Node.Close: leadership handed over,
// fetches answered, RPCs drained, Raft and stores closed).
func (d *Daemon) Close() error { return d.stop(true) }

// Kill stops the daemon abruptly, as close to a crash as a process can
// get while staying alive: the admin API is cut, the etcd registration is
// left to expire, and the node is killed (brokerd.Node.Kill). Tests use it.
func (d *Daemon) Kill() error { return d.stop(false) }

// stop runs once; later calls return the first one's error.
func (d *Daemon) stop(graceful bool) error {
	d.stopOnce.Do(func() { d.stopErr = d.shutdown(graceful) })
	return d.stopErr
}

func (d *Daemon) shutdown(graceful bool) error {
	if d.admin != nil {
		if graceful {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = d.admin.Shutdown(ctx)
			cancel()
		} else {
			_ = d.admin.Close()
		}
	}
	if d.etcd != nil {
		d.etcd.Stop(graceful)
	}
	if graceful {
		return d.Node.Close()
	}
	return d.Node.Kill()
}

// AdminAddr is the bound admin HTTP address ("" when the admin API is off).
func (d *Daemon) AdminAddr() string {
	if d.admin == nil {
		return ""
	}
	return d.admin.Addr()
}

// LiveConfig returns the live settings the node currently applies (nil
// without etcd). Tests and operators' tools read it.
func (d *Daemon) LiveConfig() *liveconfig.Snapshot {
	if d.etcd == nil {
		return nil
	}
	return d.etcd.LiveConfig()
}

// EtcdRegistered reports whether the node's registration is currently
// written in etcd (under a live lease).
func (d *Daemon) EtcdRegistered() bool { return d.etcd != nil && d.etcd.Registered() }

// groupFSMs is the FSM of every Raft group n runs, in group order: the
// admin server's queue rates and charts read them all.
func groupFSMs(n *brokerd.Node) []*fsm.FSM {
	var out []*fsm.FSM
	for _, g := range n.Groups() {
		if g == nil {
			continue // run on other nodes (replicas)
		}
		out = append(out, g.FSM())
	}
	return out
}
