package control

import (
	"bytes"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/raftq/raftq/brokerd"
)

// TestFlipLogBitBothLogKinds corrupts exactly one bit of one command entry
// in a WAL log and in a bolt log, keeping every other entry and the log's
// bounds as they were.
func TestFlipLogBitBothLogKinds(t *testing.T) {
	for _, kind := range []string{"wal", "bolt"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			var err error
			if kind == "wal" {
				err = os.Mkdir(filepath.Join(dir, "raft-wal"), 0o700)
			} else {
				err = os.WriteFile(filepath.Join(dir, "raft.db"), nil, 0o600)
			}
			if err != nil {
				t.Fatal(err)
			}
			store, err := brokerd.OpenRaftLog(dir)
			if err != nil {
				t.Fatal(err)
			}
			var want []*raft.Log
			for i := uint64(1); i <= 20; i++ {
				l := &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(i)}, 64)}
				want = append(want, l)
			}
			if err := store.StoreLogs(want); err != nil {
				t.Fatal(err)
			}
			store.Close()

			msg, err := flipLogBit(dir, rand.New(rand.NewSource(1)))
			if err != nil {
				t.Fatal(err)
			}
			t.Log(msg)
			store, err = brokerd.OpenRaftLog(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			if last, _ := store.LastIndex(); last != 20 {
				t.Fatalf("last index %d after the flip, want 20", last)
			}
			flipped := 0
			for _, w := range want {
				var got raft.Log
				if err := store.GetLog(w.Index, &got); err != nil {
					t.Fatalf("entry %d: %v", w.Index, err)
				}
				if !bytes.Equal(got.Data, w.Data) {
					flipped++
					diff := 0
					for i := range got.Data {
						x := got.Data[i] ^ w.Data[i]
						for ; x != 0; x &= x - 1 {
							diff++
						}
					}
					if diff != 1 {
						t.Errorf("entry %d differs in %d bits, want 1", w.Index, diff)
					}
				}
			}
			if flipped != 1 {
				t.Fatalf("%d entries changed, want exactly 1", flipped)
			}
		})
	}
}
