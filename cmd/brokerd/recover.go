package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/internal/config"
)

// runRecover is `brokerd recover`: with the node stopped, rewrite its Raft
// configuration to --members (default: this node alone, at its Raft
// address) so that it can start and lead after its cluster lost a quorum
// for good. It reads the same configuration as the daemon, so `brokerd
// recover --config node.yaml` recovers that node.
func runRecover(args []string, stdout, stderr io.Writer) int {
	ks := append(keys(), config.Key{Name: "recover.members", Flag: "members", Kind: config.List,
		Usage: "the new voters as id=raft-host:port (default: this node alone at raft.advertise, else raft.addr)"})
	l := config.New("brokerd recover", ks)
	l.FlagSet().SetOutput(stderr)
	v, err := l.Load(args)
	if err != nil {
		return usageError(stderr, err)
	}
	id := v.String("node.id")
	members, err := brokerd.ParsePeers(strings.Join(v.List("recover.members"), ","))
	if err != nil {
		return usageError(stderr, l.Errorf("recover.members", "%v", err))
	}
	if len(members) == 0 {
		addr := v.String("raft.advertise")
		if addr == "" {
			addr = v.String("raft.addr")
		}
		members = []brokerd.Peer{{ID: id, RaftAddr: addr}}
	}
	res, err := brokerd.Recover(v.String("node.data_dir"), id, members)
	if err != nil {
		fmt.Fprintf(stderr, "brokerd recover: %v\n", err)
		return 1
	}
	var names []string
	for _, m := range res.Members {
		names = append(names, m.ID+"="+m.RaftAddr)
	}
	fmt.Fprintf(stdout, "%s recovered at index %d; its voters are now %s. Start it (with the same id and data dir); add new nodes with --join.\n",
		id, res.Index, strings.Join(names, ","))
	return 0
}
