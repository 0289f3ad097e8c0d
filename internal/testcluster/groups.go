package testcluster

import (
	"testing"
	"time"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/internal/testutil"
)

// WaitGroupsSettled waits until every Raft group of a cluster started with
// brokerd.Config.Groups has one ready leader that every running node knows
// and every node knows every node's address, and until the leaderships are
// balanced (no node leads more than its share, so brokerd's leader
// balancing moves none any more): tests that compare what a status page
// says with who leads need leaders that stay put. It returns each group's
// leader, in group order.
func (c *Cluster) WaitGroupsSettled(t testing.TB, timeout time.Duration) []*brokerd.Node {
	t.Helper()
	var leaders []*brokerd.Node
	testutil.WaitFor(t, timeout, "every group has a ready leader known to every node, leaderships balanced", func() bool {
		up := c.Up()
		if len(up) == 0 {
			return false
		}
		groups := len(up[0].Groups())
		leaders = make([]*brokerd.Node, groups)
		led := map[string]int{}
		for g := range groups {
			for _, n := range up {
				gn := n.Groups()[g]
				if gn.IsLeaderReady() {
					if leaders[g] != nil {
						return false // two think they lead: an election is under way
					}
					leaders[g] = n
					led[n.ID()]++
				}
				if len(gn.FSM().Nodes()) < len(up) {
					return false
				}
			}
			if leaders[g] == nil {
				return false
			}
			for _, n := range up {
				if _, id := n.Groups()[g].Raft().LeaderWithID(); string(id) != leaders[g].ID() {
					return false
				}
			}
		}
		share := (groups + len(up) - 1) / len(up)
		for _, k := range led {
			if k > share {
				return false
			}
		}
		return true
	})
	return leaders
}
