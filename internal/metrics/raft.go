package metrics

import (
	"strings"
	"sync"
	"time"

	gometrics "github.com/hashicorp/go-metrics/compat"
	"github.com/prometheus/client_golang/prometheus"
)

// hashicorp/raft and brokerd's Raft log store (brokerd/diskspace.go's
// watchedStore, the same keys for raft-wal and raft-boltdb) report through go-metrics' process-wide
// global sink (github.com/hashicorp/go-metrics/compat, which is
// armon/go-metrics unless built with the hashicorpmetrics tag). RaftBridge
// installs one sink there that feeds a fixed table of Prometheus metrics,
// named by Prometheus conventions (snake_case, base units, _total on
// counters), and ignores every other key. A fixed table rather than a
// generic name translation: raft's keys are camelCase, some embed peer ids,
// and timers are in milliseconds; each one we export is chosen and named
// on purpose.

type kind int

const (
	kindHistogram kind = iota
	kindCounter
	kindGauge
)

// raftMetric maps one go-metrics key to a Prometheus metric.
type raftMetric struct {
	key    string // go-metrics key joined with "."
	name   string // without the namespace
	help   string
	kind   kind
	scale  float64 // multiplies the value (ms → s)
	labels []string
	// buckets for histograms (default LatencyBuckets).
	buckets []float64
}

const ms = 0.001

var raftTable = []raftMetric{
	{key: "raft.commitTime", name: "raft_commit_seconds", kind: kindHistogram, scale: ms,
		help: "Leader: time from a log entry's dispatch to its commit by a quorum (includes the followers' fsync)."},
	{key: "raftq.logstore.storeLogs", name: "raft_log_store_seconds", kind: kindHistogram, scale: ms,
		help: "Time to append a batch of entries to the Raft log (WAL or bolt), including its fsync (leader and followers)."},
	{key: "raftq.logstore.logsPerBatch", name: "raft_log_store_batch_entries", kind: kindHistogram, scale: 1,
		buckets: prometheus.ExponentialBuckets(1, 2, 12),
		help:    "Entries written per Raft log append (one fsync each)."},
	{key: "raft.leader.dispatchLog", name: "raft_leader_dispatch_seconds", kind: kindHistogram, scale: ms,
		help: "Leader: time to write new entries to its own log before replicating them."},
	{key: "raft.fsm.applyBatch", name: "raft_fsm_apply_seconds", kind: kindHistogram, scale: ms,
		help: "Time the FSM took to apply one batch of committed entries."},
	{key: "raft.fsm.applyBatchNum", name: "raft_fsm_apply_batch_entries", kind: kindHistogram, scale: 1,
		buckets: prometheus.ExponentialBuckets(1, 2, 12),
		help:    "Committed entries handed to the FSM per batch."},
	{key: "raft.replication.appendEntries.rpc", name: "raft_replication_append_entries_seconds", kind: kindHistogram, scale: ms,
		labels: []string{"peer_id"},
		help:   "Leader: round trip of an AppendEntries RPC to a follower, by peer."},
	{key: "raft.leader.lastContact", name: "raft_leader_last_contact_seconds", kind: kindHistogram, scale: ms,
		help: "Leader: time since it last heard from a follower, sampled on each check (high values precede lost leadership)."},
	{key: "raft.snapshot.takeSnapshot", name: "raft_snapshot_take_seconds", kind: kindHistogram, scale: ms,
		help: "Time to take a Raft snapshot (FSM capture and persist)."},
	{key: "raft.fsm.restore", name: "raft_fsm_restore_seconds", kind: kindHistogram, scale: ms,
		help: "Time to restore the FSM from a snapshot."},
	{key: "raft.apply", name: "raft_apply_total", kind: kindCounter, scale: 1,
		help: "Leader: log entries submitted through Raft Apply (each carries a group commit of commands)."},
	{key: "raft.barrier", name: "raft_barrier_total", kind: kindCounter, scale: 1,
		help: "Raft barriers issued (a new leader issues one before serving)."},
	{key: "raft.verify_leader", name: "raft_verify_leader_total", kind: kindCounter, scale: 1,
		help: "Leadership verifications (one per linearizable read)."},
	{key: "raft.transition.heartbeat_timeout", name: "raft_heartbeat_timeouts_total", kind: kindCounter, scale: 1,
		help: "Followers that stopped hearing from the leader and started an election."},
	{key: "raft.transition.leader_lease_timeout", name: "raft_leader_lease_timeouts_total", kind: kindCounter, scale: 1,
		help: "Leaders that stepped down because they lost contact with a quorum."},
	{key: "raft.state.leader", name: "raft_became_leader_total", kind: kindCounter, scale: 1,
		help: "Times a node of this process became leader."},
	{key: "raft.state.candidate", name: "raft_became_candidate_total", kind: kindCounter, scale: 1,
		help: "Times a node of this process became candidate (started an election)."},
	{key: "raft.commitNumLogs", name: "raft_commit_batch_entries", kind: kindGauge, scale: 1,
		help: "Leader: entries committed by the last commit index advance."},
}

// RaftBridge is the Prometheus side of the go-metrics sink. It is a
// prometheus.Collector; since go-metrics is process-wide, every node in one
// process (tests) shares one bridge and its numbers.
type RaftBridge struct {
	byKey map[string]*bridged
	all   []*bridged
}

type bridged struct {
	def   raftMetric
	hist  *prometheus.HistogramVec
	count *prometheus.CounterVec
	gauge *prometheus.GaugeVec
}

func (b *bridged) collector() prometheus.Collector {
	switch b.def.kind {
	case kindCounter:
		return b.count
	case kindGauge:
		return b.gauge
	}
	return b.hist
}

var (
	bridgeOnce sync.Once
	bridge     *RaftBridge
)

// Raft returns the process's RaftBridge, installing it as go-metrics'
// global sink on first use. Register it with each daemon's registry; it
// must be called before raft.NewRaft to see every sample. The metric names
// are <namespace>_raft_*; the namespace of the first call wins.
func Raft(namespace string) *RaftBridge {
	bridgeOnce.Do(func() {
		bridge = newRaftBridge(namespace)
		cfg := gometrics.DefaultConfig("")
		cfg.EnableHostname = false
		cfg.EnableRuntimeMetrics = false // Prometheus' Go collector does this
		cfg.EnableServiceLabel = false
		cfg.TimerGranularity = time.Millisecond
		// Errors only come from a bad config; ours is fixed.
		_, _ = gometrics.NewGlobal(cfg, sink{bridge})
	})
	return bridge
}

func newRaftBridge(namespace string) *RaftBridge {
	b := &RaftBridge{byKey: map[string]*bridged{}}
	for _, d := range raftTable {
		e := &bridged{def: d}
		switch d.kind {
		case kindHistogram:
			buckets := d.buckets
			if buckets == nil {
				buckets = LatencyBuckets
			}
			e.hist = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: d.name, Help: d.help, Buckets: buckets}, d.labels)
		case kindCounter:
			e.count = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: d.name, Help: d.help}, d.labels)
			if len(d.labels) == 0 {
				e.count.WithLabelValues() // export 0 before the first event
			}
		case kindGauge:
			e.gauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: d.name, Help: d.help}, d.labels)
		}
		b.byKey[d.key] = e
		b.all = append(b.all, e)
	}
	return b
}

// Describe implements prometheus.Collector.
func (b *RaftBridge) Describe(ch chan<- *prometheus.Desc) {
	for _, e := range b.all {
		e.collector().Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (b *RaftBridge) Collect(ch chan<- prometheus.Metric) {
	for _, e := range b.all {
		e.collector().Collect(ch)
	}
}

func (b *RaftBridge) record(key []string, val float32, labels []gometrics.Label) {
	e := b.byKey[strings.Join(key, ".")]
	if e == nil {
		return
	}
	lv := make([]string, len(e.def.labels))
	for i, name := range e.def.labels {
		for _, l := range labels {
			if l.Name == name {
				lv[i] = l.Value
			}
		}
	}
	v := float64(val) * e.def.scale
	switch e.def.kind {
	case kindHistogram:
		e.hist.WithLabelValues(lv...).Observe(v)
	case kindCounter:
		if v >= 0 {
			e.count.WithLabelValues(lv...).Add(v)
		}
	case kindGauge:
		e.gauge.WithLabelValues(lv...).Set(v)
	}
}

// sink adapts the bridge to go-metrics' MetricSink interface.
type sink struct{ b *RaftBridge }

func (s sink) SetGauge(key []string, val float32) { s.b.record(key, val, nil) }
func (s sink) SetGaugeWithLabels(key []string, val float32, l []gometrics.Label) {
	s.b.record(key, val, l)
}
func (s sink) EmitKey(key []string, val float32)     {}
func (s sink) IncrCounter(key []string, val float32) { s.b.record(key, val, nil) }
func (s sink) IncrCounterWithLabels(key []string, val float32, l []gometrics.Label) {
	s.b.record(key, val, l)
}
func (s sink) AddSample(key []string, val float32) { s.b.record(key, val, nil) }
func (s sink) AddSampleWithLabels(key []string, val float32, l []gometrics.Label) {
	s.b.record(key, val, l)
}
