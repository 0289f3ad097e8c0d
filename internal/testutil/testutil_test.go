package testutil_test

import (
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/raftq/raftq/internal/testutil"
)

// A goroutine a test left behind may still log after the test has ended:
// the writer drops those lines instead of letting t.Log panic.
func TestLogWriterAfterTheTestEnded(t *testing.T) {
	var w io.Writer
	t.Run("inner", func(t *testing.T) {
		w = testutil.LogWriter(t)
		fmt.Fprintln(w, "shown only if inner fails")
	})
	if n, err := fmt.Fprintln(w, "after inner ended"); err != nil || n == 0 {
		t.Fatalf("write after the end: %d, %v", n, err)
	}
}

// WaitFor returns once its condition holds, polling again until then.
func TestWaitForPolls(t *testing.T) {
	calls := 0
	testutil.WaitFor(t, time.Minute, "the third poll", func() bool { calls++; return calls == 3 })
	if calls != 3 {
		t.Fatalf("%d polls, want 3", calls)
	}
}
