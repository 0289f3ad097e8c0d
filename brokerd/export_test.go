package brokerd

import "github.com/hashicorp/raft"

// RaftRefused is how many Raft TLS handshakes the node turned down (0
// without TLS).
func RaftRefused(n *Node) uint64 {
	if n.layer == nil {
		return 0
	}
	return n.layer.Refused()
}

// RaftTransport is the node's Raft transport, for tests that speak Raft
// to another node directly.
func RaftTransport(n *Node) *raft.NetworkTransport { return n.trans }

// WaitersInFlight is how many Fetch long polls hold a per-connection slot.
func WaitersInFlight(n *Node) int { return n.waiters.InFlight() }

// SmallWALSegments gives a node 64 KiB WAL segments, so a test's small log
// spans many segments and Raft compacts it like a big one.
func SmallWALSegments(cfg *Config) { cfg.WALSegmentSize = MinWALSegmentSize }

// ChooseLogStore is chooseLogStore, for the data dir kind table.
var ChooseLogStore = chooseLogStore

// LeaderDuties names the leader duties n runs now, in establish order
// (none while it does not lead).
func LeaderDuties(n *Node) []string { return n.lead.running() }
