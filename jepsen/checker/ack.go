package checker

import (
	"fmt"

	"github.com/raftq/raftq/jepsen/history"
)

// AckDurability checks G5: once an ack of a job is answered OK, the job is
// never leased again. A lease is a violation when its fetch began after the
// ack completed, or when its token is newer than the acked one (tokens are
// Raft indexes: a later lease) and its fetch had not completed before the
// ack began. A newer lease completed before the ack began means the ack
// itself was stale: that is the fencing checker's.
func AckDurability(ops []history.Op) Result {
	r := newResult("ack-durability")
	acks, resurrected := 0, 0
	jobs := byJob(ops)
	for _, id := range sortedKeys(jobs) {
		var acked []history.Op
		for _, op := range jobs[id] {
			if op.Kind == history.Ack && op.Status == history.OK {
				acked = append(acked, op)
				acks++
			}
		}
		if len(acked) == 0 {
			continue
		}
		bad := false
		for _, a := range acked {
			for _, f := range jobs[id] {
				if f.Kind != history.Fetch || f.Status != history.OK || bad {
					continue
				}
				// A newer lease handed out before the ack began makes the
				// ack stale (the fencing checker's case); one not done
				// before the ack began may have followed it.
				if (f.Token > a.Token && f.End >= a.Start) || f.Start > a.End {
					bad = true
					resurrected++
					r.fail(Failure{
						Msg:   fmt.Sprintf("resurrection: job %s acked with token %d, then leased again with token %d", id, a.Token, f.Token),
						JobID: id, Value: f.Value, Ops: []int{a.Index, f.Index},
					})
				}
			}
		}
	}
	r.Counts["acks_ok"] = acks
	r.Counts["resurrected"] = resurrected
	return r
}
