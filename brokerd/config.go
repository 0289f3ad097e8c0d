package brokerd

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/raftq/raftq/internal/auth"
	"github.com/raftq/raftq/internal/limits"
	"github.com/raftq/raftq/internal/placement"
	"github.com/raftq/raftq/internal/tlsutil"
)

// Peer is one member of a statically bootstrapped cluster.
type Peer struct {
	ID       string
	RaftAddr string
}

// ParsePeers reads "id=host:port,id=host:port" (the --peers flag).
func ParsePeers(s string) ([]Peer, error) {
	var out []Peer
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		id, addr, ok := strings.Cut(part, "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("peer %q: want id=host:port", part)
		}
		if seen[id] {
			return nil, fmt.Errorf("peer id %q listed twice", id)
		}
		seen[id] = true
		out = append(out, Peer{ID: id, RaftAddr: addr})
	}
	return out, nil
}

// Defaults are the values a job gets when its producer leaves them unset.
type Defaults struct {
	LeaseDuration  time.Duration
	MaxAttempts    int32
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	DedupWindow    time.Duration
}

// Limits bound what one request may ask for, and what callers may hold
// at once (internal/limits.Broker, where its defaults live, so that tools
// such as brokerctl read them without linking the node).
type Limits = limits.Broker

// TLSConfig secures a node's network traffic. With Files set, Raft runs
// over mutual TLS (internal/raftlayer: only peers with a certificate from
// the CA can send or receive Raft traffic), the gRPC API and the admin
// HTTP API serve TLS, and calls to other nodes (forwarding, joining) and
// the admin API's calls to the node present the node's certificate. The
// files are re-read when they change: rotation needs no restart.
type TLSConfig struct {
	tlsutil.Files
	// RequireClientCert makes the gRPC and admin APIs accept only clients
	// with a certificate from the CA; otherwise one is optional there
	// (verified when given). Raft always requires one.
	RequireClientCert bool
}

// Config is one brokerd node's configuration.
type Config struct {
	// NodeID is this node's Raft server id; stable for the node's life.
	NodeID string
	// DataDir holds the Raft log (bolt), stable store and snapshots.
	DataDir string
	// RaftAddr is the Raft TCP bind address; RaftAdvertise, when set, is
	// what peers dial (defaults to the bound address).
	RaftAddr      string
	RaftAdvertise string
	// GRPCAddr is the client API listen address; GRPCAdvertise is what
	// other nodes and clients are told (defaults to the bound address).
	GRPCAddr      string
	GRPCAdvertise string

	// BootstrapExpect with Peers bootstraps a new cluster of exactly those
	// peers (this node among them) when the data dir holds no Raft state.
	// (Bootstrap through etcd, without Peers, is brokerd/daemon's: the
	// node itself then starts with no configuration and waits.)
	BootstrapExpect int
	Peers           []Peer
	// Join lists gRPC addresses of existing members to join through when
	// the data dir holds no Raft state and this node does not bootstrap.
	Join []string

	// Forward makes followers forward client calls to the leader instead of
	// answering NOT_LEADER with its address. Joins (a node's announce of
	// its address, a new member's join) go to the leader either way.
	Forward bool

	// Queues, when set, supplies per-queue job defaults and dispatch
	// limits that change at run time (live configuration in etcd, wired
	// by brokerd/daemon). Nil: Defaults for every queue, no per-queue
	// limits. It must be ready before Open: a node may lead at once.
	Queues QueueSettings

	// TLS, when its files are set, encrypts and authenticates Raft, gRPC
	// and admin HTTP traffic (off by default).
	TLS TLSConfig
	// Auth, when enabled (a tokens file or a JWT key), requires every
	// caller to present a bearer token whose roles and queues allow the
	// call (internal/auth); nodes identify to each other by certificate
	// (Auth.NodeNames), so auth needs TLS. Off by default. Its JobQueue
	// and Logger are set by the node.
	Auth auth.Config

	Defaults Defaults
	Limits   Limits

	// Retention is how long terminal jobs are kept before purge.
	Retention time.Duration

	// DiskMinFreeBytes is the free space kept in reserve on the data
	// dir's filesystem (disk.min_free_bytes; default
	// DefaultDiskMinFreeBytes). Below it the node refuses writes with
	// RESOURCE_EXHAUSTED and a leader hands leadership to a peer that can
	// write (diskspace.go); 0 keeps no reserve, so only failing writes
	// count. DiskCheckInterval is how often free space is checked
	// (default DefaultDiskCheckInterval).
	DiskMinFreeBytes  int64
	DiskCheckInterval time.Duration

	// Raft timing; zero takes DefaultHeartbeatTimeout,
	// DefaultElectionTimeout and a leader lease of
	// min(DefaultLeaderLeaseTimeout, heartbeat timeout).
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	SnapshotThreshold  uint64
	SnapshotInterval   time.Duration
	TrailingLogs       uint64
	// ConsistencyCheckInterval is how often a leader has every node hash
	// its state at one log index and compares the hashes (consistency.go);
	// 0: DefaultConsistencyCheckInterval, negative: never.
	ConsistencyCheckInterval time.Duration
	// LogStore is the Raft log's kind: LogStoreWAL, LogStoreBolt or
	// LogStoreAuto (empty: keep the data dir's, a WAL for a new one).
	LogStore string
	// WALSegmentSize is the size of a WAL log's segment files in bytes (0:
	// 64 MiB; at least MinWALSegmentSize). Each is preallocated and Raft
	// frees log space by whole segments: smaller ones compact sooner.
	WALSegmentSize int

	// Groups is how many Raft groups the cluster runs (0 or 1: one, as
	// before groups existed; at most placement.MaxGroups). Every node runs
	// every group, each with its own log, store, snapshots and leader, on
	// the node's one Raft port and one gRPC port; queues are placed on
	// groups by internal/placement (host.go). Every node of a cluster must
	// be started with the same count, and a data dir keeps the count it
	// was made with.
	Groups int

	// Replicas is how many nodes run each group but group 0 (0: every node,
	// as with one group). With fewer replicas than nodes a cluster of N
	// nodes spreads the groups' work over all of them while each group
	// keeps R copies: group 0 (placement, membership) stays on every voter
	// and records which nodes run each other group; its leader places the
	// replicas evenly and moves them when nodes join or leave, and a node
	// opens only the groups it runs, forwarding the others' calls to
	// their leaders (replicas.go). Every node must use the same value; it
	// takes effect with Groups > 1 only.
	Replicas int

	// XDS serves Envoy's aggregated discovery service (ADS, xDS v3) on the
	// gRPC port: Envoy and proxyless gRPC clients (xds:///raftq) learn
	// every group's leader from it the moment this node does, and route a
	// call by its placement.Header (xds.go). Off by default: the static
	// Envoy configuration with leader health checks needs nothing here.
	// With auth on, any authenticated principal may read it.
	XDS bool
	// XDSIPOnly publishes only leaders whose gRPC address is an IP address
	// (a leader advertising a host name is published without an endpoint,
	// and logged), as Envoy needs: it does not resolve names in EDS and
	// would reject the whole update. Proxyless gRPC clients resolve names
	// and need not set it. Requires XDS; this node's own GRPCAdvertise, if
	// set, must then be an IP address.
	XDSIPOnly bool

	// group is the Raft group this Node runs (0 for the host); host, set
	// on the other groups' Nodes, is the Node that serves their gRPC and
	// owns the shared Raft port (host.go).
	group uint32
	host  *Node

	// Testing holds test-only hooks (crash points, an FSM wrapper, the
	// clock, seeded-bug interceptors); nil in production (testing.go).
	Testing *Testing
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// DefaultConfig returns a configuration with every default filled in; the
// caller sets identity, addresses and cluster membership.
func DefaultConfig() Config {
	return Config{
		Forward: true,
		Defaults: Defaults{
			LeaseDuration:  30 * time.Second,
			MaxAttempts:    25,
			InitialBackoff: time.Second,
			MaxBackoff:     10 * time.Minute,
			DedupWindow:    24 * time.Hour,
		},
		Limits: limits.DefaultBroker(),
		// Used only when auth is on (a tokens file or JWT key).
		Auth:             auth.Config{RateLimit: limits.DefaultRatePerPrincipal, RateBurst: limits.DefaultRateBurst},
		Retention:        24 * time.Hour,
		DiskMinFreeBytes: DefaultDiskMinFreeBytes,
	}
}

// Validate reports everything wrong with c, one error per problem (joined),
// each naming the setting; nil when c can open a node.
func (c *Config) Validate() error {
	var errs []error
	if c.NodeID == "" {
		errs = append(errs, errors.New("node id: required"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data dir: required"))
	}
	if c.RaftAddr == "" {
		errs = append(errs, errors.New("raft addr: required"))
	}
	if c.GRPCAddr == "" {
		errs = append(errs, errors.New("grpc addr: required"))
	}
	if c.Groups < 0 || c.Groups > placement.MaxGroups {
		errs = append(errs, fmt.Errorf("groups %d: want 1 to %d (0: 1)", c.Groups, placement.MaxGroups))
	}
	if c.Replicas < 0 || c.Replicas > MaxReplicas {
		errs = append(errs, fmt.Errorf("replicas %d: want 1 to %d (0: every node)", c.Replicas, MaxReplicas))
	}
	if c.XDSIPOnly && !c.XDS {
		errs = append(errs, errors.New("xds ip only: requires xds"))
	}
	if c.XDSIPOnly && c.GRPCAdvertise != "" {
		if host, _, err := net.SplitHostPort(c.GRPCAdvertise); err == nil {
			if _, err := netip.ParseAddr(host); err != nil {
				errs = append(errs, fmt.Errorf("grpc advertise %q: xds ip only needs an IP address (Envoy does not resolve names in EDS)", c.GRPCAdvertise))
			}
		}
	}
	if c.BootstrapExpect < 0 {
		errs = append(errs, errors.New("bootstrap-expect: must not be negative"))
	}
	if c.LogStore != LogStoreAuto && c.LogStore != LogStoreWAL && c.LogStore != LogStoreBolt {
		errs = append(errs, fmt.Errorf("raft log store %q: want %q or %q (or empty: keep the data dir's, wal for a new one)", c.LogStore, LogStoreWAL, LogStoreBolt))
	}
	if c.WALSegmentSize != 0 && c.WALSegmentSize < MinWALSegmentSize {
		errs = append(errs, fmt.Errorf("wal segment size %d: want 0 (64 MiB) or at least %d bytes", c.WALSegmentSize, MinWALSegmentSize))
	}
	if c.BootstrapExpect > 0 {
		if len(c.Peers) != c.BootstrapExpect {
			errs = append(errs, fmt.Errorf("peers: bootstrap-expect is %d but %d peers are listed", c.BootstrapExpect, len(c.Peers)))
		}
		found := false
		for _, p := range c.Peers {
			if p.ID == c.NodeID {
				found = true
			}
		}
		if !found {
			errs = append(errs, fmt.Errorf("peers: this node (%s) is not in the peer list", c.NodeID))
		}
	}
	if c.Defaults.LeaseDuration <= 0 || c.Defaults.MaxAttempts <= 0 || c.Defaults.InitialBackoff < 0 ||
		c.Defaults.MaxBackoff < c.Defaults.InitialBackoff || c.Defaults.DedupWindow < 0 {
		errs = append(errs, errors.New("defaults: lease duration and max attempts must be positive, back-offs ordered"))
	}
	if c.Limits.MaxPayloadBytes <= 0 || c.Limits.MaxBatchJobs <= 0 || c.Limits.MaxFetchJobs <= 0 || c.Limits.MaxSettleItems <= 0 || c.Limits.MaxStreamWindow <= 0 {
		errs = append(errs, errors.New("limits: payload, batch, fetch, settle-batch and stream-window limits must be positive"))
	}
	if c.Limits.MaxWaitersPerConn < 0 || c.Limits.MaxRequestTime < 0 || c.Limits.MaxRestoreBytes < 0 {
		errs = append(errs, errors.New("limits: waiters per connection, request time and restore size must not be negative"))
	}
	if min(c.Limits.MaxWaitersPerPrincipal, c.Limits.MaxWaiters, c.Limits.MaxStreamsPerPrincipal, c.Limits.MaxStreams, c.Limits.MaxConns, c.Limits.MaxConnsPerIP) < 0 {
		errs = append(errs, errors.New("limits: waiter, stream and connection caps must not be negative"))
	}
	if c.DiskMinFreeBytes < 0 || c.DiskCheckInterval < 0 {
		errs = append(errs, errors.New("disk: min free bytes and check interval must not be negative"))
	}
	if c.TLS.Enabled() {
		if err := c.TLS.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("tls: %w", err))
		} else if c.TLS.Cert == "" {
			errs = append(errs, errors.New("tls: a node needs its own certificate and key"))
		}
	}
	if c.Auth.Enabled() {
		if err := c.Auth.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("auth: %w", err))
		}
		if !c.TLS.Enabled() {
			errs = append(errs, errors.New("auth: needs TLS (tokens must not cross the network in clear, and nodes identify each other by certificate)"))
		}
		if len(c.Auth.NodeNames) == 0 {
			errs = append(errs, errors.New("auth: node names are required (the certificate common names of the cluster's nodes, e.g. node.*)"))
		}
	}
	return errors.Join(errs...)
}
