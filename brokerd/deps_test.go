package brokerd_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNodeLinksNoProcessCode: the node library links none of what a
// process serves around it (brokerd/daemon assembles those), and brokerctl
// does not link the node for its default limits (internal/limits), and a
// production brokerd links no seeded bug.
func TestNodeLinksNoProcessCode(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	for pkg, banned := range map[string][]string{
		"github.com/raftq/raftq/brokerd": {
			"github.com/go-chi/chi/...", "github.com/raftq/raftq/brokerd/admin", "github.com/raftq/raftq/brokerd/etcdnode",
			"github.com/raftq/raftq/brokerd/daemon", "github.com/raftq/raftq/results", "github.com/raftq/raftq/internal/liveconfig",
			"go.etcd.io/etcd/client/...",
		},
		// Seeded bugs are linked only by the jepsen,jepsenbug build.
		"github.com/raftq/raftq/cmd/brokerd": {"github.com/raftq/raftq/internal/seededbug"},
		"github.com/raftq/raftq/cmd/brokerctl": {
			"github.com/raftq/raftq/brokerd", "github.com/raftq/raftq/brokerd/daemon", "github.com/raftq/raftq/brokerd/etcdnode",
		},
	} {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		deps := strings.Fields(string(out))
		if len(deps) < 10 {
			t.Fatalf("go list -deps %s listed %d packages: %q", pkg, len(deps), out)
		}
		for _, d := range deps {
			for _, bad := range banned {
				// "p/..." is p and everything under it; else p exactly.
				if d == strings.TrimSuffix(bad, "/...") || (strings.HasSuffix(bad, "/...") && strings.HasPrefix(d, strings.TrimSuffix(bad, "..."))) {
					t.Errorf("%s links %s", pkg, d)
				}
			}
		}
	}
}
