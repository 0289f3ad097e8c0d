// Package metrics holds the Prometheus plumbing every raftq daemon shares:
// a registry with the Go runtime and process collectors, a gRPC server
// interceptor that measures each RPC (rate, errors, latency), and a bridge
// that turns hashicorp/raft's go-metrics samples into Prometheus metrics.
//
// Each daemon owns one registry (never the global default one), so several
// daemons can run in one test process without colliding.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// NewRegistry returns a registry with the Go runtime and process
// collectors already registered: every daemon exports them, so dashboards
// can rely on go_* and process_* series being there.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}
