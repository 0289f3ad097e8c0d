package main

import (
	"testing"

	"github.com/raftq/raftq/internal/testutil"
)

// TestLinksNoServerCode: brokerctl is a client. It prints the admin API's
// JSON shapes from internal/adminapi and talks through the client SDK, so
// it links no broker package (not even brokerd/admin for those shapes),
// no FSM and no Raft or its storage.
func TestLinksNoServerCode(t *testing.T) {
	testutil.LinksNone(t, []string{"github.com/raftq/raftq/cmd/brokerctl"}, []string{
		"github.com/raftq/raftq/brokerd/...", "github.com/raftq/raftq/fsm/...", "github.com/raftq/raftq/svcd/...",
		"github.com/raftq/raftq/internal/apierr", "github.com/raftq/raftq/internal/dispatch", "github.com/raftq/raftq/internal/proposer",
		"github.com/hashicorp/raft/...", "github.com/hashicorp/raft-boltdb/...", "go.etcd.io/bbolt/...",
	})
}
