package checker

import (
	"fmt"
	"time"

	"github.com/raftq/raftq/internal/placement"
	"github.com/raftq/raftq/jepsen/history"
)

// JobGroup is the Raft group a job id names (placement.Job: the ".g<n>"
// tag, none for group 0). An id naming no group the placement package
// allows counts as group 0, where a routing bug would then show as a
// misplaced op.
func JobGroup(id string) uint32 {
	g, err := placement.Job(id, placement.MaxGroups)
	if err != nil {
		return 0
	}
	return g
}

// opGroup is the group an op belongs to: its job's when it names one (the
// broker's own answer), else the group of the queue it was sent to (an
// enqueue that failed or timed out has no job id).
func opGroup(op history.Op) uint32 {
	if op.JobID != "" {
		return JobGroup(op.JobID)
	}
	return op.Group
}

// fencingViolations are the fencing checker's counts that each make a
// history invalid.
var fencingViolations = []string{"stale_acks_accepted", "multi_token_acks", "stale_stores_accepted", "multi_stored",
	"rows_missing", "rows_wrong", "rows_unexpected", "rows_duplicate"}

// Groups checks a run on a cluster of groups Raft groups group by group:
// it splits the history (and svcd's rows) by the group of each op's job
// (JobGroup; the queue's group for an enqueue without a job id) and runs
// the queue, fencing, ack-durability and linearizable checkers on each
// part, so that every group is shown to lose nothing, create no job twice
// and fence stale acks on its own — a group whose Raft log or routing is
// wrong cannot hide behind the others' totals. Counts has the totals,
// PerGroup each group's: enqueued, dequeued, lost, duplicate_jobs (one
// value, two jobs: invalid), redelivered (one job delivered again:
// at-least-once, valid), fencing (the sum of fencing's violation counts),
// resurrected, not_linearizable (illegal or unknown jobs).
//
// It also fails on a misplaced op (an enqueue answered, or a fetch of a
// queue handed, a job id of another group than the queue's: the broker
// routed it to the wrong group) and on an idle group (no value enqueued
// OK: its checks would pass vacuously; the harness picks one queue per
// group so this means its queues were not worked). workerdQueue's rows are
// left to the queue checker (black-box dequeues), as Fencing's caller does.
func Groups(ops []history.Op, rows []Row, groups int, workerdQueue string, perJob time.Duration) Result {
	r := newResult("groups")
	groups = max(groups, 1)
	parts := make([][]history.Op, groups)
	misplaced := 0
	moves := movesOf(ops)
	for _, op := range ops {
		if op.Kind == history.Nemesis {
			continue
		}
		if op.JobID != "" && (op.Kind == history.Enqueue || op.Kind == history.Fetch) && JobGroup(op.JobID) != op.Group &&
			!moves.allows(op.Group, JobGroup(op.JobID), op.End) {
			misplaced++
			r.fail(Failure{Msg: fmt.Sprintf("misplaced: %s of a queue in group %d got job %s of group %d", op.Kind, op.Group, op.JobID, JobGroup(op.JobID)),
				JobID: op.JobID, Value: op.Value, Ops: []int{op.Index}})
		}
		g := opGroup(op)
		if int(g) >= groups {
			misplaced++
			r.fail(Failure{Msg: fmt.Sprintf("job %s names group %d; the cluster has %d", op.JobID, g, groups), JobID: op.JobID, Ops: []int{op.Index}})
			continue
		}
		parts[g] = append(parts[g], op)
	}
	var rowParts [][]Row
	if rows != nil {
		rowParts = make([][]Row, groups)
		for i := range rowParts {
			rowParts[i] = []Row{} // read, and empty: not "could not be read"
		}
		for _, row := range rows {
			if row.Queue == workerdQueue && workerdQueue != "" {
				continue
			}
			if g := JobGroup(row.JobID); int(g) < groups {
				rowParts[g] = append(rowParts[g], row)
			}
		}
	}
	totals := []string{"lost", "duplicate_jobs", "redelivered", "fencing", "resurrected", "not_linearizable"}
	idle := 0
	for g := range groups {
		var gRows []Row
		if rowParts != nil {
			gRows = rowParts[g]
		}
		q := Queue(parts[g])
		f := Fencing(parts[g], gRows)
		a := AckDurability(parts[g])
		l := Linearizable(parts[g], perJob)
		c := map[string]int{
			"enqueued": q.Counts["enqueued"], "dequeued": q.Counts["dequeued"],
			"lost": q.Counts["lost"], "duplicate_jobs": q.Counts["duplicate_jobs"], "redelivered": q.Counts["duplicated"],
			"resurrected": a.Counts["resurrected"], "not_linearizable": l.Counts["illegal"] + l.Counts["unknown"],
		}
		for _, k := range fencingViolations {
			c["fencing"] += f.Counts[k]
		}
		r.PerGroup = append(r.PerGroup, c)
		for _, k := range totals {
			r.Counts[k] += c[k]
		}
		for _, sub := range []Result{q, f, a, l} {
			if !sub.Valid {
				// The part's own messages, named by group; the totals
				// above stay exact whatever the cap on failures keeps.
				for _, fl := range sub.Failures {
					fl.Msg = fmt.Sprintf("group %d %s: %s", g, sub.Name, fl.Msg)
					r.fail(fl)
				}
				r.Valid = false
			}
		}
		if groups > 1 && c["enqueued"] == 0 {
			idle++
			r.fail(Failure{Msg: fmt.Sprintf("group %d: no value was enqueued OK to it (its queues got no load; nothing was checked there)", g)})
		}
	}
	r.Counts["groups"] = groups
	r.Counts["misplaced"] = misplaced
	r.Counts["idle_groups"] = idle
	return r
}

// queueMove is one move nemesis: the queue of hash group home was moved
// to group to at start.
type queueMove struct {
	home, to uint32
	start    int64
}

// queueMoves are a run's queue moves.
type queueMoves []queueMove

// movesOf collects the move nemesis ops of a history.
func movesOf(ops []history.Op) queueMoves {
	var out queueMoves
	for _, op := range ops {
		if op.Kind == history.Nemesis && op.Family == "move" && len(op.MoveTo) == 1 {
			out = append(out, queueMove{home: op.Group, to: op.MoveTo[0], start: op.Start})
		}
	}
	return out
}

// allows reports whether a job of group g is in place for an op on the
// queue of hash group home that ended at end: the queue was moved to g
// before then. A queue's jobs stay in every group it ever took jobs in
// (jobs never move), so every earlier move counts.
func (m queueMoves) allows(home, g uint32, end int64) bool {
	for _, mv := range m {
		if mv.home == home && mv.to == g && mv.start <= end {
			return true
		}
	}
	return false
}
