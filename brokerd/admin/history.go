package admin

import (
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftq/raftq/fsm"
)

// history is the dashboard's memory of the last minutes: a ring of
// samples of this node's own FSM counts (per queue and in total) and of its
// gRPC latency histograms, taken by the rate sampler's tick. It stores raw
// cumulative counts and derives rates at render time from neighbouring
// samples, so a missed tick widens one step instead of faking a spike. It
// lives in memory only: a restarted node starts with an empty chart, and
// Prometheus is the place for long history.
type history struct {
	gather prometheus.Gatherer
	size   int

	mu    sync.Mutex
	ring  []histSample // oldest first, at most size
	start int          // index of the oldest in ring once full
}

// histQueues caps the queues kept per sample, so a cluster with thousands
// of queues does not make the ring large (totals always cover all).
const histQueues = 200

type histSample struct {
	at time.Time
	// total is the sum over every queue; queues the per-queue counts.
	total  [fsm.NumStates]int64
	queues map[string][fsm.NumStates]int64
	// oldestReady is the age in seconds of the oldest ready job of any
	// queue (per queue in oldestByQueue).
	oldestReady   float64
	oldestByQueue map[string]float64
	// lat is cumulative handling time and count of the gRPC methods that
	// producers and workers call, from this node's registry.
	lat map[string]sumCount
}

type sumCount struct {
	sum   float64
	count uint64
}

// latencyMethods are the gRPC methods whose mean latency the overview
// charts, by the label the chart shows.
var latencyMethods = map[string]string{
	"Enqueue": "enqueue", "EnqueueStream": "enqueue",
	"Ack": "ack", "AckBatch": "ack",
	"Fetch": "fetch",
}

func newHistory(g prometheus.Gatherer, size int) *history {
	return &history{gather: g, size: size}
}

func (h *history) observe(now time.Time, stats []fsm.QueueStats) {
	s := histSample{at: now, queues: map[string][fsm.NumStates]int64{}, oldestByQueue: map[string]float64{}}
	sort.Slice(stats, func(i, j int) bool { return stats[i].Queue < stats[j].Queue })
	for i, q := range stats {
		for st, c := range q.Counts {
			s.total[st] += c
		}
		age := 0.0
		if q.OldestReadyCreatedAt > 0 {
			age = max(0, now.Sub(time.Unix(0, q.OldestReadyCreatedAt)).Seconds())
		}
		s.oldestReady = max(s.oldestReady, age)
		if i < histQueues {
			s.queues[q.Queue] = q.Counts
			s.oldestByQueue[q.Queue] = age
		}
	}
	s.lat = h.latencies()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.ring) < h.size {
		h.ring = append(h.ring, s)
		return
	}
	h.ring[h.start] = s
	h.start = (h.start + 1) % h.size
}

// latencies reads the cumulative sums and counts of the gRPC handling
// histogram for latencyMethods.
func (h *history) latencies() map[string]sumCount {
	out := map[string]sumCount{}
	if h.gather == nil {
		return out
	}
	mfs, err := h.gather.Gather()
	if err != nil && len(mfs) == 0 {
		return out
	}
	for _, mf := range mfs {
		if mf.GetName() != "raftq_grpc_server_handling_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var method string
			for _, l := range m.GetLabel() {
				if l.GetName() == "grpc_method" {
					method = l.GetValue()
				}
			}
			label, ok := latencyMethods[method]
			if !ok || m.GetHistogram() == nil {
				continue
			}
			sc := out[label]
			sc.sum += m.GetHistogram().GetSampleSum()
			sc.count += m.GetHistogram().GetSampleCount()
			out[label] = sc
		}
	}
	return out
}

// samples returns the ring oldest first.
func (h *history) samples() []histSample {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]histSample, 0, len(h.ring))
	out = append(out, h.ring[h.start:]...)
	return append(out, h.ring[:h.start]...)
}

// Series is one line of a chart: a value per point (NaN-free; a point
// without data is left out of the line by the renderer when Missing).
type Series struct {
	Name    string
	Class   string // CSS class of the line (its colour)
	Values  []float64
	Missing []bool
}

// Chart is what a chart shows: x positions are the sample times.
type Chart struct {
	Title  string
	Unit   string
	Times  []time.Time
	Series []Series
}

// countsOf picks the counts of one queue ("" = all queues).
func (s histSample) countsOf(queue string) ([fsm.NumStates]int64, bool) {
	if queue == "" {
		return s.total, true
	}
	c, ok := s.queues[queue]
	return c, ok
}

// throughput charts jobs enqueued, succeeded and dead-lettered per second
// between neighbouring samples: enqueued is the growth of all jobs,
// succeeded and failed the growth of those states' counts. Redrive and
// purge move jobs out of those counts, which shows as a dip, never below
// zero.
func throughput(ss []histSample, queue string) Chart {
	c := Chart{Title: "Throughput", Unit: "jobs/s"}
	enq := Series{Name: "enqueued", Class: "s1"}
	ok := Series{Name: "succeeded", Class: "s2"}
	bad := Series{Name: "failed (dead)", Class: "s3"}
	for i := 1; i < len(ss); i++ {
		dt := ss[i].at.Sub(ss[i-1].at).Seconds()
		a, okA := ss[i-1].countsOf(queue)
		b, okB := ss[i].countsOf(queue)
		if dt <= 0 {
			continue
		}
		c.Times = append(c.Times, ss[i].at)
		if !okA || !okB {
			for _, s := range []*Series{&enq, &ok, &bad} {
				s.Values = append(s.Values, 0)
				s.Missing = append(s.Missing, true)
			}
			continue
		}
		var all int64
		for st := range b {
			all += b[st] - a[st]
		}
		enq.Values = append(enq.Values, max(0, float64(all)/dt))
		ok.Values = append(ok.Values, max(0, float64(b[fsm.StateSucceeded]-a[fsm.StateSucceeded])/dt))
		bad.Values = append(bad.Values, max(0, float64(b[fsm.StateDead]-a[fsm.StateDead])/dt))
		for _, s := range []*Series{&enq, &ok, &bad} {
			s.Missing = append(s.Missing, false)
		}
	}
	c.Series = []Series{enq, ok, bad}
	return c
}

// depth charts the jobs waiting or running, by state.
func depth(ss []histSample, queue string) Chart {
	c := Chart{Title: "Queue depth", Unit: "jobs"}
	states := []struct {
		st    fsm.State
		class string
	}{{fsm.StateReady, "s1"}, {fsm.StateLeased, "s2"}, {fsm.StateScheduled, "s4"}, {fsm.StateDead, "s3"}}
	series := make([]Series, len(states))
	for i, s := range states {
		series[i] = Series{Name: s.st.String(), Class: s.class}
	}
	for _, s := range ss {
		counts, ok := s.countsOf(queue)
		c.Times = append(c.Times, s.at)
		for i, st := range states {
			series[i].Values = append(series[i].Values, float64(counts[st.st]))
			series[i].Missing = append(series[i].Missing, !ok)
		}
	}
	c.Series = series
	return c
}

// latency charts the age of the oldest ready job (how long work waits) and,
// for the whole node, the mean handling time of enqueue, fetch and ack
// calls this node answered between samples.
func latency(ss []histSample, queue string) Chart {
	c := Chart{Title: "Latency", Unit: "s"}
	wait := Series{Name: "oldest ready job age", Class: "s4"}
	var calls []Series
	labels := []string{}
	if queue == "" {
		labels = []string{"enqueue", "fetch", "ack"}
		for i, l := range labels {
			calls = append(calls, Series{Name: "mean " + l + " call", Class: []string{"s1", "s5", "s2"}[i]})
		}
	}
	for i, s := range ss {
		c.Times = append(c.Times, s.at)
		if queue == "" {
			wait.Values = append(wait.Values, s.oldestReady)
			wait.Missing = append(wait.Missing, false)
		} else {
			age, ok := s.oldestByQueue[queue]
			wait.Values = append(wait.Values, age)
			wait.Missing = append(wait.Missing, !ok)
		}
		for j, l := range labels {
			v, missing := 0.0, true
			if i > 0 {
				a, b := ss[i-1].lat[l], s.lat[l]
				if b.count > a.count {
					v, missing = (b.sum-a.sum)/float64(b.count-a.count), false
				}
			}
			calls[j].Values = append(calls[j].Values, max(0, v))
			calls[j].Missing = append(calls[j].Missing, missing)
		}
	}
	c.Series = append([]Series{wait}, calls...)
	return c
}
