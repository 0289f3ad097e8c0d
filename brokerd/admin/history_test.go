package admin

import (
	"strings"
	"testing"
	"time"

	"github.com/raftq/raftq/fsm"
)

// TestHistoryRates checks the charts' arithmetic: rates are count changes
// between neighbouring samples divided by their distance, a queue absent
// from a sample leaves a gap, latency is the mean of the calls between
// samples, and the ring keeps only the newest samples.
func TestHistoryRates(t *testing.T) {
	h := newHistory(nil, 3)
	t0 := time.Unix(1000, 0)
	counts := func(ready, succeeded, dead int64) [fsm.NumStates]int64 {
		var c [fsm.NumStates]int64
		c[fsm.StateReady], c[fsm.StateSucceeded], c[fsm.StateDead] = ready, succeeded, dead
		return c
	}
	h.observe(t0, []fsm.QueueStats{{Queue: "a", Counts: counts(10, 0, 0)}})
	h.observe(t0.Add(2*time.Second), []fsm.QueueStats{{Queue: "a", Counts: counts(12, 4, 2)}}) // +8 jobs, +4 ok, +2 dead in 2 s
	h.observe(t0.Add(4*time.Second), []fsm.QueueStats{{Queue: "b", Counts: counts(1, 0, 0)}})
	ss := h.samples()
	tp := throughput(ss, "a")
	if len(tp.Times) != 2 || tp.Series[0].Values[0] != 4 || tp.Series[1].Values[0] != 2 || tp.Series[2].Values[0] != 1 {
		t.Fatalf("throughput of a: %+v", tp)
	}
	if !tp.Series[0].Missing[1] {
		t.Fatalf("a is absent from the last sample but drawn: %+v", tp.Series[0])
	}
	// Totals: 18 jobs -> 1 job is a purge-like drop, never below zero.
	if all := throughput(ss, ""); all.Series[0].Values[1] != 0 {
		t.Fatalf("negative rate not clamped: %+v", all.Series[0])
	}
	// The gap leaves one point per series: a dot each, no line.
	svg := string(svgChart(tp))
	if !strings.Contains(svg, `data-points="3"`) || strings.Count(svg, "<polyline") != 0 || strings.Count(svg, "<circle") != 3 {
		t.Fatalf("chart of a: %s", svg)
	}
	h.observe(t0.Add(6*time.Second), nil)
	if ss := h.samples(); len(ss) != 3 || !ss[0].at.Equal(t0.Add(2*time.Second)) || !ss[2].at.Equal(t0.Add(6*time.Second)) {
		t.Fatalf("ring: %v", ss)
	}

	ls := []histSample{
		{at: t0, lat: map[string]sumCount{"ack": {sum: 1, count: 10}}},
		{at: t0.Add(time.Second), lat: map[string]sumCount{"ack": {sum: 1.5, count: 20}}},
		{at: t0.Add(2 * time.Second), lat: map[string]sumCount{"ack": {sum: 1.5, count: 20}}},
	}
	l := latency(ls, "")
	var ack Series
	for _, s := range l.Series {
		if s.Name == "mean ack call" {
			ack = s
		}
	}
	if ack.Values[1] != 0.05 || ack.Missing[1] || !ack.Missing[0] || !ack.Missing[2] {
		t.Fatalf("ack latency: %+v", ack)
	}
}
