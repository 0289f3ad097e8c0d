package dispatch_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/fsm/fsmpb"
	"github.com/raftq/raftq/internal/dispatch"
	"github.com/raftq/raftq/internal/proposer"
)

// served fetches n jobs one fetch at a time (each of max jobs) and counts
// them per queue.
func served(t *testing.T, d *dispatch.Dispatcher, req dispatch.FetchRequest, fetches int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for i := 0; i < fetches; i++ {
		jobs, err := d.Fetch(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range jobs {
			got[j.Queue]++
		}
	}
	return got
}

// TestWeightedFetchServesInProportion: with weights 3:1 and both queues
// full, three jobs in four come from the heavy queue, whether a fetch
// asks for one job or for several (counts, not timing); strict order
// stays the default and serves only the first queue.
func TestWeightedFetchServesInProportion(t *testing.T) {
	for _, max := range []int{1, 4, 7} {
		d, p, clk := setup(t)
		enqueue(p, "hi", 500, clk.Now(), time.Minute)
		enqueue(p, "lo", 500, clk.Now(), time.Minute)
		req := dispatch.FetchRequest{Queues: []string{"hi", "lo"}, Weights: []int{3, 1}, Max: max, WorkerID: "w"}
		got := served(t, d, req, 280/max)
		total := got["hi"] + got["lo"]
		// Smooth weighted round-robin is exact to within one job per
		// queue over any run of picks.
		if want := total * 3 / 4; got["hi"] < want-1 || got["hi"] > want+1 {
			t.Fatalf("max %d: served %v, want about 3:1 of %d", max, got, total)
		}
		strict := served(t, d, dispatch.FetchRequest{Queues: []string{"hi", "lo"}, Max: max, WorkerID: "w"}, 20)
		if strict["lo"] != 0 || strict["hi"] != 20*max {
			t.Fatalf("max %d: strict order served %v", max, strict)
		}
	}
}

// TestWeightedFetchFallsBackToReadyQueues: an empty queue gives its turns
// to the others, and gets its share back once it has jobs.
func TestWeightedFetchFallsBackToReadyQueues(t *testing.T) {
	d, p, clk := setup(t)
	enqueue(p, "lo", 40, clk.Now(), time.Minute)
	req := dispatch.FetchRequest{Queues: []string{"hi", "lo"}, Weights: []int{3, 1}, Max: 2, WorkerID: "w"}
	if got := served(t, d, req, 5); got["lo"] != 10 || got["hi"] != 0 {
		t.Fatalf("with hi empty: %v", got)
	}
	enqueue(p, "hi", 40, clk.Now(), time.Minute)
	if got := served(t, d, req, 8); got["hi"] != 12 || got["lo"] != 4 {
		t.Fatalf("with both full: %v", got)
	}
}

// TestTimeoutsProposedOnTheLeadersClock: the dispatcher proposes
// ExpireTimeouts once the leader's clock passes a deadline, not before,
// and the job goes dead by it.
func TestTimeoutsProposedOnTheLeadersClock(t *testing.T) {
	d, p, clk := setup(t)
	j := &fsmpb.NewJob{Id: "s2s", Queue: "q", Type: "t", RunAt: clk.Now().UnixNano(), MaxAttempts: 3,
		LeaseDuration: int64(time.Minute), StartDeadline: clk.Now().Add(10 * time.Second).UnixNano()}
	done := make(chan struct{})
	p.Submit(&fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_ENQUEUE,
		Body: &fsmpb.Command_Enqueue{Enqueue: &fsmpb.Enqueue{Jobs: []*fsmpb.NewJob{j}}}}, func(proposer.Response) { close(done) })
	<-done
	clk.Add(9 * time.Second)
	d.Fetch(context.Background(), dispatch.FetchRequest{Queues: []string{"other"}, Max: 1})
	if n := p.count(fsmpb.CommandType_COMMAND_TYPE_EXPIRE_TIMEOUTS); n != 0 {
		t.Fatalf("ExpireTimeouts proposed %d times before the deadline", n)
	}
	clk.Add(2 * time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		d.Fetch(context.Background(), dispatch.FetchRequest{Queues: []string{"other"}, Max: 1})
		if got, _ := p.f.Get("s2s"); got.State == fsm.StateDead {
			if !strings.Contains(got.LastError, "schedule-to-start") {
				t.Fatalf("last error %q", got.LastError)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the timed-out job was not ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
