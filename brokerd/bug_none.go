//go:build !jepsenbug

package brokerd

import (
	"github.com/raftq/raftq/fsm/fsmpb"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// The seeded-bug hooks of the jepsen harness (the bugs themselves are in
// bug_staleack.go and bug_earlyack.go, built only with the jepsenbug tag;
// jepsen/DESIGN.md lists them); without that tag they change nothing.

// bugAckToken returns the ack's own token.
func (n *Node) bugAckToken(_ string, token uint64) uint64 { return token }

// bugEarlyEnqueue never answers early.
func (n *Node) bugEarlyEnqueue([]*fsmpb.NewJob) (*raftqv1.EnqueueResponse, bool) { return nil, false }
