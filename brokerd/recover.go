package brokerd

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/raftq/raftq/fsm"
)

// openStores opens what a node keeps in its data dir: the Raft log and
// stable store (logstore.go: raft-wal in raft-wal/ or raft-boltdb in
// raft.db, per kind and what the dir holds) and the snapshot store
// (snapshots/). Open and Recover both use it, so they always agree on the
// layout. It returns the log's path for error messages.
//
// Raft's and the stores' own log lines (hclog, warnings and up) go to
// logger: a daemon's log and a test's t.Log alike, not straight to stderr.
func openStores(dataDir, nodeID, kind string, segmentSize int, logger *slog.Logger) (logStore, string, *raft.FileSnapshotStore, hclog.Logger, error) {
	if err := privateDataDir(dataDir); err != nil {
		return nil, "", nil, nil, err
	}
	kind, err := chooseLogStore(dataDir, kind)
	if err != nil {
		return nil, "", nil, nil, err
	}
	hlog := hclog.New(&hclog.LoggerOptions{Name: "raft." + nodeID, Level: hclog.Warn, Output: slogWriter{logger}, DisableTime: true})
	store, path, err := openLogStore(dataDir, kind, segmentSize, hlog)
	if err != nil {
		return nil, "", nil, nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(dataDir, "snapshots"), 2, hlog)
	if err != nil {
		_ = store.Close()
		return nil, "", nil, nil, fmt.Errorf("snapshot store: %w", err)
	}
	return store, path, snaps, hlog, nil
}

// Recovered describes what Recover did.
type Recovered struct {
	// Index is the last Raft index the recovered state holds; the new
	// configuration takes effect from there.
	Index uint64
	// Members is the configuration the node now starts with.
	Members []Peer
	// GroupIndexes is Index for each Raft group, in group order, on a
	// node that runs several (Index is group 0's); nil with one group.
	GroupIndexes []uint64
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
	groups, err := dirGroupCount(dataDir)
	if err != nil {
		return Recovered{}, fmt.Errorf("recover: %w", err)
	}
	idx, err := recoverGroup(dataDir, nodeID, members, conf)
	if err != nil {
		return Recovered{}, fmt.Errorf("recover: %w", err)
	}
	if groups == 1 {
		return Recovered{Index: idx, Members: members}, nil
	}
	// Every group of a node that runs several lost the same quorum: each
	// is recovered to the same members (they share the Raft port).
	out := Recovered{Index: idx, Members: members, GroupIndexes: []uint64{idx}}
	for g := 1; g < groups; g++ {
		gi, err := recoverGroup(filepath.Join(dataDir, groupsDir, strconv.Itoa(g)), nodeID, members, conf)
		if err != nil {
			return Recovered{}, fmt.Errorf("group %d (groups before it were recovered; run recover again): %w", g, err)
		}
		out.GroupIndexes = append(out.GroupIndexes, gi)
	}
	return out, nil
}

// dirGroupCount is the group count a data dir was made with (1 when it
// records none).
func dirGroupCount(dataDir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, groupCountFile))
	if os.IsNotExist(err) {
		return 1, nil
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(string(trimNL(b)))
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%s: %q is not a group count", filepath.Join(dataDir, groupCountFile), b)
	}
	return n, nil
}

// recoverGroup recovers the Raft group whose data dir is dataDir and
// returns the index of its recovered snapshot.
func recoverGroup(dataDir, nodeID string, members []Peer, conf raft.Configuration) (uint64, error) {
	// A wrong directory must stay untouched, not gain an empty store.
	_, errBolt := os.Stat(filepath.Join(dataDir, boltLogFile))
	_, errWAL := os.Stat(filepath.Join(dataDir, walLogDir))
	if errBolt != nil && errWAL != nil {
		return 0, fmt.Errorf("no Raft state in %s: %w", dataDir, errBolt)
	}
	store, _, snaps, hlog, err := openStores(dataDir, nodeID, LogStoreAuto, 0, slog.Default())
	if err != nil {
		return 0, err
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
		return 0, err
	}
	// The log is compacted away: the new snapshot is the state.
	list, err := snaps.List()
	if err != nil || len(list) == 0 {
		return 0, fmt.Errorf("the recovered snapshot is missing: %v", err)
	}
	return list[0].Index, nil
}

// slogWriter carries hclog's formatted lines into a slog logger at WARN
// (hclog here only passes warnings and errors), one record per line.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if line != "" {
			w.l.Warn(line, "component", "raft")
		}
	}
	return len(p), nil
}
