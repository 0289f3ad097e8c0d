package workload

import (
	"testing"
	"time"

	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/jepsen/checker"
)

// TestWorkflowWorkloadOnCluster runs the workflow workload against a real
// 3-node cluster with a leader kill in the middle and wants
// checker.Workflow to find the run valid and to have seen dependencies,
// failures and cascades: the workload and the checker agree on what a
// correct broker does.
func TestWorkflowWorkloadOnCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster for several seconds")
	}
	c := testcluster.New(t, 3, nil)
	wf, err := StartWorkflows(c.Addrs(), 7)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	leader := c.WaitLeader(30 * time.Second)
	c.Kill(leader.ID())
	c.WaitLeader(30 * time.Second)
	time.Sleep(3 * time.Second)
	wf.Stop()
	st := wf.Read(60 * time.Second)
	r := checker.Workflow(st)
	if !r.Valid {
		t.Fatalf("workflow checker: %+v", r.Failures)
	}
	t.Logf("%s", r.Summary())
	if r.Counts["workflows"] < 5 || r.Counts["with_parents"] == 0 || r.Counts["cancelled_by_parent"] == 0 {
		t.Fatalf("the workload exercised too little: %v", r.Counts)
	}
}
