// Package report turns a checked run into what people read: one summary
// line per checker, results.json with every count, and index.html with the
// timeline (nemesis intervals shaded, throughput and latency per second)
// and each failure with the operations around it.
package report

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/raftq/raftq/jepsen/checker"
	"github.com/raftq/raftq/jepsen/history"
)

// Run is everything known about one run.
type Run struct {
	Name     string            `json:"name"`
	Start    time.Time         `json:"start"`
	Seconds  float64           `json:"seconds"`
	Config   map[string]any    `json:"config"`
	Valid    bool              `json:"valid"`
	Checkers []checker.Result  `json:"checkers"`
	Stats    Stats             `json:"stats"`
	Nemesis  []Interval        `json:"nemesis"`
	Extra    map[string]any    `json:"extra,omitempty"`
	Notes    []string          `json:"notes,omitempty"`
	Files    map[string]string `json:"files,omitempty"`
}

// Interval is one fault, from injection to heal.
type Interval struct {
	Family string  `json:"family"`
	What   string  `json:"what"`
	From   float64 `json:"from_s"`
	To     float64 `json:"to_s"`
	Error  string  `json:"error,omitempty"`
}

// Stats are the run's operation counts and rates.
type Stats struct {
	// Ops counts operations by kind and status ("enqueue" -> "ok" -> n).
	Ops map[string]map[string]int `json:"ops"`
	// Faults counts injected faults by family.
	Faults map[string]int `json:"faults"`
	// Rates are OK operations per second, over the whole run, inside fault
	// intervals and outside them.
	EnqueueRate    Rates `json:"enqueue_ok_per_s"`
	AckRate        Rates `json:"ack_ok_per_s"`
	EnqueueLatency Lat   `json:"enqueue_ok_latency_ms"`
	AckLatency     Lat   `json:"ack_ok_latency_ms"`
}

// Rates are throughput figures.
type Rates struct {
	All         float64 `json:"all"`
	DuringFault float64 `json:"during_faults"`
	FaultFree   float64 `json:"fault_free"`
}

// Lat are latency percentiles in milliseconds.
type Lat struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func sec(ns int64) float64 { return float64(ns) / 1e9 }

// Intervals extracts the nemesis intervals of a history.
func Intervals(ops []history.Op) []Interval {
	var out []Interval
	for _, op := range ops {
		if op.Kind == history.Nemesis {
			out = append(out, Interval{Family: op.Family, What: op.Value, From: sec(op.Start), To: sec(op.End), Error: op.Error})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].From < out[j].From })
	return out
}

func inFault(t float64, iv []Interval) bool {
	for _, i := range iv {
		if t >= i.From && t <= i.To {
			return true
		}
	}
	return false
}

// Compute derives the stats of a history; end bounds the workload phase
// (the drain is left out of the rates).
func Compute(ops []history.Op, end int64) Stats {
	iv := Intervals(ops)
	s := Stats{Ops: map[string]map[string]int{}, Faults: map[string]int{}}
	for _, i := range iv {
		s.Faults[i.Family]++
	}
	// Time under at least one fault: the union of the intervals.
	var faultTime, curFrom, curTo float64
	open := false
	for _, i := range iv { // sorted by From
		switch {
		case !open:
			curFrom, curTo, open = i.From, i.To, true
		case i.From <= curTo:
			curTo = max(curTo, i.To)
		default:
			faultTime += curTo - curFrom
			curFrom, curTo = i.From, i.To
		}
	}
	if open {
		faultTime += curTo - curFrom
	}
	total := sec(end)
	if faultTime > total {
		faultTime = total
	}
	rates := func(kind history.Kind) (Rates, Lat) {
		var in, out, all int
		var lats []float64
		for _, op := range ops {
			if op.Kind != kind || op.Status != history.OK || op.End > end {
				continue
			}
			all++
			if inFault(sec(op.End), iv) {
				in++
			} else {
				out++
			}
			lats = append(lats, float64(op.End-op.Start)/1e6)
		}
		r := Rates{}
		if total > 0 {
			r.All = float64(all) / total
		}
		if faultTime > 0 {
			r.DuringFault = float64(in) / faultTime
		}
		if total-faultTime > 0 {
			r.FaultFree = float64(out) / (total - faultTime)
		}
		return r, percentiles(lats)
	}
	for _, op := range ops {
		k := string(op.Kind)
		if s.Ops[k] == nil {
			s.Ops[k] = map[string]int{}
		}
		s.Ops[k][string(op.Status)]++
	}
	s.EnqueueRate, s.EnqueueLatency = rates(history.Enqueue)
	s.AckRate, s.AckLatency = rates(history.Ack)
	return s
}

func percentiles(v []float64) Lat {
	if len(v) == 0 {
		return Lat{}
	}
	sort.Float64s(v)
	q := func(p float64) float64 { return round(v[int(p*float64(len(v)-1))]) }
	return Lat{P50: q(0.5), P99: q(0.99), Max: round(v[len(v)-1])}
}

func round(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }

// Summary is the text printed at the end of a run: one line per checker.
func Summary(r *Run) string {
	var b strings.Builder
	fmt.Fprintf(&b, "jepsen run %s: %.0fs, ", r.Name, r.Seconds)
	var ks []string
	for k := range r.Stats.Ops {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	for _, k := range ks {
		fmt.Fprintf(&b, "%s=%v ", k, r.Stats.Ops[k])
	}
	fmt.Fprintf(&b, "\nfaults: %v\n", r.Stats.Faults)
	fmt.Fprintf(&b, "enqueue ok/s: all %.1f, during faults %.1f, fault-free %.1f; ack ok/s: all %.1f, during faults %.1f, fault-free %.1f\n",
		r.Stats.EnqueueRate.All, r.Stats.EnqueueRate.DuringFault, r.Stats.EnqueueRate.FaultFree,
		r.Stats.AckRate.All, r.Stats.AckRate.DuringFault, r.Stats.AckRate.FaultFree)
	for _, c := range r.Checkers {
		b.WriteString(c.Summary())
		b.WriteString("\n")
		for i, f := range c.Failures {
			if i == 5 {
				fmt.Fprintf(&b, "    ... %d more in results.json\n", len(c.Failures)-5)
				break
			}
			fmt.Fprintf(&b, "    - %s\n", f.Msg)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	verdict := "VALID"
	if !r.Valid {
		verdict = "INVALID"
	}
	fmt.Fprintf(&b, "result: %s\n", verdict)
	return b.String()
}

// WriteJSON writes results.json into dir.
func WriteJSON(dir string, r *Run) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644)
}
