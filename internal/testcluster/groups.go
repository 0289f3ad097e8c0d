package testcluster

import (
	"time"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/internal/testutil"
)

// WaitGroupsSettled is WaitGroupLeaders, then waits until every running
// node knows each group's leader and the leaderships are balanced (no
// node leads more than its share, so brokerd's leader balancing moves
// none any more): tests that compare what a status page says with who
// leads need leaders that stay put. It returns each group's leader, in
// group order.
func (c *Cluster) WaitGroupsSettled(timeout time.Duration) []*brokerd.Node {
	c.t.Helper()
	c.WaitGroupLeaders(timeout)
	var leaders []*brokerd.Node
	testutil.WaitFor(c.t, timeout, "every node knows each group's one ready leader, leaderships balanced", func() bool {
		up := c.Up()
		if len(up) == 0 {
			return false
		}
		groups := len(up[0].Groups())
		leaders = make([]*brokerd.Node, groups)
		led := map[string]int{}
		for g := range groups {
			for _, n := range up {
				if gn := n.Groups()[g]; gn != nil && gn.IsLeaderReady() {
					if leaders[g] != nil {
						return false // two think they lead: a transfer is under way
					}
					leaders[g] = n
					led[n.ID()]++
				}
			}
			if leaders[g] == nil {
				return false
			}
			for _, n := range up {
				if n.Groups()[g] == nil {
					continue // a node that does not run the group
				}
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
