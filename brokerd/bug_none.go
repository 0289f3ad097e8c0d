//go:build !jepsenbug

package brokerd

import (
	"github.com/raftq/raftq/fsm/fsmpb"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// The seeded-bug hooks of the jepsen harness (see bug_jepsen.go); without
// the jepsenbug tag they change nothing.

// bugAckToken returns the ack's own token.
func (n *Node) bugAckToken(_ string, token uint64) uint64 { return token }

// bugEarlyEnqueue never answers early.
func (n *Node) bugEarlyEnqueue([]*fsmpb.NewJob) (*raftqv1.EnqueueResponse, bool) { return nil, false }
