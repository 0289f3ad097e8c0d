//go:build jepsenbug

package brokerd

import "github.com/raftq/raftq/fsm"

// The seeded bug of the jepsen harness, compiled only with the jepsenbug
// tag, so that CI can show that the fencing checker fails when fencing is
// broken: an ack with a stale token is accepted while another worker holds
// the job's newer lease, by swapping in the current token before proposing
// (the "lease released without checking it was still valid" bug). make
// jepsen-bug runs the harness against this build and expects the fencing
// checker to report it.
func (n *Node) bugAckToken(id string, token uint64) uint64 {
	if j, ok := n.fsm.Get(id); ok && j.State == fsm.StateLeased && j.LeaseToken != token {
		return j.LeaseToken
	}
	return token
}
