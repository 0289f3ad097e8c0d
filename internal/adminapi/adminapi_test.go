package adminapi

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/internal/placement"
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

// A Status answer's groups reach the JSON shape; a queue's group is the
// one placement computes from the answer's group count, and its leader
// the one that answer names for that group. A one-group answer (or one
// from a node before groups) shows group_count 1, no groups, and group
// 0 led by the cluster's leader.
func TestClusterGroups(t *testing.T) {
	one := ClusterFromProto(&raftqv1.StatusResponse{LeaderId: "n1", LeaderAddr: "a1"})
	b, err := json.Marshal(one)
	if err != nil {
		t.Fatal(err)
	}
	if one.GroupCount != 1 || strings.Contains(string(b), `"groups"`) || !strings.Contains(string(b), `"group_count":1`) {
		t.Fatalf("one group: %s", b)
	}
	if pl := one.Placement("any"); pl.Group != 0 || pl.LeaderID != "n1" || pl.LeaderAddr != "a1" {
		t.Fatalf("one group: placement %+v", pl)
	}

	st := &raftqv1.StatusResponse{LeaderId: "n1", LeaderAddr: "a1", GroupCount: 3}
	for g, l := range []string{"n1", "n2", "n3"} {
		st.Groups = append(st.Groups, &raftqv1.GroupStatus{Group: uint32(g), LeaderId: l, LeaderAddr: "addr-" + l, State: "Follower",
			Term: uint64(g + 2), AppliedIndex: uint64(10 * g), Members: []*raftqv1.Member{{NodeId: l, Voter: true, Leader: true}}})
	}
	c := ClusterFromProto(st)
	if c.GroupCount != 3 || len(c.Groups) != 3 || c.Groups[2].Term != 4 || c.Groups[2].AppliedIndex != 20 || c.Groups[1].Members[0].NodeID != "n2" {
		t.Fatalf("groups %+v", c.Groups)
	}
	seen := map[uint32]bool{}
	for i := range 50 {
		q := fmt.Sprintf("q%d", i)
		pl := c.Placement(q)
		want := placement.Queue(q, 3)
		seen[want] = true
		if pl.Queue != q || pl.Group != want || pl.LeaderID != st.Groups[want].LeaderId || pl.LeaderAddr != st.Groups[want].LeaderAddr {
			t.Fatalf("placement of %s: %+v, want group %d", q, pl, want)
		}
	}
	if len(seen) != 3 {
		t.Fatalf("50 queues fell in groups %v only", seen)
	}
	if id, addr := c.GroupLeader(7); id != "" || addr != "" {
		t.Fatalf("group 7 of 3: leader %q %q", id, addr)
	}
}
