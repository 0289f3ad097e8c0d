package checker

import (
	"strings"
	"testing"
)

// wfRun is a valid history: a→b (cancel policy), a→c (run anyway), x→y
// where x died and y was cancelled, and z waiting on a leased w.
func wfRun() *WorkflowState {
	return &WorkflowState{
		Queue: "wf", Submitted: 3,
		Leases: []WorkflowLease{
			{ID: "a", At: 10},
			{ID: "b", At: 30, Parents: []string{"a"}},
			{ID: "c", At: 31, Parents: []string{"a"}, RunAnyway: true},
			{ID: "x", At: 12},
			{ID: "w", At: 40},
		},
		Settles: []WorkflowSettle{{ID: "a", At: 20, Ack: true}, {ID: "b", At: 35, Ack: true}, {ID: "c", At: 36, Ack: true}, {ID: "x", At: 13}},
		Final: []WorkflowJob{
			{ID: "a", State: "succeeded", Attempts: 1},
			{ID: "b", State: "succeeded", Attempts: 1, Parents: []string{"a"}},
			{ID: "c", State: "succeeded", Attempts: 1, Parents: []string{"a"}, RunAnyway: true},
			{ID: "x", State: "dead", Attempts: 1},
			{ID: "y", State: "cancelled", Parents: []string{"x"}},
			{ID: "w", State: "leased", Attempts: 1},
			{ID: "z", State: "waiting", Parents: []string{"w"}},
		},
	}
}

func TestWorkflowChecker(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(s *WorkflowState)
		want   string // in a failure message; "" for valid
		count  string // a count that must be non-zero
	}{
		{"valid", func(s *WorkflowState) {}, "", "cancelled_by_parent"},
		{"ack sent long before the child's lease, with an indeterminate first try", func(s *WorkflowState) {
			s.Settles = append([]WorkflowSettle{{ID: "a", At: 15, Ack: true}}, s.Settles...)
		}, "", ""},
		{"leased before the parent's ack was sent", func(s *WorkflowState) {
			s.Leases[1].At = 19
		}, "leased at", "leased_early"},
		{"leased with the parent never acked", func(s *WorkflowState) {
			s.Settles = s.Settles[1:]
		}, "before any ack of its parent a", "leased_early"},
		{"ran although the parent died", func(s *WorkflowState) {
			s.Leases = append(s.Leases, WorkflowLease{ID: "y", At: 50, Parents: []string{"x"}})
		}, "although its parent x (dead) failed", "ran_after_parent_failed"},
		{"not cancelled although the parent died", func(s *WorkflowState) {
			s.Final[4].State = "ready"
		}, "although its parent x (dead) failed", "ran_after_parent_failed"},
		{"attempted although the parent was cancelled", func(s *WorkflowState) {
			s.Final[3].State = "cancelled"
			s.Final[4].Attempts = 1
		}, "although its parent x (cancelled) failed", "ran_after_parent_failed"},
		{"run-anyway child ran before its parent finished", func(s *WorkflowState) {
			s.Final[0].State = "leased"
		}, "while its parent a (leased) has not finished", "ran_before_parent_finished"},
		{"stuck waiting", func(s *WorkflowState) {
			s.Final[5].State = "succeeded"
		}, "still waiting", "stuck_waiting"},
		{"waiting but leased", func(s *WorkflowState) {
			s.Leases = append(s.Leases, WorkflowLease{ID: "z", At: 60, Parents: []string{"w"}})
		}, "is waiting but was leased", "waiting_but_leased"},
		{"nothing submitted", func(s *WorkflowState) { s.Submitted = 0 }, "no workflow was submitted", ""},
		{"broker dropped the dependencies (declared by the workload)", func(s *WorkflowState) {
			s.Declared = []WorkflowJob{{ID: "b", Parents: []string{"a"}}}
			s.Leases[1].Parents, s.Final[1].Parents = nil, nil
			s.Leases[1].At = 19
		}, "leased at", "dependencies_changed"},
		{"unreadable", func(s *WorkflowState) { s.Err = "timeout" }, "could not be read", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := wfRun()
			tc.mutate(s)
			r := Workflow(s)
			if tc.want == "" {
				if !r.Valid {
					t.Fatalf("valid history judged invalid: %+v", r.Failures)
				}
			} else {
				if r.Valid {
					t.Fatalf("invalid history judged valid: %+v", r)
				}
				found := false
				for _, f := range r.Failures {
					found = found || strings.Contains(f.Msg, tc.want)
				}
				if !found {
					t.Fatalf("no failure mentions %q: %+v", tc.want, r.Failures)
				}
			}
			if tc.count != "" && r.Counts[tc.count] == 0 {
				t.Fatalf("count %s is 0: %v", tc.count, r.Counts)
			}
		})
	}
	if r := Workflow(nil); !r.Valid || len(r.Notes) == 0 {
		t.Fatalf("a run without the workload: %+v", r)
	}
}
