package checker

import "fmt"

// NodeState is what one node reported at the end of the run.
type NodeState struct {
	Node         string `json:"node"`
	AppliedIndex uint64 `json:"applied_index"`
	Hash         string `json:"hash"`
	Err          string `json:"error,omitempty"`
}

// Divergence checks G8: after healing, every member node applied the same
// log to the same state: equal applied indexes and equal FSM hashes. A
// member that cannot be asked is a failure too: nothing is known of it.
func Divergence(nodes []NodeState) Result {
	r := newResult("divergence")
	r.Counts["nodes"] = len(nodes)
	if len(nodes) == 0 {
		r.fail(Failure{Msg: "no node reported its state"})
		return r
	}
	hashes := map[string][]string{}
	var ref *NodeState
	for i := range nodes {
		n := &nodes[i]
		if n.Err != "" {
			r.fail(Failure{Msg: fmt.Sprintf("node %s did not report its state: %s", n.Node, n.Err)})
			continue
		}
		hashes[n.Hash] = append(hashes[n.Hash], n.Node)
		if ref == nil {
			ref = n
		} else if n.AppliedIndex != ref.AppliedIndex {
			r.fail(Failure{Msg: fmt.Sprintf("node %s applied up to %d but node %s up to %d", n.Node, n.AppliedIndex, ref.Node, ref.AppliedIndex)})
		}
	}
	r.Counts["distinct_hashes"] = len(hashes)
	if len(hashes) > 1 {
		r.fail(Failure{Msg: fmt.Sprintf("state hashes differ: %v", hashes)})
	}
	return r
}
