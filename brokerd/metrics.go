package brokerd

import (
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/fsm/fsmpb"
	imetrics "github.com/raftq/raftq/internal/metrics"
	"github.com/raftq/raftq/internal/proposer"
)

// metricsNamespace prefixes every metric brokerd exports.
const metricsNamespace = "raftq"

// nodeMetrics is one node's Prometheus registry and instruments. Job event
// counters (enqueued, retries, lease expiries, dead-lettered, ...) are
// counted by the leader when the command that caused them commits, so the
// cluster's total is the sum over nodes; queue depths and Raft state are
// read from the node's own FSM and Raft at scrape time.
type nodeMetrics struct {
	reg  *prometheus.Registry
	grpc *imetrics.GRPCServer
	// per registers the group's own metrics: reg itself with one group,
	// reg with a constant group label when the node runs several (host.go).
	per prometheus.Registerer

	enqueued      *prometheus.CounterVec
	leased        *prometheus.CounterVec
	succeeded     *prometheus.CounterVec
	retries       *prometheus.CounterVec
	leaseExpiries *prometheus.CounterVec
	timeouts      *prometheus.CounterVec
	deadLettered  *prometheus.CounterVec
	redriven      *prometheus.CounterVec
	purgedDead    *prometheus.CounterVec
	leaderChanges prometheus.Counter
	checks        *prometheus.CounterVec
	divergent     prometheus.Gauge

	observer *raft.Observer
	obsCh    chan raft.Observation
}

func newNodeMetrics(n *Node) *nodeMetrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Name: name, Help: help}, labels)
	}
	m := &nodeMetrics{
		reg:  imetrics.NewRegistry(),
		grpc: imetrics.NewGRPCServer(metricsNamespace),
		enqueued: counter("jobs_enqueued_total",
			"Jobs created by Enqueue (duplicates of an idempotency key not counted), by queue; counted by the leader.", "queue"),
		leased: counter("jobs_leased_total",
			"Leases handed to workers (attempts started), by queue; counted by the leader.", "queue"),
		succeeded: counter("jobs_succeeded_total",
			"Jobs acked as succeeded, by queue; counted by the leader.", "queue"),
		retries: counter("job_retries_total",
			"Failed attempts that will run again, by queue and reason (nack, lease_expired, start_to_close); counted by the leader.", "queue", "reason"),
		leaseExpiries: counter("lease_expiries_total",
			"Leases that ran out before the worker acked or nacked, by queue; counted by the leader.", "queue"),
		timeouts: counter("job_timeouts_total",
			"Jobs ended by a timeout, by queue and kind (schedule_to_start: never started, now dead; start_to_close: an attempt failed); counted by the leader.", "queue", "kind"),
		deadLettered: counter("jobs_dead_lettered_total",
			"Jobs moved to the dead-letter set, by queue and reason (attempts_exhausted, permanent, lease_expired, schedule_to_start, start_to_close); counted by the leader.", "queue", "reason"),
		redriven: counter("jobs_redriven_total",
			"Dead jobs moved back to ready by a redrive, by queue; counted by the leader.", "queue"),
		purgedDead: counter("jobs_dead_purged_total",
			"Dead jobs deleted by a dead-letter purge, by queue; counted by the leader.", "queue"),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{Namespace: metricsNamespace, Name: "raft_leader_changes_total",
			Help: "Times this node saw the cluster's leader change to a new known leader."}),
		checks: counter("consistency_checks_total",
			"Consistency checks this node ran as leader, by result: ok, divergent (some node's state hash differs), incomplete (some node reported none in time).", "result"),
		divergent: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: metricsNamespace, Name: "consistency_divergent_nodes",
			Help: "Nodes whose state hash differed from the others' in the last consistency check this node ran as leader (0: all agreed)."}),
	}
	m.per = m.reg
	if n.multi() {
		m.per = prometheus.WrapRegistererWith(prometheus.Labels{"group": strconv.FormatUint(uint64(n.cfg.group), 10)}, m.reg)
	}
	if n.cfg.host != nil {
		// Another group of a host: the host's registry has the process,
		// gRPC and Raft-library metrics; this one only the group's.
		m.reg = prometheus.NewRegistry()
		m.per = prometheus.WrapRegistererWith(prometheus.Labels{"group": strconv.FormatUint(uint64(n.cfg.group), 10)}, m.reg)
	} else {
		// The bridge must exist before raft.NewRaft so that no sample is lost.
		m.reg.MustRegister(m.grpc, imetrics.Raft(metricsNamespace))
	}
	m.per.MustRegister(m.enqueued, m.leased, m.succeeded, m.retries, m.leaseExpiries, m.timeouts,
		m.deadLettered, m.redriven, m.purgedDead, m.leaderChanges, m.checks, m.divergent,
		&nodeCollector{n: n})
	return m
}

// watchRaft counts leader changes through a Raft observer (non-blocking, so
// a slow scrape never stalls Raft). Call after Raft is up.
func (m *nodeMetrics) watchRaft(n *Node) {
	m.obsCh = make(chan raft.Observation, 64)
	m.observer = raft.NewObserver(m.obsCh, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(m.observer)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for {
			select {
			case o := <-m.obsCh:
				if lo, ok := o.Data.(raft.LeaderObservation); ok && lo.LeaderID != "" {
					m.leaderChanges.Inc()
				}
			case <-n.ctx.Done():
				n.raft.DeregisterObserver(m.observer)
				return
			}
		}
	}()
}

// observe counts the job events of one committed command from its result.
func (m *nodeMetrics) observe(cmd *fsmpb.Command, r proposer.Response) {
	if m == nil || r.Err != nil || r.Result.Err != nil {
		return
	}
	for i, it := range r.Result.Items {
		if it.Err != nil {
			continue
		}
		queue := ""
		if it.Job != nil {
			queue = it.Job.Queue
		}
		switch cmd.GetType() {
		case fsmpb.CommandType_COMMAND_TYPE_ENQUEUE, fsmpb.CommandType_COMMAND_TYPE_ENQUEUE_WORKFLOW:
			if !it.Duplicate && it.Job != nil {
				m.enqueued.WithLabelValues(queue).Inc()
			}
		case fsmpb.CommandType_COMMAND_TYPE_LEASE:
			m.leased.WithLabelValues(queue).Inc()
		case fsmpb.CommandType_COMMAND_TYPE_ACK:
			m.succeeded.WithLabelValues(queue).Inc()
		case fsmpb.CommandType_COMMAND_TYPE_NACK:
			dead := "attempts_exhausted"
			if items := cmd.GetNack().GetItems(); i < len(items) && items[i].GetPermanent() {
				dead = "permanent"
			}
			m.ended(it.Job, "nack", dead)
		case fsmpb.CommandType_COMMAND_TYPE_EXPIRE_LEASES:
			m.leaseExpiries.WithLabelValues(queue).Inc()
			m.ended(it.Job, "lease_expired", "lease_expired")
		case fsmpb.CommandType_COMMAND_TYPE_EXPIRE_TIMEOUTS:
			kind := "start_to_close"
			if it.Job != nil && it.Job.LastError == fsm.ScheduleToStartError {
				kind = "schedule_to_start"
			}
			m.timeouts.WithLabelValues(queue, kind).Inc()
			m.ended(it.Job, kind, kind)
		case fsmpb.CommandType_COMMAND_TYPE_REDRIVE:
			m.redriven.WithLabelValues(queue).Inc()
		case fsmpb.CommandType_COMMAND_TYPE_DELETE_DEAD:
			m.purgedDead.WithLabelValues(cmd.GetDeleteDead().GetQueue()).Inc()
		}
	}
}

// ended counts what became of a job whose lease ended without an ack: a
// retry (for retryReason) or a dead letter (for deadReason).
func (m *nodeMetrics) ended(j *fsm.Job, retryReason, deadReason string) {
	if j == nil {
		return
	}
	switch j.State {
	case fsm.StateScheduled, fsm.StateReady:
		m.retries.WithLabelValues(j.Queue, retryReason).Inc()
	case fsm.StateDead:
		m.deadLettered.WithLabelValues(j.Queue, deadReason).Inc()
	}
}

// countingProposer is the proposer as the dispatcher sees it: every lease,
// expiry and promotion it proposes is counted when it completes.
type countingProposer struct {
	p *proposer.Proposer
	m *nodeMetrics
}

// Submit implements dispatch.Proposer.
func (c countingProposer) Submit(cmd *fsmpb.Command, done func(proposer.Response)) {
	c.p.Submit(cmd, func(r proposer.Response) {
		c.m.observe(cmd, r)
		done(r)
	})
}

// nodeCollector reads queue depths and Raft state at scrape time, so the
// numbers are exactly the node's current view and cost nothing between
// scrapes (fsm.Stats is O(log n) per queue).
type nodeCollector struct{ n *Node }

var (
	descQueueJobs = prometheus.NewDesc(metricsNamespace+"_queue_jobs",
		"Jobs in a queue by state, as this node's FSM holds them (followers may lag the leader slightly).", []string{"queue", "state"}, nil)
	descQueuePaused = prometheus.NewDesc(metricsNamespace+"_queue_paused",
		"1 when the queue is paused (no leases), else 0.", []string{"queue"}, nil)
	descQueueOldest = prometheus.NewDesc(metricsNamespace+"_queue_oldest_ready_age_seconds",
		"Age of the queue's oldest ready job (0 when none is ready): how long work has waited for a worker.", []string{"queue"}, nil)
	descRaftState = prometheus.NewDesc(metricsNamespace+"_raft_state",
		"1 for this node's current Raft state, 0 for the others.", []string{"state"}, nil)
	descLeaderReady = prometheus.NewDesc(metricsNamespace+"_leader_ready",
		"1 when this node leads and has finished its leadership set-up (Barrier, dispatcher).", nil, nil)
	descTerm = prometheus.NewDesc(metricsNamespace+"_raft_term",
		"This node's current Raft term.", nil, nil)
	descCommit = prometheus.NewDesc(metricsNamespace+"_raft_commit_index",
		"Highest log index this node knows to be committed.", nil, nil)
	descApplied = prometheus.NewDesc(metricsNamespace+"_raft_applied_index",
		"Highest log index Raft has applied on this node.", nil, nil)
	descLastLog = prometheus.NewDesc(metricsNamespace+"_raft_last_log_index",
		"Index of the last entry in this node's log.", nil, nil)
	descSnapIdx = prometheus.NewDesc(metricsNamespace+"_raft_last_snapshot_index",
		"Index of this node's latest snapshot.", nil, nil)
	descFSMIndex = prometheus.NewDesc(metricsNamespace+"_fsm_applied_index",
		"Last log index the job-queue FSM applied (config, no-op and barrier entries excluded).", nil, nil)
	descPeers = prometheus.NewDesc(metricsNamespace+"_raft_peers",
		"Other voters in this node's latest Raft configuration.", nil, nil)
	descFSMJobs = prometheus.NewDesc(metricsNamespace+"_fsm_jobs",
		"Jobs held in this node's FSM, every queue and state.", nil, nil)
)

var raftStates = []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueueJobs, descQueuePaused, descQueueOldest, descRaftState, descLeaderReady,
		descTerm, descCommit, descApplied, descLastLog, descSnapIdx, descFSMIndex, descPeers, descFSMJobs} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	gauge := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
	}
	now := n.clock()
	for _, q := range n.fsm.Stats(nil) {
		for s := fsm.StateScheduled; s < fsm.NumStates; s++ {
			gauge(descQueueJobs, float64(q.Counts[s]), q.Queue, s.String())
		}
		gauge(descQueuePaused, b2f(q.Paused), q.Queue)
		age := 0.0
		if q.OldestReadyCreatedAt != 0 {
			age = max(0, now.Sub(time.Unix(0, q.OldestReadyCreatedAt)).Seconds())
		}
		gauge(descQueueOldest, age, q.Queue)
	}
	gauge(descFSMIndex, float64(n.fsm.LastIndex()))
	gauge(descFSMJobs, float64(n.fsm.Len()))
	gauge(descLeaderReady, b2f(n.lead.ready.Load()))
	if n.raft == nil {
		return
	}
	st := n.raft.State()
	for _, s := range raftStates {
		gauge(descRaftState, b2f(s == st), strings.ToLower(s.String()))
	}
	stats := n.raft.Stats()
	for _, kv := range []struct {
		d   *prometheus.Desc
		key string
	}{{descTerm, "term"}, {descCommit, "commit_index"}, {descApplied, "applied_index"},
		{descLastLog, "last_log_index"}, {descSnapIdx, "last_snapshot_index"}, {descPeers, "num_peers"}} {
		if v, err := strconv.ParseUint(stats[kv.key], 10, 64); err == nil {
			gauge(kv.d, float64(v))
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// consistency records one consistency check's result.
func (m *nodeMetrics) consistency(result string, divergent int) {
	m.checks.WithLabelValues(result).Inc()
	m.divergent.Set(float64(divergent))
}
