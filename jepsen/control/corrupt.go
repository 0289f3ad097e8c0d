package control

import (
	"fmt"
	"math/rand"

	"github.com/hashicorp/raft"

	"github.com/raftq/raftq/brokerd"
)

// FlipLogBit flips one bit in the data of one of the last command entries
// of n's Raft log (n must be down): the bit rot a disk or a controller can
// cause, which neither bbolt nor hashicorp/raft checksums. It says which
// entry and byte it changed.
func (c *Cluster) FlipLogBit(n *Node, rng *rand.Rand) (string, error) {
	if n.Running() {
		return "", fmt.Errorf("flip %s: still running", n.ID)
	}
	return flipLogBit(n.DataDir, rng)
}

// flipLogBit is FlipLogBit on the log in data dir dir.
func flipLogBit(dir string, rng *rand.Rand) (string, error) {
	store, err := brokerd.OpenRaftLog(dir)
	if err != nil {
		return "", err
	}
	defer store.Close()
	first, err := store.FirstIndex()
	if err != nil {
		return "", err
	}
	last, err := store.LastIndex()
	if err != nil {
		return "", err
	}
	for i := last; i >= first && i > 0 && i+50 > last; i-- {
		var l raft.Log
		if err := store.GetLog(i, &l); err != nil || l.Type != raft.LogCommand || len(l.Data) < 16 {
			continue
		}
		if rng.Intn(3) != 0 && i > first && i+49 > last {
			continue // not always the very last entry
		}
		pos := len(l.Data)/4 + rng.Intn(len(l.Data)/2)
		bit := byte(1) << uint(rng.Intn(8))
		l.Data[pos] ^= bit
		// A WAL only appends: cut the log back to the entry and write it
		// and everything after it again (the same for bolt).
		rest := []*raft.Log{&l}
		for j := i + 1; j <= last; j++ {
			var e raft.Log
			if err := store.GetLog(j, &e); err != nil {
				return "", err
			}
			rest = append(rest, &e)
		}
		if err := store.DeleteRange(i, last); err != nil {
			return "", err
		}
		if err := store.StoreLogs(rest); err != nil {
			return "", err
		}
		return fmt.Sprintf("flipped bit %#x of byte %d/%d of entry %d (log %d..%d)", bit, pos, len(l.Data), i, first, last), nil
	}
	return "no command entry to corrupt", nil
}
