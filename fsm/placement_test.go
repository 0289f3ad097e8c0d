package fsm

import (
	"errors"
	"testing"

	"github.com/raftq/raftq/fsm/fsmpb"
)

func cmdPlace(p *fsmpb.QueuePlacement) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_PLACE_QUEUE, Now: t0,
		Body: &fsmpb.Command_PlaceQueue{PlaceQueue: p}}
}

func cmdSeal(queue string, sealed bool, to uint32) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_SEAL_QUEUE, Now: t0,
		Body: &fsmpb.Command_SealQueue{SealQueue: &fsmpb.SealQueue{Queue: queue, Sealed: sealed, ToGroup: to}}}
}

func cmdImport(now int64, queue string, keys ...*fsmpb.IdempotencyRecord) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_IMPORT_KEYS, Now: now,
		Body: &fsmpb.Command_ImportKeys{ImportKeys: &fsmpb.ImportKeys{Queue: queue, Keys: keys}}}
}

const (
	phaseNone     = fsmpb.PlacementPhase_PLACEMENT_PHASE_NONE
	phaseSealing  = fsmpb.PlacementPhase_PLACEMENT_PHASE_SEALING
	phaseDraining = fsmpb.PlacementPhase_PLACEMENT_PHASE_DRAINING
)

// A sealed queue refuses new jobs (nothing written) but still answers
// duplicates by idempotency and unique key, and its jobs go on being
// leased and acked; reopening takes new jobs again.
func TestSealRefusesNewJobsOnly(t *testing.T) {
	h := newHarness(t)
	keyed := nj("a", "q")
	keyed.IdempotencyKey, keyed.DedupWindow = "k1", 100*sec
	uniq := nj("u", "q")
	uniq.UniqueKey = "u1"
	h.one(cmdEnqueue(t0, keyed, uniq, nj("b", "q")))
	before := h.f.Hash()
	if r := h.one(cmdSeal("q", true, 2)); r.Err != nil {
		t.Fatal(r.Err)
	}
	if h.f.Hash() == before {
		t.Fatal("a seal did not change the hash")
	}
	sealedHash, sealedLen := h.f.Hash(), h.f.Len()

	retry := nj("a2", "q")
	retry.IdempotencyKey = "k1"
	uretry := nj("u2", "q")
	uretry.UniqueKey = "u1"
	res := h.one(cmdEnqueue(t0+sec, nj("c", "q"), retry, uretry))
	var me *MovedError
	if it := res.Items[0]; !errors.As(it.Err, &me) || me.To != 2 || me.Queue != "q" || !errors.Is(it.Err, ErrQueueMoved) {
		t.Fatalf("new job on a sealed queue: %+v", it)
	}
	if it := res.Items[1]; it.Err != nil || !it.Duplicate || it.JobID != "a" {
		t.Fatalf("idempotent retry on a sealed queue: %+v", it)
	}
	if it := res.Items[2]; it.Err != nil || !it.Duplicate || it.JobID != "u" {
		t.Fatalf("unique retry on a sealed queue: %+v", it)
	}
	if _, ok := h.f.Get("c"); ok || h.f.Len() != sealedLen || h.f.Hash() != sealedHash {
		t.Fatal("a refused enqueue changed the store")
	}
	// Other queues are untouched.
	if it := h.one(cmdEnqueue(t0+sec, nj("o", "other"))).Items[0]; it.Err != nil {
		t.Fatal(it.Err)
	}
	// Existing jobs are still served.
	tok := h.nextToken()
	if it := h.one(cmdLease(t0+sec, "w", "b")).Items[0]; it.Err != nil {
		t.Fatal(it.Err)
	}
	if it := h.one(cmdAck(t0+sec, ref("b", tok))).Items[0]; it.Err != nil {
		t.Fatal(it.Err)
	}
	// A workflow with a job of the queue is refused whole.
	wf := h.one(&fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_ENQUEUE_WORKFLOW, Now: t0 + sec,
		Body: &fsmpb.Command_EnqueueWorkflow{EnqueueWorkflow: &fsmpb.Enqueue{Jobs: []*fsmpb.NewJob{nj("w1", "other"), nj("w2", "q")}}}})
	if !errors.Is(wf.Err, ErrQueueMoved) {
		t.Fatalf("workflow on a sealed queue: %v", wf.Err)
	}
	if _, ok := h.f.Get("w1"); ok {
		t.Fatal("a refused workflow created a job")
	}
	if to, ok := h.f.Sealed("q"); !ok || to != 2 {
		t.Fatalf("Sealed = %d, %v", to, ok)
	}
	// Reopened (a queue moved back here): new jobs again.
	h.one(cmdSeal("q", false, 0))
	if it := h.one(cmdEnqueue(t0+2*sec, nj("d", "q"))).Items[0]; it.Err != nil {
		t.Fatal(it.Err)
	}
	if _, ok := h.f.Sealed("q"); ok {
		t.Fatal("still sealed after reopening")
	}
	checkInvariants(t, h.f)
}

// A move advances one phase at a time: each PlaceQueue is a
// compare-and-set on the phase, so a repeated or stale step changes
// nothing.
func TestPlacementPhasesCompareAndSet(t *testing.T) {
	h := newHarness(t)
	start := &fsmpb.QueuePlacement{Queue: "q", Group: 2, FromGroup: 1, Phase: phaseSealing, ExpectPhase: phaseNone}
	if r := h.one(cmdPlace(start)); r.Err != nil {
		t.Fatal(r.Err)
	}
	p := h.f.Placements()["q"]
	if p.GetGroup() != 2 || p.GetFromGroup() != 1 || p.GetPhase() != phaseSealing || p.GetSince() != h.index {
		t.Fatalf("placement %v", p)
	}
	// The same start again (a second operator, or a retry) is refused.
	if r := h.one(cmdPlace(start)); !errors.Is(r.Err, ErrWrongState) {
		t.Fatalf("second start: %v", r.Err)
	}
	// A step naming another move is refused.
	if r := h.one(cmdPlace(&fsmpb.QueuePlacement{Queue: "q", Group: 0, FromGroup: 1, Phase: phaseDraining, ExpectPhase: phaseSealing})); !errors.Is(r.Err, ErrWrongState) {
		t.Fatalf("step of another move: %v", r.Err)
	}
	since := p.GetSince()
	if r := h.one(cmdPlace(&fsmpb.QueuePlacement{Queue: "q", Group: 2, FromGroup: 1, Phase: phaseDraining, ExpectPhase: phaseSealing})); r.Err != nil {
		t.Fatal(r.Err)
	}
	if p := h.f.Placements()["q"]; p.GetPhase() != phaseDraining || p.GetSince() != since {
		t.Fatalf("draining: %v", p)
	}
	if r := h.one(cmdPlace(&fsmpb.QueuePlacement{Queue: "q", Group: 2, FromGroup: 1, Phase: phaseNone, ExpectPhase: phaseDraining})); r.Err != nil {
		t.Fatal(r.Err)
	}
	if p := h.f.Placements()["q"]; p.GetPhase() != phaseNone || p.GetGroup() != 2 || p.GetFromGroup() != 0 {
		t.Fatalf("done: %v", p)
	}
	// A move to where it already is, or one not starting with a seal, is
	// invalid.
	if r := h.one(cmdPlace(&fsmpb.QueuePlacement{Queue: "q", Group: 2, FromGroup: 2, Phase: phaseSealing})); !errors.Is(r.Err, ErrInvalid) {
		t.Fatalf("move to itself: %v", r.Err)
	}
	if r := h.one(cmdPlace(&fsmpb.QueuePlacement{Queue: "q2", Group: 2, FromGroup: 1, Phase: phaseDraining})); !errors.Is(r.Err, ErrInvalid) {
		t.Fatalf("move starting at draining: %v", r.Err)
	}
	if len(h.f.Placements()) != 1 {
		t.Fatalf("placements %v", h.f.Placements())
	}
}

// Imported keys answer a retried enqueue with the job in the old group;
// a key held here wins, an expired one is skipped.
func TestImportKeys(t *testing.T) {
	h := newHarness(t)
	own := nj("own", "q")
	own.IdempotencyKey, own.DedupWindow = "mine", 100*sec
	h.one(cmdEnqueue(t0, own))
	r := h.one(cmdImport(t0, "q",
		&fsmpb.IdempotencyRecord{Key: "k1", JobId: "old.g1", ExpiresAt: t0 + 100*sec},
		&fsmpb.IdempotencyRecord{Key: "mine", JobId: "other.g1", ExpiresAt: t0 + 100*sec},
		&fsmpb.IdempotencyRecord{Key: "gone", JobId: "x.g1", ExpiresAt: t0}))
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	retry := nj("new", "q")
	retry.IdempotencyKey = "k1"
	if it := h.one(cmdEnqueue(t0+sec, retry)).Items[0]; !it.Duplicate || it.JobID != "old.g1" {
		t.Fatalf("retry after import: %+v", it)
	}
	mine := nj("new2", "q")
	mine.IdempotencyKey = "mine"
	if it := h.one(cmdEnqueue(t0+sec, mine)).Items[0]; !it.Duplicate || it.JobID != "own" {
		t.Fatalf("own key overwritten: %+v", it)
	}
	gone := nj("new3", "q")
	gone.IdempotencyKey = "gone"
	if it := h.one(cmdEnqueue(t0+sec, gone)).Items[0]; it.Duplicate || it.Err != nil {
		t.Fatalf("expired import used: %+v", it)
	}
	if got := h.f.IdempotencyKeys("q", t0+sec, 0); len(got) != 2 || got[0].GetKey() != "k1" || got[1].GetJobId() != "own" {
		t.Fatalf("IdempotencyKeys %v", got)
	}
	// A malformed import changes nothing.
	before := h.f.Hash()
	if r := h.one(cmdImport(t0, "q", &fsmpb.IdempotencyRecord{Key: "", JobId: "j"})); !errors.Is(r.Err, ErrInvalid) {
		t.Fatalf("import without key: %v", r.Err)
	}
	if r := h.one(cmdImport(t0, "q", &fsmpb.IdempotencyRecord{Key: "z", JobId: "j", ExpiresAt: t0 + 100*sec, Queue: "elsewhere"})); !errors.Is(r.Err, ErrInvalid) {
		t.Fatalf("import of another queue's key: %v", r.Err)
	}
	if h.f.Hash() != before {
		t.Fatal("a refused import changed the store")
	}
	checkInvariants(t, h.f)
}

// Placements and seals survive a snapshot, and the placement cache sees
// a Restore.
func TestPlacementSnapshot(t *testing.T) {
	h := newHarness(t)
	h.one(cmdEnqueue(t0, nj("a", "q")))
	h.one(cmdPlace(&fsmpb.QueuePlacement{Queue: "q", Group: 3, FromGroup: 0, Phase: phaseSealing}))
	h.one(cmdSeal("q", true, 3))
	want := h.f.Hash()
	f := New()
	if len(f.Placements()) != 0 {
		t.Fatal("empty store has placements")
	}
	snap, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	if err := restoreBytes(f, sink.Bytes()); err != nil {
		t.Fatal(err)
	}
	if f.Hash() != want {
		t.Fatal("restored state differs")
	}
	if p := f.Placements()["q"]; p.GetGroup() != 3 || p.GetPhase() != phaseSealing {
		t.Fatalf("restored placement %v", p)
	}
	if to, ok := f.Sealed("q"); !ok || to != 3 {
		t.Fatal("seal lost in the snapshot")
	}
}

// A store that never saw a placement hashes as before placements existed:
// the bucket is hashed only when it holds something.
func TestNoPlacementHashesAsBefore(t *testing.T) {
	a, b := newHarness(t), newHarness(t)
	a.one(cmdEnqueue(t0, nj("x", "q")))
	b.one(cmdEnqueue(t0, nj("x", "q")))
	b.one(cmdSeal("q", true, 1))
	b.one(cmdSeal("q", false, 0))
	if a.f.Hash() != b.f.Hash() {
		t.Fatal("a sealed then reopened queue hashes differently from one never sealed")
	}
}

// A queue is partitioned once, over distinct groups with its group
// first; it then neither moves nor is partitioned again.
func TestPartitionQueue(t *testing.T) {
	h := newHarness(t)
	for _, bad := range []*fsmpb.QueuePlacement{
		{Queue: "q", Group: 1, Partitions: []uint32{1}},
		{Queue: "q", Group: 1, Partitions: []uint32{2, 1}},
		{Queue: "q", Group: 1, Partitions: []uint32{1, 2, 1}},
		{Queue: "q", Group: 1, Partitions: []uint32{1, 2}, Phase: phaseSealing},
	} {
		if r := h.one(cmdPlace(bad)); !errors.Is(r.Err, ErrInvalid) {
			t.Fatalf("%v: %v", bad, r.Err)
		}
	}
	// A queue is never declared elsewhere without a move.
	if r := h.one(cmdPlace(&fsmpb.QueuePlacement{Queue: "q", Group: 2})); !errors.Is(r.Err, ErrInvalid) {
		t.Fatalf("direct placement: %v", r.Err)
	}
	if len(h.f.Placements()) != 0 {
		t.Fatal("a refused placement was written")
	}
	if r := h.one(cmdPlace(&fsmpb.QueuePlacement{Queue: "q", Group: 1, Partitions: []uint32{1, 0, 2}})); r.Err != nil {
		t.Fatal(r.Err)
	}
	if p := h.f.Placements()["q"]; len(p.GetPartitions()) != 3 || p.GetGroup() != 1 || p.GetPhase() != phaseNone {
		t.Fatalf("partitioned: %v", p)
	}
	if r := h.one(cmdPlace(&fsmpb.QueuePlacement{Queue: "q", Group: 1, Partitions: []uint32{1, 2}})); !errors.Is(r.Err, ErrWrongState) {
		t.Fatalf("partitioned twice: %v", r.Err)
	}
	if r := h.one(cmdPlace(&fsmpb.QueuePlacement{Queue: "q", Group: 2, FromGroup: 1, Phase: phaseSealing})); !errors.Is(r.Err, ErrWrongState) {
		t.Fatalf("move of a partitioned queue: %v", r.Err)
	}
}
