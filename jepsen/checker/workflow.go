package checker

import (
	"fmt"
	"slices"
)

// WorkflowState is what the workflow workload recorded: every lease its
// workers got (with the job's parents, as the broker handed them out),
// every settle (ack or nack) they attempted, and at the end every job of
// its queue as read back from the leader. Times are the harness's clock
// (unix ns).
type WorkflowState struct {
	Queue string `json:"queue"`
	// Submitted counts the workflows whose Enqueue returned OK.
	Submitted int `json:"submitted"`
	// Declared are the jobs of those workflows with the parents and policy
	// the workload asked for (its own record: the checker does not take
	// the broker's word for a job's parents).
	Declared []WorkflowJob `json:"declared"`
	// Leases are the leases the workers got; At is when the Fetch
	// returned (the lease committed before).
	Leases []WorkflowLease `json:"leases"`
	// Settles are the acks and nacks the workers sent, whatever their
	// outcome; At is when the call was sent (the settle committed after,
	// if ever).
	Settles []WorkflowSettle `json:"settles"`
	// Final is every job of the queue at the end.
	Final []WorkflowJob `json:"final"`
	// Err is set when the final read failed.
	Err string `json:"error,omitempty"`
}

// WorkflowLease is one lease of a job with parents.
type WorkflowLease struct {
	ID        string   `json:"id"`
	At        int64    `json:"at"`
	Parents   []string `json:"parents"`
	RunAnyway bool     `json:"run_anyway,omitempty"`
}

// WorkflowSettle is one ack (Ack true) or nack a worker sent.
type WorkflowSettle struct {
	ID  string `json:"id"`
	At  int64  `json:"at"`
	Ack bool   `json:"ack"`
}

// WorkflowJob is one job as read at the end.
type WorkflowJob struct {
	ID        string   `json:"id"`
	State     string   `json:"state"` // fsm state name: waiting, ready, …
	Attempts  int32    `json:"attempts"`
	Parents   []string `json:"parents,omitempty"`
	RunAnyway bool     `json:"run_anyway,omitempty"`
}

func terminalState(s string) bool { return s == "succeeded" || s == "dead" || s == "cancelled" }

// Workflow checks job dependencies across the run's faults:
//
//   - no job is leased before all its parents succeeded: a lease of a job
//     under the cancel policy returned before any ack of one of its parents
//     was even sent is a violation (the parent cannot have succeeded yet);
//   - a job whose parent failed (ended dead or cancelled) never runs under
//     the cancel policy: at the end it is cancelled, never attempted, and
//     no worker leased it; a job that ran has every parent succeeded
//     (run-anyway: every parent finished);
//   - nothing is stuck: a job still waiting at the end waits on a parent
//     that is not finished, and a waiting job was never leased;
//   - the broker holds the parents and policy each job was submitted with.
//
// Parents and policies are the workload's own record of what it submitted
// (Declared) wherever it has one, not what the broker reports.
func Workflow(s *WorkflowState) Result {
	r := newResult("workflow")
	if s == nil {
		r.Notes = append(r.Notes, "no workflow state recorded (a run from before the workflow workload)")
		return r
	}
	if s.Err != "" {
		r.fail(Failure{Msg: "workflow jobs could not be read: " + s.Err})
		return r
	}
	firstAck := map[string]int64{}
	for _, st := range s.Settles {
		if st.Ack {
			if t, ok := firstAck[st.ID]; !ok || st.At < t {
				firstAck[st.ID] = st.At
			}
		}
	}
	final := map[string]WorkflowJob{}
	for _, j := range s.Final {
		final[j.ID] = j
	}
	declared := map[string]WorkflowJob{}
	for _, j := range s.Declared {
		declared[j.ID] = j
	}
	// deps is a job's parents and policy: as declared when the workload
	// knows the job, else as the broker reported them.
	deps := func(id string, parents []string, runAnyway bool) ([]string, bool) {
		if d, ok := declared[id]; ok {
			return d.Parents, d.RunAnyway
		}
		return parents, runAnyway
	}
	leased := map[string]int{}
	early, lostDeps := 0, 0
	for _, l := range s.Leases {
		leased[l.ID]++
		parents, runAnyway := deps(l.ID, l.Parents, l.RunAnyway)
		if runAnyway {
			continue // a parent may end by lease expiry, with no settle sent
		}
		for _, p := range parents {
			if t, ok := firstAck[p]; !ok || t > l.At {
				early++
				msg := fmt.Sprintf("job %s was leased at %s before any ack of its parent %s was sent", l.ID, fmtNS(l.At), p)
				if ok {
					msg += fmt.Sprintf(" (first ack sent at %s)", fmtNS(t))
				}
				r.fail(Failure{Msg: msg, JobID: l.ID})
			}
		}
	}
	ranAfterFailure, ranUnfinished, stuck, waitingLeased, cascaded := 0, 0, 0, 0, 0
	withParents := 0
	for _, j := range s.Final {
		if d, ok := declared[j.ID]; ok && (!slices.Equal(d.Parents, j.Parents) || d.RunAnyway != j.RunAnyway) {
			lostDeps++
			r.fail(Failure{Msg: fmt.Sprintf("job %s was submitted with parents %v (run anyway %v), the broker holds %v (run anyway %v)",
				j.ID, d.Parents, d.RunAnyway, j.Parents, j.RunAnyway), JobID: j.ID})
		}
		j.Parents, j.RunAnyway = deps(j.ID, j.Parents, j.RunAnyway)
		if len(j.Parents) == 0 {
			continue
		}
		withParents++
		failedParent, unfinished := "", ""
		for _, p := range j.Parents {
			pj, ok := final[p]
			switch {
			case !ok:
				// Not in the queue's listing (another queue, or purged):
				// nothing known.
			case pj.State == "dead" || pj.State == "cancelled":
				if failedParent == "" {
					failedParent = p + " (" + pj.State + ")"
				}
			case !terminalState(pj.State):
				if unfinished == "" {
					unfinished = p + " (" + pj.State + ")"
				}
			}
		}
		ran := j.Attempts > 0 || leased[j.ID] > 0
		switch {
		case j.State == "waiting" && leased[j.ID] > 0:
			waitingLeased++
			r.fail(Failure{Msg: fmt.Sprintf("job %s is waiting but was leased %d times", j.ID, leased[j.ID]), JobID: j.ID})
		case j.State == "waiting" && unfinished == "":
			stuck++
			r.fail(Failure{Msg: fmt.Sprintf("job %s is still waiting, yet every parent of %v has finished", j.ID, j.Parents), JobID: j.ID})
		}
		if !j.RunAnyway && failedParent != "" {
			if ran || j.State != "cancelled" {
				ranAfterFailure++
				r.fail(Failure{Msg: fmt.Sprintf("job %s is %s after %d attempts (%d leases seen) although its parent %s failed under the cancel policy",
					j.ID, j.State, j.Attempts, leased[j.ID], failedParent), JobID: j.ID})
			} else {
				cascaded++
			}
		}
		if ran && unfinished != "" {
			ranUnfinished++
			r.fail(Failure{Msg: fmt.Sprintf("job %s ran (%d attempts) while its parent %s has not finished", j.ID, j.Attempts, unfinished), JobID: j.ID})
		}
	}
	r.Counts["workflows"] = s.Submitted
	r.Counts["jobs"] = len(s.Final)
	r.Counts["with_parents"] = withParents
	r.Counts["leases"] = len(s.Leases)
	r.Counts["leased_early"] = early
	r.Counts["ran_after_parent_failed"] = ranAfterFailure
	r.Counts["ran_before_parent_finished"] = ranUnfinished
	r.Counts["stuck_waiting"] = stuck
	r.Counts["waiting_but_leased"] = waitingLeased
	r.Counts["cancelled_by_parent"] = cascaded
	r.Counts["dependencies_changed"] = lostDeps
	if s.Submitted == 0 {
		r.fail(Failure{Msg: "no workflow was submitted"})
	}
	if !slices.ContainsFunc(s.Leases, func(l WorkflowLease) bool { return len(l.Parents) > 0 }) {
		r.Notes = append(r.Notes, "no job with parents was leased: the dependency checks saw nothing")
	}
	return r
}
