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
