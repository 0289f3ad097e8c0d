package brokerd

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/raftq/raftq/fsm/fsmpb"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// DefaultConsistencyCheckInterval is how often a leader checks that the
// nodes' states agree (Config.ConsistencyCheckInterval).
const DefaultConsistencyCheckInterval = 5 * time.Minute

// Consistency checks: the leader's duty that finds a replica whose state
// went wrong while the cluster runs (fsm/check.go has the node's side).
// Each round it
//
//  1. asks every member's Status whether it applies checks (a node of an
//     older version would stop on the entry; then no check is proposed);
//  2. proposes a CheckHash entry: every node hashes its state as of that
//     entry, off the apply path;
//  3. collects the members' (check_index, check_hash) over Status and
//     compares the hashes of those at that index. The largest group of
//     equal hashes is taken as right; a node outside it is divergent.
//
// A divergence is logged at ERROR with every node's hash, counted in
// raftq_consistency_checks_total{result="divergent"} and
// raftq_consistency_divergent_nodes, and shown in ConsistencyReport: the
// operator replaces that node's store (delete fsm.db: it restores its
// snapshot and replays its log, or wipe the node and rejoin it). The node
// is not stopped automatically: with two of three diverged, "the largest
// group" may be the wrong one, and a person should look.

// ConsistencyReport is the outcome of the last check a leader ran.
type ConsistencyReport struct {
	// Index is the log index the hashes were taken at (0: no check yet).
	Index uint64
	// At is when the check finished.
	At time.Time
	// Hashes maps each node that reported a hash at Index to it.
	Hashes map[string]string
	// Divergent names the nodes outside the largest group of equal hashes.
	Divergent []string
	// Missing names members that did not report a hash at Index in time.
	Missing []string
}

type consistency struct {
	mu   sync.Mutex
	last ConsistencyReport
}

// LastConsistencyCheck returns the last check this node ran as leader.
func (n *Node) LastConsistencyCheck() ConsistencyReport {
	n.checks.mu.Lock()
	defer n.checks.mu.Unlock()
	r := n.checks.last
	r.Hashes = maps.Clone(r.Hashes)
	r.Divergent = slices.Clone(r.Divergent)
	r.Missing = slices.Clone(r.Missing)
	return r
}

// runConsistencyCheck is the leader duty: a check every interval until
// the term ends.
func (n *Node) runConsistencyCheck(ctx context.Context) {
	iv := n.cfg.ConsistencyCheckInterval
	if iv < 0 {
		return // off
	}
	if iv == 0 {
		iv = DefaultConsistencyCheckInterval
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := n.checkConsistency(ctx); err != nil && ctx.Err() == nil {
				n.log.Warn("consistency check not run", "err", err)
			}
		}
	}
}

// checkConsistency runs one round (see above).
func (n *Node) checkConsistency(ctx context.Context) error {
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	addrs := map[string]string{}
	for _, m := range n.fsm.Nodes() {
		addrs[m.NodeID] = m.GRPCAddr
	}
	var members []string
	for _, s := range cf.Configuration().Servers {
		members = append(members, string(s.ID))
	}
	status := func(ctx context.Context, id string) (*raftqv1.StatusResponse, error) {
		if id == n.cfg.NodeID {
			i, h := n.fsm.LastCheck()
			return &raftqv1.StatusResponse{NodeId: id, CheckIndex: i, CheckHash: h, CheckSupported: true}, nil
		}
		if addrs[id] == "" {
			return nil, fmt.Errorf("no gRPC address known for %s", id)
		}
		c, err := n.fwd.conn(addrs[id])
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return raftqv1.NewClusterClient(c).Status(ctx, &raftqv1.StatusRequest{})
	}
	for _, id := range members {
		st, err := status(ctx, id)
		if err != nil {
			return fmt.Errorf("status of %s: %w", id, err)
		}
		if !st.GetCheckSupported() {
			return fmt.Errorf("%s does not apply consistency checks (an older version)", id)
		}
	}
	r := n.prop.Propose(ctx, &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_CHECK_HASH,
		Body: &fsmpb.Command_CheckHash{CheckHash: &fsmpb.CheckHash{}}})
	if r.Err != nil {
		return r.Err
	}
	index := r.Index
	// Hashing a large store takes a while on every node: wait for all.
	hashes := map[string]string{}
	deadline := time.Now().Add(time.Minute)
	for len(hashes) < len(members) && time.Now().Before(deadline) && ctx.Err() == nil {
		for _, id := range members {
			if _, ok := hashes[id]; ok {
				continue
			}
			if st, err := status(ctx, id); err == nil && st.GetCheckIndex() == index {
				hashes[id] = st.GetCheckHash()
			}
		}
		if len(hashes) < len(members) {
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	rep := judge(index, members, hashes)
	rep.At = time.Now()
	n.checks.mu.Lock()
	n.checks.last = rep
	n.checks.mu.Unlock()
	result := "ok"
	switch {
	case len(rep.Divergent) > 0:
		result = "divergent"
		n.log.Error("consistency check: node states diverge; replace the divergent nodes' stores (delete fsm.db, or wipe and rejoin)",
			"index", index, "divergent", strings.Join(rep.Divergent, ","), "hashes", fmt.Sprint(rep.Hashes))
	case len(rep.Missing) > 0:
		result = "incomplete"
		n.log.Warn("consistency check: some nodes did not report a hash", "index", index, "missing", strings.Join(rep.Missing, ","))
	}
	n.metrics.consistency(result, len(rep.Divergent))
	return nil
}

// judge groups the hashes reported at index: the largest group (ties: the
// one holding the lexically first node, so every run judges alike) is
// taken as right.
func judge(index uint64, members []string, hashes map[string]string) ConsistencyReport {
	rep := ConsistencyReport{Index: index, Hashes: hashes}
	groups := map[string][]string{}
	for id, h := range hashes {
		groups[h] = append(groups[h], id)
	}
	best := ""
	for h, ids := range groups {
		sort.Strings(ids)
		if best == "" || len(ids) > len(groups[best]) || len(ids) == len(groups[best]) && ids[0] < groups[best][0] {
			best = h
		}
	}
	for _, id := range members {
		h, ok := hashes[id]
		switch {
		case !ok:
			rep.Missing = append(rep.Missing, id)
		case h != best:
			rep.Divergent = append(rep.Divergent, id)
		}
	}
	return rep
}
