//go:build !jepsenbug

package brokerd

// bugAckToken is the seeded-bug hook of the jepsen harness (see
// bug_staleack.go); without the jepsenbug tag an ack keeps its own token.
func (n *Node) bugAckToken(_ string, token uint64) uint64 { return token }
