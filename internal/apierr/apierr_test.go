package apierr

import (
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/raftqerr"
)

// ForwardedWrite keeps the leader's own answers and its bare refusals of
// calls it never ran, and makes everything else indeterminate.
func TestForwardedWrite(t *testing.T) {
	notLeader := NotLeader("n1", "127.0.0.1:1")
	wrongState := New(codes.FailedPrecondition, raftqv1.ErrorDetail_WRONG_STATE, "cancelled")
	for _, err := range []error{nil, notLeader, wrongState,
		status.Error(codes.PermissionDenied, "role"), status.Error(codes.Unauthenticated, "token"),
		status.Error(codes.ResourceExhausted, "rate"), status.Error(codes.InvalidArgument, "size")} {
		if got := ForwardedWrite(err); got != err {
			t.Errorf("ForwardedWrite(%v) = %v, want it unchanged", err, got)
		}
	}
	for _, err := range []error{status.Error(codes.Unavailable, "conn reset"), status.Error(codes.DeadlineExceeded, "late"),
		status.Error(codes.Canceled, "gone"), status.Error(codes.Internal, "oops"), status.Error(codes.Unknown, "?"),
		errors.New("not a status")} {
		got := ForwardedWrite(err)
		if status.Code(got) != codes.Unavailable || !raftqerr.IsIndeterminate(got) {
			t.Errorf("ForwardedWrite(%v) = %v, want UNAVAILABLE INDETERMINATE", err, got)
		}
	}
}
