package brokerd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"

	"github.com/raftq/raftq/fsm"
)

// openStores opens what a node keeps in its data dir: the Raft log and
// stable store (raft-boltdb, raft.db) and the snapshot store (snapshots/).
// Open and Recover both use it, so they always agree on the layout.
func openStores(dataDir, nodeID string) (*raftboltdb.BoltStore, *raft.FileSnapshotStore, hclog.Logger, error) {
	if err := privateDataDir(dataDir); err != nil {
		return nil, nil, nil, err
	}
	// fsync stays on (NoSync false): an OK answered before a majority has
	// the entry on disk would be a lie after a power cut.
	dbPath := filepath.Join(dataDir, "raft.db")
	store, err := raftboltdb.New(raftboltdb.Options{Path: dbPath, BoltOptions: &bbolt.Options{
		// bbolt locks the file; without a timeout a second brokerd on the
		// same data dir would hang instead of saying so.
		Timeout: 2 * time.Second,
		// The freelist is rebuilt on open instead of being written on every
		// commit: fewer pages per fsync on the hot path (as etcd does).
		NoFreelistSync: true,
		FreelistType:   bbolt.FreelistMapType,
	}})
	if errors.Is(err, bberrors.ErrTimeout) {
		return nil, nil, nil, fmt.Errorf("open raft log %s: locked by another process (is another brokerd using this data dir?)", dbPath)
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("open raft log %s: %w", dbPath, err)
	}
	hlog := hclog.New(&hclog.LoggerOptions{Name: "raft." + nodeID, Level: hclog.Warn, Output: os.Stderr})
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(dataDir, "snapshots"), 2, hlog)
	if err != nil {
		_ = store.Close()
		return nil, nil, nil, fmt.Errorf("snapshot store: %w", err)
	}
	return store, snaps, hlog, nil
}

// Recovered describes what Recover did.
type Recovered struct {
	// Index is the last Raft index the recovered state holds; the new
	// configuration takes effect from there.
	Index uint64
	// Members is the configuration the node now starts with.
	Members []Peer
}

// Recover rewrites the Raft configuration of a stopped node to members,
// for a cluster that lost its quorum for good (hashicorp/raft's
// RecoverCluster, as Consul's peers.json and rqlite's recovery do). The
// node keeps its log and snapshots: everything in them, committed or not,
// becomes the recovered state, at a new snapshot whose configuration is
// members; started again, the node leads once it wins a vote among
// members (alone, it leads at once). members must include nodeID. Only for
// disaster: run on several nodes of a cluster that still has a quorum, it
// splits the cluster in two.
func Recover(dataDir, nodeID string, members []Peer) (Recovered, error) {
	if nodeID == "" || dataDir == "" {
		return Recovered{}, errors.New("recover: node id and data dir are required")
	}
	self := false
	conf := raft.Configuration{}
	for _, m := range members {
		self = self || m.ID == nodeID
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.ID), Address: raft.ServerAddress(m.RaftAddr)})
	}
	if !self {
		return Recovered{}, fmt.Errorf("recover: the members must include this node (%s)", nodeID)
	}
	// A wrong directory must stay untouched, not gain an empty store.
	if _, err := os.Stat(filepath.Join(dataDir, "raft.db")); err != nil {
		return Recovered{}, fmt.Errorf("recover: no Raft state in %s: %w", dataDir, err)
	}
	store, snaps, hlog, err := openStores(dataDir, nodeID)
	if err != nil {
		return Recovered{}, fmt.Errorf("recover: %w", err)
	}
	defer store.Close()
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(nodeID)
	rc.Logger = hlog
	// The FSM only replays the log into the new snapshot; an in-memory
	// transport encodes the members' addresses into it (what a network
	// transport would write too) without listening anywhere.
	_, trans := raft.NewInmemTransport(raft.ServerAddress(members[0].RaftAddr))
	if err := raft.RecoverCluster(rc, fsm.New(), store, store, snaps, trans, conf); err != nil {
		return Recovered{}, fmt.Errorf("recover: %w", err)
	}
	// The log is compacted away: the new snapshot is the state.
	list, err := snaps.List()
	if err != nil || len(list) == 0 {
		return Recovered{}, fmt.Errorf("recover: the recovered snapshot is missing: %v", err)
	}
	return Recovered{Index: list[0].Index, Members: members}, nil
}
