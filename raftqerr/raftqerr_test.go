package raftqerr_test

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/raftqerr"
)

// What a broker writes, a client reads back: reason, indeterminacy and the
// leader hint; errors without a detail read as unspecified.
func TestContractRoundTrip(t *testing.T) {
	nl := raftqerr.NotLeader("n2", "127.0.0.1:7000")
	if id, addr := raftqerr.LeaderHint(nl); id != "n2" || addr != "127.0.0.1:7000" || status.Code(nl) != codes.Unavailable {
		t.Fatalf("leader hint %q %q of %v", id, addr, nl)
	}
	if raftqerr.IsIndeterminate(nl) {
		t.Fatal("not-leader is definite")
	}
	ind := raftqerr.New(codes.Unavailable, raftqv1.ErrorDetail_INDETERMINATE, "lost")
	if !raftqerr.IsIndeterminate(ind) {
		t.Fatalf("%v is indeterminate", ind)
	}
	if id, addr := raftqerr.LeaderHint(ind); id != "" || addr != "" {
		t.Fatalf("indeterminate named a leader: %q %q", id, addr)
	}
	for _, err := range []error{nil, errors.New("plain"), status.Error(codes.Unavailable, "bare"), fmt.Errorf("wrapped: %w", errors.New("x"))} {
		if raftqerr.Detail(err) != nil || raftqerr.Reason(err) != raftqv1.ErrorDetail_REASON_UNSPECIFIED || raftqerr.IsIndeterminate(err) {
			t.Fatalf("%v has a detail", err)
		}
	}
}

// ExistingJobID reads the holder of a unique key from the ResourceInfo
// detail, or from the message when only the ErrorDetail survived (an
// EnqueueStream item), and from nothing else.
func TestExistingJobID(t *testing.T) {
	err := raftqerr.UniqueConflict(`fsm: enqueue item 0: unique key "k" of queue "q" is held by job 0190-abc`, "0190-abc")
	if got := raftqerr.ExistingJobID(err); got != "0190-abc" {
		t.Fatalf("from the detail: %q", got)
	}
	stripped := raftqerr.New(codes.AlreadyExists, raftqv1.ErrorDetail_INVALID_ARGUMENT, status.Convert(err).Message())
	if got := raftqerr.ExistingJobID(stripped); got != "0190-abc" {
		t.Fatalf("from the message: %q", got)
	}
	for _, other := range []error{nil, raftqerr.New(codes.NotFound, raftqv1.ErrorDetail_NOT_FOUND, "is held by job x"),
		raftqerr.New(codes.AlreadyExists, raftqv1.ErrorDetail_INVALID_ARGUMENT, "duplicate job id")} {
		if got := raftqerr.ExistingJobID(other); got != "" {
			t.Errorf("ExistingJobID(%v) = %q", other, got)
		}
	}
}
