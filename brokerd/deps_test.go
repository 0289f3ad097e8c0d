package brokerd_test

import (
	"testing"

	"github.com/raftq/raftq/internal/testutil"
)

// TestNodeLinksNoProcessCode: the node library links none of what a
// process serves around it (brokerd/daemon assembles those), and a
// production brokerd links no seeded bug (only the jepsen,jepsenbug build
// does). That brokerctl links no broker code is cmd/brokerctl's
// TestLinksNoServerCode.
func TestNodeLinksNoProcessCode(t *testing.T) {
	testutil.LinksNone(t, []string{"github.com/raftq/raftq/brokerd"}, []string{
		"github.com/go-chi/chi/...", "github.com/raftq/raftq/brokerd/admin", "github.com/raftq/raftq/brokerd/etcdnode",
		"github.com/raftq/raftq/brokerd/daemon", "github.com/raftq/raftq/results", "github.com/raftq/raftq/internal/liveconfig",
		"go.etcd.io/etcd/client/...",
	})
	testutil.LinksNone(t, []string{"github.com/raftq/raftq/cmd/brokerd"}, []string{"github.com/raftq/raftq/internal/seededbug"})
}
