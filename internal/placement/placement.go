// Package placement says which Raft group of a cluster holds a queue and
// which group a job id belongs to. Brokers route calls with it and the Go
// SDK uses it to go straight to the right group's leader, so both must
// compute the same answer from the same inputs: it is a pure function of
// the queue name and the cluster's group count, with no state to replicate
// or to get out of date.
//
// The group count is fixed when a cluster is created (every node is
// started with the same --groups, and a data dir refuses another count):
// changing it would move queues whose jobs stay in their old group. A
// queue an operator moved is the exception: group 0's placement table
// (fsm/placement.go) says where it lives, and brokers consult it before
// this hash (docs/scale-out.md, "Moving a queue").
package placement

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// MaxGroups is the most Raft groups one cluster may run. Each group is a
// Raft instance with its own log, heartbeats and leader duties on every
// node; beyond a few per core they cost more than they spread.
const MaxGroups = 64

// Header is the gRPC metadata key naming the group a call is for (decimal).
// Any node routes a call with it to that group; without it the node finds
// the group from the call's queue or job id. Envoy routes on it too.
const Header = "raftq-group"

// idSep separates a job id from its group in ids of groups other than 0:
// "<uuid>.g<group>". Group 0's ids are plain, so a one-group cluster's ids
// look as they always did.
const idSep = ".g"

// Queue returns the group that holds queue in a cluster of groups groups:
// FNV-1a of the name modulo the count (0 when groups ≤ 1).
func Queue(queue string, groups int) uint32 {
	if groups <= 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(queue))
	return h.Sum32() % uint32(groups)
}

// JobID returns id (a job id minted by group g) tagged with its group.
func JobID(id string, g uint32) string {
	if g == 0 {
		return id
	}
	return id + idSep + strconv.FormatUint(uint64(g), 10)
}

// ErrBadGroup is returned for a group tag or header that is not a group.
var ErrBadGroup = errors.New("not a group of this cluster")

// Job returns the group of a job id: the tag JobID put on it, 0 for an id
// without one. An id naming a group outside [0, groups) is an error.
func Job(id string, groups int) (uint32, error) {
	i := strings.LastIndex(id, idSep)
	if i < 0 {
		return 0, nil
	}
	g, err := strconv.ParseUint(id[i+len(idSep):], 10, 32)
	if err != nil {
		// Not a tag (an id that merely contains ".g"): group 0.
		return 0, nil
	}
	return Check(g, groups)
}

// Parse reads a group header's value.
func Parse(v string, groups int) (uint32, error) {
	g, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%w: %s %q is not a number", ErrBadGroup, Header, v)
	}
	return Check(g, groups)
}

// Check returns g when it is a group of a cluster of groups groups.
func Check(g uint64, groups int) (uint32, error) {
	if groups < 1 {
		groups = 1
	}
	if g >= uint64(groups) {
		return 0, fmt.Errorf("%w: group %d, the cluster has %d (0 to %d)", ErrBadGroup, g, groups, groups-1)
	}
	return uint32(g), nil
}

// QueuesPerGroup names, for a cluster of groups groups, one queue in each
// group: prefix, prefix-1, prefix-2, ... — the first name found in each
// group, in group order. Benchmarks, tests and the fault harness use it
// to load every group alike (names are placed by hash, so consecutive
// names would not).
func QueuesPerGroup(prefix string, groups int) []string {
	groups = max(groups, 1)
	out := make([]string, groups)
	for k, found := 0, 0; found < groups; k++ {
		name := prefix
		if k > 0 {
			name = prefix + "-" + strconv.Itoa(k)
		}
		if g := Queue(name, groups); out[g] == "" {
			out[g] = name
			found++
		}
	}
	return out
}
