package fsm

import (
	"sync"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/raftq/raftq/fsm/fsmpb"
	"google.golang.org/protobuf/proto"
)

// decodeSeeds are valid entries of every command type plus a few broken
// ones; testdata/fuzz/FuzzDecode holds more.
func decodeSeeds() [][]byte {
	k := nj("k", "q")
	k.IdempotencyKey, k.DedupWindow, k.RunAt = "key", 60*sec, t0+sec
	// Seeds are Entry bodies: the fuzz property frames them itself.
	body := func(b []byte) []byte { return b[frameHeader:] }
	return [][]byte{
		body(entry()),
		body(entry(cmdEnqueue(t0, nj("a", "q"), k))),
		body(entry(cmdLease(t0, "w", "a", "k"), cmdExtend(t0, ref("a", 2)))),
		body(entry(cmdAck(t0, ref("a", 2)), cmdNack(t0, &fsmpb.NackItem{JobId: "k", Token: 2, Error: "e", RetryAfter: -1}))),
		body(entry(cmdExpire(t0, 0), cmdPromote(t0, 5), cmdCancel(t0, "a"))),
		body(entry(cmdPause(t0, "q"), cmdResume(t0, "q"), cmdRedrive(t0, "q", 0, "a"), cmdPurge(t0, t0, 0))),
		body(entry(cmdSetNode(t0, "n", "g", "r"))),
		body(entry(cmdMembers(1, 0, "n1", "n2"), cmdMembers(1, 1, "n2", "n3"), cmdMembers(0, 0, "n1"))),
		{0xff, 0x01},
		mustMarshal(&fsmpb.Entry{Version: 2}),
	}
}

// FuzzDecode: Decode never panics; what it accepts re-encodes to an equal
// entry; and Apply of any accepted entry never panics and keeps the state
// consistent (a decodable entry is never fatal).
func FuzzDecode(f *testing.F) {
	for _, s := range decodeSeeds() {
		f.Add(s)
	}
	f.Fuzz(fuzzDecodeBody)
}

// fuzzDecodeBody is FuzzDecode's property, for one input.
//
// The fuzzer's bytes are taken as the Entry body and framed with a correct
// checksum, so that it explores the decoder rather than the CRC; the raw
// bytes are also decoded, unframed, which must fail without panicking
// unless they happen to be a valid frame.
func fuzzDecodeBody(t *testing.T, raw []byte) {
	_, _ = Decode(raw)
	b := frame(raw)
	e, err := Decode(b)
	if err != nil {
		return
	}
	b2, err := Encode(e)
	if err != nil {
		t.Fatalf("Encode of a decoded entry: %v", err)
	}
	e2, err := Decode(b2)
	if err != nil {
		t.Fatalf("Decode of a re-encoded entry: %v", err)
	}
	if !proto.Equal(e, e2) {
		t.Fatalf("round trip changed the entry:\n%v\n%v", e, e2)
	}
	fm := New()
	for i := uint64(1); i <= 2; i++ { // twice: the second meets the first's state
		res, ok := fm.Apply(&raft.Log{Index: i, Type: raft.LogCommand, Data: b}).([]Result)
		if !ok || len(res) != len(e.Commands) {
			t.Fatalf("Apply returned %d results for %d commands", len(res), len(e.Commands))
		}
	}
	checkInvariants(t, fm)
}

var (
	restoreFixtureOnce sync.Once
	restoreFixture     []byte // snapshot of busyHarness
	restoreFixtureHash string
)

// FuzzRestore: Restore never panics; on error the state is exactly what it
// was; on success the state is consistent and survives another round trip.
func FuzzRestore(f *testing.F) {
	restoreFixtureOnce.Do(func() {
		h := busyHarness(f)
		restoreFixture = snapshotBytes(f, h.f)
		restoreFixtureHash = h.f.Hash()
	})
	f.Add(restoreFixture)
	f.Add(snapshotBytes(f, New()))
	members := newHarness(f)
	members.one(cmdMembers(1, 0, "n1", "n2"))
	members.one(cmdMembers(1, 1, "n2", "n3"))
	members.one(cmdMembers(4, 0, "n1"))
	f.Add(snapshotBytes(f, members.f))
	f.Add(restoreFixture[:len(restoreFixture)/2])
	f.Add([]byte{})
	f.Add([]byte{2, 8, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		fm := New()
		if err := restoreBytes(fm, restoreFixture); err != nil {
			t.Fatal(err)
		}
		last := fm.LastIndex()
		if err := restoreBytes(fm, b); err != nil {
			if fm.Hash() != restoreFixtureHash || fm.LastIndex() != last {
				t.Fatal("failed Restore changed state")
			}
			return
		}
		checkInvariants(t, fm)
		again := New()
		if err := restoreBytes(again, snapshotBytes(t, fm)); err != nil {
			t.Fatalf("snapshot of a restored state does not restore: %v", err)
		}
		if again.Hash() != fm.Hash() {
			t.Fatal("second round trip changed state")
		}
	})
}
