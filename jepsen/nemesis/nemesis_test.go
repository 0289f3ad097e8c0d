package nemesis

import (
	"fmt"
	"testing"

	"github.com/raftq/raftq/jepsen/control"
)

func nodes(n int) []*control.Node {
	var out []*control.Node
	for i := 1; i <= n; i++ {
		out = append(out, &control.Node{Index: i, ID: fmt.Sprintf("n%d", i)})
	}
	return out
}

// hears reports whether x accepts packets from y under grudge g.
func hears(g map[*control.Node][]*control.Node, x, y *control.Node) bool {
	for _, z := range g[x] {
		if z == y {
			return false
		}
	}
	return true
}

// component is the set of nodes x can reach through links that work in
// both directions.
func majoritySees(g map[*control.Node][]*control.Node, ns []*control.Node, x *control.Node) int {
	c := 1
	for _, y := range ns {
		if y != x && hears(g, x, y) {
			c++
		}
	}
	return c
}

func TestPartitionShapes(t *testing.T) {
	for _, n := range []int{3, 5} {
		ns := nodes(n)
		maj := n/2 + 1
		g, _ := partitionGrudge("isolate-leader", ns, ns[2])
		if len(g[ns[2]]) != n-1 {
			t.Errorf("%d nodes: leader cut from %d peers, want %d", n, len(g[ns[2]]), n-1)
		}
		g, _ = partitionGrudge("majority-minority", ns, nil)
		small, big := 0, 0
		for _, x := range ns {
			if majoritySees(g, ns, x) >= maj {
				big++
			} else {
				small++
			}
		}
		if big != maj || small != n-maj {
			t.Errorf("%d nodes: majority-minority gave %d/%d", n, big, small)
		}
		g, _ = partitionGrudge("majorities-ring", ns, nil)
		seen := map[string]bool{}
		for _, x := range ns {
			if got := majoritySees(g, ns, x); got != maj {
				t.Errorf("%d nodes: ring: %s hears %d nodes (itself included), want a bare majority %d", n, x.ID, got, maj)
			}
			key := ""
			for _, y := range ns {
				if y == x || hears(g, x, y) {
					key += y.ID
				}
			}
			seen[key] = true
		}
		if len(seen) != n {
			t.Errorf("%d nodes: ring: %d distinct majorities, want %d", n, len(seen), n)
		}
		g, _ = partitionGrudge("bridge", ns, nil)
		bridge := ns[(n-1)/2]
		if len(g[bridge]) != 0 {
			t.Errorf("%d nodes: the bridge %s is cut from %d", n, bridge.ID, len(g[bridge]))
		}
		for _, x := range ns {
			if x != bridge && majoritySees(g, ns, x) != (n-1)/2+1 {
				t.Errorf("%d nodes: bridge: %s hears %d", n, x.ID, majoritySees(g, ns, x))
			}
		}
	}
}

func TestSelect(t *testing.T) {
	all, err := Select("all")
	if err != nil || len(all) == 0 {
		t.Fatal(err)
	}
	fams := map[string]bool{}
	for _, f := range all {
		fams[f.Family] = true
	}
	for _, f := range Families {
		if !fams[f] {
			t.Errorf("family %s has no fault", f)
		}
	}
	if fams["corrupt"] {
		t.Error("the optional corrupt family is in all")
	}
	if c, err := Select("corrupt"); err != nil || len(c) != 1 {
		t.Errorf("corrupt: %v %v", c, err)
	}
	got, err := Select("partition,crash/snapshot-persist")
	if err != nil || len(got) != 6 {
		t.Fatalf("select: %d faults, %v", len(got), err)
	}
	if _, err := Select("nonsense"); err == nil {
		t.Fatal("unknown nemesis accepted")
	}
}
