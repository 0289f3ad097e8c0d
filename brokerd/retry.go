package brokerd

import (
	"errors"

	"github.com/raftq/raftq/fsm"
)

// Guarantee G6 (README): a client retries a write after an INDETERMINATE
// answer (a lost connection, a leader change mid-apply), and the retry may
// find its own first try committed. For the writes below that is not a
// refusal: the job already shows what the caller asked for, so the retry
// answers success, as a repeated Ack does (ackOutcome and nackOutcome in batch.go).
// Each check reads the job as the refusing FSM entry saw it (the item's
// Job).

// cancelApplied reports whether a refused cancel found the job already
// cancelled, or with its cancel requested (a leased job, possibly finished
// since by its worker): the effect of a cancel, so a retry succeeds.
func cancelApplied(it fsm.ItemResult) bool {
	return errors.Is(it.Err, fsm.ErrWrongState) && it.Job != nil &&
		(it.Job.State == fsm.StateCancelled || it.Job.CancelRequested)
}

// redriveApplied reports whether a refused redrive by id found the job as
// a redrive leaves it: ready, with no attempt counted yet, and leased
// before (a job never leased never died). Once a worker has fetched it the
// retry is refused (WRONG_STATE): the job ran again, as asked, but the
// broker can no longer tell.
func redriveApplied(it fsm.ItemResult) bool {
	return errors.Is(it.Err, fsm.ErrWrongState) && it.Job != nil &&
		it.Job.State == fsm.StateReady && it.Job.Attempts == 0 && it.Job.LeaseToken > 0
}

// purgeApplied reports whether a refused dead-letter purge by id found the
// job gone: the effect of a purge. (A job id that never existed answers
// the same way; job ids are never reused.)
func (n *Node) purgeApplied(it fsm.ItemResult) bool {
	if !errors.Is(it.Err, fsm.ErrNotFound) {
		return false
	}
	_, exists := n.fsm.Get(it.JobID)
	return !exists
}
