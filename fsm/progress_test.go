package fsm

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/raftq/raftq/fsm/fsmpb"
)

func progressRef(id string, token uint64, p float64, msg string) *fsmpb.LeaseRef {
	r := ref(id, token)
	r.SetProgress, r.Progress, r.ProgressMessage = true, p, msg
	return r
}

// Progress rides on a lease extension: stored and hashed when the token is
// current, ignored with a stale token, cleared by the next lease, and kept
// through a snapshot. A plain extension leaves it as it was.
func TestProgressWithExtension(t *testing.T) {
	h := newHarness(t)
	h.one(cmdEnqueue(t0, nj("j", "q")))
	tok := h.nextToken()
	h.one(cmdLease(t0, "w", "j"))
	before := h.f.Hash()
	if r := h.one(cmdExtend(t0+1, progressRef("j", tok, 0.25, "page 1 of 4"))); r.Items[0].Err != nil {
		t.Fatal(r.Items[0].Err)
	}
	if j := h.get("j"); !j.HasProgress || j.Progress != 0.25 || j.ProgressMessage != "page 1 of 4" {
		t.Fatalf("progress %v %v %q", j.HasProgress, j.Progress, j.ProgressMessage)
	}
	if h.f.Hash() == before {
		t.Fatal("hash ignores progress")
	}
	// A plain extension keeps the last report.
	h.one(cmdExtend(t0+2, ref("j", tok)))
	if j := h.get("j"); j.Progress != 0.25 || j.ProgressMessage != "page 1 of 4" {
		t.Fatalf("plain extension changed progress: %v %q", j.Progress, j.ProgressMessage)
	}

	// Snapshot and restore keep it.
	want := h.f.Hash()
	f := New()
	if err := restoreBytes(f, snapshotBytes(t, h.f)); err != nil {
		t.Fatal(err)
	}
	if f.Hash() != want {
		t.Fatal("restored hash differs")
	}

	// The attempt fails; the next lease starts without progress, and the
	// old attempt's token cannot report any more.
	h.one(cmdNack(t0+3, &fsmpb.NackItem{JobId: "j", Token: tok, RetryAfter: 0}))
	tok2 := h.nextToken()
	h.one(cmdLease(t0+4, "w", "j"))
	if j := h.get("j"); j.HasProgress || j.Progress != 0 || j.ProgressMessage != "" {
		t.Fatalf("new attempt inherited progress %v %q", j.Progress, j.ProgressMessage)
	}
	before = h.f.Hash()
	r := h.one(cmdExtend(t0+5, progressRef("j", tok, 0.9, "stale")))
	if !errors.Is(r.Items[0].Err, ErrStaleToken) && !errors.Is(r.Items[0].Err, ErrWrongState) {
		t.Fatalf("stale token: err %v", r.Items[0].Err)
	}
	if h.f.Hash() != before {
		t.Fatal("a stale report changed the state")
	}
	if r := h.one(cmdExtend(t0+6, progressRef("j", tok2, 1, ""))); r.Items[0].Err != nil {
		t.Fatal(r.Items[0].Err)
	}
	if j := h.get("j"); !j.HasProgress || j.Progress != 1 {
		t.Fatalf("progress %v", j.Progress)
	}
}

// Bad progress is refused with ErrInvalid and changes nothing, not even
// the lease deadline the same item would have extended.
func TestProgressRefused(t *testing.T) {
	h := newHarness(t)
	h.one(cmdEnqueue(t0, nj("j", "q")))
	tok := h.nextToken()
	h.one(cmdLease(t0, "w", "j"))
	for _, c := range []struct {
		p   float64
		msg string
	}{
		{-0.1, ""}, {1.01, ""}, {math.NaN(), ""}, {math.Inf(1), ""},
		{0.5, strings.Repeat("x", MaxProgressMessage+1)},
	} {
		before := h.f.Hash()
		r := h.one(cmdExtend(t0+10, progressRef("j", tok, c.p, c.msg)))
		wantIs(t, r.Items[0].Err, ErrInvalid)
		if h.f.Hash() != before {
			t.Fatalf("refused progress %v changed the state", c.p)
		}
	}
	if j := h.get("j"); j.HasProgress {
		t.Fatal("refused progress stored")
	}
}
