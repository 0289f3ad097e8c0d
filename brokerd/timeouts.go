package brokerd

import "time"

// Raft timing defaults, chosen by measuring failover on loopback (make
// bench's failover figure, scripts/bench-failover.sh; brokerd/DESIGN.md
// "Failover"). hashicorp/raft's own defaults (1 s, 1 s, 500 ms) put a
// client's wait after a leader's death at ~2–2.7 s here: a follower
// notices the silence after a random [heartbeat, 2×heartbeat), and since
// a follower refuses votes while it still hears (or recently heard) a
// leader, the election ends only when both followers have timed out, at
// about 1.67 heartbeat timeouts on average. Measured side by side (6 leader
// SIGKILLs each, quiet machine), p50 / max of a client's wait: 1 s (raft's
// defaults) 2.61 / 3.62 s; 500 ms 1.14 / 1.39 s; 400 ms 0.79 / 1.09 s;
// 300 ms 0.55 / 0.70 s. 400 ms meets a p50 under a second while leaving
// a follower ten missed heartbeats (hashicorp/raft sends one every tenth
// of the timeout, 40 ms) before it calls an election: room for fsync
// stalls and a loaded 2-core machine, where CI and the jepsen suite run
// with it. Across a WAN, raise all three together (a heartbeat timeout of
// several round trips and GC pauses).
const (
	// DefaultHeartbeatTimeout is how long a follower goes without hearing
	// from its leader before it starts an election.
	DefaultHeartbeatTimeout = 400 * time.Millisecond
	// DefaultElectionTimeout is how long a candidate waits for votes
	// before it tries again.
	DefaultElectionTimeout = 400 * time.Millisecond
	// DefaultLeaderLeaseTimeout is how long a leader goes without hearing
	// from a quorum before it steps down; never more than the heartbeat
	// timeout (hashicorp/raft refuses that).
	DefaultLeaderLeaseTimeout = 400 * time.Millisecond
)

// raftTimeouts returns the configured Raft timeouts, defaults filled in.
func raftTimeouts(cfg Config) (heartbeat, election, lease time.Duration) {
	heartbeat, election, lease = DefaultHeartbeatTimeout, DefaultElectionTimeout, DefaultLeaderLeaseTimeout
	if cfg.HeartbeatTimeout > 0 {
		heartbeat = cfg.HeartbeatTimeout
	}
	if cfg.ElectionTimeout > 0 {
		election = cfg.ElectionTimeout
	}
	if cfg.LeaderLeaseTimeout > 0 {
		lease = cfg.LeaderLeaseTimeout
	} else if lease > heartbeat {
		lease = heartbeat
	}
	return heartbeat, election, lease
}
