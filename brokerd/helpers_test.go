package brokerd_test

import (
	"fmt"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/fsm"
)

func dumpState(n *brokerd.Node) map[string]string {
	out := map[string]string{}
	f := n.FSM()
	out["nodes"] = fmt.Sprint(f.Nodes())
	out["stats"] = fmt.Sprint(f.Stats(nil))
	for _, q := range f.Stats(nil) {
		for s := fsm.State(1); s <= 6; s++ {
			for _, j := range f.List(q.Queue, s, "", 100000) {
				out[j.ID] = fmt.Sprintf("%+v", j)
			}
		}
	}
	return out
}
