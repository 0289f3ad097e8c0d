package worker

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the worker's Prometheus collectors. They are labelled by
// queue and job type (bounded sets chosen by the operator), never by job
// id or worker id: a worker id belongs in a const label added through
// prometheus.WrapRegistererWith.
type metrics struct {
	started    *prometheus.CounterVec   // queue, type
	finished   *prometheus.CounterVec   // queue, type, outcome
	duration   *prometheus.HistogramVec // queue, type
	inFlight   *prometheus.GaugeVec     // queue
	fetches    *prometheus.CounterVec   // queue, result
	fetched    *prometheus.CounterVec   // queue
	extensions *prometheus.CounterVec   // queue, result
	settleErrs *prometheus.CounterVec   // queue, op
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "raftq", Subsystem: "worker", Name: "jobs_started_total",
			Help: "Attempts handed to a handler.",
		}, []string{"queue", "type"}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "raftq", Subsystem: "worker", Name: "jobs_finished_total",
			Help: "Attempts settled, by outcome: succeeded, failed, dead, cancelled, shutdown, lease_lost, settle_error.",
		}, []string{"queue", "type", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "raftq", Subsystem: "worker", Name: "job_duration_seconds",
			Help:    "Handler run time per attempt.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 12),
		}, []string{"queue", "type"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "raftq", Subsystem: "worker", Name: "jobs_in_flight",
			Help: "Leased jobs held by this worker (running or being settled).",
		}, []string{"queue"}),
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "raftq", Subsystem: "worker", Name: "fetches_total",
			Help: "Fetch calls by result: jobs, empty, error.",
		}, []string{"queue", "result"}),
		fetched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "raftq", Subsystem: "worker", Name: "jobs_fetched_total",
			Help: "Jobs leased through Fetch.",
		}, []string{"queue"}),
		extensions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "raftq", Subsystem: "worker", Name: "lease_extensions_total",
			Help: "Lease extensions by result: ok, error, lost.",
		}, []string{"queue", "result"}),
		settleErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "raftq", Subsystem: "worker", Name: "settle_errors_total",
			Help: "Failed record, ack and nack calls, by operation.",
		}, []string{"queue", "op"}),
	}
	if reg != nil {
		m.started = register(reg, m.started)
		m.finished = register(reg, m.finished)
		m.duration = register(reg, m.duration)
		m.inFlight = register(reg, m.inFlight)
		m.fetches = register(reg, m.fetches)
		m.fetched = register(reg, m.fetched)
		m.extensions = register(reg, m.extensions)
		m.settleErrs = register(reg, m.settleErrs)
	}
	return m
}

// register registers c, or returns the identical collector already
// registered (several workers in one process share a registry).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		// A conflicting collector of the same name: keep ours unregistered
		// rather than fail the worker over metrics.
	}
	return c
}
