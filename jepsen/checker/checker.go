// Package checker decides whether a recorded history is correct. Each
// checker returns a Result: valid or not, every count it computed, and each
// failure with the operations that show it. They are pure functions of the
// history (and, for fencing and divergence, of what was read from svcd and
// the nodes at the end), so they are unit-tested on hand-made histories.
package checker

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/raftq/raftq/jepsen/history"
)

// Result is one checker's verdict.
type Result struct {
	Name  string `json:"name"`
	Valid bool   `json:"valid"`
	// Counts holds every figure the checker computed.
	Counts map[string]int `json:"counts"`
	// Failures lists each violation (capped; Counts has the totals).
	Failures []Failure `json:"failures,omitempty"`
	// Notes are observations that do not make the history invalid.
	Notes []string `json:"notes,omitempty"`
	// PerGroup holds the counts of each Raft group (index: group), for
	// the checker that splits the history by group (Groups).
	PerGroup []map[string]int `json:"per_group,omitempty"`
}

// Failure is one violation and the operations that show it.
type Failure struct {
	Msg   string `json:"msg"`
	JobID string `json:"job_id,omitempty"`
	Value string `json:"value,omitempty"`
	// Ops are indexes into the history.
	Ops []int `json:"ops,omitempty"`
}

// maxFailures caps the failures a checker lists; the counts stay exact.
const maxFailures = 50

func (r *Result) fail(f Failure) {
	r.Valid = false
	if len(r.Failures) < maxFailures {
		r.Failures = append(r.Failures, f)
	}
}

func newResult(name string) Result {
	return Result{Name: name, Valid: true, Counts: map[string]int{}}
}

// Summary is the one-line form printed at the end of a run.
func (r Result) Summary() string {
	keys := make([]string, 0, len(r.Counts))
	for k := range r.Counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	verdict := "valid"
	if !r.Valid {
		verdict = "INVALID"
	}
	fmt.Fprintf(&b, "%-13s %-7s", r.Name, verdict)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%d", k, r.Counts[k])
	}
	for g, counts := range r.PerGroup {
		fmt.Fprintf(&b, "\n    group %d:", g)
		for _, k := range sortedKeys(counts) {
			fmt.Fprintf(&b, " %s=%d", k, counts[k])
		}
	}
	return b.String()
}

// Value formats a producer's value: producer p's seq-th enqueue.
func Value(producer, seq int) string { return fmt.Sprintf("p%d-%d", producer, seq) }

// ParseValue is the inverse of Value.
func ParseValue(v string) (producer, seq int, ok bool) {
	p, s, found := strings.Cut(strings.TrimPrefix(v, "p"), "-")
	if !found || !strings.HasPrefix(v, "p") {
		return 0, 0, false
	}
	pi, err1 := strconv.Atoi(p)
	si, err2 := strconv.Atoi(s)
	return pi, si, err1 == nil && err2 == nil
}

// byJob groups the ops that name a job.
func byJob(ops []history.Op) map[string][]history.Op {
	m := map[string][]history.Op{}
	for _, op := range ops {
		if op.JobID != "" && op.Kind != history.Nemesis {
			m[op.JobID] = append(m[op.JobID], op)
		}
	}
	return m
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
