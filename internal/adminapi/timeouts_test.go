package adminapi

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// A job's timeouts and unique key reach the JSON shape (brokerctl get, the
// dashboard's job page); a job without them has none.
func TestJobTimeoutsAndUniqueKey(t *testing.T) {
	if j := JobFromProto(&raftqv1.Job{Id: "a"}); j.StartDeadline != nil || j.AttemptDeadline != nil || j.StartToCloseSeconds != 0 || j.UniqueKey != "" {
		t.Fatalf("plain job %+v", j)
	}
	at := time.Unix(1_800_000_000, 0)
	j := JobFromProto(&raftqv1.Job{Id: "a", StartDeadline: timestamppb.New(at), AttemptDeadline: timestamppb.New(at.Add(time.Minute)),
		StartToClose: durationpb.New(90 * time.Second), UniqueKey: "report-42"})
	if j.StartDeadline == nil || !j.StartDeadline.Equal(at) || j.AttemptDeadline == nil || !j.AttemptDeadline.Equal(at.Add(time.Minute)) ||
		j.StartToCloseSeconds != 90 || j.UniqueKey != "report-42" {
		t.Fatalf("job %+v", j)
	}
}
