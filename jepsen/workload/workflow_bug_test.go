package workload

import (
	"testing"
	"time"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/internal/seededbug"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/jepsen/checker"
)

// TestWorkflowCheckerCatchesIgnoredDeps runs the workflow workload against
// an in-process cluster with the workflow-ignore-deps seeded bug (as the
// jepsen,jepsenbug build of brokerd installs it): the checker must find the
// run invalid.
func TestWorkflowCheckerCatchesIgnoredDeps(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster for several seconds")
	}
	ics, err := seededbug.Interceptors(seededbug.WorkflowIgnoreDeps, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := testcluster.New(t, 1, func(cfg *brokerd.Config) {
		cfg.Testing = &brokerd.Testing{UnaryInterceptors: ics}
	})
	wf, err := StartWorkflows(c.Addrs(), 3)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	wf.Stop()
	r := checker.Workflow(wf.Read(30 * time.Second))
	t.Logf("%s", r.Summary())
	if r.Valid || r.Counts["leased_early"] == 0 || r.Counts["dependencies_changed"] == 0 {
		t.Fatalf("the seeded bug went unnoticed: %v", r.Counts)
	}
}
