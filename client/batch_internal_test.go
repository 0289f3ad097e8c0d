package client

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/raftqerr"
)

// A batch item still refused NOT_LEADER when its call's context ends
// keeps that error under the context's: errors.Is sees the deadline, and
// the status code, reason and leader hint still read as the broker sent
// them (a worker's leaseGone and IsIndeterminate checks work unchanged).
func TestExpiredItemKeepsItsError(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	<-ctx.Done()
	last := ItemErr(&raftqv1.ItemError{Code: int32(codes.Unavailable), Message: "group 1: not the leader",
		Detail: &raftqv1.ErrorDetail{Reason: raftqv1.ErrorDetail_NOT_LEADER, LeaderId: "n2", LeaderAddr: "127.0.0.1:1", Group: 1}})
	err := expired(ctx, last)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("%v: not a deadline error", err)
	}
	if status.Code(err) != codes.Unavailable || Reason(err) != raftqv1.ErrorDetail_NOT_LEADER {
		t.Errorf("%v: code %v reason %v, want UNAVAILABLE NOT_LEADER", err, status.Code(err), Reason(err))
	}
	if id, addr := raftqerr.LeaderHint(err); id != "n2" || addr != "127.0.0.1:1" || raftqerr.Detail(err).GetGroup() != 1 {
		t.Errorf("%v: hint %s %s group %d", err, id, addr, raftqerr.Detail(err).GetGroup())
	}
}
