package checker

import (
	"fmt"
	"sort"
)

// NodeState is what one node reported at the end of the run, for one Raft
// group (a node running several groups reports one NodeState per group).
type NodeState struct {
	Node         string `json:"node"`
	Group        uint32 `json:"group,omitempty"`
	AppliedIndex uint64 `json:"applied_index"`
	Hash         string `json:"hash"`
	Err          string `json:"error,omitempty"`
}

// Divergence checks G8: after healing, every member node applied the same
// log to the same state: equal applied indexes and equal FSM hashes, group
// by group (each Raft group has its own log and state). A member that
// cannot be asked is a failure too: nothing is known of it.
func Divergence(nodes []NodeState) Result {
	r := newResult("divergence")
	if len(nodes) == 0 {
		r.fail(Failure{Msg: "no node reported its state"})
		r.Counts["nodes"] = 0
		return r
	}
	byGroup := map[uint32][]NodeState{}
	members := map[string]bool{}
	for _, n := range nodes {
		byGroup[n.Group] = append(byGroup[n.Group], n)
		members[n.Node] = true
	}
	r.Counts["nodes"] = len(members)
	groups := make([]uint32, 0, len(byGroup))
	for g := range byGroup {
		groups = append(groups, g)
	}
	sort.Slice(groups, func(i, j int) bool { return groups[i] < groups[j] })
	worst := 0
	for _, g := range groups {
		// One group says nothing of its number: the messages stay as
		// they were before groups.
		where := ""
		if len(groups) > 1 {
			where = fmt.Sprintf("group %d: ", g)
		}
		hashes := map[string][]string{}
		var ref *NodeState
		list := byGroup[g]
		for i := range list {
			n := &list[i]
			if n.Err != "" {
				r.fail(Failure{Msg: fmt.Sprintf("%snode %s did not report its state: %s", where, n.Node, n.Err)})
				continue
			}
			hashes[n.Hash] = append(hashes[n.Hash], n.Node)
			if ref == nil {
				ref = n
			} else if n.AppliedIndex != ref.AppliedIndex {
				r.fail(Failure{Msg: fmt.Sprintf("%snode %s applied up to %d but node %s up to %d", where, n.Node, n.AppliedIndex, ref.Node, ref.AppliedIndex)})
			}
		}
		worst = max(worst, len(hashes))
		if len(hashes) > 1 {
			r.fail(Failure{Msg: fmt.Sprintf("%sstate hashes differ: %v", where, hashes)})
		}
	}
	// distinct_hashes is the most distinct hashes any group ended with
	// (1 when every group agrees).
	r.Counts["distinct_hashes"] = worst
	if len(groups) > 1 {
		r.Counts["groups"] = len(groups)
	}
	return r
}
