package checker

import (
	"fmt"

	"github.com/raftq/raftq/jepsen/history"
)

// AckDurability checks G5: once an ack of a job is answered OK, the job is
// never leased again. A lease is a violation when its token is newer than
// the acked one (whenever it happened: tokens are Raft indexes, so a newer
// token is a later lease) or when its fetch began after the ack completed.
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
				if f.Token > a.Token || f.Start > a.End {
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
