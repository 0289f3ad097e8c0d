package main

import (
	"strings"
	"testing"

	"github.com/raftq/raftq/internal/adminapi"
	"github.com/raftq/raftq/internal/testcluster"
)

// TestEnqueueDependsOn: brokerctl enqueue --depends-on makes a waiting
// job, --chain links --count jobs, and brokerctl get shows parents,
// waiting-on and dependants.
func TestEnqueueDependsOn(t *testing.T) {
	c := testcluster.New(t, 1, nil)
	b := strings.Join(c.Addrs(), ",")
	var parent struct{ Jobs []Enqueued }
	ctlJSON(t, b, &parent, "enqueue", "--queue", "wf", "--type", "p")
	pid := parent.Jobs[0].ID
	var child struct{ Jobs []Enqueued }
	ctlJSON(t, b, &child, "enqueue", "--queue", "wf", "--type", "c", "--depends-on", pid, "--run-anyway")
	cid := child.Jobs[0].ID

	var j adminapi.Job
	ctlJSON(t, b, &j, "get", cid)
	if j.State != "waiting" || len(j.Parents) != 1 || j.Parents[0] != pid || j.DependencyPolicy != "run_anyway" ||
		len(j.WaitingOn) != 1 {
		t.Fatalf("child %+v", j)
	}
	out := ctlOK(t, b, "get", cid)
	for _, want := range []string{"PARENTS", pid + " (run_anyway)", "WAITING ON"} {
		if !strings.Contains(out, want) {
			t.Fatalf("brokerctl get lacks %q:\n%s", want, out)
		}
	}
	if out := ctlOK(t, b, "get", pid); !strings.Contains(out, "DEPENDANTS") || !strings.Contains(out, cid) {
		t.Fatalf("brokerctl get of the parent lacks its dependant:\n%s", out)
	}

	var chain struct{ Jobs []Enqueued }
	ctlJSON(t, b, &chain, "enqueue", "--queue", "wf", "--type", "s", "--count", "3", "--chain")
	ctlJSON(t, b, &j, "get", chain.Jobs[2].ID)
	if j.State != "waiting" || len(j.Parents) != 1 || j.Parents[0] != chain.Jobs[1].ID {
		t.Fatalf("third of a chain %+v", j)
	}
	if out, err := ctl(t, b, "enqueue", "--queue", "wf", "--depends-on", "no-such-job"); err == nil || !strings.Contains(out+err.Error(), "unknown parent") {
		t.Fatalf("unknown parent: %v\n%s", err, out)
	}
}
