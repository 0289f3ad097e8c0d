package admin

import (
	"sync"
	"time"

	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/internal/adminapi"
)

// rateSampler estimates per-queue enqueue and completion rates from the
// node's own FSMs (one per Raft group), sampled every interval and compared over window. It
// reads counts, which every node applies identically, so any node's admin
// API answers the same without asking the leader. A job counts as enqueued
// when it first appears and as completed when it turns terminal
// (succeeded, dead or cancelled); Purge removes old terminal jobs, so a
// window holding a purge underestimates (never goes below zero). For exact
// rates use Prometheus: rate(raftq_jobs_enqueued_total[1m]).
type rateSampler struct {
	fs       []*fsm.FSM
	interval time.Duration
	window   time.Duration
	// observe, when set, sees every sample's stats (the dashboard's
	// history ring).
	observe func(time.Time, []fsm.QueueStats)

	mu      sync.Mutex
	samples []rateSample // oldest first, spanning at most window

	started bool // start ran: stop waits for the loop only then (New's error paths stop an unstarted sampler)
	quit    chan struct{}
	done    chan struct{}
	once    sync.Once
}

type rateSample struct {
	at     time.Time
	totals map[string]queueTotals
}

type queueTotals struct{ all, terminal int64 }

func newRateSampler(fs []*fsm.FSM, interval, window time.Duration) *rateSampler {
	return &rateSampler{fs: fs, interval: interval, window: window, quit: make(chan struct{}), done: make(chan struct{})}
}

func (r *rateSampler) start() {
	r.started = true
	r.sample(time.Now())
	go func() {
		defer close(r.done)
		t := time.NewTicker(r.interval)
		defer t.Stop()
		for {
			select {
			case <-r.quit:
				return
			case now := <-t.C:
				r.sample(now)
			}
		}
	}()
}

func (r *rateSampler) stop() {
	r.once.Do(func() {
		close(r.quit)
		if r.started {
			<-r.done
		}
	})
}

// stats is every group's stats of queues (all queues: nil). A group
// reports a queue it does not hold as empty, so a queue may appear once
// per group: totalsOf sums them.
func (r *rateSampler) stats(queues []string) []fsm.QueueStats {
	if len(r.fs) == 1 {
		return r.fs[0].Stats(queues)
	}
	var out []fsm.QueueStats
	for _, f := range r.fs {
		out = append(out, f.Stats(queues)...)
	}
	return out
}

func totalsOf(stats []fsm.QueueStats) map[string]queueTotals {
	out := make(map[string]queueTotals, len(stats))
	for _, q := range stats {
		t := out[q.Queue]
		for s, c := range q.Counts {
			t.all += c
			if fsm.State(s).Terminal() {
				t.terminal += c
			}
		}
		out[q.Queue] = t
	}
	return out
}

func (r *rateSampler) sample(now time.Time) {
	stats := r.stats(nil)
	s := rateSample{at: now, totals: totalsOf(stats)}
	if r.observe != nil {
		r.observe(now, stats)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.samples = append(r.samples, s)
	// Keep one sample at or before the window's start.
	for len(r.samples) > 2 && now.Sub(r.samples[1].at) >= r.window {
		r.samples = r.samples[1:]
	}
}

// rates compares the current counts with the oldest sample kept.
func (r *rateSampler) rates(queue string) adminapi.Rates {
	current := r.stats([]string{queue})
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples) == 0 {
		return adminapi.Rates{}
	}
	old := r.samples[0]
	dt := time.Since(old.at).Seconds()
	if dt < r.interval.Seconds()/2 {
		return adminapi.Rates{}
	}
	now := totalsOf(current)[queue]
	then := old.totals[queue]
	return adminapi.Rates{
		EnqueuedPerSecond:  max(0, float64(now.all-then.all)/dt),
		CompletedPerSecond: max(0, float64(now.terminal-then.terminal)/dt),
		WindowSeconds:      dt,
	}
}
