package client_test

import (
	"testing"

	"github.com/raftq/raftq/internal/testutil"
)

// serverOnly are module paths the SDK packages must never link: Raft and
// its storage, the FSM, the broker and results servers, and the servers'
// side of auth (token files, JWTs) and of the error mapping. An
// application that embeds the client pulls none of it in.
var serverOnly = []string{
	"github.com/hashicorp/raft/...",
	"github.com/hashicorp/raft-boltdb/...",
	"go.etcd.io/bbolt/...",
	"go.etcd.io/etcd/server/...",
	"github.com/golang-jwt/jwt/...",
	"gorm.io/...",
	"github.com/raftq/raftq/fsm/...",
	"github.com/raftq/raftq/brokerd/...",
	"github.com/raftq/raftq/svcd/...",
	"github.com/raftq/raftq/internal/auth/...",
	"github.com/raftq/raftq/internal/apierr/...",
}

// The SDK (client, worker, results) links no server code: `go list -deps`
// of its packages names none of serverOnly.
func TestSDKLinksNoServerCode(t *testing.T) {
	testutil.LinksNone(t, []string{"github.com/raftq/raftq/client", "github.com/raftq/raftq/worker", "github.com/raftq/raftq/results"}, serverOnly)
}
