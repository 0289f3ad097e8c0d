package adminapi

import (
	"strings"
	"testing"

	"github.com/raftq/raftq/fsm"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// A job's reported progress reaches the JSON shape (brokerctl -o json, the
// dashboard) and reads as a percentage; a job without a report has none.
func TestJobProgress(t *testing.T) {
	if p := JobFromProto(&raftqv1.Job{Id: "a"}).Progress; p != nil {
		t.Fatalf("no report, progress %v", p)
	}
	j := JobFromProto(&raftqv1.Job{Id: "a", Progress: &raftqv1.Progress{Fraction: 0.4237, Message: "page 3 of 7"}})
	if j.Progress == nil || j.Progress.Fraction != 0.4237 || j.Progress.Message != "page 3 of 7" {
		t.Fatalf("progress %+v", j.Progress)
	}
	for _, c := range []struct {
		p    Progress
		want string
	}{
		{Progress{Fraction: 0.4237, Message: "page 3 of 7"}, "42.3% page 3 of 7"},
		{Progress{Fraction: 1}, "100%"},
		{Progress{Fraction: 0}, "0%"},
	} {
		if got := c.p.Text(); got != c.want {
			t.Errorf("Text() = %q, want %q", got, c.want)
		}
	}
}

// The state names are the FSM's (the admin API and brokerctl showed
// fsm.State.String before this package spelled them out), for every state
// and for a value neither knows.
func TestStateNamesAreTheFSMs(t *testing.T) {
	for s := raftqv1.JobState(-1); s <= raftqv1.JobState_JOB_STATE_WAITING+1; s++ {
		if got, want := StateName(s), fsm.State(s).String(); got != want {
			t.Errorf("StateName(%d) = %q, fsm says %q", s, got, want)
		}
	}
	if len(States) != int(fsm.NumStates-fsm.StateScheduled) {
		t.Fatalf("States has %d states, the FSM %d", len(States), fsm.NumStates-fsm.StateScheduled)
	}
	for i, s := range States {
		if fsm.State(s) != fsm.StateScheduled+fsm.State(i) {
			t.Errorf("States[%d] = %v, want the FSM's order", i, s)
		}
		if got, ok := ParseState(strings.ToUpper(StateName(s))); !ok || got != s {
			t.Errorf("ParseState(%q) = %v, %v", StateName(s), got, ok)
		}
	}
	if _, ok := ParseState("finished"); ok {
		t.Error("ParseState accepted a state that does not exist")
	}
}
