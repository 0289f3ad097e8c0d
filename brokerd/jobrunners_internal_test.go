package brokerd

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftq/raftq/internal/testutil"
)

// TestJobRunnersReuseAndEnd: every job runs once; jobs after a burst run
// on the burst's runners rather than new ones; idle runners end after
// their idle time, and at stop.
func TestJobRunnersReuseAndEnd(t *testing.T) {
	const burst = 50
	r := newJobRunners(300 * time.Millisecond)
	var ran atomic.Int64
	wave := func() {
		t.Helper()
		gate := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(burst)
		for range burst {
			r.run(func() { <-gate; ran.Add(1); wg.Done() })
		}
		close(gate)
		wg.Wait()
	}
	wave()
	if got := r.started.Load(); got != burst {
		t.Fatalf("%d runners for %d jobs held at once, want %d", got, burst, burst)
	}
	time.Sleep(50 * time.Millisecond) // the runners go idle
	wave()
	if got := r.started.Load(); got >= 2*burst {
		t.Fatalf("%d runners started for two bursts of %d: none was reused", got, burst)
	}
	if ran.Load() != 2*burst {
		t.Fatalf("%d jobs ran, want %d", ran.Load(), 2*burst)
	}
	testutil.WaitFor(t, 5*time.Second, "idle runners to end", func() bool { return r.live.Load() == 0 })

	r = newJobRunners(time.Hour)
	wave()
	if r.live.Load() != burst {
		t.Fatalf("%d runners live after a burst, want %d", r.live.Load(), burst)
	}
	r.stop()
	testutil.WaitFor(t, 5*time.Second, "runners to end at stop", func() bool { return r.live.Load() == 0 })
}
