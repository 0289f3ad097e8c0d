package jepsen

import (
	"bytes"
	"errors"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/fsm/fsmpb"
)

// TestLogBitFlipIsRefused is the regression test for what `jepsen run
// --nemesis corrupt` found: one bit flipped in a Raft log entry on one
// node's disk (bbolt and hashicorp/raft keep no checksum of entry data)
// used to decode as a command for another job, so that node applied
// something else than its peers: its state hash differed, and once it led
// it leased jobs the others saw acked. Entries now carry a CRC-32C frame:
// the corrupted copy is refused and Apply stops the node instead.
func TestLogBitFlipIsRefused(t *testing.T) {
	const id = "01a2196a-bf2b-7d63-9481-b6eca8dde780"
	enc := func(cmds ...*fsmpb.Command) []byte {
		b, err := fsm.Encode(&fsmpb.Entry{Version: fsm.EntryVersion, Commands: cmds})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	const now = int64(1_700_000_000_000_000_000)
	logs := [][]byte{
		enc(&fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_ENQUEUE, Now: now, Body: &fsmpb.Command_Enqueue{Enqueue: &fsmpb.Enqueue{
			Jobs: []*fsmpb.NewJob{{Id: id, Queue: "q", Type: "t", MaxAttempts: 5, LeaseDuration: 1e9}}}}}),
		enc(&fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_LEASE, Now: now, Body: &fsmpb.Command_Lease{Lease: &fsmpb.Lease{
			WorkerId: "w", Items: []*fsmpb.LeaseItem{{JobId: id}}}}}),
		enc(&fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_ACK, Now: now, Body: &fsmpb.Command_Ack{Ack: &fsmpb.Ack{
			Items: []*fsmpb.LeaseRef{{JobId: id, Token: 2}}}}}),
	}
	flipped := bytes.Clone(logs[2])
	at := bytes.Index(flipped, []byte(id))
	flipped[at+5] ^= 0x40 // one bit of the job id, as the nemesis did

	_, err := fsm.Decode(flipped)
	if err != nil && !errors.Is(err, fsm.ErrChecksum) {
		t.Fatalf("flipped entry refused, but not by its checksum: %v", err)
	}
	if err != nil {
		b := fsm.New()
		defer func() {
			if recover() == nil {
				t.Fatal("Apply of a corrupted entry did not stop the node")
			}
		}()
		b.Apply(&raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: flipped})
		return
	}
	{
		a, b := fsm.New(), fsm.New()
		for i, data := range logs {
			a.Apply(&raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: data})
			if i == 2 {
				data = flipped
			}
			b.Apply(&raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: data})
		}
		ja, _ := a.Get(id)
		jb, _ := b.Get(id)
		t.Fatalf("an entry with a flipped bit decodes and applies: job %s is %v on the clean replica, %v on the corrupted one (hashes equal: %v)",
			id, ja.State, jb.State, a.Hash() == b.Hash())
	}
}
