//go:build !jepsen

package brokerd

import "github.com/hashicorp/raft"

// Production build: the Jepsen test hooks (testhooks_jepsen.go, build tag
// jepsen) compile to nothing, so behaviour without the tag is unchanged.

func applyTestHooks(*Config) {}

func failpoint(string) {}

func (n *Node) raftFSM() raft.FSM { return n.fsm }
