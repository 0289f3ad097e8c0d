package brokerd_test

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/internal/placement"
	"github.com/raftq/raftq/internal/promcheck"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// perGroupFamilies are families every group of a node exports on its
// own, whatever happened: each must have series of every group, each
// with its group label, or two groups' series would be one series (a
// duplicate, which fails the whole scrape) or be summed without saying.
// (Job event counters have series only for what the group counted; the
// test checks them by value.)
var perGroupFamilies = []string{
	"raftq_raft_term", "raftq_raft_state", "raftq_raft_commit_index", "raftq_raft_applied_index",
	"raftq_leader_ready", "raftq_fsm_applied_index", "raftq_fsm_jobs", "raftq_raft_peers",
	"raftq_queue_jobs", "raftq_queue_paused", "raftq_queue_oldest_ready_age_seconds",
	"raftq_raft_leader_changes_total",
}

// TestMetricsGroups: a node running 3 Raft groups exports each group's
// Raft state, queue depths and job counters under its group label, every
// queue only under the group that holds it, and its /metrics is valid
// (promtool check metrics, and no series twice).
func TestMetricsGroups(t *testing.T) {
	const groups = 3
	c := testcluster.New(t, 3, func(cfg *brokerd.Config) { cfg.Groups = groups }, testcluster.Admin)
	c.WaitGroupLeaders(30 * time.Second)
	cl := c.Client()
	ctx := testutil.Context(t, 60*time.Second)
	qs := placement.QueuesPerGroup("mq", groups)
	// Group g's queue gets g+1 jobs, so a series read from the wrong
	// group shows the wrong count.
	for g, q := range qs {
		var specs []*raftqv1.JobSpec
		for range g + 1 {
			specs = append(specs, &raftqv1.JobSpec{Queue: q, Type: "t"})
		}
		if _, err := cl.Enqueue(ctx, specs...); err != nil {
			t.Fatalf("enqueue to %s (group %d): %v", q, g, err)
		}
	}

	for g, q := range qs {
		gl := map[string]string{"group": strconv.Itoa(g)}
		with := func(kv ...string) map[string]string {
			m := map[string]string{"group": strconv.Itoa(g)}
			for i := 0; i+1 < len(kv); i += 2 {
				m[kv[i]] = kv[i+1]
			}
			return m
		}
		// Depths: every replica of the group, once it has applied them.
		testutil.WaitFor(t, 10*time.Second, fmt.Sprintf("every node's raftq_queue_jobs{group=%d,queue=%s,state=ready} = %d", g, q, g+1), func() bool {
			for _, n := range c.Up() {
				if v, ok := metricValue(t, n, "raftq_queue_jobs", with("queue", q, "state", "ready")); !ok || v != float64(g+1) {
					return false
				}
			}
			return true
		})
		enq, ready := 0.0, 0.0
		for _, n := range c.Up() {
			// The queue exists in its own group only.
			for og := range groups {
				if og == g {
					continue
				}
				if v, ok := metricValue(t, n, "raftq_queue_jobs", map[string]string{"group": strconv.Itoa(og), "queue": q}); ok {
					t.Errorf("%s: queue %s (group %d) has a raftq_queue_jobs series in group %d (%v)", n.ID(), q, g, og, v)
				}
			}
			if v, ok := metricValue(t, n, "raftq_raft_term", gl); !ok || v < 1 {
				t.Errorf("%s: raftq_raft_term{group=%d} = %v (present %v), want ≥ 1", n.ID(), g, v, ok)
			}
			if v, ok := metricValue(t, n, "raftq_raft_state", gl); !ok || v != 1 {
				t.Errorf("%s: raftq_raft_state{group=%d} sums to %v (present %v), want one state", n.ID(), g, v, ok)
			}
			v, _ := metricValue(t, n, "raftq_jobs_enqueued_total", with("queue", q))
			enq += v
			v, _ = metricValue(t, n, "raftq_leader_ready", gl)
			ready += v
		}
		// Counted by whichever node led the group at the commit.
		if enq != float64(g+1) {
			t.Errorf("raftq_jobs_enqueued_total{group=%d,queue=%s} sums to %v over the nodes, want %d", g, q, enq, g+1)
		}
		if ready != 1 {
			t.Errorf("raftq_leader_ready{group=%d} sums to %v over the nodes, want 1 (one ready leader)", g, ready)
		}
	}

	for _, n := range c.Up() {
		fams, err := n.Metrics().Gather()
		if err != nil {
			t.Fatalf("%s: gather: %v", n.ID(), err)
		}
		for _, f := range fams {
			// A family is per group or per process, never both: a
			// group's series registered without its label would be
			// summed with the labelled ones by sum() over the family.
			labelled := 0
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "group" {
						labelled++
					}
				}
			}
			if labelled > 0 && labelled < len(f.GetMetric()) {
				t.Errorf("%s: %s has %d series with a group label and %d without", n.ID(), f.GetName(), labelled, len(f.GetMetric())-labelled)
			}
			for _, name := range perGroupFamilies {
				if f.GetName() != name {
					continue
				}
				seen := map[string]bool{}
				for _, m := range f.GetMetric() {
					g := ""
					for _, l := range m.GetLabel() {
						if l.GetName() == "group" {
							g = l.GetValue()
						}
					}
					if g == "" {
						t.Errorf("%s: a %s series has no group label: %v", n.ID(), name, m.GetLabel())
					}
					seen[g] = true
				}
				for g := range groups {
					if !seen[strconv.Itoa(g)] {
						t.Errorf("%s: %s has no series of group %d", n.ID(), name, g)
					}
				}
			}
		}
		body := promcheck.CheckURL(t, "http://"+c.AdminAddr(n)+"/metrics")
		noDuplicateSeries(t, n.ID(), body)
	}
}

// noDuplicateSeries fails when a series (name and labels) appears twice
// in a text exposition: Prometheus would reject the scrape.
func noDuplicateSeries(t *testing.T, node string, body []byte) {
	t.Helper()
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Errorf("%s: /metrics line %q has no value", node, line)
			continue
		}
		if seen[line[:i]] {
			t.Errorf("%s: /metrics has series %s twice", node, line[:i])
		}
		seen[line[:i]] = true
	}
	if len(seen) == 0 {
		t.Errorf("%s: /metrics has no series", node)
	}
}
