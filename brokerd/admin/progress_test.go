package admin

import (
	"testing"

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
