package checker

import (
	"fmt"

	"github.com/raftq/raftq/jepsen/history"
)

// Row is one job's result row as svcd holds it at the end of the run.
type Row struct {
	JobID  string `json:"job_id"`
	Token  uint64 `json:"token"`
	Status string `json:"status"`
	Queue  string `json:"queue,omitempty"`
	// Output is the stored output (workerd's echo: the job's value).
	Output string `json:"output,omitempty"`
}

// BlackBoxDequeues turns the succeeded svcd rows of queue, worked by
// processes outside the history (workerd), into fetch ops completed at
// time at, so the queue checker counts their values as dequeued. Indexes
// continue from next.
func BlackBoxDequeues(rows []Row, queue string, at int64, next int) []history.Op {
	var out []history.Op
	for _, r := range rows {
		if r.Queue != queue || r.Status != "succeeded" {
			continue
		}
		out = append(out, history.Op{Index: next + len(out), Process: -2, Kind: history.Fetch, Status: history.OK,
			Start: at, End: at, JobID: r.JobID, Token: r.Token, Value: r.Output, Queue: queue, Group: JobGroup(r.JobID)})
	}
	return out
}

// RowsExcept returns the rows of every queue but queue (nil stays nil:
// rows that could not be read).
func RowsExcept(rows []Row, queue string) []Row {
	if rows == nil {
		return nil
	}
	out := []Row{}
	for _, r := range rows {
		if r.Queue != queue {
			out = append(out, r)
		}
	}
	return out
}

// Fencing checks G3 and G4 from both sides:
//   - the broker accepts at most one ack per job (one token), and never an
//     ack whose token is older than a lease of the same job that a client
//     had already been given when the ack was sent;
//   - svcd stores at most one result per job and never answers OK to a
//     write whose token is older than a result already stored;
//   - at the end, svcd holds exactly one succeeded row for every job acked
//     OK, written under a token the job was really leased with, and no row
//     for a job that was never leased.
//
// rows is nil when svcd could not be read; that is invalid.
func Fencing(ops []history.Op, rows []Row) Result {
	r := newResult("fencing")
	jobs := byJob(ops)
	staleAcks, multiAcks, staleStores, multiStores := 0, 0, 0, 0
	for _, id := range sortedKeys(jobs) {
		var fetches, acks, stores []history.Op
		for _, op := range jobs[id] {
			switch {
			case op.Kind == history.Fetch && op.Status == history.OK:
				fetches = append(fetches, op)
			case op.Kind == history.Ack && op.Status == history.OK:
				acks = append(acks, op)
			case op.Kind == history.Store && op.Status == history.OK:
				stores = append(stores, op)
			}
		}
		tokens := map[uint64]bool{}
		for _, a := range acks {
			tokens[a.Token] = true
		}
		if len(tokens) > 1 {
			multiAcks++
			idx := []int{}
			for _, a := range acks {
				idx = append(idx, a.Index)
			}
			r.fail(Failure{Msg: fmt.Sprintf("two accepted acks: job %s acked OK under %d different tokens", id, len(tokens)), JobID: id, Ops: idx})
		}
		for _, a := range acks {
			for _, f := range fetches {
				if f.Token > a.Token && f.End < a.Start {
					staleAcks++
					r.fail(Failure{
						Msg:   fmt.Sprintf("stale ack accepted: job %s acked OK with token %d after lease %d was handed out", id, a.Token, f.Token),
						JobID: id, Ops: []int{f.Index, a.Index},
					})
					break
				}
			}
		}
		stored := map[uint64]history.Op{}
		for _, s := range stores {
			if s.State == "stored" {
				stored[s.Token] = s
			}
		}
		if len(stored) > 1 {
			multiStores++
			idx := []int{}
			for _, s := range stored {
				idx = append(idx, s.Index)
			}
			r.fail(Failure{Msg: fmt.Sprintf("two results stored: svcd stored job %s under %d tokens", id, len(stored)), JobID: id, Ops: idx})
		}
		for _, s := range stores {
			for t, prev := range stored {
				if t > s.Token && prev.End < s.Start {
					staleStores++
					r.fail(Failure{
						Msg:   fmt.Sprintf("stale result accepted: svcd answered %s to token %d after storing token %d for job %s", s.State, s.Token, t, id),
						JobID: id, Ops: []int{prev.Index, s.Index},
					})
					break
				}
			}
		}
	}
	r.Counts["stale_acks_accepted"] = staleAcks
	r.Counts["multi_token_acks"] = multiAcks
	r.Counts["stale_stores_accepted"] = staleStores
	r.Counts["multi_stored"] = multiStores

	if rows == nil {
		r.fail(Failure{Msg: "svcd result rows could not be read"})
		return r
	}
	rowOf := map[string]Row{}
	dupRows := 0
	for _, row := range rows {
		if _, seen := rowOf[row.JobID]; seen {
			dupRows++
			r.fail(Failure{Msg: "two result rows for job " + row.JobID, JobID: row.JobID})
		}
		rowOf[row.JobID] = row
	}
	missing, wrong, unexpected, completed := 0, 0, 0, 0
	for _, id := range sortedKeys(jobs) {
		leased := map[uint64]bool{}
		var maxAck uint64
		ackIdx := -1
		for _, op := range jobs[id] {
			if op.Kind == history.Fetch && op.Status == history.OK {
				leased[op.Token] = true
			}
			if op.Kind == history.Ack && op.Status == history.OK && op.Token > maxAck {
				maxAck, ackIdx = op.Token, op.Index
			}
		}
		row, has := rowOf[id]
		if maxAck > 0 {
			completed++
			switch {
			case !has:
				missing++
				r.fail(Failure{Msg: "no result row in svcd for job " + id + ", acked OK", JobID: id, Ops: []int{ackIdx}})
			case row.Status != "succeeded":
				wrong++
				r.fail(Failure{Msg: fmt.Sprintf("result row of acked job %s is %q, not succeeded", id, row.Status), JobID: id, Ops: []int{ackIdx}})
			case row.Token > maxAck:
				wrong++
				r.fail(Failure{Msg: fmt.Sprintf("job %s acked under token %d but its result row holds newer token %d: the ack was stale", id, maxAck, row.Token), JobID: id, Ops: []int{ackIdx}})
			}
		}
		if has && !leased[row.Token] {
			unexpected++
			r.fail(Failure{Msg: fmt.Sprintf("result row of job %s holds token %d, which no fetch was given", id, row.Token), JobID: id})
		}
	}
	for id := range rowOf {
		if _, known := jobs[id]; !known {
			unexpected++
			r.fail(Failure{Msg: "result row for job " + id + ", which was never leased", JobID: id})
		}
	}
	r.Counts["rows"] = len(rows)
	r.Counts["completed_jobs"] = completed
	r.Counts["rows_missing"] = missing
	r.Counts["rows_wrong"] = wrong
	r.Counts["rows_unexpected"] = unexpected
	r.Counts["rows_duplicate"] = dupRows
	return r
}
