package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/brokerd/daemon"
	"github.com/raftq/raftq/brokerd/etcdnode"
	"github.com/raftq/raftq/discovery"
	"github.com/raftq/raftq/internal/auth"
	"github.com/raftq/raftq/internal/config"
	"github.com/raftq/raftq/internal/liveconfig"
	"github.com/raftq/raftq/internal/placement"
	"github.com/raftq/raftq/internal/tracing"
)

// keys are every brokerd setting: its key (YAML path; RAFTQ_ + upper-cased
// key with '_' for '.' is its environment variable), its flag (names kept
// from before Viper: scripts depend on them), default and check.
func keys() []config.Key {
	def := daemon.DefaultConfig()
	nonNeg := func(v any) error {
		switch x := v.(type) {
		case int:
			if x < 0 {
				return errors.New("must not be negative")
			}
		case time.Duration:
			if x < 0 {
				return errors.New("must not be negative")
			}
		}
		return nil
	}
	positive := func(v any) error {
		switch x := v.(type) {
		case int:
			if x <= 0 {
				return errors.New("must be positive")
			}
		case time.Duration:
			if x <= 0 {
				return errors.New("must be positive")
			}
		}
		return nil
	}
	// TLS, auth and API limits are declared in security.go.
	return append([]config.Key{
		{Name: "node.id", Flag: "id", Kind: config.String, Required: true, Usage: "this node's Raft server id (stable for the node's life)",
			Check: func(v any) error {
				if s := v.(string); strings.ContainsAny(s, "/ ,=") {
					return errors.New("must not contain '/', ' ', ',' or '='")
				}
				return nil
			}},
		{Name: "node.data_dir", Flag: "data-dir", Kind: config.String, Required: true, Usage: "directory for the Raft log, stable store and snapshots"},
		{Name: "raft.addr", Flag: "raft-addr", Kind: config.String, Default: "127.0.0.1:7201", Usage: "Raft TCP bind address"},
		{Name: "raft.advertise", Flag: "raft-advertise", Kind: config.String, Usage: "Raft address peers dial (default: the bound address)"},
		{Name: "grpc.addr", Flag: "grpc-addr", Kind: config.String, Default: "127.0.0.1:7101", Usage: "gRPC API listen address"},
		{Name: "grpc.advertise", Flag: "grpc-advertise", Kind: config.String, Usage: "gRPC address told to clients and peers (default: the bound address)"},
		{Name: "bootstrap.expect", Flag: "bootstrap-expect", Kind: config.Int, Default: 0, Check: nonNeg,
			Usage: "bootstrap a new cluster of this many voters when the data dir is empty (with --peers, or through --etcd)"},
		{Name: "bootstrap.peers", Flag: "peers", Kind: config.List, Usage: "static bootstrap peers: id=raft-host:port,..."},
		{Name: "join", Flag: "join", Kind: config.List, Usage: "gRPC addresses of existing members to join through: host:port,..."},
		{Name: "forward", Flag: "forward", Kind: config.Bool, Default: true, Usage: "forward calls that need the leader instead of answering NOT_LEADER"},
		{Name: "retention", Flag: "retention", Kind: config.Duration, Default: def.Retention, Check: positive, Usage: "how long terminal jobs are kept"},
		{Name: "defaults.lease_duration", Flag: "default-lease", Kind: config.Duration, Default: def.Defaults.LeaseDuration, Check: positive,
			Usage: "lease duration of jobs that set none (live config may override per queue)"},
		{Name: "defaults.max_attempts", Flag: "default-max-attempts", Kind: config.Int, Default: int(def.Defaults.MaxAttempts), Check: positive,
			Usage: "max attempts of jobs that set none"},
		{Name: "defaults.initial_backoff", Flag: "default-initial-backoff", Kind: config.Duration, Default: def.Defaults.InitialBackoff, Check: nonNeg,
			Usage: "first retry back-off of jobs that set none"},
		{Name: "defaults.max_backoff", Flag: "default-max-backoff", Kind: config.Duration, Default: def.Defaults.MaxBackoff, Check: nonNeg,
			Usage: "largest retry back-off of jobs that set none"},
		{Name: "defaults.dedup_window", Flag: "default-dedup-window", Kind: config.Duration, Default: def.Defaults.DedupWindow, Check: nonNeg,
			Usage: "how long an idempotency key is remembered when the job sets none"},
		{Name: "limits.max_payload_bytes", Flag: "max-payload", Kind: config.Int, Default: def.Limits.MaxPayloadBytes, Check: positive,
			Usage: "largest job payload in bytes"},
		{Name: "log.level", Flag: "log-level", Kind: config.String, Default: "info", Usage: "debug, info, warn or error (live config may change it)",
			Check: func(v any) error { _, err := liveconfig.ParseLogLevel(v.(string)); return err }},
		{Name: "debug.addr", Flag: "debug-addr", Kind: config.String, Usage: "serve /debug/pprof on this address (off when empty)"},
		{Name: "admin.addr", Flag: "admin-addr", Kind: config.String, Usage: "admin HTTP API and dashboard listen address (off when empty)"},
		{Name: "svcd.addr", Flag: "svcd-addr", Kind: config.String, Usage: "results service gRPC address, for job history in the admin API"},
		{Name: "etcd.endpoints", Flag: "etcd", Kind: config.List,
			Usage: "etcd endpoints (http://host:port,...): registration, leader hint, live config, bootstrap through etcd"},
		{Name: "etcd.prefix", Flag: "etcd-prefix", Kind: config.String, Default: discovery.DefaultPrefix, Usage: "cluster prefix of every etcd key",
			Check: func(v any) error { return discovery.ValidatePrefix(v.(string)) }},
		{Name: "etcd.username", Flag: "etcd-username", Kind: config.String, Usage: "etcd user"},
		{Name: "etcd.password", Flag: "etcd-password", Kind: config.String, Secret: true, Usage: "etcd password"},
		{Name: "etcd.dial_timeout", Flag: "etcd-dial-timeout", Kind: config.Duration, Default: 5 * time.Second, Check: positive, Usage: "etcd connection timeout"},
		{Name: "etcd.lease_ttl", Flag: "etcd-lease-ttl", Kind: config.Duration, Default: 10 * time.Second, Usage: "TTL of the etcd registration (a crashed node vanishes after it)",
			Check: func(v any) error {
				if v.(time.Duration) < 2*time.Second {
					return errors.New("must be at least 2s")
				}
				return nil
			}},
		{Name: "leave_on_terminate", Flag: "leave-on-terminate", Kind: config.Bool, Default: false,
			Usage: "on SIGTERM, leave the cluster's voters before shutting down"},
		{Name: "shutdown_timeout", Flag: "shutdown-timeout", Kind: config.Duration, Default: 30 * time.Second, Check: positive,
			Usage: "give up a clean shutdown after this long"},
		{Name: "disk.min_free_bytes", Flag: "disk-min-free-bytes", Kind: config.Int, Default: int(def.DiskMinFreeBytes), Check: nonNeg,
			Usage: "free space kept in reserve on the data dir's filesystem: below it the node refuses writes (RESOURCE_EXHAUSTED) and a leader hands over; 0: only failing writes count"},
		{Name: "raft.heartbeat_timeout", Flag: "raft-heartbeat-timeout", Kind: config.Duration, Check: nonNeg, Usage: "Raft heartbeat timeout: a follower that hears nothing from its leader this long starts an election (0: 400ms; raise it across a WAN)"},
		{Name: "raft.election_timeout", Flag: "raft-election-timeout", Kind: config.Duration, Check: nonNeg, Usage: "Raft election timeout (0: 400ms)"},
		{Name: "raft.leader_lease_timeout", Flag: "raft-leader-lease-timeout", Kind: config.Duration, Check: nonNeg, Usage: "Raft leader lease timeout (0: 400ms, at most the heartbeat timeout)"},
		{Name: "raft.snapshot_threshold", Flag: "raft-snapshot-threshold", Kind: config.Int, Check: nonNeg, Usage: "log entries between snapshots (0: 8192)"},
		{Name: "raft.snapshot_interval", Flag: "raft-snapshot-interval", Kind: config.Duration, Check: nonNeg, Usage: "how often to check for a snapshot (0: 2m)"},
		{Name: "raft.trailing_logs", Flag: "raft-trailing-logs", Kind: config.Int, Check: nonNeg, Usage: "log entries kept after a snapshot (0: 10240)"},
		{Name: "consistency_check.interval", Flag: "consistency-check-interval", Kind: config.Duration, Default: brokerd.DefaultConsistencyCheckInterval,
			Usage: "how often the leader has every node hash its state at one log index and compares the hashes (a divergent node is logged at ERROR and counted in raftq_consistency_divergent_nodes); negative: never"},
		{Name: "groups", Flag: "groups", Kind: config.Int, Default: 1, Check: func(v any) error {
			if n := v.(int); n < 1 || n > placement.MaxGroups {
				return fmt.Errorf("want 1 to %d", placement.MaxGroups)
			}
			return nil
		}, Usage: "Raft groups the cluster runs (every node runs all of them on its one Raft and gRPC port; queues are spread over them by name). Every node must have the same count; a data dir keeps the count it was made with"},
		{Name: "replicas", Flag: "replicas", Kind: config.Int, Default: 0, Check: func(v any) error {
			if n := v.(int); n < 0 || n > brokerd.MaxReplicas {
				return fmt.Errorf("want 1 to %d (0: every node)", brokerd.MaxReplicas)
			}
			return nil
		}, Usage: "nodes that run each Raft group but group 0 (0: every node). Below the node count, each node runs only its share of the groups and forwards the others' calls; group 0's leader places the replicas and moves them when nodes join or leave. Every node must use the same value; with groups > 1 only"},
		{Name: "xds.enabled", Flag: "xds", Kind: config.Bool, Default: false,
			Usage: "serve Envoy's xDS (ADS) on the gRPC port: Envoy and proxyless gRPC clients (xds:///raftq) learn each Raft group's leader the moment it changes and route calls by their raftq-group header (envoy/README.md); with auth on, any authenticated principal may read it"},
		{Name: "xds.ip_only", Flag: "xds-ip-only", Kind: config.Bool, Default: false,
			Usage: "publish over xDS only leaders advertising an IP address, as Envoy needs (it does not resolve names from xDS); a leader advertising a host name is published without an endpoint. Requires xds.enabled"},
		{Name: "raft.log_store", Flag: "raft-log-store", Kind: config.String, Check: func(v any) error {
			switch v.(string) {
			case brokerd.LogStoreAuto, brokerd.LogStoreWAL, brokerd.LogStoreBolt:
				return nil
			}
			return fmt.Errorf("want %q or %q (or empty)", brokerd.LogStoreWAL, brokerd.LogStoreBolt)
		},
			Usage: "Raft log store: wal (raft-wal segment files) or bolt (raft-boltdb raft.db); empty keeps the data dir's, wal for a new one. A data dir keeps its kind: switching is refused"},
		{Name: "raft.wal_segment_size", Flag: "raft-wal-segment-size", Kind: config.Int, Check: func(v any) error {
			if n := v.(int); n != 0 && n < brokerd.MinWALSegmentSize {
				return fmt.Errorf("want 0 (64 MiB) or at least %d bytes", brokerd.MinWALSegmentSize)
			}
			return nil
		}, Usage: "size of a WAL log segment file in bytes, preallocated; Raft frees log space by whole segments (0: 64 MiB)"},
	}, append(securityKeys(), tracing.Keys()...)...)
}

func newLoader() *config.Loader { return config.New("brokerd", keys()) }

// toConfig maps loaded values onto daemon.Config and checks what involves
// several keys, naming the key to change.
func toConfig(l *config.Loader, v *config.Values) (daemon.Config, extra, error) {
	cfg := daemon.DefaultConfig()
	cfg.NodeID = v.String("node.id")
	cfg.DataDir = v.String("node.data_dir")
	cfg.RaftAddr = v.String("raft.addr")
	cfg.RaftAdvertise = v.String("raft.advertise")
	cfg.GRPCAddr = v.String("grpc.addr")
	cfg.GRPCAdvertise = v.String("grpc.advertise")
	cfg.BootstrapExpect = v.Int("bootstrap.expect")
	cfg.Join = v.List("join")
	cfg.Forward = v.Bool("forward")
	cfg.Retention = v.Duration("retention")
	cfg.DiskMinFreeBytes = int64(v.Int("disk.min_free_bytes"))
	cfg.Defaults.LeaseDuration = v.Duration("defaults.lease_duration")
	cfg.Defaults.MaxAttempts = int32(v.Int("defaults.max_attempts"))
	cfg.Defaults.InitialBackoff = v.Duration("defaults.initial_backoff")
	cfg.Defaults.MaxBackoff = v.Duration("defaults.max_backoff")
	cfg.Defaults.DedupWindow = v.Duration("defaults.dedup_window")
	cfg.Limits.MaxPayloadBytes = v.Int("limits.max_payload_bytes")
	cfg.AdminAddr = v.String("admin.addr")
	cfg.SvcdAddr = v.String("svcd.addr")
	cfg.Etcd = etcdnode.Config{
		Endpoints:   v.List("etcd.endpoints"),
		Prefix:      v.String("etcd.prefix"),
		Username:    v.String("etcd.username"),
		Password:    v.String("etcd.password"),
		DialTimeout: v.Duration("etcd.dial_timeout"),
		LeaseTTL:    v.Duration("etcd.lease_ttl"),
	}
	cfg.HeartbeatTimeout = v.Duration("raft.heartbeat_timeout")
	cfg.ElectionTimeout = v.Duration("raft.election_timeout")
	cfg.LeaderLeaseTimeout = v.Duration("raft.leader_lease_timeout")
	cfg.SnapshotThreshold = uint64(v.Int("raft.snapshot_threshold"))
	cfg.SnapshotInterval = v.Duration("raft.snapshot_interval")
	cfg.TrailingLogs = uint64(v.Int("raft.trailing_logs"))
	cfg.LogStore = v.String("raft.log_store")
	cfg.Groups = v.Int("groups")
	cfg.Replicas = v.Int("replicas")
	cfg.XDS = v.Bool("xds.enabled")
	cfg.XDSIPOnly = v.Bool("xds.ip_only")
	cfg.ConsistencyCheckInterval = v.Duration("consistency_check.interval")
	cfg.WALSegmentSize = v.Int("raft.wal_segment_size")
	secErrs := applySecurity(l, v, &cfg)
	lvl, _ := liveconfig.ParseLogLevel(v.String("log.level"))
	cfg.LogLevel = new(slog.LevelVar)
	cfg.LogLevel.Set(lvl)
	x := extra{
		debugAddr:        v.String("debug.addr"),
		leaveOnTerminate: v.Bool("leave_on_terminate"),
		shutdownTimeout:  v.Duration("shutdown_timeout"),
		openAudit:        func(w io.Writer) (*auth.AuditLog, error) { return auth.OpenAuditFromConfig(v, w) },
		tracing:          tracing.FromValues(v, "brokerd"),
	}

	errs := secErrs
	peers, err := brokerd.ParsePeers(strings.Join(v.List("bootstrap.peers"), ","))
	if err != nil {
		errs = append(errs, l.Errorf("bootstrap.peers", "%v", err))
	}
	cfg.Peers = peers
	if n := cfg.BootstrapExpect; n > 0 && err == nil {
		switch {
		case len(peers) == 0 && len(cfg.Etcd.Endpoints) == 0:
			errs = append(errs, l.Errorf("bootstrap.peers", "bootstrap.expect is %d: list the peers, or set etcd.endpoints to find them through etcd", n))
		case len(peers) > 0 && len(peers) != n:
			errs = append(errs, l.Errorf("bootstrap.peers", "bootstrap.expect is %d but %d peers are listed", n, len(peers)))
		case len(peers) > 0:
			found := false
			for _, p := range peers {
				found = found || p.ID == cfg.NodeID
			}
			if !found {
				errs = append(errs, l.Errorf("bootstrap.peers", "this node (%s) is not in the list", cfg.NodeID))
			}
		}
	}
	if len(peers) > 0 && cfg.BootstrapExpect == 0 {
		errs = append(errs, l.Errorf("bootstrap.expect", "must be set (to %d) when bootstrap.peers is", len(peers)))
	}
	if cfg.Defaults.MaxBackoff < cfg.Defaults.InitialBackoff {
		errs = append(errs, l.Errorf("defaults.max_backoff", "must be at least defaults.initial_backoff (%s)", cfg.Defaults.InitialBackoff))
	}
	if cfg.XDSIPOnly && !cfg.XDS {
		errs = append(errs, l.Errorf("xds.ip_only", "requires xds.enabled"))
	}
	if len(cfg.Etcd.Endpoints) == 0 && (v.Source("etcd.username") != config.FromDefault || v.Source("etcd.password") != config.FromDefault) {
		errs = append(errs, l.Errorf("etcd.endpoints", "required when etcd credentials are set"))
	}
	if len(errs) > 0 {
		return cfg, x, errors.Join(errs...)
	}
	// The node's own checks, as a backstop for anything not named above.
	if err := cfg.Validate(); err != nil {
		return cfg, x, &config.Error{Key: "configuration", Reason: fmt.Sprint(err)}
	}
	return cfg, x, nil
}
