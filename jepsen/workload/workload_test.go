package workload

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/raftq/raftq/internal/apierr"
	"github.com/raftq/raftq/jepsen/history"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// TestClassify pins which errors count as definite: calling an
// indeterminate outcome a failure would let the queue checker call a
// recovered value a lie, and the reverse would hide lies.
func TestClassify(t *testing.T) {
	cases := []struct {
		err  error
		want history.Status
	}{
		{nil, history.OK},
		{apierr.New(codes.Unavailable, raftqv1.ErrorDetail_INDETERMINATE, "lost leadership"), history.Info},
		{apierr.NotLeader("n2", "x:1"), history.Fail},
		{apierr.New(codes.FailedPrecondition, raftqv1.ErrorDetail_STALE_TOKEN, "stale"), history.Fail},
		{apierr.New(codes.InvalidArgument, raftqv1.ErrorDetail_INVALID_ARGUMENT, "bad"), history.Fail},
		{fmt.Errorf("%w (last error: connection refused)", context.DeadlineExceeded), history.Info},
		{errors.New("transport is closing"), history.Info},
		{apierr.New(codes.Internal, raftqv1.ErrorDetail_REASON_UNSPECIFIED, "boom"), history.Info},
	}
	for _, c := range cases {
		if got := classify(c.err); got != c.want {
			t.Errorf("classify(%v) = %s, want %s", c.err, got, c.want)
		}
	}
}
