package control

import (
	"fmt"
	"math/rand"
	"path/filepath"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// FlipLogBit flips one bit in the data of one of the last command entries
// of n's Raft log (n must be down): the bit rot a disk or a controller can
// cause, which neither bbolt nor hashicorp/raft checksums. It says which
// entry and byte it changed.
func (c *Cluster) FlipLogBit(n *Node, rng *rand.Rand) (string, error) {
	if n.Running() {
		return "", fmt.Errorf("flip %s: still running", n.ID)
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(n.DataDir, "raft.db")})
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
		if err := store.StoreLog(&l); err != nil {
			return "", err
		}
		return fmt.Sprintf("flipped bit %#x of byte %d/%d of entry %d (log %d..%d)", bit, pos, len(l.Data), i, first, last), nil
	}
	return "no command entry to corrupt", nil
}
