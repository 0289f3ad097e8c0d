package main

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/raftq/raftq/internal/testcluster"
)

// TestFlowControlExample runs the example program (go run, as a user
// would) against a real in-process 3-node cluster and checks every line
// it prints.
func TestFlowControlExample(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a program")
	}
	c := testcluster.New(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "run", ".", "--brokers", strings.Join(c.Addrs(), ",")).CombinedOutput()
	if err != nil {
		t.Fatalf("go run: %v\n%s", err, out)
	}
	for _, want := range []string{
		`debounce: same job true, duplicate true, payload "edit 2"`,
		"reject: ALREADY_EXISTS names the pending job true",
		`schedule-to-start: dead, "schedule-to-start timeout"`,
		`start-to-close: dead, "start-to-close timeout", handler saw lease lost true`,
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// Counted, not timed: smooth weighted round-robin gives 30 and 10;
	// a lease handed back (a stream broken mid-lease) may shift one or two.
	var hi, lo int
	_, after, _ := strings.Cut(string(out), "weights 3:1: first 40 jobs, ")
	if _, err := fmt.Sscanf(after, "%d critical and %d low", &hi, &lo); err != nil || hi < 28 || hi > 32 || hi+lo != 40 {
		t.Errorf("weighted pool served %d critical and %d low (%v), want about 30 and 10:\n%s", hi, lo, err, out)
	}
}
