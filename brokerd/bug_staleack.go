//go:build jepsenbug

package brokerd

import (
	"os"
	"strings"

	"github.com/raftq/raftq/fsm"
)

// Seeded bugs of the jepsen harness, compiled only with the jepsenbug tag,
// so that CI can show that the checkers fail when the broker is broken.
// RAFTQ_JEPSEN_BUG names the ones a process runs with (comma-separated):
//
//   - stale-ack: this file;
//   - early-enqueue-ack: bug_earlyack.go.
//
// make jepsen-bug runs the harness against each and expects the named
// checker to report it.

// bugOn reports whether RAFTQ_JEPSEN_BUG names bug.
func bugOn(bug string) bool {
	for _, b := range strings.Split(os.Getenv("RAFTQ_JEPSEN_BUG"), ",") {
		if strings.TrimSpace(b) == bug {
			return true
		}
	}
	return false
}

// bugAckToken, with stale-ack, accepts an ack with a stale token while
// another worker holds the job's newer lease, by swapping in the current
// token before proposing (the "lease released without checking it was
// still valid" bug). The fencing checker must catch it.
func (n *Node) bugAckToken(id string, token uint64) uint64 {
	if !bugOn("stale-ack") {
		return token
	}
	if j, ok := n.fsm.Get(id); ok && j.State == fsm.StateLeased && j.LeaseToken != token {
		return j.LeaseToken
	}
	return token
}
