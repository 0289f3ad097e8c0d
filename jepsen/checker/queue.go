package checker

import (
	"fmt"
	"sort"

	"github.com/raftq/raftq/jepsen/history"
)

// Queue is Jepsen's total-queue checker over multisets of values, for
// guarantees G1 and G2 (nothing acknowledged is lost) and G6 (a definite
// failure did nothing):
// attempts are enqueue invocations, enqueues those answered OK, dequeues the
// values fetched (by in-harness workers, or, for the workerd queue, the
// values of svcd's succeeded rows: see BlackBoxDequeues). lost = enqueued but never dequeued; unexpected = dequeued
// but never attempted; duplicated = dequeued more often than attempted
// (redelivery: at-least-once allows it, it is counted, never hidden);
// recovered = dequeued although the enqueue was indeterminate. A value
// dequeued although its enqueue failed definitely is also invalid: the
// error claimed nothing happened. lost-middle are lost values with a later
// value of the same producer dequeued, the worst kind of loss.
// duplicate_jobs are values that became more than one job (fetched under
// two job ids): each value is enqueued by one call whose retries carry the
// same idempotency key, so a second job means the broker created it twice
// (invalid; a redelivery of one job is not). Only fetched ids count: an
// enqueue answered with an id that never existed (a lie the linearizable
// checker's reads catch) is not a second job.
func Queue(ops []history.Op) Result {
	r := newResult("queue")
	attempts := map[string]int{}
	okEnq := map[string]int{}
	infoEnq := map[string]bool{}
	failEnq := map[string]bool{}
	enqOp := map[string]int{}
	dequeued := map[string]int{}
	deqOp := map[string]int{}
	jobIDs := map[string]map[string]bool{} // value -> ids it was fetched under
	jobOf := func(op history.Op) {
		if op.JobID == "" || op.Status != history.OK {
			return
		}
		if jobIDs[op.Value] == nil {
			jobIDs[op.Value] = map[string]bool{}
		}
		jobIDs[op.Value][op.JobID] = true
	}
	for _, op := range ops {
		switch {
		case op.Kind == history.Enqueue:
			attempts[op.Value]++
			enqOp[op.Value] = op.Index
			switch op.Status {
			case history.OK:
				okEnq[op.Value]++
			case history.Info:
				infoEnq[op.Value] = true
			case history.Fail:
				failEnq[op.Value] = true
			}
		case op.Kind == history.Fetch && op.Status == history.OK && op.JobID != "":
			if op.Queue != "" {
				r.Counts["workerd_dequeued"]++
			}
			dequeued[op.Value]++
			jobOf(op)
			if _, ok := deqOp[op.Value]; !ok {
				deqOp[op.Value] = op.Index
			}
		}
	}
	r.Counts["attempts"] = len(attempts)
	r.Counts["enqueued"] = len(okEnq)
	r.Counts["indeterminate"] = len(infoEnq)
	r.Counts["dequeued"] = len(dequeued)
	deliveries := 0
	for _, n := range dequeued {
		deliveries += n
	}
	r.Counts["deliveries"] = deliveries

	// The highest dequeued sequence number of each producer.
	maxSeq := map[int]int{}
	for v := range dequeued {
		if p, s, ok := ParseValue(v); ok {
			if cur, seen := maxSeq[p]; !seen || s > cur {
				maxSeq[p] = s
			}
		}
	}
	var lost []string
	for v := range okEnq {
		if dequeued[v] == 0 {
			lost = append(lost, v)
		}
	}
	sort.Slice(lost, func(i, j int) bool { return enqOp[lost[i]] < enqOp[lost[j]] })
	lostMiddle := 0
	for _, v := range lost {
		kind := "lost"
		if p, s, ok := ParseValue(v); ok {
			if m, seen := maxSeq[p]; seen && m > s {
				lostMiddle++
				kind = "lost-middle"
			}
		}
		r.fail(Failure{Msg: fmt.Sprintf("%s: %s was enqueued OK and never dequeued", kind, v), Value: v, Ops: []int{enqOp[v]}})
	}
	r.Counts["lost"] = len(lost)
	r.Counts["lost_middle"] = lostMiddle

	unexpected, duplicated, recovered, failedDequeued := 0, 0, 0, 0
	for _, v := range sortedKeys(dequeued) {
		n := dequeued[v]
		switch {
		case attempts[v] == 0:
			unexpected++
			r.fail(Failure{Msg: "unexpected: " + v + " was dequeued but never enqueued", Value: v, Ops: []int{deqOp[v]}})
			continue
		case okEnq[v] == 0 && failEnq[v] && !infoEnq[v]:
			failedDequeued++
			r.fail(Failure{Msg: "failed-but-dequeued: the enqueue of " + v + " failed definitely, yet it was dequeued", Value: v, Ops: []int{enqOp[v], deqOp[v]}})
		case okEnq[v] == 0:
			recovered++
		}
		if n > attempts[v] {
			duplicated++
		}
	}
	r.Counts["unexpected"] = unexpected
	r.Counts["duplicated"] = duplicated
	r.Counts["recovered"] = recovered
	r.Counts["failed_but_dequeued"] = failedDequeued
	dupJobs := 0
	for _, v := range sortedKeys(jobIDs) {
		if ids := jobIDs[v]; len(ids) > 1 {
			dupJobs++
			r.fail(Failure{Msg: fmt.Sprintf("duplicate job: %s became %d jobs %v", v, len(ids), sortedKeys(ids)), Value: v, Ops: []int{enqOp[v]}})
		}
	}
	r.Counts["duplicate_jobs"] = dupJobs
	if duplicated > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d values were delivered more than once (at-least-once redelivery after a lease ran out or a lost fetch answer)", duplicated))
	}
	return r
}
